//! The schema: which metadata fields are indexed, and as what (docs/records.md, "Schema").
//!
//! ```
//! u8 version (= 1) | u8 field_count (0..32) | field_count x ( u8 kind | u8 name_len | name )
//! ```
//!
//! The encoding has no optional parts, so two schemas are equal exactly when their bytes are.
const std = @import("std");
const assert = std.debug.assert;
const Allocator = std.mem.Allocator;

pub const version: u8 = 1;
pub const fields_max = 32;
pub const name_bytes_max = 64;
/// The longest encoding: a header and fields_max fields with the longest names.
pub const bytes_max = 2 + fields_max * (2 + name_bytes_max);

pub const Kind = enum(u8) {
    /// A string, or an array of strings.
    keyword = 1,
    /// A finite number, or an array of them.
    number = 2,
};

pub const Field = struct {
    kind: Kind,
    /// 1..name_bytes_max bytes of UTF-8, unique within the schema.
    name: []const u8,
};

pub const Schema = struct {
    /// In field order: a term's `field` byte indexes this.
    fields: []const Field,
    /// The owned copy of the encoding; each field's name points into it.
    bytes: []const u8,

    /// The encoding of a schema with no fields. Schema.empty() points here, so it allocates
    /// nothing and deinit knows not to free it.
    const empty_bytes = [2]u8{ version, 0 };

    pub fn empty() Schema {
        return .{ .fields = &.{}, .bytes = &empty_bytes };
    }

    /// Validates the encoding and copies it. Invalid: a short or long buffer, another version,
    /// more than fields_max fields, an unknown kind, a name of 0 or more than name_bytes_max
    /// bytes, a name that is not UTF-8, or two fields with one name.
    pub fn parse(gpa: Allocator, bytes: []const u8) error{ InvalidSchema, OutOfMemory }!Schema {
        const field_count = try validate(bytes);
        if (field_count == 0) return empty();
        const copy = try gpa.dupe(u8, bytes);
        errdefer gpa.free(copy);
        const fields = try gpa.alloc(Field, field_count);
        var offset: usize = 2;
        for (fields) |*field| {
            const name_len = copy[offset + 1];
            field.* = .{
                .kind = @enumFromInt(copy[offset]),
                .name = copy[offset + 2 ..][0..name_len],
            };
            offset += 2 + name_len;
        }
        assert(offset == copy.len);
        assert(fields.len == field_count);
        return .{ .fields = fields, .bytes = copy };
    }

    pub fn deinit(self: *Schema, gpa: Allocator) void {
        if (self.fields.len == 0) {
            assert(self.bytes.ptr == &empty_bytes);
        } else {
            gpa.free(self.fields);
            gpa.free(self.bytes);
        }
        self.* = undefined;
    }

    pub fn eql(a: *const Schema, b: *const Schema) bool {
        const same = std.mem.eql(u8, a.bytes, b.bytes);
        assert(!same or a.fields.len == b.fields.len);
        return same;
    }

    /// The field count of a valid encoding, or InvalidSchema.
    fn validate(bytes: []const u8) error{InvalidSchema}!u8 {
        if (bytes.len < 2 or bytes.len > bytes_max) return error.InvalidSchema;
        if (bytes[0] != version) return error.InvalidSchema;
        const field_count = bytes[1];
        if (field_count > fields_max) return error.InvalidSchema;
        // Each field's name is compared with those before it: at most 32 * 31 / 2 comparisons.
        var names: [fields_max][]const u8 = undefined;
        var offset: usize = 2;
        for (0..field_count) |i| {
            if (bytes.len - offset < 2) return error.InvalidSchema;
            _ = std.meta.intToEnum(Kind, bytes[offset]) catch return error.InvalidSchema;
            const name_len = bytes[offset + 1];
            if (name_len == 0 or name_len > name_bytes_max) return error.InvalidSchema;
            if (bytes.len - offset - 2 < name_len) return error.InvalidSchema;
            const name = bytes[offset + 2 ..][0..name_len];
            if (!std.unicode.utf8ValidateSlice(name)) return error.InvalidSchema;
            for (names[0..i]) |before| {
                if (std.mem.eql(u8, before, name)) return error.InvalidSchema;
            }
            names[i] = name;
            offset += 2 + name_len;
        }
        if (offset != bytes.len) return error.InvalidSchema;
        return field_count;
    }
};

/// Encodes fields as a schema (for tests: the TypeScript side encodes schemas for callers). Does
/// not validate, so tests can build invalid encodings from it.
pub fn encode(gpa: Allocator, fields: []const Field) error{OutOfMemory}![]u8 {
    assert(fields.len <= std.math.maxInt(u8));
    var size: usize = 2;
    for (fields) |field| size += 2 + field.name.len;
    const bytes = try gpa.alloc(u8, size);
    bytes[0] = version;
    bytes[1] = @intCast(fields.len);
    var offset: usize = 2;
    for (fields) |field| {
        bytes[offset] = @intFromEnum(field.kind);
        bytes[offset + 1] = @intCast(field.name.len);
        @memcpy(bytes[offset + 2 ..][0..field.name.len], field.name);
        offset += 2 + field.name.len;
    }
    assert(offset == size);
    return bytes;
}

const testing = std.testing;

test "schema: parse round-trips fields, empty allocates nothing" {
    const gpa = testing.allocator;
    const fields = [_]Field{
        .{ .kind = .keyword, .name = "colour" },
        .{ .kind = .number, .name = "prix €" },
    };
    const bytes = try encode(gpa, &fields);
    defer gpa.free(bytes);
    var schema = try Schema.parse(gpa, bytes);
    defer schema.deinit(gpa);
    try testing.expectEqual(@as(usize, 2), schema.fields.len);
    try testing.expectEqual(Kind.number, schema.fields[1].kind);
    try testing.expectEqualStrings("prix €", schema.fields[1].name);
    try testing.expect(schema.bytes.ptr != bytes.ptr);
    try testing.expect(schema.eql(&schema));

    var none = Schema.empty();
    defer none.deinit(gpa);
    try testing.expect(!none.eql(&schema));
    var parsed_none = try Schema.parse(testing.failing_allocator, &.{ 1, 0 });
    defer parsed_none.deinit(testing.failing_allocator);
    try testing.expect(parsed_none.eql(&none));
}

test "schema: the largest schema parses" {
    const gpa = testing.allocator;
    var names: [fields_max][name_bytes_max]u8 = undefined;
    var fields: [fields_max]Field = undefined;
    for (&fields, &names, 0..) |*field, *name, i| {
        @memset(name, 'a');
        name[0] = @intCast('A' + i);
        field.* = .{ .kind = if (i % 2 == 0) .keyword else .number, .name = name };
    }
    const bytes = try encode(gpa, &fields);
    defer gpa.free(bytes);
    try testing.expectEqual(bytes_max, bytes.len);
    var schema = try Schema.parse(gpa, bytes);
    defer schema.deinit(gpa);
    try testing.expectEqual(@as(usize, fields_max), schema.fields.len);
}

test "schema: every malformed encoding is InvalidSchema" {
    const gpa = testing.allocator;
    const long_name = "n" ** (name_bytes_max + 1);
    var too_many: [fields_max + 1]Field = undefined;
    var too_many_names: [fields_max + 1][2]u8 = undefined;
    for (&too_many, &too_many_names, 0..) |*field, *name, i| {
        name.* = .{ 'f', @intCast('0' + i) };
        field.* = .{ .kind = .number, .name = name };
    }
    const cases = [_][]const u8{
        "", // no header
        &.{1}, // no field count
        &.{ 2, 0 }, // another version
        &.{ 0, 0 }, // version 0
        &.{ 1, 1 }, // a field announced, none present
        &.{ 1, 1, 1 }, // a field cut after its kind
        &.{ 1, 1, 3, 1, 'a' }, // unknown kind
        &.{ 1, 1, 0, 1, 'a' }, // kind 0
        &.{ 1, 1, 1, 0 }, // an empty name
        &.{ 1, 1, 1, 2, 'a' }, // a name cut short
        &.{ 1, 1, 1, 1, 0xff }, // a name that is not UTF-8
        &.{ 1, 1, 1, 2, 0xc3, 0x28 }, // a broken two-byte sequence
        &.{ 1, 1, 1, 3, 0xed, 0xa0, 0x80 }, // an encoded surrogate
        &.{ 1, 2, 1, 1, 'a', 2, 1, 'a' }, // a duplicate name (kinds differ)
        &.{ 1, 0, 0 }, // trailing bytes
        &.{ 1, 1, 1, 1, 'a', 9 }, // trailing bytes after a field
    };
    for (cases, 0..) |case, i| {
        if (Schema.parse(gpa, case)) |parsed| {
            var schema = parsed;
            schema.deinit(gpa);
            std.debug.print("schema case {d} parsed\n", .{i});
            return error.TestExpectedError;
        } else |err| try testing.expectEqual(error.InvalidSchema, err);
    }
    const long = try encode(gpa, &.{.{ .kind = .keyword, .name = long_name }});
    defer gpa.free(long);
    try testing.expectError(error.InvalidSchema, Schema.parse(gpa, long));
    const many = try encode(gpa, &too_many);
    defer gpa.free(many);
    try testing.expectError(error.InvalidSchema, Schema.parse(gpa, many));
    const fine = try encode(gpa, too_many[0..fields_max]);
    defer gpa.free(fine);
    var schema = try Schema.parse(gpa, fine);
    schema.deinit(gpa);
}

test "schema: parse frees everything when allocation fails" {
    const fields = [_]Field{.{ .kind = .keyword, .name = "a" }};
    const bytes = try encode(testing.allocator, &fields);
    defer testing.allocator.free(bytes);
    for (0..2) |fail_index| {
        const options: testing.FailingAllocator.Config = .{ .fail_index = fail_index };
        var failing = testing.FailingAllocator.init(testing.allocator, options);
        try testing.expectError(error.OutOfMemory, Schema.parse(failing.allocator(), bytes));
    }
}

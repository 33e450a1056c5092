//! The payload of a slot: its string id, its metadata and the terms the fields index keeps
//! (docs/records.md, "Payload").
//!
//! ```
//! u8 version (= 1) | u8 pad (= 0) | u16 id_len | u32 meta_len | u16 term_count | u16 pad (= 0)
//! | id (id_len bytes) | meta (meta_len bytes: UTF-8 JSON, opaque to the core) | terms
//! term: u8 field | u8 kind | keyword: u16 len, len bytes | number: f64
//! ```
//!
//! TypeScript builds the terms from the metadata; the core trusts it for which terms a record has
//! and checks everything else here, once, before a payload is logged or indexed.
const std = @import("std");
const assert = std.debug.assert;
const Allocator = std.mem.Allocator;
const schema_mod = @import("schema.zig");
const Schema = schema_mod.Schema;
const Kind = schema_mod.Kind;

pub const version: u8 = 1;
pub const header_bytes = 12;
pub const id_bytes_max = 1024;
pub const meta_bytes_max = 65536;
pub const terms_max = 256;
pub const keyword_bytes_max = 256;
/// The longest term: u8 field, u8 kind, u16 len and the longest keyword.
pub const term_bytes_max = 4 + keyword_bytes_max;
/// The longest payload. docs/records.md writes 256 * 259 for the terms, but a term of the longest
/// keyword is 1 + 1 + 2 + 256 = 260 bytes; this is the true bound of the other limits, so a
/// buffer of this size holds every valid payload.
pub const bytes_max = header_bytes + id_bytes_max + meta_bytes_max + terms_max * term_bytes_max;

/// The seed of keyOfId ("quiv" as a little-endian u32).
pub const id_seed: u64 = 0x71756976;

/// The key of a string id. The top bit is set so a string id's key is never below 2^63.
pub fn keyOfId(id: []const u8) u64 {
    assert(id.len > 0);
    return std.hash.Wyhash.hash(id_seed, id) | (@as(u64, 1) << 63);
}

/// A string id is 1..id_bytes_max bytes of valid UTF-8.
pub fn validId(id: []const u8) bool {
    if (id.len == 0 or id.len > id_bytes_max) return false;
    return std.unicode.utf8ValidateSlice(id);
}

pub const Term = struct {
    field: u8,
    value: Value,

    pub const Value = union(Kind) {
        keyword: []const u8,
        number: f64,
    };
};

/// A validated payload's parts, pointing into its bytes.
pub const Parsed = struct {
    /// Empty for a numeric id.
    id: []const u8,
    /// Empty for no metadata.
    meta: []const u8,
    /// The raw term bytes: term_count terms, in non-decreasing field order.
    terms: []const u8,
    term_count: u16,

    /// A record with no id, metadata or terms: what a slot without a payload reads as.
    pub const none: Parsed = .{ .id = "", .meta = "", .terms = "", .term_count = 0 };

    pub fn iterator(self: Parsed) TermIterator {
        return .{ .bytes = self.terms, .offset = 0, .left = self.term_count };
    }
};

/// Decodes the terms of a validated payload in order.
pub const TermIterator = struct {
    bytes: []const u8,
    offset: usize,
    left: u16,

    pub fn next(self: *TermIterator) ?Term {
        if (self.left == 0) {
            assert(self.offset == self.bytes.len);
            return null;
        }
        self.left -= 1;
        const term = decodeTerm(self.bytes, self.offset);
        self.offset = term.end;
        return term.term;
    }
};

const Decoded = struct { term: Term, end: usize };

/// Decodes the term at offset of an already-validated term list.
fn decodeTerm(bytes: []const u8, offset: usize) Decoded {
    assert(bytes.len - offset >= 2);
    const field = bytes[offset];
    const kind: Kind = @enumFromInt(bytes[offset + 1]);
    switch (kind) {
        .keyword => {
            const len = std.mem.readInt(u16, bytes[offset + 2 ..][0..2], .little);
            const value = bytes[offset + 4 ..][0..len];
            const term: Term = .{ .field = field, .value = .{ .keyword = value } };
            return .{ .term = term, .end = offset + 4 + len };
        },
        .number => {
            const bits = std.mem.readInt(u64, bytes[offset + 2 ..][0..8], .little);
            const value: f64 = @bitCast(bits);
            assert(std.math.isFinite(value));
            const term: Term = .{ .field = field, .value = .{ .number = value } };
            return .{ .term = term, .end = offset + 10 };
        },
    }
}

/// The id of an already-validated payload (empty for a numeric id).
pub fn idOf(bytes: []const u8) []const u8 {
    assert(bytes.len >= header_bytes);
    assert(bytes[0] == version);
    const id_len = std.mem.readInt(u16, bytes[2..4], .little);
    assert(id_len <= id_bytes_max);
    return bytes[header_bytes..][0..id_len];
}

/// Validates every rule of docs/records.md: the header (version, zero pads, limits), lengths that
/// consume the bytes exactly, UTF-8 ids and keyword values, fields of the schema with their kind,
/// finite numbers, terms in non-decreasing field order and no value twice within a field.
pub fn parse(bytes: []const u8, schema: *const Schema) error{InvalidMetadata}!Parsed {
    if (bytes.len < header_bytes or bytes.len > bytes_max) return error.InvalidMetadata;
    if (bytes[0] != version or bytes[1] != 0) return error.InvalidMetadata;
    if (std.mem.readInt(u16, bytes[10..12], .little) != 0) return error.InvalidMetadata;
    const id_len = std.mem.readInt(u16, bytes[2..4], .little);
    const meta_len = std.mem.readInt(u32, bytes[4..8], .little);
    const term_count = std.mem.readInt(u16, bytes[8..10], .little);
    if (id_len > id_bytes_max) return error.InvalidMetadata;
    if (meta_len > meta_bytes_max) return error.InvalidMetadata;
    if (term_count > terms_max) return error.InvalidMetadata;
    if (bytes.len - header_bytes < @as(usize, id_len) + meta_len) return error.InvalidMetadata;
    const id = bytes[header_bytes..][0..id_len];
    if (id_len > 0 and !validId(id)) return error.InvalidMetadata;
    const meta = bytes[header_bytes + id_len ..][0..meta_len];
    const terms = bytes[header_bytes + id_len + meta_len ..];
    try validateTerms(terms, term_count, schema);
    const parsed: Parsed = .{ .id = id, .meta = meta, .terms = terms, .term_count = term_count };
    assert(parsed.id.len + parsed.meta.len + parsed.terms.len + header_bytes == bytes.len);
    return parsed;
}

fn validateTerms(
    terms: []const u8,
    term_count: u16,
    schema: *const Schema,
) error{InvalidMetadata}!void {
    assert(term_count <= terms_max);
    // The terms of the current field, decoded, for the duplicate check when its run ends.
    var run: [terms_max]Term = undefined;
    var run_len: usize = 0;
    var offset: usize = 0;
    for (0..term_count) |_| {
        const term = try checkTerm(terms, offset, schema);
        if (run_len > 0 and run[0].field != term.term.field) {
            if (term.term.field < run[0].field) return error.InvalidMetadata;
            try checkDistinct(run[0..run_len]);
            run_len = 0;
        }
        run[run_len] = term.term;
        run_len += 1;
        offset = term.end;
    }
    try checkDistinct(run[0..run_len]);
    if (offset != terms.len) return error.InvalidMetadata;
}

/// Validates and decodes one term.
fn checkTerm(
    terms: []const u8,
    offset: usize,
    schema: *const Schema,
) error{InvalidMetadata}!Decoded {
    assert(offset <= terms.len);
    const rest = terms[offset..];
    if (rest.len < 2) return error.InvalidMetadata;
    const field = rest[0];
    if (field >= schema.fields.len) return error.InvalidMetadata;
    if (rest[1] != @intFromEnum(schema.fields[field].kind)) return error.InvalidMetadata;
    switch (schema.fields[field].kind) {
        .keyword => {
            if (rest.len < 4) return error.InvalidMetadata;
            const len = std.mem.readInt(u16, rest[2..4], .little);
            if (len > keyword_bytes_max or rest.len - 4 < len) return error.InvalidMetadata;
            if (!std.unicode.utf8ValidateSlice(rest[4..][0..len])) return error.InvalidMetadata;
        },
        .number => {
            if (rest.len < 10) return error.InvalidMetadata;
            const value: f64 = @bitCast(std.mem.readInt(u64, rest[2..10], .little));
            if (!std.math.isFinite(value)) return error.InvalidMetadata;
        },
    }
    const decoded = decodeTerm(terms, offset);
    assert(decoded.end <= terms.len);
    return decoded;
}

/// InvalidMetadata if two terms of one field's run hold the same value. Numbers compare as
/// numbers, so -0 and +0 are one value (as they are to JS and to every filter comparison).
fn checkDistinct(run: []Term) error{InvalidMetadata}!void {
    if (run.len < 2) return;
    // Sorting the run turns the pairwise check into one of neighbours: O(k log k) for k terms.
    std.sort.pdq(Term, run, {}, termLessThan);
    for (run[0 .. run.len - 1], run[1..]) |a, b| {
        assert(a.field == b.field);
        if (!termLessThan({}, a, b)) return error.InvalidMetadata;
    }
}

fn termLessThan(_: void, a: Term, b: Term) bool {
    return switch (a.value) {
        .keyword => |x| std.mem.lessThan(u8, x, b.value.keyword),
        .number => |x| x < b.value.number,
    };
}

/// Encodes a payload from its parts, in the given term order (for tests: TypeScript encodes
/// payloads for callers). Does not validate, so tests can build invalid payloads from it.
pub fn encode(
    gpa: Allocator,
    id: []const u8,
    meta: []const u8,
    terms: []const Term,
) error{OutOfMemory}![]u8 {
    assert(id.len <= std.math.maxInt(u16));
    assert(meta.len <= std.math.maxInt(u32));
    assert(terms.len <= std.math.maxInt(u16));
    var size: usize = header_bytes + id.len + meta.len;
    for (terms) |term| size += switch (term.value) {
        .keyword => |value| 4 + value.len,
        .number => 10,
    };
    const bytes = try gpa.alloc(u8, size);
    bytes[0] = version;
    bytes[1] = 0;
    std.mem.writeInt(u16, bytes[2..4], @intCast(id.len), .little);
    std.mem.writeInt(u32, bytes[4..8], @intCast(meta.len), .little);
    std.mem.writeInt(u16, bytes[8..10], @intCast(terms.len), .little);
    std.mem.writeInt(u16, bytes[10..12], 0, .little);
    @memcpy(bytes[header_bytes..][0..id.len], id);
    @memcpy(bytes[header_bytes + id.len ..][0..meta.len], meta);
    var offset: usize = header_bytes + id.len + meta.len;
    for (terms) |term| {
        bytes[offset] = term.field;
        bytes[offset + 1] = @intFromEnum(term.value);
        switch (term.value) {
            .keyword => |value| {
                assert(value.len <= std.math.maxInt(u16));
                std.mem.writeInt(u16, bytes[offset + 2 ..][0..2], @intCast(value.len), .little);
                @memcpy(bytes[offset + 4 ..][0..value.len], value);
                offset += 4 + value.len;
            },
            .number => |value| {
                std.mem.writeInt(u64, bytes[offset + 2 ..][0..8], @bitCast(value), .little);
                offset += 10;
            },
        }
    }
    assert(offset == size);
    return bytes;
}

const testing = std.testing;

/// A schema of two keyword and two number fields, for the tests of this folder.
pub fn testSchema(gpa: Allocator) !Schema {
    const bytes = try schema_mod.encode(gpa, &.{
        .{ .kind = .keyword, .name = "colour" },
        .{ .kind = .number, .name = "price" },
        .{ .kind = .keyword, .name = "tags" },
        .{ .kind = .number, .name = "sizes" },
    });
    defer gpa.free(bytes);
    return Schema.parse(gpa, bytes);
}

fn kw(field: u8, value: []const u8) Term {
    return .{ .field = field, .value = .{ .keyword = value } };
}

fn num(field: u8, value: f64) Term {
    return .{ .field = field, .value = .{ .number = value } };
}

test "payload: parse round-trips id, metadata and terms" {
    const gpa = testing.allocator;
    var schema = try testSchema(gpa);
    defer schema.deinit(gpa);
    const terms = [_]Term{
        kw(0, "red"), num(1, -2.5), kw(2, ""), kw(2, "sale"), num(3, 0), num(3, 1e300),
    };
    const bytes = try encode(gpa, "doc-1 ✓", "{\"colour\":\"red\"}", &terms);
    defer gpa.free(bytes);
    const parsed = try parse(bytes, &schema);
    try testing.expectEqualStrings("doc-1 ✓", parsed.id);
    try testing.expectEqualStrings("{\"colour\":\"red\"}", parsed.meta);
    try testing.expectEqualStrings("doc-1 ✓", idOf(bytes));
    try testing.expectEqual(@as(u16, terms.len), parsed.term_count);
    var it = parsed.iterator();
    for (terms) |want| {
        const got = it.next().?;
        try testing.expectEqual(want.field, got.field);
        switch (want.value) {
            .keyword => |value| try testing.expectEqualStrings(value, got.value.keyword),
            .number => |value| try testing.expectEqual(value, got.value.number),
        }
    }
    try testing.expectEqual(@as(?Term, null), it.next());

    // A numeric id with no metadata and no terms is the smallest payload.
    const bare = try encode(gpa, "", "", &.{});
    defer gpa.free(bare);
    try testing.expectEqual(@as(usize, header_bytes), bare.len);
    const parsed_bare = try parse(bare, &schema);
    try testing.expectEqual(@as(usize, 0), parsed_bare.id.len);
    try testing.expectEqual(@as(usize, 0), idOf(bare).len);
    var empty = Schema.empty();
    _ = try parse(bare, &empty);
}

test "payload: keyOfId and validId" {
    const key = keyOfId("a");
    try testing.expect(key >> 63 == 1);
    try testing.expectEqual(std.hash.Wyhash.hash(0x71756976, "a") | (1 << 63), key);
    try testing.expect(keyOfId("a") != keyOfId("b"));
    try testing.expect(validId("a"));
    try testing.expect(validId("x" ** id_bytes_max));
    try testing.expect(!validId(""));
    try testing.expect(!validId("x" ** (id_bytes_max + 1)));
    try testing.expect(!validId(&.{ 'a', 0xc0, 0x80 }));
}

test "payload: the largest valid payload fits bytes_max exactly" {
    const gpa = testing.allocator;
    var schema = try testSchema(gpa);
    defer schema.deinit(gpa);
    var values: [terms_max][keyword_bytes_max]u8 = undefined;
    var terms: [terms_max]Term = undefined;
    for (&terms, &values, 0..) |*term, *value, i| {
        @memset(value, 'k');
        // Two letters from the index make the values distinct and keep them ASCII.
        value[0] = @intCast('A' + i / 16);
        value[1] = @intCast('A' + i % 16);
        term.* = kw(2, value);
    }
    const meta = try gpa.alloc(u8, meta_bytes_max);
    defer gpa.free(meta);
    @memset(meta, ' ');
    // Values must be UTF-8: every byte of these is ASCII.
    for (values) |value| try testing.expect(std.unicode.utf8ValidateSlice(&value));
    const bytes = try encode(gpa, "i" ** id_bytes_max, meta, &terms);
    defer gpa.free(bytes);
    try testing.expectEqual(@as(usize, bytes_max), bytes.len);
    const parsed = try parse(bytes, &schema);
    try testing.expectEqual(@as(u16, terms_max), parsed.term_count);
}

fn expectInvalid(schema: *const Schema, what: []const u8, bytes: []const u8) !void {
    if (parse(bytes, schema)) |_| {
        std.debug.print("payload case \"{s}\" parsed\n", .{what});
        return error.TestExpectedError;
    } else |err| try testing.expectEqual(error.InvalidMetadata, err);
}

/// Encodes terms under a fixed id and metadata and expects the payload to be rejected.
fn expectInvalidTerms(schema: *const Schema, what: []const u8, terms: []const Term) !void {
    const gpa = testing.allocator;
    const bytes = try encode(gpa, "id", "{}", terms);
    defer gpa.free(bytes);
    try expectInvalid(schema, what, bytes);
}

test "payload: each rule of the format has a failing case" {
    const gpa = testing.allocator;
    var schema = try testSchema(gpa);
    defer schema.deinit(gpa);
    const good = try encode(gpa, "id", "{}", &.{ kw(0, "a"), num(1, 1) });
    defer gpa.free(good);
    _ = try parse(good, &schema);
    const copy = try gpa.alloc(u8, good.len + 1);
    defer gpa.free(copy);
    const Patch = struct { what: []const u8, at: usize, byte: u8 };
    const patches = [_]Patch{
        .{ .what = "version 0", .at = 0, .byte = 0 },
        .{ .what = "version 2", .at = 0, .byte = 2 },
        .{ .what = "first pad", .at = 1, .byte = 1 },
        .{ .what = "second pad, low byte", .at = 10, .byte = 1 },
        .{ .what = "second pad, high byte", .at = 11, .byte = 1 },
        .{ .what = "id_len past the end", .at = 3, .byte = 1 },
        .{ .what = "meta_len past the end", .at = 6, .byte = 1 },
        .{ .what = "term_count one more than present", .at = 8, .byte = 3 },
        .{ .what = "term_count one less than present (trailing term)", .at = 8, .byte = 1 },
        .{ .what = "id not UTF-8", .at = 12, .byte = 0xff },
        .{ .what = "field past the schema", .at = 16, .byte = 4 },
        .{ .what = "keyword term on a number field", .at = 16, .byte = 1 },
        .{ .what = "kind 3", .at = 17, .byte = 3 },
        .{ .what = "number kind on a keyword field", .at = 17, .byte = 2 },
        .{ .what = "keyword len past the end", .at = 18, .byte = 200 },
        .{ .what = "keyword not UTF-8", .at = 20, .byte = 0x80 },
    };
    for (patches) |patch| {
        const bytes = copy[0..good.len];
        @memcpy(bytes, good);
        bytes[patch.at] = patch.byte;
        try expectInvalid(&schema, patch.what, bytes);
    }
    @memcpy(copy[0..good.len], good);
    copy[good.len] = 0;
    try expectInvalid(&schema, "a trailing byte", copy);
    for (0..good.len) |len| try expectInvalid(&schema, "truncated", good[0..len]);

    const nan = std.math.nan(f64);
    const inf = std.math.inf(f64);
    try expectInvalidTerms(&schema, "NaN", &.{num(1, nan)});
    try expectInvalidTerms(&schema, "+inf", &.{num(1, inf)});
    try expectInvalidTerms(&schema, "-inf", &.{num(1, -inf)});
    try expectInvalidTerms(&schema, "fields out of order", &.{ num(1, 1), kw(0, "a") });
    try expectInvalidTerms(
        &schema,
        "fields out of order after a run",
        &.{ kw(2, "a"), kw(2, "b"), num(1, 1) },
    );
    try expectInvalidTerms(&schema, "keyword twice", &.{ kw(2, "a"), kw(2, "b"), kw(2, "a") });
    try expectInvalidTerms(&schema, "number twice", &.{ num(3, 2), num(3, 1), num(3, 2) });
    try expectInvalidTerms(&schema, "-0 and +0", &.{ num(3, 0.0), num(3, -0.0) });
    const long = "k" ** (keyword_bytes_max + 1);
    try expectInvalidTerms(&schema, "keyword of 257 bytes", &.{kw(0, long)});
    try expectInvalidTerms(&schema, "keyword, an encoded surrogate", &.{kw(0, "\xed\xa0\x80")});

    const long_id = try encode(gpa, "i" ** (id_bytes_max + 1), "", &.{});
    defer gpa.free(long_id);
    try expectInvalid(&schema, "id of 1025 bytes", long_id);
    const meta = try gpa.alloc(u8, meta_bytes_max + 1);
    defer gpa.free(meta);
    @memset(meta, ' ');
    const long_meta = try encode(gpa, "", meta, &.{});
    defer gpa.free(long_meta);
    try expectInvalid(&schema, "meta of 65537 bytes", long_meta);
    var many: [terms_max + 1]Term = undefined;
    for (&many, 0..) |*term, i| term.* = num(3, @floatFromInt(i));
    const too_many = try encode(gpa, "", "", &many);
    defer gpa.free(too_many);
    try expectInvalid(&schema, "257 terms", too_many);
    const just_enough = try encode(gpa, "", "", many[0..terms_max]);
    defer gpa.free(just_enough);
    _ = try parse(just_enough, &schema);
    var empty = Schema.empty();
    try expectInvalid(&empty, "a term under an empty schema", good);
}

test "payload: values may repeat across fields, and the empty keyword is a value" {
    const gpa = testing.allocator;
    var schema = try testSchema(gpa);
    defer schema.deinit(gpa);
    const bytes = try encode(gpa, "", "", &.{
        kw(0, ""), num(1, 7), kw(2, ""), kw(2, "x"), num(3, 7), num(3, -0.5),
    });
    defer gpa.free(bytes);
    const parsed = try parse(bytes, &schema);
    try testing.expectEqual(@as(u16, 6), parsed.term_count);
}

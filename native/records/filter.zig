//! Filter programs (docs/records.md, "Filter program"): parsing, compiling a program to the
//! bitset of slots it admits (materialize, over the fields index), and evaluating it on one
//! record (evalPayload, for snapshot fix-ups and as the oracle of the tests).
//!
//! ```
//! u8 version (= 1) | u16 op_count | ops (postfix: each op pops its operands and pushes one bit)
//! ```
//!
//! A field missing from a record has no values: KW_IN, NUM_CMP and NUM_IN are false for it and
//! NOT of them is true, as `$ne` and `$nin` match records without the field in MongoDB.
//!
//! A Program does not change after parse (but for the caller filling allows[i].slots), so any
//! number of threads may evaluate one. materialize only reads the fields index: it needs the
//! records lock shared, not exclusive.
const std = @import("std");
const assert = std.debug.assert;
const Allocator = std.mem.Allocator;
const schema_mod = @import("schema.zig");
const Schema = schema_mod.Schema;
const Kind = schema_mod.Kind;
const payload = @import("payload.zig");
const Parsed = payload.Parsed;
const Term = payload.Term;
const fields_mod = @import("fields.zig");
const Fields = fields_mod.Fields;
const Cmp = fields_mod.Cmp;
const orderedKey = fields_mod.orderedKey;
const Bitset = @import("bitset.zig").Bitset;

pub const version: u8 = 1;
pub const ops_max = 4096;
pub const depth_max = 64;
pub const bytes_max = 8 << 20;

pub const Opcode = enum(u8) {
    all = 0x01,
    kw_in = 0x02,
    num_cmp = 0x03,
    num_in = 0x04,
    exists = 0x05,
    @"and" = 0x06,
    @"or" = 0x07,
    not = 0x08,
    allow = 0x09,
};

pub const Op = union(Opcode) {
    all: void,
    /// The values sorted ascending (bytewise), repeats kept.
    kw_in: struct { field: u8, values: []const []const u8 },
    num_cmp: struct { field: u8, cmp: Cmp, value: f64 },
    /// The values' ordered keys (fields.orderedKey), sorted ascending.
    num_in: struct { field: u8, keys: []const u64 },
    exists: u8,
    /// How many bits it pops (1..depth_max).
    @"and": u16,
    @"or": u16,
    not: void,
    /// The index of its list in Program.allows.
    allow: u32,
};

/// The keys of one ALLOW op and, once resolved, their slots. The caller resolves keys to slots
/// before materialize, because it cannot take key-map locks while holding the records lock.
pub const Allow = struct {
    /// Sorted ascending, repeats kept.
    keys: []const u64,
    /// Filled by the caller with its gpa; freed by Program.deinit. Slots at or past materialize's
    /// slots_used are ignored.
    slots: std.ArrayListUnmanaged(u32) = .{},
};

pub const Program = struct {
    ops: []const Op,
    /// One per ALLOW op, in program order.
    allows: []Allow,
    /// The field count of the schema it was parsed against.
    field_count: u8,
    /// The deepest its stack gets (1..depth_max): materialize needs this many bitsets.
    depth_max: u8,
    /// Everything but the allows' slots.
    arena: std.heap.ArenaAllocator.State,

    /// Validates and decodes a program. Invalid: another version, no ops or more than ops_max,
    /// an unknown op or comparison, a field not in the schema or of the wrong kind, NaN, AND or
    /// OR of 0 or of more bits than the stack holds, a stack deeper than depth_max or not
    /// exactly one bit at the end, truncated or trailing bytes, more than bytes_max bytes.
    pub fn parse(
        gpa: Allocator,
        bytes: []const u8,
        schema: *const Schema,
    ) error{ InvalidFilter, OutOfMemory }!Program {
        if (bytes.len < 3 or bytes.len > bytes_max) return error.InvalidFilter;
        if (bytes[0] != version) return error.InvalidFilter;
        var arena = std.heap.ArenaAllocator.init(gpa);
        errdefer arena.deinit();
        var parser: Parser = .{
            .arena = arena.allocator(),
            .reader = .{ .bytes = try arena.allocator().dupe(u8, bytes), .offset = 1 },
            .schema = schema,
        };
        const op_count = try parser.reader.int(u16);
        if (op_count == 0 or op_count > ops_max) return error.InvalidFilter;
        const ops = try parser.arena.alloc(Op, op_count);
        for (ops) |*op| op.* = try parser.op();
        if (parser.reader.offset != parser.reader.bytes.len) return error.InvalidFilter;
        if (parser.depth != 1) return error.InvalidFilter;
        assert(parser.depth_max >= 1);
        assert(parser.depth_max <= depth_max);
        return .{
            .ops = ops,
            .allows = parser.allows.items,
            .field_count = @intCast(schema.fields.len),
            .depth_max = parser.depth_max,
            .arena = arena.state,
        };
    }

    pub fn deinit(self: *Program, gpa: Allocator) void {
        for (self.allows) |*allow| allow.slots.deinit(gpa);
        self.arena.promote(gpa).deinit();
        self.* = undefined;
    }

    /// True when the program is just ALL: it admits every slot.
    pub fn isAll(self: *const Program) bool {
        return self.ops.len == 1 and self.ops[0] == .all;
    }
};

const Reader = struct {
    bytes: []const u8,
    offset: usize,

    fn take(self: *Reader, len: usize) error{InvalidFilter}![]const u8 {
        if (self.bytes.len - self.offset < len) return error.InvalidFilter;
        defer self.offset += len;
        return self.bytes[self.offset..][0..len];
    }

    fn int(self: *Reader, comptime T: type) error{InvalidFilter}!T {
        const bytes = try self.take(@sizeOf(T));
        return std.mem.readInt(T, bytes[0..@sizeOf(T)], .little);
    }

    fn number(self: *Reader) error{InvalidFilter}!f64 {
        const value: f64 = @bitCast(try self.int(u64));
        if (std.math.isNan(value)) return error.InvalidFilter;
        return value;
    }

    /// InvalidFilter unless `count` items of at least `item_bytes` each can follow: checked
    /// before allocating for them, so a forged count cannot ask for more memory than the bytes.
    fn expect(self: *const Reader, count: usize, item_bytes: usize) error{InvalidFilter}!void {
        if ((self.bytes.len - self.offset) / item_bytes < count) return error.InvalidFilter;
    }
};

const Parser = struct {
    arena: Allocator,
    reader: Reader,
    schema: *const Schema,
    allows: std.ArrayListUnmanaged(Allow) = .{},
    depth: u32 = 0,
    depth_max: u8 = 0,

    fn op(self: *Parser) error{ InvalidFilter, OutOfMemory }!Op {
        const code = std.meta.intToEnum(Opcode, try self.reader.int(u8)) catch {
            return error.InvalidFilter;
        };
        const decoded: Op = switch (code) {
            .all => .all,
            .kw_in => try self.kwIn(),
            .num_cmp => .{ .num_cmp = .{
                .field = try self.field(.number),
                .cmp = std.meta.intToEnum(Cmp, try self.reader.int(u8)) catch {
                    return error.InvalidFilter;
                },
                .value = try self.reader.number(),
            } },
            .num_in => try self.numIn(),
            .exists => .{ .exists = try self.field(null) },
            .@"and" => .{ .@"and" = try self.arity() },
            .@"or" => .{ .@"or" = try self.arity() },
            .not => .not,
            .allow => try self.allow(),
        };
        try self.account(decoded);
        return decoded;
    }

    /// Tracks the stack depth the op leaves behind.
    fn account(self: *Parser, decoded: Op) error{InvalidFilter}!void {
        switch (decoded) {
            .@"and", .@"or" => |n| {
                assert(n >= 1);
                if (n > self.depth) return error.InvalidFilter;
                self.depth = self.depth - n + 1;
            },
            .not => if (self.depth == 0) return error.InvalidFilter,
            else => {
                if (self.depth == depth_max) return error.InvalidFilter;
                self.depth += 1;
                self.depth_max = @max(self.depth_max, @as(u8, @intCast(self.depth)));
            },
        }
        assert(self.depth <= depth_max);
    }

    /// A field of the schema, of the given kind (any kind for null).
    fn field(self: *Parser, kind: ?Kind) error{InvalidFilter}!u8 {
        const index = try self.reader.int(u8);
        if (index >= self.schema.fields.len) return error.InvalidFilter;
        if (kind) |k| if (self.schema.fields[index].kind != k) return error.InvalidFilter;
        return index;
    }

    fn arity(self: *Parser) error{InvalidFilter}!u16 {
        const n = try self.reader.int(u16);
        if (n == 0) return error.InvalidFilter;
        return n;
    }

    fn kwIn(self: *Parser) error{ InvalidFilter, OutOfMemory }!Op {
        const index = try self.field(.keyword);
        const n = try self.reader.int(u16);
        try self.reader.expect(n, 2);
        const values = try self.arena.alloc([]const u8, n);
        for (values) |*value| {
            const len = try self.reader.int(u16);
            value.* = try self.reader.take(len);
        }
        // Sorted so evalPayload can binary-search a record's values.
        std.sort.pdq([]const u8, values, {}, bytesLessThan);
        return .{ .kw_in = .{ .field = index, .values = values } };
    }

    fn numIn(self: *Parser) error{ InvalidFilter, OutOfMemory }!Op {
        const index = try self.field(.number);
        const n = try self.reader.int(u16);
        try self.reader.expect(n, 8);
        const keys = try self.arena.alloc(u64, n);
        for (keys) |*key| key.* = orderedKey(try self.reader.number());
        std.sort.pdq(u64, keys, {}, std.sort.asc(u64));
        return .{ .num_in = .{ .field = index, .keys = keys } };
    }

    fn allow(self: *Parser) error{ InvalidFilter, OutOfMemory }!Op {
        const n = try self.reader.int(u32);
        try self.reader.expect(n, 8);
        const keys = try self.arena.alloc(u64, n);
        for (keys) |*key| key.* = try self.reader.int(u64);
        std.sort.pdq(u64, keys, {}, std.sort.asc(u64));
        const index: u32 = @intCast(self.allows.items.len);
        try self.allows.append(self.arena, .{ .keys = keys });
        return .{ .allow = index };
    }
};

fn bytesLessThan(_: void, a: []const u8, b: []const u8) bool {
    return std.mem.lessThan(u8, a, b);
}

/// Computes into `out` the slots in [0, slots_used) the program admits: out ends with exactly
/// the words of slots_used bits. Slots the fields index never saw have no values. ALLOW reads
/// allows[i].slots, which the caller must have resolved. Takes (depth_max + 1) bitsets of
/// slots_used bits; costs O(ops * slots_used / 64) plus each leaf's matches.
pub fn materialize(
    program: *const Program,
    fields: *const Fields,
    slots_used: u32,
    out: *Bitset,
    gpa: Allocator,
) error{OutOfMemory}!void {
    assert(fields.columns.len == program.field_count);
    assert(program.depth_max <= depth_max);
    var stack: [depth_max]Bitset = [_]Bitset{.{}} ** depth_max;
    defer for (stack[0..program.depth_max]) |*bits| bits.deinit(gpa);
    var depth: u32 = 0;
    for (program.ops) |op| {
        switch (op) {
            .@"and", .@"or" => |n| {
                assert(n <= depth);
                const base = depth - n;
                for (stack[base + 1 .. depth]) |*other| switch (op) {
                    .@"and" => stack[base].andWith(other),
                    else => stack[base].orWithin(other, slots_used),
                };
                depth = base + 1;
            },
            .not => {
                assert(depth >= 1);
                stack[depth - 1].notWithin(slots_used);
            },
            else => {
                assert(depth < program.depth_max);
                const top = &stack[depth];
                try top.resetAll(gpa, slots_used, op == .all);
                leaf(program, fields, op, slots_used, top);
                depth += 1;
            },
        }
    }
    assert(depth == 1);
    try out.resetAll(gpa, slots_used, false);
    out.orWithin(&stack[0], slots_used);
    assert(out.words.items.len == Bitset.wordsFor(slots_used));
}

/// Sets the slots a leaf op admits in `top`, which holds slots_used unset bits (all set for ALL).
fn leaf(
    program: *const Program,
    fields: *const Fields,
    op: Op,
    slots_used: u32,
    top: *Bitset,
) void {
    switch (op) {
        .all => {},
        .kw_in => |kw| {
            assert(fields.kindOf(kw.field) == .keyword);
            for (kw.values) |value| fields.orKeyword(kw.field, value, top, slots_used);
        },
        .num_cmp => |cmp| {
            assert(fields.kindOf(cmp.field) == .number);
            fields.orNumber(cmp.field, cmp.cmp, cmp.value, top, slots_used);
        },
        .num_in => |in| {
            assert(fields.kindOf(in.field) == .number);
            fields.orNumberIn(in.field, in.keys, top, slots_used);
        },
        .exists => |field| fields.orExists(field, top, slots_used),
        .allow => |index| for (program.allows[index].slots.items) |slot| {
            if (slot < slots_used) top.set(slot);
        },
        .@"and", .@"or", .not => unreachable,
    }
}

/// A deliberately broken evaluator is how the tests show their checker catches a wrong answer.
pub const Mode = enum { correct, lte_as_lt };

/// Evaluates the program on one record with the given key.
pub fn evalPayload(program: *const Program, parsed: Parsed, key: u64) bool {
    return evalPayloadMode(.correct, program, parsed, key);
}

pub fn evalPayloadMode(
    comptime mode: Mode,
    program: *const Program,
    parsed: Parsed,
    key: u64,
) bool {
    const record = Record.init(parsed, program.field_count);
    var stack: [depth_max]bool = undefined;
    var depth: u32 = 0;
    for (program.ops) |op| {
        switch (op) {
            .@"and", .@"or" => |n| {
                assert(n <= depth);
                const base = depth - n;
                var bit = stack[base];
                for (stack[base + 1 .. depth]) |other| {
                    bit = if (op == .@"and") bit and other else bit or other;
                }
                stack[base] = bit;
                depth = base + 1;
            },
            .not => {
                assert(depth >= 1);
                stack[depth - 1] = !stack[depth - 1];
            },
            else => {
                assert(depth < depth_max);
                stack[depth] = record.leaf(mode, program, op, key);
                depth += 1;
            },
        }
    }
    assert(depth == 1);
    return stack[0];
}

/// One record's terms, decoded, with each field's run of terms.
const Record = struct {
    terms: [payload.terms_max]Term,
    /// Terms [start[f], end[f]) are field f's (terms arrive in field order).
    start: [schema_mod.fields_max]u16,
    end: [schema_mod.fields_max]u16,

    fn init(parsed: Parsed, field_count: u8) Record {
        assert(parsed.term_count <= payload.terms_max);
        var record: Record = undefined;
        @memset(&record.start, 0);
        @memset(&record.end, 0);
        var it = parsed.iterator();
        for (0..parsed.term_count) |i| {
            const term = it.next().?;
            assert(term.field < field_count);
            if (record.end[term.field] == 0) record.start[term.field] = @intCast(i);
            record.end[term.field] = @intCast(i + 1);
            record.terms[i] = term;
        }
        assert(it.next() == null);
        return record;
    }

    fn values(self: *const Record, field: u8) []const Term {
        return self.terms[self.start[field]..self.end[field]];
    }

    fn leaf(
        self: *const Record,
        comptime mode: Mode,
        program: *const Program,
        op: Op,
        key: u64,
    ) bool {
        switch (op) {
            .all => return true,
            .kw_in => |kw| for (self.values(kw.field)) |term| {
                const S = struct {
                    fn order(probe: []const u8, item: []const u8) std.math.Order {
                        return std.mem.order(u8, probe, item);
                    }
                };
                const value = term.value.keyword;
                const found = std.sort.binarySearch([]const u8, kw.values, value, S.order);
                if (found != null) return true;
            },
            .num_cmp => |cmp| for (self.values(cmp.field)) |term| {
                if (compareNumber(mode, term.value.number, cmp.cmp, cmp.value)) return true;
            },
            .num_in => |in| for (self.values(in.field)) |term| {
                const probe = orderedKey(term.value.number);
                if (std.sort.binarySearch(u64, in.keys, probe, orderU64) != null) return true;
            },
            .exists => |field| return self.end[field] > 0,
            .allow => |index| {
                const keys = program.allows[index].keys;
                return std.sort.binarySearch(u64, keys, key, orderU64) != null;
            },
            .@"and", .@"or", .not => unreachable,
        }
        return false;
    }
};

/// Compares as f64 (not through ordered keys), so the oracle does not share the index's code.
fn compareNumber(comptime mode: Mode, value: f64, cmp: Cmp, bound: f64) bool {
    return switch (cmp) {
        .eq => value == bound,
        .lt => value < bound,
        .lte => if (mode == .lte_as_lt) value < bound else value <= bound,
        .gt => value > bound,
        .gte => value >= bound,
    };
}

fn orderU64(probe: u64, item: u64) std.math.Order {
    return std.math.order(probe, item);
}

/// Encodes programs (for tests: TypeScript compiles filters for callers). Writes what it is
/// told, so tests can build invalid programs with it too.
pub const Builder = struct {
    gpa: Allocator,
    /// The header's three bytes, then the ops.
    bytes: std.ArrayListUnmanaged(u8),
    op_count: u16 = 0,

    pub fn init(gpa: Allocator) error{OutOfMemory}!Builder {
        var bytes: std.ArrayListUnmanaged(u8) = .{};
        try bytes.appendSlice(gpa, &.{ version, 0, 0 });
        return .{ .gpa = gpa, .bytes = bytes };
    }

    pub fn deinit(self: *Builder) void {
        self.bytes.deinit(self.gpa);
        self.* = undefined;
    }

    /// The encoding so far; valid until the next op.
    pub fn finish(self: *Builder) []const u8 {
        std.mem.writeInt(u16, self.bytes.items[1..3], self.op_count, .little);
        return self.bytes.items;
    }

    pub fn all(self: *Builder) !void {
        try self.code(.all);
    }

    pub fn kwIn(self: *Builder, field: u8, values: []const []const u8) !void {
        try self.code(.kw_in);
        try self.int(u8, field);
        try self.int(u16, @intCast(values.len));
        for (values) |value| {
            try self.int(u16, @intCast(value.len));
            try self.bytes.appendSlice(self.gpa, value);
        }
    }

    pub fn numCmp(self: *Builder, field: u8, cmp: Cmp, value: f64) !void {
        try self.code(.num_cmp);
        try self.int(u8, field);
        try self.int(u8, @intFromEnum(cmp));
        try self.int(u64, @bitCast(value));
    }

    pub fn numIn(self: *Builder, field: u8, values: []const f64) !void {
        try self.code(.num_in);
        try self.int(u8, field);
        try self.int(u16, @intCast(values.len));
        for (values) |value| try self.int(u64, @bitCast(value));
    }

    pub fn exists(self: *Builder, field: u8) !void {
        try self.code(.exists);
        try self.int(u8, field);
    }

    pub fn andOf(self: *Builder, n: u16) !void {
        try self.code(.@"and");
        try self.int(u16, n);
    }

    pub fn orOf(self: *Builder, n: u16) !void {
        try self.code(.@"or");
        try self.int(u16, n);
    }

    pub fn not(self: *Builder) !void {
        try self.code(.not);
    }

    pub fn allow(self: *Builder, keys: []const u64) !void {
        try self.code(.allow);
        try self.int(u32, @intCast(keys.len));
        for (keys) |key| try self.int(u64, key);
    }

    /// Appends raw bytes (an unknown op, a truncated operand).
    pub fn raw(self: *Builder, bytes: []const u8) !void {
        try self.bytes.appendSlice(self.gpa, bytes);
    }

    fn code(self: *Builder, opcode: Opcode) !void {
        self.op_count += 1;
        try self.int(u8, @intFromEnum(opcode));
    }

    fn int(self: *Builder, comptime T: type, value: T) !void {
        var buffer: [@sizeOf(T)]u8 = undefined;
        std.mem.writeInt(T, &buffer, value, .little);
        try self.bytes.appendSlice(self.gpa, &buffer);
    }
};

const testing = std.testing;

/// Slots 0..6 of a small index under payload.testSchema (colour, price, tags, sizes): slot 3 is
/// never added, slot 5 is added and removed, slot 2 has no terms.
const Fixture = struct {
    schema: Schema,
    fields: Fields,
    payloads: [slot_count]?[]u8,

    const slot_count = 7;

    fn kw(field: u8, value: []const u8) Term {
        return .{ .field = field, .value = .{ .keyword = value } };
    }

    fn num(field: u8, value: f64) Term {
        return .{ .field = field, .value = .{ .number = value } };
    }

    fn init(gpa: Allocator) !Fixture {
        var schema = try payload.testSchema(gpa);
        errdefer schema.deinit(gpa);
        var fixture: Fixture = .{
            .schema = schema,
            .fields = try Fields.init(gpa, &schema),
            .payloads = .{null} ** slot_count,
        };
        const records = [slot_count][]const Term{
            &.{ kw(0, "red"), num(1, 10), kw(2, "sale"), kw(2, "new"), num(3, 1), num(3, 2) },
            &.{ kw(0, "blue"), num(1, 20.5), kw(2, "new") },
            &.{},
            &.{},
            &.{ kw(0, "red"), num(1, -0.0), num(3, 0) },
            &.{kw(0, "green")},
            &.{ kw(0, ""), num(1, 1e300) },
        };
        for (records, 0..) |terms, slot| {
            if (slot == 3) continue;
            const bytes = try payload.encode(gpa, "", "", terms);
            fixture.payloads[slot] = bytes;
            try fixture.fields.add(gpa, @intCast(slot), try payload.parse(bytes, &fixture.schema));
        }
        fixture.fields.remove(5, try payload.parse(fixture.payloads[5].?, &fixture.schema));
        gpa.free(fixture.payloads[5].?);
        fixture.payloads[5] = null;
        fixture.fields.verify();
        return fixture;
    }

    fn deinit(self: *Fixture, gpa: Allocator) void {
        for (self.payloads) |bytes| if (bytes) |b| gpa.free(b);
        self.fields.deinit(gpa);
        self.schema.deinit(gpa);
    }

    fn keyOf(slot: u32) u64 {
        return 100 + slot;
    }

    /// Parses the program, resolves its allows as the integrator does (a key names a slot with
    /// a payload), materializes it over slots_used and checks evalPayload agrees on each slot.
    fn run(self: *Fixture, gpa: Allocator, bytes: []const u8, slots_used: u32) !Bitset {
        var program = try Program.parse(gpa, bytes, &self.schema);
        defer program.deinit(gpa);
        for (program.allows) |*allow| {
            for (allow.keys) |key| {
                if (key < 100 or key >= 100 + slot_count) continue;
                const slot: u32 = @intCast(key - 100);
                if (self.payloads[slot] != null) try allow.slots.append(gpa, slot);
            }
        }
        var out: Bitset = .{};
        errdefer out.deinit(gpa);
        try materialize(&program, &self.fields, slots_used, &out, gpa);
        for (0..slots_used) |slot| {
            const stored = self.payloads[slot];
            const parsed = if (stored) |b| try payload.parse(b, &self.schema) else Parsed.none;
            const key = if (self.payloads[slot] != null) keyOf(@intCast(slot)) else 0;
            try testing.expectEqual(evalPayload(&program, parsed, key), out.isSet(@intCast(slot)));
        }
        return out;
    }

    fn expectSlots(self: *Fixture, bytes: []const u8, slots_used: u32, want: []const u32) !void {
        const gpa = testing.allocator;
        var out = try self.run(gpa, bytes, slots_used);
        defer out.deinit(gpa);
        var got: std.BoundedArray(u32, slot_count) = .{};
        var it = out.iterator();
        while (it.next()) |slot| try got.append(slot);
        testing.expectEqualSlices(u32, want, got.slice()) catch |err| {
            std.debug.print("program {any}\n", .{bytes});
            return err;
        };
    }
};

/// Builds a program from a function of a builder.
fn build(comptime steps: fn (*Builder) anyerror!void) ![]u8 {
    var builder = try Builder.init(testing.allocator);
    defer builder.deinit();
    try steps(&builder);
    return testing.allocator.dupe(u8, builder.finish());
}

fn expectProgram(
    fixture: *Fixture,
    comptime steps: fn (*Builder) anyerror!void,
    want: []const u32,
) !void {
    const bytes = try build(steps);
    defer testing.allocator.free(bytes);
    try fixture.expectSlots(bytes, Fixture.slot_count, want);
}

test "filter: every op on a small index, missing fields and -0" {
    const gpa = testing.allocator;
    var f = try Fixture.init(gpa);
    defer f.deinit(gpa);
    const P = struct {
        fn all(b: *Builder) !void {
            try b.all();
        }
        fn red(b: *Builder) !void {
            try b.kwIn(0, &.{"red"});
        }
        fn notRed(b: *Builder) !void {
            try b.kwIn(0, &.{"red"});
            try b.not();
        }
        fn emptyColour(b: *Builder) !void {
            try b.kwIn(0, &.{ "", "purple" });
        }
        fn priceZero(b: *Builder) !void {
            try b.numCmp(1, .eq, 0);
        }
        fn priceLte10(b: *Builder) !void {
            try b.numCmp(1, .lte, 10);
        }
        fn priceLt10(b: *Builder) !void {
            try b.numCmp(1, .lt, 10);
        }
        fn priceGt10(b: *Builder) !void {
            try b.numCmp(1, .gt, 10);
        }
        fn priceGte10(b: *Builder) !void {
            try b.numCmp(1, .gte, 10);
        }
        fn priceBelowInf(b: *Builder) !void {
            try b.numCmp(1, .lt, std.math.inf(f64));
        }
        fn sizesAnyBelow(b: *Builder) !void {
            try b.numCmp(3, .lt, 1.5);
        }
        fn sizesIn(b: *Builder) !void {
            try b.numIn(3, &.{ 2, -0.0, 7 });
        }
        fn priceInNone(b: *Builder) !void {
            try b.numIn(1, &.{});
        }
        fn notPriceIn(b: *Builder) !void {
            try b.numIn(1, &.{ 10, 20.5 });
            try b.not();
        }
        fn tagsExist(b: *Builder) !void {
            try b.exists(2);
        }
        fn newAndDear(b: *Builder) !void {
            try b.kwIn(2, &.{"new"});
            try b.numCmp(1, .gt, 15);
            try b.andOf(2);
        }
        fn orOfThree(b: *Builder) !void {
            try b.kwIn(0, &.{"blue"});
            try b.numCmp(3, .eq, 0);
            try b.exists(2);
            try b.orOf(3);
        }
        fn allowed(b: *Builder) !void {
            try b.allow(&.{ 999, 104, 100, 103 });
        }
        fn notAllowed(b: *Builder) !void {
            try b.allow(&.{});
            try b.not();
        }
    };
    try expectProgram(&f, P.all, &.{ 0, 1, 2, 3, 4, 5, 6 });
    try expectProgram(&f, P.red, &.{ 0, 4 });
    try expectProgram(&f, P.notRed, &.{ 1, 2, 3, 5, 6 });
    try expectProgram(&f, P.emptyColour, &.{6});
    try expectProgram(&f, P.priceZero, &.{4});
    try expectProgram(&f, P.priceLte10, &.{ 0, 4 });
    try expectProgram(&f, P.priceLt10, &.{4});
    try expectProgram(&f, P.priceGt10, &.{ 1, 6 });
    try expectProgram(&f, P.priceGte10, &.{ 0, 1, 6 });
    try expectProgram(&f, P.priceBelowInf, &.{ 0, 1, 4, 6 });
    try expectProgram(&f, P.sizesAnyBelow, &.{ 0, 4 });
    try expectProgram(&f, P.sizesIn, &.{ 0, 4 });
    try expectProgram(&f, P.priceInNone, &.{});
    try expectProgram(&f, P.notPriceIn, &.{ 2, 3, 4, 5, 6 });
    try expectProgram(&f, P.tagsExist, &.{ 0, 1 });
    try expectProgram(&f, P.newAndDear, &.{1});
    try expectProgram(&f, P.orOfThree, &.{ 0, 1, 4 });
    try expectProgram(&f, P.allowed, &.{ 0, 4 });
    try expectProgram(&f, P.notAllowed, &.{ 0, 1, 2, 3, 4, 5, 6 });

    // slots_used cuts every op, NOT included, at its bound.
    const red = try build(P.notRed);
    defer gpa.free(red);
    try f.expectSlots(red, 3, &.{ 1, 2 });
    const all = try build(P.all);
    defer gpa.free(all);
    try f.expectSlots(all, 0, &.{});
    var program = try Program.parse(gpa, all, &f.schema);
    defer program.deinit(gpa);
    try testing.expect(program.isAll());
    var not_all = try Program.parse(gpa, red, &f.schema);
    defer not_all.deinit(gpa);
    try testing.expect(!not_all.isAll());
}

fn expectInvalid(schema: *const Schema, what: []const u8, bytes: []const u8) !void {
    if (Program.parse(testing.allocator, bytes, schema)) |parsed| {
        var program = parsed;
        program.deinit(testing.allocator);
        std.debug.print("filter case \"{s}\" parsed\n", .{what});
        return error.TestExpectedError;
    } else |err| try testing.expectEqual(error.InvalidFilter, err);
}

test "filter: each rule of the format has a failing case" {
    const gpa = testing.allocator;
    var schema = try payload.testSchema(gpa);
    defer schema.deinit(gpa);
    const Case = struct {
        what: []const u8,
        steps: *const fn (*Builder) anyerror!void,
    };
    const C = struct {
        fn kwOnNumber(b: *Builder) !void {
            try b.kwIn(1, &.{"x"});
        }
        fn cmpOnKeyword(b: *Builder) !void {
            try b.numCmp(0, .eq, 1);
        }
        fn inOnKeyword(b: *Builder) !void {
            try b.numIn(2, &.{1});
        }
        fn unknownField(b: *Builder) !void {
            try b.exists(4);
        }
        fn unknownOp(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&.{0x0a});
        }
        fn opZero(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&.{0x00});
        }
        fn cmpZero(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&([_]u8{ 0x03, 1, 0 } ++ [_]u8{0} ** 8));
        }
        fn cmpSix(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&([_]u8{ 0x03, 1, 6 } ++ [_]u8{0} ** 8));
        }
        fn cmpNan(b: *Builder) !void {
            try b.numCmp(1, .lt, std.math.nan(f64));
        }
        fn inNan(b: *Builder) !void {
            try b.numIn(1, &.{ 1, std.math.nan(f64) });
        }
        fn andZero(b: *Builder) !void {
            try b.all();
            try b.andOf(0);
        }
        fn orZero(b: *Builder) !void {
            try b.all();
            try b.orOf(0);
        }
        fn andTooMany(b: *Builder) !void {
            try b.all();
            try b.all();
            try b.andOf(3);
        }
        fn notEmpty(b: *Builder) !void {
            try b.not();
            try b.all();
        }
        fn twoLeft(b: *Builder) !void {
            try b.all();
            try b.all();
        }
        fn tooDeep(b: *Builder) !void {
            for (0..depth_max + 1) |_| try b.all();
            try b.orOf(depth_max + 1);
        }
        fn trailing(b: *Builder) !void {
            try b.all();
            try b.raw(&.{0});
        }
        fn countOverOps(b: *Builder) !void {
            try b.all();
            b.op_count += 1;
        }
        fn allowForged(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&.{ 0x09, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8 });
        }
        fn kwForged(b: *Builder) !void {
            b.op_count += 1;
            try b.raw(&.{ 0x02, 0, 0xff, 0xff, 0, 0 });
        }
        fn tooManyOps(b: *Builder) !void {
            try b.all();
            for (0..ops_max) |_| try b.not();
        }
        fn noOps(_: *Builder) !void {}
    };
    const cases = [_]Case{
        .{ .what = "KW_IN on a number field", .steps = C.kwOnNumber },
        .{ .what = "NUM_CMP on a keyword field", .steps = C.cmpOnKeyword },
        .{ .what = "NUM_IN on a keyword field", .steps = C.inOnKeyword },
        .{ .what = "a field past the schema", .steps = C.unknownField },
        .{ .what = "op 0x0a", .steps = C.unknownOp },
        .{ .what = "op 0x00", .steps = C.opZero },
        .{ .what = "cmp 0", .steps = C.cmpZero },
        .{ .what = "cmp 6", .steps = C.cmpSix },
        .{ .what = "NaN in NUM_CMP", .steps = C.cmpNan },
        .{ .what = "NaN in NUM_IN", .steps = C.inNan },
        .{ .what = "AND 0", .steps = C.andZero },
        .{ .what = "OR 0", .steps = C.orZero },
        .{ .what = "AND of more than the stack", .steps = C.andTooMany },
        .{ .what = "NOT of an empty stack", .steps = C.notEmpty },
        .{ .what = "two bits left", .steps = C.twoLeft },
        .{ .what = "a stack of 65", .steps = C.tooDeep },
        .{ .what = "a trailing byte", .steps = C.trailing },
        .{ .what = "op_count past the ops", .steps = C.countOverOps },
        .{ .what = "ALLOW of 2^32 - 1 keys", .steps = C.allowForged },
        .{ .what = "KW_IN of 65535 values", .steps = C.kwForged },
        .{ .what = "4097 ops", .steps = C.tooManyOps },
        .{ .what = "no ops", .steps = C.noOps },
    };
    for (cases) |case| {
        var builder = try Builder.init(gpa);
        defer builder.deinit();
        try case.steps(&builder);
        try expectInvalid(&schema, case.what, builder.finish());
    }
    try expectInvalid(&schema, "empty", "");
    try expectInvalid(&schema, "no op count", &.{ 1, 1 });
    try expectInvalid(&schema, "version 2", &.{ 2, 1, 0, 1 });
    try expectInvalid(&schema, "version 0", &.{ 0, 1, 0, 1 });

    // Every prefix of a valid program is truncated.
    var builder = try Builder.init(gpa);
    defer builder.deinit();
    try builder.kwIn(0, &.{ "a", "bc" });
    try builder.numCmp(1, .gte, 2);
    try builder.numIn(3, &.{ 1, 2 });
    try builder.allow(&.{ 1, 2 });
    try builder.exists(2);
    try builder.orOf(4);
    try builder.not();
    try builder.andOf(2);
    const good = try gpa.dupe(u8, builder.finish());
    defer gpa.free(good);
    var program = try Program.parse(gpa, good, &schema);
    program.deinit(gpa);
    for (0..good.len) |len| try expectInvalid(&schema, "truncated", good[0..len]);
    var empty = Schema.empty();
    try expectInvalid(&empty, "a field under an empty schema", good);

    // More than 8 MiB, though every op is well formed.
    var big = try Builder.init(gpa);
    defer big.deinit();
    const keys = try gpa.alloc(u64, bytes_max / 8);
    defer gpa.free(keys);
    @memset(keys, 7);
    try big.allow(keys);
    try expectInvalid(&schema, "more than 8 MiB", big.finish());
}

test "filter: the limits themselves parse" {
    const gpa = testing.allocator;
    var schema = try payload.testSchema(gpa);
    defer schema.deinit(gpa);
    var builder = try Builder.init(gpa);
    defer builder.deinit();
    for (0..depth_max) |_| try builder.all();
    try builder.andOf(depth_max);
    for (0..ops_max - depth_max - 1) |_| try builder.not();
    var program = try Program.parse(gpa, builder.finish(), &schema);
    defer program.deinit(gpa);
    try testing.expectEqual(@as(usize, ops_max), program.ops.len);
    try testing.expectEqual(@as(u8, depth_max), program.depth_max);

    var edges = try Builder.init(gpa);
    defer edges.deinit();
    try edges.kwIn(0, &.{});
    try edges.numIn(1, &.{});
    try edges.allow(&.{});
    try edges.numCmp(3, .gt, -std.math.inf(f64));
    try edges.kwIn(2, &.{"\xff not UTF-8, never matches"});
    try edges.orOf(5);
    var program_edges = try Program.parse(gpa, edges.finish(), &schema);
    defer program_edges.deinit(gpa);
    try testing.expectEqual(@as(usize, 1), program_edges.allows.len);
}

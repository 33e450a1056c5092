//! The property test of filter.zig and fields.zig: for random schemas, random records added to
//! (and removed from, and re-added to) a fields index, and hundreds of random programs covering
//! every op, materialize's bitset equals evalPayload on every slot. evalPayload reads a record's
//! terms and compares numbers as f64; materialize reads the index and compares ordered keys, so
//! the two share no evaluation code. Seeded: QUIVER_SEED replays a failure.
const std = @import("std");
const assert = std.debug.assert;
const testing = std.testing;
const Allocator = std.mem.Allocator;
const schema_mod = @import("schema.zig");
const Schema = schema_mod.Schema;
const Kind = schema_mod.Kind;
const payload = @import("payload.zig");
const Term = payload.Term;
const Parsed = payload.Parsed;
const Fields = @import("fields.zig").Fields;
const Cmp = @import("fields.zig").Cmp;
const Bitset = @import("bitset.zig").Bitset;
const filter = @import("filter.zig");
const Program = filter.Program;
const Builder = filter.Builder;

/// Few distinct values, so records share them and programs hit them; -0 beside 0 on purpose.
const keywords = [_][]const u8{ "", "a", "b", "c", "ab", "é", "zz" };
const numbers = [_]f64{ -0.0, 0, 1, -1, 2.5, 3, 7, 1e300, -1e300 };
/// Program values that no record holds.
const keywords_absent = [_][]const u8{ "q", "\xff" };
const numbers_absent = [_]f64{ 4.25, -7.5, std.math.inf(f64), -std.math.inf(f64) };

pub const Options = struct {
    rounds: u32,
    programs_per_round: u32,
    slots_max: u32,
    /// Add/remove steps after the first fill, so number fields reach their merged state.
    churn_max: u32,
};

pub const Outcome = struct {
    programs: u32 = 0,
    slots_checked: u64 = 0,
    mismatches: u64 = 0,
    op_counts: [std.enums.values(filter.Opcode).len]u32 = .{0} ** 9,
    cmp_counts: [5]u32 = .{0} ** 5,
    /// Rounds whose number fields had merged entries, and dead ones, when programs ran.
    rounds_merged: u32 = 0,
    rounds_dead: u32 = 0,
};

/// One round's index and what it holds.
const World = struct {
    schema: Schema,
    fields: Fields,
    /// Per slot: its payload (null when it has none) and its key.
    payloads: []?[]u8,
    keys: []u64,

    fn deinit(self: *World, gpa: Allocator) void {
        for (self.payloads) |bytes| if (bytes) |b| gpa.free(b);
        gpa.free(self.payloads);
        gpa.free(self.keys);
        self.fields.deinit(gpa);
        self.schema.deinit(gpa);
    }

    fn parsedOf(self: *const World, slot: usize) Parsed {
        const bytes = self.payloads[slot] orelse return Parsed.none;
        return payload.parse(bytes, &self.schema) catch unreachable;
    }
};

/// Leak-checked like testing.allocator, without a stack trace per allocation: capturing those
/// costs syscalls in Debug and was most of these tests' time.
const Leaks = std.heap.DebugAllocator(.{ .stack_trace_frames = 0 });

/// Runs the property with the given evaluator and counts (does not fail on) mismatches.
pub fn check(comptime mode: filter.Mode, seed: u64, options: Options) !Outcome {
    var leaks: Leaks = .init;
    defer if (leaks.deinit() == .leak) @panic("filter property: leaked memory");
    const gpa = leaks.allocator();
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    var outcome: Outcome = .{};
    for (0..options.rounds) |_| {
        var world = try makeWorld(gpa, random, options);
        defer world.deinit(gpa);
        world.fields.verify();
        countStates(&world.fields, &outcome);
        for (0..options.programs_per_round) |_| {
            try checkProgram(mode, gpa, random, &world, &outcome);
        }
    }
    assert(outcome.programs == options.rounds * options.programs_per_round);
    return outcome;
}

/// Notes which states of the number index (fields.zig) the round reached.
fn countStates(fields: *const Fields, outcome: *Outcome) void {
    var merged = false;
    var dead = false;
    for (fields.columns) |*column| switch (column.index) {
        .keyword => {},
        .number => |*index| {
            merged = merged or index.sorted.items.len > 0;
            dead = dead or index.dead_count > 0;
        },
    };
    outcome.rounds_merged += @intFromBool(merged);
    outcome.rounds_dead += @intFromBool(dead);
}

fn makeWorld(gpa: Allocator, random: std.Random, options: Options) !World {
    const schema_bytes = try randomSchema(gpa, random);
    defer gpa.free(schema_bytes);
    var schema = try Schema.parse(gpa, schema_bytes);
    errdefer schema.deinit(gpa);
    const slot_count = random.intRangeAtMost(u32, 1, options.slots_max);
    var world: World = .{
        .schema = schema,
        .fields = try Fields.init(gpa, &schema),
        .payloads = try gpa.alloc(?[]u8, slot_count),
        .keys = try gpa.alloc(u64, slot_count),
    };
    @memset(world.payloads, null);
    // A low floor on the number fields' pending buffers reaches merged states on few slots.
    const pending_mins = [_]u32{ 1, 4, 32, 1024 };
    world.fields.setPendingMinForTest(pending_mins[random.uintLessThan(usize, pending_mins.len)]);
    for (world.keys) |*key| key.* = random.int(u64) | 1;
    errdefer world.deinit(gpa);
    // Most slots get a record; the rest are never added.
    for (0..slot_count) |slot| {
        if (random.uintLessThan(u8, 8) == 0) continue;
        try addRandom(gpa, random, &world, @intCast(slot));
    }
    // Churn: remove, and re-add with other terms (sometimes as another record, a new key).
    const churn = random.uintAtMost(u32, options.churn_max);
    for (0..churn) |_| {
        const slot = random.uintLessThan(u32, slot_count);
        if (world.payloads[slot]) |bytes| {
            world.fields.remove(slot, world.parsedOf(slot));
            gpa.free(bytes);
            world.payloads[slot] = null;
            if (random.uintLessThan(u8, 4) == 0) continue;
        }
        if (random.boolean()) world.keys[slot] = random.int(u64) | 1;
        try addRandom(gpa, random, &world, slot);
    }
    return world;
}

fn randomSchema(gpa: Allocator, random: std.Random) ![]u8 {
    var names: [6][2]u8 = undefined;
    var fields: [6]schema_mod.Field = undefined;
    const count = random.uintAtMost(usize, fields.len);
    for (fields[0..count], names[0..count], 0..) |*field, *name, i| {
        name.* = .{ 'f', @intCast('0' + i) };
        field.* = .{ .kind = random.enumValue(Kind), .name = name };
    }
    return schema_mod.encode(gpa, fields[0..count]);
}

fn addRandom(gpa: Allocator, random: std.Random, world: *World, slot: u32) !void {
    assert(world.payloads[slot] == null);
    var terms: std.BoundedArray(Term, 6 * 3) = .{};
    for (world.schema.fields, 0..) |field, index| {
        // A field is missing from about a third of the records.
        if (random.uintLessThan(u8, 3) == 0) continue;
        const count = random.intRangeAtMost(u8, 1, 3);
        for (0..count) |_| {
            const value: Term.Value = switch (field.kind) {
                .keyword => .{ .keyword = keywords[random.uintLessThan(usize, keywords.len)] },
                .number => .{ .number = numbers[random.uintLessThan(usize, numbers.len)] },
            };
            if (!holds(terms.slice(), @intCast(index), value)) {
                terms.appendAssumeCapacity(.{ .field = @intCast(index), .value = value });
            }
        }
    }
    const bytes = try payload.encode(gpa, "", "", terms.slice());
    errdefer gpa.free(bytes);
    const parsed = try payload.parse(bytes, &world.schema);
    try world.fields.add(gpa, slot, parsed);
    world.payloads[slot] = bytes;
}

/// Whether terms already hold value in field (numbers compare as numbers: -0 is 0).
fn holds(terms: []const Term, field: u8, value: Term.Value) bool {
    for (terms) |term| {
        if (term.field != field) continue;
        switch (value) {
            .keyword => |v| if (std.mem.eql(u8, term.value.keyword, v)) return true,
            .number => |v| if (term.value.number == v) return true,
        }
    }
    return false;
}

fn checkProgram(
    comptime mode: filter.Mode,
    gpa: Allocator,
    random: std.Random,
    world: *const World,
    outcome: *Outcome,
) !void {
    var builder = try Builder.init(gpa);
    defer builder.deinit();
    try randomProgram(random, world, &builder, outcome);
    var program = Program.parse(gpa, builder.finish(), &world.schema) catch |err| {
        std.debug.print("generated program rejected: {any}\n", .{builder.finish()});
        return err;
    };
    defer program.deinit(gpa);
    try resolveAllows(gpa, world, &program);
    // slots_used is usually every slot; sometimes a cut below them or slots past every record.
    const slot_count: u32 = @intCast(world.payloads.len);
    const slots_used = switch (random.uintLessThan(u8, 4)) {
        0 => random.uintAtMost(u32, slot_count),
        1 => slot_count + random.uintAtMost(u32, 130),
        else => slot_count,
    };
    var out: Bitset = .{};
    defer out.deinit(gpa);
    // A stale, larger bitset must not leak bits into the answer.
    try out.resetAll(gpa, slots_used + 200, true);
    try filter.materialize(&program, &world.fields, slots_used, &out, gpa);
    try testing.expectEqual(Bitset.wordsFor(slots_used), out.words.items.len);
    var mismatches: u32 = 0;
    for (0..slots_used) |slot| {
        const present = slot < slot_count and world.payloads[slot] != null;
        const parsed = if (present) world.parsedOf(slot) else Parsed.none;
        const key = keyOf(world, slot);
        const want = filter.evalPayloadMode(mode, &program, parsed, key);
        if (want != out.isSet(@intCast(slot))) mismatches += 1;
    }
    if (mismatches > 0 and mode == .correct) {
        std.debug.print("{d} mismatches, program {any}\n", .{ mismatches, builder.finish() });
    }
    var it = out.iterator();
    while (it.next()) |slot| try testing.expect(slot < slots_used);
    outcome.mismatches += mismatches;
    outcome.slots_checked += slots_used;
    outcome.programs += 1;
}

/// Resolves ALLOW keys as the index does: a key names the slot whose record holds it.
fn resolveAllows(gpa: Allocator, world: *const World, program: *Program) !void {
    for (program.allows) |*allow| {
        assert(allow.slots.items.len == 0);
        for (world.keys, world.payloads, 0..) |key, bytes, slot| {
            if (bytes == null) continue;
            if (std.sort.binarySearch(u64, allow.keys, key, orderU64) == null) continue;
            try allow.slots.append(gpa, @intCast(slot));
        }
    }
}

/// The key evalPayload sees for a slot: none (0, in no generated list) without a record.
fn keyOf(world: *const World, slot: usize) u64 {
    if (slot >= world.payloads.len or world.payloads[slot] == null) return 0;
    return world.keys[slot];
}

/// A random well-formed program: leaves and combinators in postfix, one bit left at the end.
fn randomProgram(
    random: std.Random,
    world: *const World,
    builder: *Builder,
    outcome: *Outcome,
) !void {
    var leaves_left = random.intRangeAtMost(u32, 1, 10);
    var depth: u16 = 0;
    // Each pass pushes a leaf, combines, or negates; the negations are capped, so the loop ends.
    var nots_left: u32 = 4;
    while (leaves_left > 0 or depth > 1) {
        const choice = random.uintLessThan(u8, 10);
        if (leaves_left > 0 and (depth == 0 or choice < 5)) {
            try randomLeaf(random, world, builder, outcome);
            leaves_left -= 1;
            depth += 1;
        } else if (nots_left > 0 and choice < 7) {
            try builder.not();
            countOp(outcome, .not);
            nots_left -= 1;
        } else if (depth >= 1) {
            // n = 1 is legal and a no-op; n = depth folds the whole stack.
            const n = random.intRangeAtMost(u16, 1, depth);
            const combinator: filter.Opcode = if (random.boolean()) .@"and" else .@"or";
            if (combinator == .@"and") try builder.andOf(n) else try builder.orOf(n);
            countOp(outcome, combinator);
            depth = depth - n + 1;
        }
    }
    assert(depth == 1);
    if (random.uintLessThan(u8, 4) == 0) {
        try builder.not();
        countOp(outcome, .not);
    }
}

fn countOp(outcome: *Outcome, opcode: filter.Opcode) void {
    outcome.op_counts[@intFromEnum(opcode) - 1] += 1;
}

fn randomLeaf(random: std.Random, world: *const World, builder: *Builder, outcome: *Outcome) !void {
    const fields = world.schema.fields;
    var opcode = random.enumValue(filter.Opcode);
    // A leaf on a field needs a field of its kind; ALL stands in when the schema has none.
    const field = pickField(random, fields, switch (opcode) {
        .kw_in => .keyword,
        .num_cmp, .num_in => .number,
        else => null,
    });
    switch (opcode) {
        .kw_in, .num_cmp, .num_in, .exists => if (field == null) {
            opcode = .all;
        },
        .@"and", .@"or", .not => opcode = if (random.boolean()) .all else .allow,
        else => {},
    }
    countOp(outcome, opcode);
    switch (opcode) {
        .all => try builder.all(),
        .kw_in => {
            var values: std.BoundedArray([]const u8, 4) = .{};
            for (0..random.uintAtMost(u8, 4)) |_| {
                values.appendAssumeCapacity(randomKeyword(random));
            }
            try builder.kwIn(field.?, values.slice());
        },
        .num_cmp => {
            const cmp = random.enumValue(Cmp);
            outcome.cmp_counts[@intFromEnum(cmp) - 1] += 1;
            try builder.numCmp(field.?, cmp, randomNumber(random));
        },
        .num_in => {
            var values: std.BoundedArray(f64, 4) = .{};
            for (0..random.uintAtMost(u8, 4)) |_| values.appendAssumeCapacity(randomNumber(random));
            try builder.numIn(field.?, values.slice());
        },
        .exists => try builder.exists(field.?),
        .allow => {
            var keys: std.BoundedArray(u64, 24) = .{};
            for (0..random.uintAtMost(u8, 20)) |_| {
                keys.appendAssumeCapacity(world.keys[random.uintLessThan(usize, world.keys.len)]);
            }
            // Keys no slot holds (with the top bit set, like string ids' keys).
            for (0..random.uintAtMost(u8, 3)) |_| keys.appendAssumeCapacity(random.int(u64));
            try builder.allow(keys.slice());
        },
        .@"and", .@"or", .not => unreachable,
    }
}

fn pickField(random: std.Random, fields: []const schema_mod.Field, kind: ?Kind) ?u8 {
    var matching: std.BoundedArray(u8, schema_mod.fields_max) = .{};
    for (fields, 0..) |field, i| {
        if (kind == null or field.kind == kind.?) matching.appendAssumeCapacity(@intCast(i));
    }
    if (matching.len == 0) return null;
    return matching.get(random.uintLessThan(usize, matching.len));
}

fn randomKeyword(random: std.Random) []const u8 {
    if (random.uintLessThan(u8, 5) == 0) {
        return keywords_absent[random.uintLessThan(usize, keywords_absent.len)];
    }
    return keywords[random.uintLessThan(usize, keywords.len)];
}

fn randomNumber(random: std.Random) f64 {
    if (random.uintLessThan(u8, 5) == 0) {
        return numbers_absent[random.uintLessThan(usize, numbers_absent.len)];
    }
    return numbers[random.uintLessThan(usize, numbers.len)];
}

fn orderU64(probe: u64, item: u64) std.math.Order {
    return std.math.order(probe, item);
}

/// The seed: QUIVER_SEED if set (to replay a failure), else a fresh one.
fn testSeed() u64 {
    const text = std.mem.span(std.c.getenv("QUIVER_SEED") orelse return std.crypto.random.int(u64));
    return std.fmt.parseInt(u64, text, 0) catch |err| {
        std.debug.panic("QUIVER_SEED={s} is not a u64: {s}", .{ text, @errorName(err) });
    };
}

const options_default: Options = .{
    .rounds = 16,
    .programs_per_round = 40,
    .slots_max = 300,
    .churn_max = 3000,
};

/// QUIVER_SOAK=1: twenty times the rounds, on indexes up to ten times larger.
const options_soak: Options = .{
    .rounds = 320,
    .programs_per_round = 40,
    .slots_max = 3000,
    .churn_max = 30000,
};

fn soak() bool {
    return std.c.getenv("QUIVER_SOAK") != null;
}

test "filter property: materialize equals evalPayload on every slot of random indexes" {
    const seed = testSeed();
    std.debug.print("filter property: QUIVER_SEED=0x{x}\n", .{seed});
    const outcome = try check(.correct, seed, if (soak()) options_soak else options_default);
    try testing.expectEqual(@as(u64, 0), outcome.mismatches);
    try testing.expect(outcome.programs >= 600);
    // Every op and every comparison was generated (the generator's own check).
    for (outcome.op_counts, 0..) |n, i| testing.expect(n > 0) catch |err| {
        std.debug.print("op 0x{x:0>2} never generated\n", .{i + 1});
        return err;
    };
    for (outcome.cmp_counts) |n| try testing.expect(n > 0);
    // Churn took number fields past a merge (sorted entries, dead marks) as well as pending.
    try testing.expect(outcome.rounds_merged > 0);
    try testing.expect(outcome.rounds_dead > 0);
}

test "filter property canary: an evaluator that reads lte as lt is caught" {
    // Fixed seeds keep the canary deterministic; each must find the broken comparison.
    for ([_]u64{ 0xca7a, 1, 0xdead_beef }) |seed| {
        const options: Options = .{
            .rounds = 4,
            .programs_per_round = 40,
            .slots_max = 200,
            .churn_max = 500,
        };
        const outcome = try check(.lte_as_lt, seed, options);
        try testing.expect(outcome.cmp_counts[@intFromEnum(Cmp.lte) - 1] > 0);
        try testing.expect(outcome.mismatches > 0);
    }
}

/// Flips, sets, drops or appends a few bytes of an encoding.
fn mutate(gpa: Allocator, random: std.Random, bytes: []const u8) ![]u8 {
    var out: std.ArrayListUnmanaged(u8) = .{};
    errdefer out.deinit(gpa);
    try out.appendSlice(gpa, bytes);
    for (0..random.intRangeAtMost(u8, 1, 3)) |_| {
        switch (random.uintLessThan(u8, 5)) {
            0 => if (out.items.len > 0) {
                const at = random.uintLessThan(usize, out.items.len);
                out.items[at] ^= @as(u8, 1) << random.int(u3);
            },
            1 => if (out.items.len > 0) {
                out.items[random.uintLessThan(usize, out.items.len)] = random.int(u8);
            },
            2 => out.items.len = random.uintAtMost(usize, out.items.len),
            3 => try out.append(gpa, random.int(u8)),
            else => if (out.items.len > 0) {
                // Small values at a random place: counts and lengths are where parsers slip.
                out.items[random.uintLessThan(usize, out.items.len)] = random.uintAtMost(u8, 3);
            },
        }
    }
    return out.toOwnedSlice(gpa);
}

test "records parsers: a mutated payload or program is rejected or valid throughout" {
    var leaks: Leaks = .init;
    defer if (leaks.deinit() == .leak) @panic("records mutations: leaked memory");
    const gpa = leaks.allocator();
    const seed = testSeed();
    std.debug.print("records mutations: QUIVER_SEED=0x{x}\n", .{seed});
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    const options: Options = .{
        .rounds = 1,
        .programs_per_round = 0,
        .slots_max = 64,
        .churn_max = 0,
    };
    var accepted_payloads: u32 = 0;
    var accepted_programs: u32 = 0;
    for (0..6) |_| {
        var world = try makeWorld(gpa, random, options);
        defer world.deinit(gpa);
        const slot_count: u32 = @intCast(world.payloads.len);
        for (0..300) |_| {
            // A payload: if it parses, every term decodes and the index takes and drops it.
            const slot = random.uintLessThan(u32, slot_count);
            const original = world.payloads[slot] orelse continue;
            const bytes = try mutate(gpa, random, original);
            defer gpa.free(bytes);
            if (payload.parse(bytes, &world.schema)) |parsed| {
                accepted_payloads += 1;
                var it = parsed.iterator();
                while (it.next()) |term| {
                    try testing.expect(term.field < world.schema.fields.len);
                }
                try world.fields.add(gpa, slot_count + 7, parsed);
                world.fields.remove(slot_count + 7, parsed);
            } else |err| try testing.expectEqual(error.InvalidMetadata, err);
        }
        world.fields.verify();
        for (0..300) |_| {
            // A program: if it parses, materialize still agrees with evalPayload.
            var builder = try Builder.init(gpa);
            defer builder.deinit();
            var outcome: Outcome = .{};
            try randomProgram(random, &world, &builder, &outcome);
            const bytes = try mutate(gpa, random, builder.finish());
            defer gpa.free(bytes);
            var program = Program.parse(gpa, bytes, &world.schema) catch |err| {
                try testing.expectEqual(error.InvalidFilter, err);
                continue;
            };
            defer program.deinit(gpa);
            try resolveAllows(gpa, &world, &program);
            accepted_programs += 1;
            var out: Bitset = .{};
            defer out.deinit(gpa);
            try filter.materialize(&program, &world.fields, slot_count, &out, gpa);
            for (0..slot_count) |slot| {
                const present = world.payloads[slot] != null;
                const parsed = if (present) world.parsedOf(slot) else Parsed.none;
                const want = filter.evalPayload(&program, parsed, keyOf(&world, slot));
                try testing.expectEqual(want, out.isSet(@intCast(slot)));
            }
        }
    }
    // Some mutations keep an encoding valid (a changed value byte): both paths ran.
    try testing.expect(accepted_payloads > 0);
    try testing.expect(accepted_programs > 0);
}

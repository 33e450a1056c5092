//! Family 4 (issue #11): filtered searches and counts beside record adds, metadata updates and
//! removes, and a snapshot whose counts must not move while they run. Natively, so
//! ThreadSanitizer sees every access (`zig build test-tsan`). Post-conditions are exact.
const std = @import("std");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const records = @import("records.zig");
const locks = @import("../sync/locks.zig");
const live_seq = @import("../hnsw/view.zig").live_seq;
const payload = @import("../records/payload.zig");
const schema_mod = @import("../records/schema.zig");
const stress = @import("stress_test.zig");
const t = @import("index_test.zig");

const gpa = stress.gpa;
const dims = stress.dims;
const writers = 2;

/// parity (keyword "0"/"1"), cls (keyword "a"/"b"), num (number = key).
fn recordOf(key: u64, cls: []const u8) ![]u8 {
    const parity: []const u8 = if (key % 2 == 0) "0" else "1";
    return payload.encode(gpa, "", "{}", &.{
        .{ .field = 0, .value = .{ .keyword = parity } },
        .{ .field = 1, .value = .{ .keyword = cls } },
        .{ .field = 2, .value = .{ .number = @floatFromInt(key) } },
    });
}

/// The program `field == value` (KW_IN with one value).
fn kwEq(comptime field: u8, comptime value: []const u8) []const u8 {
    return comptime &([_]u8{ 1, 1, 0, 0x02, field, 1, 0, value.len, 0 } ++ value[0..].*);
}

const Shared = struct {
    index: *Index,
    per_writer: usize,
    /// Set before a key's update to "b" is called: a result with cls "b" must have it.
    updated: []std.atomic.Value(bool),
    adds_done: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),
    updates_done: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),
    snapshot_seq: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    failures: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),
    searches: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),

    fn fail(self: *Shared, comptime what: []const u8, args: anytype) void {
        std.debug.print("family 4: " ++ what ++ "\n", args);
        _ = self.failures.fetchAdd(1, .monotonic);
    }
};

fn writer(shared: *Shared, id: usize) void {
    const start = id * shared.per_writer;
    var v: [dims]f32 = undefined;
    for (start..start + shared.per_writer) |i| {
        const key: u64 = i;
        stress.pattern(key, @intCast(id), &v);
        const record = recordOf(key, "a") catch return shared.fail("oom", .{});
        defer gpa.free(record);
        write.addRecord(shared.index, key, &v, record) catch |err|
            return shared.fail("add {d}: {s}", .{ key, @errorName(err) });
    }
    _ = shared.adds_done.fetchAdd(1, .release);
    // Phase 2 waits for the snapshot of the complete set.
    while (shared.snapshot_seq.load(.acquire) == 0) std.Thread.yield() catch {};
    for (start..start + shared.per_writer) |i| {
        const key: u64 = i;
        const record = recordOf(key, "b") catch return shared.fail("oom", .{});
        defer gpa.free(record);
        shared.updated[i].store(true, .release);
        records.update(shared.index, key, record) catch |err|
            return shared.fail("update {d}: {s}", .{ key, @errorName(err) });
        if (key % 10 == 0) {
            const removed = write.remove(shared.index, key) catch |err|
                return shared.fail("remove {d}: {s}", .{ key, @errorName(err) });
            if (!removed) shared.fail("remove {d} found nothing", .{key});
        }
    }
    _ = shared.updates_done.fetchAdd(1, .release);
}

fn reader(shared: *Shared) void {
    const total = shared.per_writer * writers;
    var rng = std.Random.DefaultPrng.init(99);
    var keys: [10]u64 = undefined;
    var distances: [10]f32 = undefined;
    while (shared.updates_done.load(.acquire) < writers) {
        var q: [dims]f32 = undefined;
        stress.pattern(rng.random().uintLessThan(u64, total), 0, &q);
        // Parity never changes: every result of "parity 0" is even.
        const got = records.search(shared.index, &q, 10, 64, live_seq, .exact, kwEq(0, "0"), .{
            .keys = &keys,
            .distances = &distances,
        }) catch |err| return shared.fail("search: {s}", .{@errorName(err)});
        for (keys[0..got]) |key| {
            if (key % 2 != 0) shared.fail("parity 0 search returned odd key {d}", .{key});
        }
        // A record with cls "b" was updated: its flag was set before the update.
        const got_b = records.search(shared.index, &q, 10, 64, live_seq, .exact, kwEq(1, "b"), .{
            .keys = &keys,
            .distances = &distances,
        }) catch |err| return shared.fail("search: {s}", .{@errorName(err)});
        for (keys[0..got_b]) |key| {
            if (!shared.updated[key].load(.acquire)) shared.fail("key {d} is b early", .{key});
        }
        // The snapshot of the complete set sees every record as "a", whatever the updates do.
        const seq = shared.snapshot_seq.load(.acquire);
        if (seq != 0) {
            const a = records.count(shared.index, seq, kwEq(1, "a")) catch |err|
                return shared.fail("count: {s}", .{@errorName(err)});
            if (a != total) shared.fail("snapshot count of a moved: {d} != {d}", .{ a, total });
        }
        _ = shared.searches.fetchAdd(1, .monotonic);
    }
}

test "family 4: filtered searches and snapshot counts beside record adds, updates and removes" {
    const violations_before = locks.violations.load(.monotonic);
    const index = try Index.create(gpa, t.options(dims, .l2sq), null);
    defer index.destroy();
    const schema = try schema_mod.encode(gpa, &.{
        .{ .kind = .keyword, .name = "parity" },
        .{ .kind = .keyword, .name = "cls" },
        .{ .kind = .number, .name = "num" },
    });
    defer gpa.free(schema);
    try records.setSchema(index, schema);
    const per_writer = stress.scale(600);
    const total = per_writer * writers;
    const updated = try gpa.alloc(std.atomic.Value(bool), total);
    defer gpa.free(updated);
    for (updated) |*u| u.* = std.atomic.Value(bool).init(false);
    var shared = Shared{ .index = index, .per_writer = per_writer, .updated = updated };
    var threads: [writers + 1]std.Thread = undefined;
    for (0..writers) |i| threads[i] = try std.Thread.spawn(.{}, writer, .{ &shared, i });
    threads[writers] = try std.Thread.spawn(.{}, reader, .{&shared});
    while (shared.adds_done.load(.acquire) < writers) std.Thread.yield() catch {};
    const snapshot = try read.snapshotCreate(index);
    shared.snapshot_seq.store(try read.readSeq(index, snapshot), .release);
    for (threads) |thread| thread.join();
    try std.testing.expectEqual(@as(u32, 0), shared.failures.load(.monotonic));
    try std.testing.expect(shared.searches.load(.monotonic) > 0);
    // Exact post-conditions: every record is "b" but the removed tenth; the snapshot is whole.
    const removed = (total + 9) / 10;
    const b_live = try records.count(index, live_seq, kwEq(1, "b"));
    try std.testing.expectEqual(@as(u64, total - removed), b_live);
    try std.testing.expectEqual(@as(u64, 0), try records.count(index, live_seq, kwEq(1, "a")));
    const seq = shared.snapshot_seq.load(.acquire);
    try std.testing.expectEqual(@as(u64, total), try records.count(index, seq, kwEq(1, "a")));
    try std.testing.expectEqual(@as(u64, 0), try records.count(index, seq, kwEq(1, "b")));
    try read.snapshotRelease(index, snapshot);
    try std.testing.expectEqual(violations_before, locks.violations.load(.monotonic));
}

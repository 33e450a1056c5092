//! Graph quality after parallel builds and on exact duplicates: the links concurrent inserts
//! used to lose (a pruned list dropping nodes newer than the writer's view, a new node's first
//! list write overwriting backlinks, two high nodes racing promotion) and the nodes duplicates
//! used to leave unreachable. The counts are exact: every one must be 0.
//! QUIVER_GRAPH_SEED=<n> replays a seed; every test prints the one it used.
const std = @import("std");
const abi = @import("../abi.zig");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const verify = @import("verify.zig").verify;
const layout = @import("../storage/layout.zig");
const graph = @import("../hnsw/graph.zig");
const view_mod = @import("../hnsw/view.zig");
const t = @import("index_test.zig");

const gpa = std.heap.c_allocator;

fn seedOf(default: u64) u64 {
    const text = std.mem.span(std.c.getenv("QUIVER_GRAPH_SEED") orelse return default);
    return std.fmt.parseInt(u64, text, 0) catch default;
}

/// What a parallel build can lose, counted on the quiescent graph.
pub const Damage = struct {
    /// Live nodes no link of any level reaches from the entry point (verify's count).
    unreachable_live: u64 = 0,
    /// Nodes other than the entry that no level-0 list names: searches end on level 0, so these
    /// are found only by luck.
    level0_orphans: u64 = 0,
    /// Nodes with an empty list on a level they have, while another node has that level too:
    /// an insert always links to at least one node of each of its levels that has another.
    empty_upper_lists: u64 = 0,

    fn total(self: Damage) u64 {
        return self.unreachable_live + self.level0_orphans + self.empty_upper_lists;
    }
};

pub fn damage(index: *Index) !Damage {
    var result = Damage{};
    result.unreachable_live = (try verify(index)).unreachable_live;
    const generation = index.storage.pin();
    defer index.storage.unpin(generation);
    const regions = generation.payload;
    const used: u32 = @intCast(@min(index.slots_used.load(.acquire), regions.capacity));
    const named = try gpa.alloc(bool, used);
    defer gpa.free(named);
    @memset(named, false);
    var per_level = [_]u64{0} ** (layout.max_level + 1);
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        const meta = regions.meta(slot);
        for (0..@as(usize, meta.level) + 1) |level| per_level[level] += 1;
        const words = regions.list(slot, 0, 0);
        const count = @min(graph.countOf(words), index.layout.maxDegree(0));
        for (words[1 .. 1 + count]) |id| {
            if (id < used) named[id] = true;
        }
    }
    const entry = index.entry.load().?;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        const meta = regions.meta(slot);
        if (!named[i] and slot != entry.slot) result.level0_orphans += 1;
        var level: u32 = 1;
        while (level <= meta.level) : (level += 1) {
            if (per_level[level] < 2) continue;
            if (graph.countOf(regions.list(slot, level, meta.upper_offset)) == 0) {
                result.empty_upper_lists += 1;
            }
        }
    }
    return result;
}

const Build = struct {
    index: *Index,
    data: []const f32,
    dims: usize,
    next: std.atomic.Value(usize) = std.atomic.Value(usize).init(0),
    failures: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),

    /// Threads take keys from one counter, so they insert neighbouring keys at the same time:
    /// the interleaving that loses links.
    fn run(self: *Build) void {
        const n = self.data.len / self.dims;
        while (true) {
            const key = self.next.fetchAdd(1, .monotonic);
            if (key >= n) return;
            write.add(self.index, key, self.data[key * self.dims ..][0..self.dims]) catch |err| {
                if (self.failures.fetchAdd(1, .monotonic) < 3) {
                    const name = @errorName(err);
                    std.debug.print("graph quality: add {d} failed: {s}\n", .{ key, name });
                }
            };
        }
    }
};

pub fn build(index: *Index, data: []const f32, dims: usize, threads: usize) !void {
    var state = Build{ .index = index, .data = data, .dims = dims };
    var handles: [8]std.Thread = undefined;
    std.debug.assert(threads >= 1 and threads <= handles.len);
    for (handles[0 .. threads - 1]) |*h| h.* = try std.Thread.spawn(.{}, Build.run, .{&state});
    state.run();
    for (handles[0 .. threads - 1]) |h| h.join();
    try std.testing.expectEqual(@as(u32, 0), state.failures.load(.monotonic));
    try std.testing.expectEqual(@as(u64, data.len / dims), index.size());
}

/// Small lists (m = 4) so nearly every backlink prunes, and many nodes with upper levels.
fn smallOptions(dims: u32) abi.Options {
    var options = t.options(dims, .l2sq);
    options.m = 4;
    options.ef_construction = 32;
    return options;
}

test "graph quality: a 4-thread build loses no link (old code: 7 and 9, then about 1 in 50)" {
    const seed = seedOf(0x9a11e1);
    std.debug.print("graph quality: parallel build, QUIVER_GRAPH_SEED={d}\n", .{seed});
    const dims = 8;
    const n = 6_000;
    const data = try t.clustered(gpa, n, dims, seed);
    defer gpa.free(data);
    var rounds: u32 = 0;
    while (rounds < 2) : (rounds += 1) {
        const index = try Index.create(gpa, smallOptions(dims), null);
        defer index.destroy();
        try build(index, data, dims, 4);
        const got = try damage(index);
        if (got.total() != 0) std.debug.print("round {d}: {any}\n", .{ rounds, got });
        // Two races remained after the first fix (7 unreachable and 9 orphans per build), each
        // in about one build in fifty under load: two inserts pruning one node from two lists
        // at once, each trusting the other list as its remaining path (now serialized by the
        // node's unlink stripe; native/sim/unlink_check.zig), and a promotion racing a remap
        // that left the node's upper lists empty (now linked through the newest mapping).
        try std.testing.expectEqual(Damage{}, got);
        try t.expectVerified(index);
    }
}

/// Keys of the `k` nearest live vectors to `query` by exhaustive search (ef = size).
fn searchAll(index: *Index, query: []const f32, keys: []u64, distances: []f32) !u32 {
    const k: u32 = @intCast(keys.len);
    return read.searchOne(index, query, k, k, view_mod.live_seq, .{
        .keys = keys,
        .distances = distances,
    });
}

fn expectAllFindable(index: *Index, query: []const f32, n: usize) !void {
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    const distances = try gpa.alloc(f32, n);
    defer gpa.free(distances);
    const found = try searchAll(index, query, keys, distances);
    if (found != n) std.debug.print("exhaustive search found {d} of {d}\n", .{ found, n });
    try std.testing.expectEqual(n, @as(usize, found));
}

test "graph quality: 1,000 identical vectors are all found and all reachable" {
    const dims = 8;
    const n = 1_000;
    const index = try Index.create(gpa, t.options(dims, .l2sq), null);
    defer index.destroy();
    const v = [_]f32{ 0.5, -1, 2, 0, 3, 1, -2, 0.25 };
    for (0..n) |key| try write.add(index, key, &v);
    const report = try verify(index);
    if (report.unreachable_live != 0) std.debug.print("verify: {any}\n", .{report});
    try std.testing.expectEqual(@as(u64, 0), report.unreachable_live);
    try std.testing.expectEqual(@as(u32, 1), report.ok);
    try expectAllFindable(index, &v, n);
}

test "graph quality: 20 vectors x 50 copies, serial and parallel, none unreachable" {
    const seed = seedOf(0xd0b1e5);
    std.debug.print("graph quality: duplicates, QUIVER_GRAPH_SEED={d}\n", .{seed});
    const dims = 8;
    const distinct = 20;
    const copies = 50;
    const originals = try t.clustered(gpa, distinct, dims, seed);
    defer gpa.free(originals);
    const data = try gpa.alloc(f32, distinct * copies * dims);
    defer gpa.free(data);
    // Copies interleaved (0, 1, ..., 19, 0, 1, ...): each group grows alongside the others.
    for (0..distinct * copies) |i| {
        @memcpy(data[i * dims ..][0..dims], originals[(i % distinct) * dims ..][0..dims]);
    }
    for ([_]usize{ 1, 4 }) |threads| {
        const index = try Index.create(gpa, t.options(dims, .l2sq), null);
        defer index.destroy();
        try build(index, data, dims, threads);
        const report = try verify(index);
        if (report.unreachable_live != 0) std.debug.print(
            "{d} thread(s): verify: {any}\n",
            .{ threads, report },
        );
        try std.testing.expectEqual(@as(u64, 0), report.unreachable_live);
        try std.testing.expectEqual(@as(u32, 1), report.ok);
        for (0..distinct) |group| {
            try expectAllFindable(index, originals[group * dims ..][0..dims], distinct * copies);
        }
    }
}

//! Folder hnsw/: the graph algorithms over one mapping. graph.zig (neighbour lists, seqlocks),
//! insert.zig (link a node: search, select, back-links, promotion), search.zig (greedy descent,
//! layer search), entry.zig (the entry point), scratch.zig (per-thread buffers), view.zig (the
//! bound view of one generation that every walk reads through). May import: storage/, kernels/,
//! sync/, abi.zig; never index/ or ffi/.
//!
//! Neighbour lists and their per-node seqlocks. Writers lock one node at a time (rank `node`)
//! and publish every word with release stores; readers never write shared memory: they copy a
//! list between two reads of the node's version and retry if a writer intervened. All list
//! words are accessed atomically, so search beside insert is data-race free (ThreadSanitizer
//! checks it), unlike hnswlib's unlocked reads.
const std = @import("std");
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");

const chunk_bits = 16;
const chunk_len = 1 << chunk_bits;
const max_chunks = 4096;
/// The lock directory bounds the number of slots an index can hold.
pub const max_slots: u64 = @as(u64, chunk_len) * max_chunks;

const Chunk = [chunk_len]std.atomic.Value(u32);

pub const Counters = struct {
    lock_contention: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    read_retries: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    invariant_violations: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    corruption_detected: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
};

/// Versions for every slot, in chunks that never move (so no epoch is needed for them).
pub const NodeLocks = struct {
    chunks: [max_chunks]std.atomic.Value(?*Chunk) = [_]std.atomic.Value(?*Chunk){std.atomic.Value(
        ?*Chunk,
    ).init(null)} ** max_chunks,

    pub fn deinit(self: *NodeLocks, gpa: std.mem.Allocator) void {
        for (&self.chunks) |*chunk| {
            if (chunk.load(.acquire)) |c| gpa.destroy(c);
        }
    }

    /// Makes sure versions exist for slots below `slots`. Safe to race: losers free their chunk.
    pub fn ensure(self: *NodeLocks, gpa: std.mem.Allocator, slots: u64) error{
        OutOfMemory,
        CapacityExceeded,
    }!void {
        if (slots > max_slots) return error.CapacityExceeded;
        const needed = std.math.divCeil(u64, slots, chunk_len) catch unreachable;
        for (self.chunks[0..needed]) |*chunk| {
            if (chunk.load(.acquire) != null) continue;
            const fresh = try gpa.create(Chunk);
            for (fresh) |*version| version.* = std.atomic.Value(u32).init(0);
            if (chunk.cmpxchgStrong(null, fresh, .acq_rel, .acquire) != null) gpa.destroy(fresh);
        }
    }

    fn word(self: *NodeLocks, slot: u32) *std.atomic.Value(u32) {
        const chunk = self.chunks[slot >> chunk_bits].load(.acquire).?;
        return &chunk[slot & (chunk_len - 1)];
    }

    pub fn lock(self: *NodeLocks, slot: u32, counters: *Counters) void {
        locks.acquire(.node);
        const version = self.word(slot);
        var contended = false;
        var seen = version.load(.monotonic);
        while (true) {
            if (seen & 1 == 0) {
                seen = version.cmpxchgWeak(seen, seen + 1, .acquire, .monotonic) orelse return;
            } else {
                if (!contended) _ = counters.lock_contention.fetchAdd(1, .monotonic);
                contended = true;
                std.atomic.spinLoopHint();
                seen = version.load(.monotonic);
            }
        }
    }

    pub fn unlock(self: *NodeLocks, slot: u32) void {
        const version = self.word(slot);
        const before = version.fetchAdd(1, .release);
        assert(before & 1 == 1);
        locks.release(.node);
    }

    /// Copies a consistent neighbour list into `out`. A count above `max_degree` can only come
    /// from a corrupt file; it is clamped and counted, never trusted.
    pub fn read(
        self: *NodeLocks,
        slot: u32,
        list: [*]u32,
        max_degree: u32,
        out: []u32,
        counters: *Counters,
    ) []u32 {
        assert(out.len >= max_degree);
        const version = self.word(slot);
        var retried = false;
        while (true) {
            const before = version.load(.acquire);
            if (before & 1 == 0) {
                var count = @atomicLoad(u32, &list[0], .acquire);
                if (count > max_degree) {
                    _ = counters.corruption_detected.fetchAdd(1, .monotonic);
                    count = max_degree;
                }
                for (out[0..count], list[1 .. 1 + count]) |*dst, *src| dst.* = @atomicLoad(
                    u32,
                    src,
                    .acquire,
                );
                if (version.load(.monotonic) == before) return out[0..count];
            }
            // One count per read that had to retry, however long it waited.
            if (!retried) _ = counters.read_retries.fetchAdd(1, .monotonic);
            retried = true;
            std.atomic.spinLoopHint();
        }
    }
};

/// Overwrites a list; the caller holds the node's lock.
pub fn write(list: [*]u32, ids: []const u32) void {
    for (ids, 0..) |id, i| @atomicStore(u32, &list[1 + i], id, .release);
    @atomicStore(u32, &list[0], @intCast(ids.len), .release);
}

/// Appends one id; the caller holds the node's lock and checked there is room.
pub fn append(list: [*]u32, id: u32) void {
    const count = @atomicLoad(u32, &list[0], .monotonic);
    @atomicStore(u32, &list[1 + count], id, .release);
    @atomicStore(u32, &list[0], count + 1, .release);
}

pub fn countOf(list: [*]u32) u32 {
    return @atomicLoad(u32, &list[0], .acquire);
}

test "graph: a reader racing a writer sees whole lists only" {
    const gpa = std.testing.allocator;
    var node_locks = NodeLocks{};
    defer node_locks.deinit(gpa);
    try node_locks.ensure(gpa, 1);
    var counters = Counters{};
    var storage = [_]u32{0} ** 9;
    const list: [*]u32 = &storage;

    const Writer = struct {
        fn run(nl: *NodeLocks, l: [*]u32, c: *Counters) void {
            for (0..20_000) |round| {
                const n: u32 = @intCast(round % 8 + 1);
                var ids: [8]u32 = undefined;
                for (ids[0..n]) |*id| id.* = n; // every id equals the count: a torn read shows
                nl.lock(0, c);
                write(l, ids[0..n]);
                nl.unlock(0);
            }
        }
    };
    const thread = try std.Thread.spawn(.{}, Writer.run, .{ &node_locks, list, &counters });
    var out: [8]u32 = undefined;
    for (0..20_000) |_| {
        const got = node_locks.read(0, list, 8, &out, &counters);
        for (got) |id| try std.testing.expectEqual(@as(u32, @intCast(got.len)), id);
    }
    thread.join();
}

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
//!
//! The protocol itself (`Protocol`) is generic over the sync layer, so the interleaving checker
//! (native/sim/seqlock_check.zig) explores this exact code: the versioned read, and the update
//! that computes a new list outside the lock and writes it only if the version it read is
//! still current (retrying a bounded number of times, then computing under the lock).
const std = @import("std");
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");
const sync = @import("../sync/atomics.zig");
const codes = @import("codes.zig");

const chunk_bits = 16;
const chunk_len = 1 << chunk_bits;
const chunks_max = 4096;
/// The lock directory bounds the number of slots an index can hold.
pub const slots_max: u64 = @as(u64, chunk_len) * chunks_max;

/// Optimistic attempts of `Protocol.update` before it computes under the lock.
pub const update_attempts_max = 4;

const Chunk = [chunk_len]std.atomic.Value(u32);
/// One bit per slot of a chunk: whether a live reader sees it (`NodeLocks.isLive`).
const LiveChunk = [chunk_len / 64]std.atomic.Value(u64);

pub const Counters = struct {
    lock_contention: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    read_retries: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    invariant_violations: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    corruption_detected: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// Lists a view did not see because their node's upper records lie in an arena grown after
    /// the view was pinned (a newer node, not corruption).
    stale_lists: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// Level-0 links an insisting backlink dropped without another path to their node.
    uncovered_drops: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// Updates whose optimistic attempts all met a concurrent writer, so they computed the
    /// new list under the lock.
    update_fallbacks: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
};

/// The seqlock protocol over one version word and one list (word 0 the count, then the ids).
/// `Hooks.acquired()` and `Hooks.released()` run when `update` takes and drops the lock (the
/// production hooks record the lock's rank; the checker's do nothing).
pub fn Protocol(comptime Sync: type, comptime Hooks: type) type {
    return struct {
        pub const Word = Sync.Atomic(u32);

        pub const Snapshot = struct {
            /// The (even) version the copy was taken at.
            version: u32,
            ids: []u32,
            /// The count word was above `degree_max` (only a corrupt file holds such a count).
            clamped: bool,
            /// A writer intervened at least once.
            retried: bool,
        };

        /// Spins until the version is even and makes it odd. Returns whether it had to wait.
        pub fn lock(version: *Word) bool {
            var contended = false;
            var seen = version.load(.monotonic);
            while (true) {
                if (seen & 1 == 0) {
                    seen = version.cmpxchgWeak(seen, seen + 1, .acquire, .monotonic) orelse
                        return contended;
                } else {
                    contended = true;
                    Sync.spin();
                    seen = version.load(.monotonic);
                }
            }
        }

        /// Locks only if the version is still `expected` (even): no writer since that read.
        pub fn lockIf(version: *Word, expected: u32) bool {
            assert(expected & 1 == 0);
            return version.cmpxchgStrong(expected, expected + 1, .acquire, .monotonic) == null;
        }

        pub fn unlock(version: *Word) void {
            const before = version.fetchAdd(1, .release);
            assert(before & 1 == 1);
        }

        /// Copies a consistent list into `out` (at least `degree_max` long).
        pub fn read(version: *Word, list: [*]Word, degree_max: u32, out: []u32) Snapshot {
            return readWith(version, list, degree_max, out, NoCopy{});
        }

        const NoCopy = struct {
            fn copy(_: NoCopy, _: u32) void {}
        };

        /// `read`, also running `extra.copy(count)` inside the versioned section, after the
        /// ids: what it reads (with atomic loads) is consistent with the list it returns
        /// (rabitq's neighbour codes). It may run more than once.
        pub fn readWith(
            version: *Word,
            list: [*]Word,
            degree_max: u32,
            out: []u32,
            extra: anytype,
        ) Snapshot {
            assert(out.len >= degree_max);
            var retried = false;
            while (true) {
                const before = version.load(.acquire);
                if (before & 1 == 0) {
                    var count = list[0].load(.acquire);
                    const clamped = count > degree_max;
                    if (clamped) count = degree_max;
                    for (out[0..count], list[1 .. 1 + count]) |*dst, *src| {
                        dst.* = src.load(.acquire);
                    }
                    extra.copy(count);
                    if (version.load(.monotonic) == before) return .{
                        .version = before,
                        .ids = out[0..count],
                        .clamped = clamped,
                        .retried = retried,
                    };
                }
                retried = true;
                Sync.spin();
            }
        }

        /// Overwrites a list; the caller holds the node's lock.
        pub fn write(list: [*]Word, ids: []const u32) void {
            for (ids, 0..) |id, i| list[1 + i].store(id, .release);
            list[0].store(@intCast(ids.len), .release);
        }

        pub const Outcome = enum { unchanged, written, written_locked };

        /// Replaces the list with `context.merge(current, out, locked)` (null: leave it). The
        /// merge runs outside the lock on a consistent copy (`locked` false; it may then take
        /// other node locks, one at a time); the result is written only if no writer came in
        /// between, else the update starts again. After `update_attempts_max` attempts it locks
        /// first and merges under the lock (`locked` true: no other lock, no allocation, no
        /// waiting), so it always ends.
        pub fn update(
            version: *Word,
            list: [*]Word,
            degree_max: u32,
            context: anytype,
            current: []u32,
            out: []u32,
        ) Outcome {
            assert(current.len >= degree_max);
            assert(out.len >= degree_max);
            var attempt: u32 = 0;
            while (attempt < update_attempts_max) : (attempt += 1) {
                const snapshot = read(version, list, degree_max, current);
                const next = context.merge(snapshot.ids, out, false) orelse return .unchanged;
                assert(next.len <= degree_max);
                if (!lockIf(version, snapshot.version)) continue;
                Hooks.acquired();
                write(list, next);
                if (@hasDecl(@TypeOf(context.*), "written")) context.written(next);
                unlock(version);
                Hooks.released();
                return .written;
            }
            _ = lock(version);
            Hooks.acquired();
            defer {
                unlock(version);
                Hooks.released();
            }
            var count = list[0].load(.monotonic);
            count = @min(count, degree_max);
            for (current[0..count], list[1 .. 1 + count]) |*dst, *src| dst.* = src.load(.monotonic);
            const next = context.merge(current[0..count], out, true) orelse return .unchanged;
            assert(next.len <= degree_max);
            write(list, next);
            if (@hasDecl(@TypeOf(context.*), "written")) context.written(next);
            return .written_locked;
        }
    };
}

const RankHooks = struct {
    fn acquired() void {
        locks.acquire(.node);
    }
    fn released() void {
        locks.release(.node);
    }
};

/// The hooks of a protocol whose lock ranks nobody records (the interleaving checker).
pub const NoHooks = struct {
    pub fn acquired() void {}
    pub fn released() void {}
};

const Production = Protocol(sync.Production, RankHooks);
const ProductionWord = Production.Word;

comptime {
    // Lists live in the mapped file as plain u32 words; the protocol reads them as atomics.
    assert(@sizeOf(ProductionWord) == @sizeOf(u32));
    assert(@alignOf(ProductionWord) == @alignOf(u32));
}

fn words(list: [*]u32) [*]ProductionWord {
    return @ptrCast(list);
}

/// Stripes of the unlink lock (a power of two).
pub const unlink_stripes = 256;

/// Versions and live bits for every slot, in chunks that never move (so no epoch is needed for
/// them), and the unlink stripes.
pub const NodeLocks = struct {
    chunks: [chunks_max]std.atomic.Value(?*Chunk) = [_]std.atomic.Value(?*Chunk){std.atomic.Value(
        ?*Chunk,
    ).init(null)} ** chunks_max,
    /// A level-0 backlink that drops a node's link checks that another link still reaches the
    /// node, then writes; the drops of one node are serialized by its stripe, so two inserts
    /// can no longer each trust the other's list and drop both (insert.zig `Backlink`).
    unlink: [unlink_stripes]locks.Mutex = [_]locks.Mutex{.{ .rank = .unlink }} ** unlink_stripes,
    /// A bit per slot, set while the slot is visible to a live reader: the mirror of
    /// `visible(meta, live_seq)` that `Slots.publish` and `remove` keep (hnsw/view.zig), and that
    /// open and compaction rebuild from the metadata (`rebuildLive`). A live search tests it
    /// instead of reading the slot's metadata, a random line of another file per candidate
    /// (125 KiB per million slots: it stays in cache). Snapshot reads still read the metadata.
    live_chunks: [chunks_max]std.atomic.Value(?*LiveChunk) = [_]std.atomic.Value(
        ?*LiveChunk,
    ){std.atomic.Value(?*LiveChunk).init(null)} ** chunks_max,

    pub fn unlinkStripe(self: *NodeLocks, slot: u32) *locks.Mutex {
        // Neighbouring slots are often dropped together: spread them by a multiplicative hash.
        const mixed = slot *% 0x9E3779B1;
        return &self.unlink[mixed >> (32 - @ctz(@as(u32, unlink_stripes)))];
    }

    pub fn deinit(self: *NodeLocks, gpa: std.mem.Allocator) void {
        for (&self.chunks) |*chunk| {
            if (chunk.load(.acquire)) |c| gpa.destroy(c);
        }
        for (&self.live_chunks) |*chunk| {
            if (chunk.load(.acquire)) |c| gpa.destroy(c);
        }
    }

    /// Makes sure versions exist for slots below `slots`. Safe to race: losers free their chunk.
    pub fn ensure(self: *NodeLocks, gpa: std.mem.Allocator, slots: u64) error{
        OutOfMemory,
        CapacityExceeded,
    }!void {
        if (slots > slots_max) return error.CapacityExceeded;
        const needed = std.math.divCeil(u64, slots, chunk_len) catch unreachable;
        for (self.chunks[0..needed]) |*chunk| {
            if (chunk.load(.acquire) != null) continue;
            const fresh = try gpa.create(Chunk);
            for (fresh) |*version| version.* = std.atomic.Value(u32).init(0);
            if (chunk.cmpxchgStrong(null, fresh, .acq_rel, .acquire) != null) gpa.destroy(fresh);
        }
        for (self.live_chunks[0..needed]) |*chunk| {
            if (chunk.load(.acquire) != null) continue;
            const fresh = try gpa.create(LiveChunk);
            for (fresh) |*bits| bits.* = std.atomic.Value(u64).init(0);
            if (chunk.cmpxchgStrong(null, fresh, .acq_rel, .acquire) != null) gpa.destroy(fresh);
        }
    }

    fn liveWord(self: *NodeLocks, slot: u32) *std.atomic.Value(u64) {
        const chunk = self.live_chunks[slot >> chunk_bits].load(.acquire).?;
        return &chunk[(slot & (chunk_len - 1)) / 64];
    }

    /// Whether `slot` is visible to a live reader (acquire: a set bit comes after the slot's
    /// metadata was published). False for a slot past every chunk: the mapping can be larger
    /// than the slots ensured so far, and a corrupt list can name any slot below it.
    pub inline fn isLive(self: *NodeLocks, slot: u32) bool {
        if (slot >= slots_max) return false;
        const chunk = self.live_chunks[slot >> chunk_bits].load(.acquire) orelse return false;
        const mask = @as(u64, 1) << @intCast(slot % 64);
        return chunk[(slot & (chunk_len - 1)) / 64].load(.acquire) & mask != 0;
    }

    /// Sets or clears the live bit of `slot` (release). Callers: `Slots.publish` and `remove`,
    /// under the commit lock, after the metadata store they mirror.
    pub fn setLive(self: *NodeLocks, slot: u32, on: bool) void {
        const mask = @as(u64, 1) << @intCast(slot % 64);
        if (on) {
            _ = self.liveWord(slot).fetchOr(mask, .release);
        } else {
            _ = self.liveWord(slot).fetchAnd(~mask, .release);
        }
    }

    /// Sets every live bit from the metadata (`visible` at the live sequence number) and clears
    /// the rest, up to every chunk that exists. The caller excludes every other user (open,
    /// compaction's swap). O(capacity / 64 + used).
    pub fn rebuildLive(self: *NodeLocks, regions: anytype, used: u32, visible: anytype) void {
        for (&self.live_chunks) |*chunk| {
            const c = chunk.load(.acquire) orelse break;
            for (c) |*bits| bits.store(0, .monotonic);
        }
        for (0..used) |i| {
            const slot: u32 = @intCast(i);
            if (visible(regions.meta(slot))) self.setLive(slot, true);
        }
    }

    /// Asks for the version word of `slot` (a read follows soon).
    pub inline fn prefetch(self: *NodeLocks, slot: u32) void {
        @prefetch(self.word(slot), .{});
    }

    fn word(self: *NodeLocks, slot: u32) *std.atomic.Value(u32) {
        const chunk = self.chunks[slot >> chunk_bits].load(.acquire).?;
        return &chunk[slot & (chunk_len - 1)];
    }

    pub fn lock(self: *NodeLocks, slot: u32, counters: *Counters) void {
        locks.acquire(.node);
        if (Production.lock(self.word(slot))) {
            _ = counters.lock_contention.fetchAdd(1, .monotonic);
        }
    }

    pub fn unlock(self: *NodeLocks, slot: u32) void {
        Production.unlock(self.word(slot));
        locks.release(.node);
    }

    /// Copies a consistent neighbour list into `out`. A count above `degree_max` can only come
    /// from a corrupt file; it is clamped and counted, never trusted.
    pub fn read(
        self: *NodeLocks,
        slot: u32,
        list: [*]u32,
        degree_max: u32,
        out: []u32,
        counters: *Counters,
    ) []u32 {
        const snapshot = Production.read(self.word(slot), words(list), degree_max, out);
        if (snapshot.clamped) _ = counters.corruption_detected.fetchAdd(1, .monotonic);
        // One count per read that had to retry, however long it waited.
        if (snapshot.retried) _ = counters.read_retries.fetchAdd(1, .monotonic);
        return snapshot.ids;
    }

    /// `read`, with `extra.copy(count)` run on what belongs with the list in the same
    /// versioned section (`Protocol.readWith`).
    pub fn readWith(
        self: *NodeLocks,
        slot: u32,
        list: [*]u32,
        degree_max: u32,
        out: []u32,
        extra: anytype,
        counters: *Counters,
    ) []u32 {
        const snapshot = Production.readWith(self.word(slot), words(list), degree_max, out, extra);
        if (snapshot.clamped) _ = counters.corruption_detected.fetchAdd(1, .monotonic);
        if (snapshot.retried) _ = counters.read_retries.fetchAdd(1, .monotonic);
        return snapshot.ids;
    }

    /// `Protocol.update` on `slot`'s list, with the node lock's rank checked around it. With
    /// `edges` (a rabitq index's level-0 list), the codes of the edges the new list changed are
    /// written with it, under the lock (hnsw/codes.zig).
    pub fn update(
        self: *NodeLocks,
        slot: u32,
        list: [*]u32,
        degree_max: u32,
        context: anytype,
        buffers: struct { current: []u32, out: []u32 },
        counters: *Counters,
        edges: ?codes.Writer,
    ) Production.Outcome {
        const Inner = @TypeOf(context);
        const Wrapped = struct {
            inner: Inner,
            edges: ?codes.Writer,
            slot: u32,
            /// The list the merge started from: what the stored edges code (the write happens
            /// only if no writer came in between).
            previous: []const u32 = &.{},
            pub fn merge(w: *@This(), current: []const u32, out: []u32, locked: bool) ?[]u32 {
                const next = w.inner.merge(current, out, locked) orelse return null;
                if (w.edges != null) codes.stabilize(current, next);
                w.previous = current;
                return next;
            }
            pub fn written(w: *@This(), ids: []const u32) void {
                if (w.edges) |e| e.write(w.slot, w.previous, ids);
            }
        };
        var wrapped = Wrapped{ .inner = context, .edges = edges, .slot = slot };
        const outcome = Production.update(
            self.word(slot),
            words(list),
            degree_max,
            &wrapped,
            buffers.current,
            buffers.out,
        );
        if (outcome == .written_locked) _ = counters.update_fallbacks.fetchAdd(1, .monotonic);
        return outcome;
    }
};

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
                Production.write(words(l), ids[0..n]);
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

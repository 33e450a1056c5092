//! A `View` is what one operation sees: a pinned generation of mappings, the distance kernel and
//! the bound on valid slot ids. Every id read from a list is checked against the bound before
//! use, so a corrupt file can cost recall but never an out-of-bounds read.
const std = @import("std");
const assert = std.debug.assert;
const layout = @import("../storage/layout.zig");
const graph = @import("graph.zig");
const distance = @import("../kernels/distance.zig");
const i8k = @import("../kernels/i8.zig");
const rabitq = @import("../kernels/rabitq.zig");
const codes = @import("codes.zig");
const abi = @import("../abi.zig");
const Storage = @import("../storage/storage.zig").Storage;
const sync = @import("../sync/atomics.zig");

/// A query as the graph walk reads it: f32 elements, f16 under f16 storage, or codes under i8
/// storage (kernels/i8.zig).
pub const Query = [*]const u8;

/// The walk kernel over raw element bytes; the element type is fixed per index.
const WalkFn = *const fn ([*]const u8, [*]const u8, usize) callconv(.c) f32;

pub const View = struct {
    regions: layout.Regions,
    node_locks: *graph.NodeLocks,
    counters: *graph.Counters,
    kernel: WalkFn,
    /// Its batch form, for the distances of one expansion (`distancesTo`).
    many: distance.ManyFn,
    /// The exact f32 kernel, for reranking under f16 and i8 storage.
    exact_kernel: distance.KernelFn,
    /// rabitq storage's scan of a block of neighbour codes.
    scan: rabitq.ScanFn,
    /// Inner product and cosine rank by 1 - dot.
    dot: bool,
    metric: abi.Metric,
    /// Ids at or above this are not (yet) valid in this generation.
    bound: u32,
    /// Cache lines of one walked vector that a prefetch asks for (at most `prefetch_lines_max`),
    /// from the line `walk_back` bytes before the walked vector.
    walk_lines: u32,
    walk_back: u32,
    /// The storage the regions come from: a list whose upper records lie beyond this
    /// generation's arena is told apart from corruption by the newest generation's arena.
    storage: ?*Storage = null,

    pub fn init(
        regions: layout.Regions,
        node_locks: *graph.NodeLocks,
        counters: *graph.Counters,
        metric: abi.Metric,
        slots_used: u64,
    ) View {
        const exact = distance.kernel(metric);
        return .{
            .regions = regions,
            .node_locks = node_locks,
            .counters = counters,
            // The C ABI passes both element pointers alike, so one pointer type serves both.
            .kernel = switch (regions.layout.storage) {
                .f32 => @ptrCast(exact),
                .f16 => @ptrCast(distance.kernelF16(metric)),
                .i8, .rabitq => distance.kernelI8(metric),
            },
            .many = distance.kernelMany(metric, regions.layout.storage),
            .exact_kernel = exact,
            .scan = distance.kernelScan(),
            .dot = metric != .l2sq,
            .metric = metric,
            .bound = @intCast(@min(slots_used, regions.capacity)),
            .walk_lines = walkLines(regions.layout),
            .walk_back = regions.layout.vector_offset - lineStart(regions.layout),
        };
    }

    /// Asks for the walked vector of `slot` ahead of its distance: every line a distance reads
    /// (`Layout.walkSpan`: under i8 storage the terms too), up to `prefetch_lines_max`
    /// (measured: a 96-dimension f32 vector is 6 lines, and with only the first two prefetched
    /// the kernel stalled on the other four).
    pub inline fn prefetchWalk(self: View, slot: u32) void {
        const first = self.regions.walk(slot) - self.walk_back;
        var line: u32 = 0;
        while (line < self.walk_lines) : (line += 1) @prefetch(first + 64 * line, .{});
    }

    /// Asks for the level-0 list of `slot` and its version word, a step before they are read.
    pub inline fn prefetchList(self: View, slot: u32) void {
        const words = self.regions.list(slot, 0, 0);
        const bytes: [*]const u8 = @ptrCast(words);
        const list_bytes = 4 + 4 * self.regions.layout.m0;
        var offset: u32 = 0;
        while (offset < list_bytes) : (offset += 64) @prefetch(bytes + offset, .{});
        self.node_locks.prefetch(slot);
    }

    /// What a write of `level`'s lists must also write: a rabitq index's level-0 edges
    /// (hnsw/codes.zig); null otherwise.
    pub inline fn blocksAt(self: View, level: u32) ?codes.Writer {
        if (level != 0 or self.regions.layout.storage != .rabitq) return null;
        return codes.Writer.of(self.regions, self.metric);
    }

    /// Asks for `slot`'s level-0 record (rabitq: the list, the i8 codes the node's own distance
    /// reads and its first block of edges, one run of lines; a second block, m > 16, is left
    /// to the streamer) and its version word.
    pub inline fn prefetchRecord(self: View, slot: u32) void {
        const bytes: [*]const u8 = @ptrCast(self.regions.list(slot, 0, 0));
        const l = self.regions.layout;
        const end = @min(l.record_bytes, l.block_offset + l.block_bytes);
        var offset: u32 = 0;
        while (offset < end) : (offset += 64) {
            @prefetch(bytes + offset, .{});
        }
        self.node_locks.prefetch(slot);
    }

    /// A consistent copy of `slot`'s level-0 list (as stored: ids unchecked), with
    /// `extra.copy(count)` run in the same versioned section (rabitq: the scan of its edges).
    pub inline fn neighboursWith(self: View, slot: u32, out: []u32, extra: anytype) []u32 {
        return self.node_locks.readWith(
            slot,
            self.regions.list(slot, 0, 0),
            self.regions.layout.m0,
            out,
            extra,
            self.counters,
        );
    }

    /// The walk distance (on f16 copies or i8 codes under those storages).
    pub inline fn distanceTo(self: View, query: Query, slot: u32) f32 {
        const raw = self.kernel(query, self.regions.walk(slot), self.regions.layout.walk_dims);
        return if (self.dot) 1.0 - raw else raw;
    }

    /// `distanceTo` of each of `slots`, into `out` (at least as long): one batch-kernel call.
    pub inline fn distancesTo(self: View, query: Query, slots: []const u32, out: []f32) void {
        assert(out.len >= slots.len);
        if (std.debug.runtime_safety) for (slots) |slot| assert(slot < self.regions.capacity);
        const l = self.regions.layout;
        const base = self.regions.graph.ptr + l.vector_offset;
        self.many(query, base, l.record_bytes, slots.ptr, slots.len, l.walk_dims, out.ptr);
        if (self.dot) for (out[0..slots.len]) |*d| {
            d.* = 1.0 - d.*;
        };
    }

    pub inline fn distanceBetween(self: View, a: u32, b: u32) f32 {
        const raw = self.kernel(
            self.regions.walk(a),
            self.regions.walk(b),
            self.regions.layout.walk_dims,
        );
        return if (self.dot) 1.0 - raw else raw;
    }

    /// Whether two stored vectors are exact duplicates as the walk sees them.
    pub fn sameWalk(self: View, a: u32, b: u32) bool {
        const d: usize = self.regions.layout.walk_dims;
        const n = switch (self.regions.layout.storage) {
            .f32 => 4 * d,
            .f16 => 2 * d,
            .i8, .rabitq => d,
        };
        return std.mem.eql(u8, self.regions.walk(a)[0..n], self.regions.walk(b)[0..n]);
    }

    /// A view of the same index over a newer generation's regions (pinned by the caller).
    pub fn over(self: View, regions: layout.Regions) View {
        var newer = self;
        newer.regions = regions;
        newer.bound = @intCast(@min(regions.capacity, std.math.maxInt(u32)));
        return newer;
    }

    /// The exact distance against the f32 vector (what search results report).
    pub inline fn exactDistance(self: View, query: []const f32, slot: u32) f32 {
        const raw = self.exact_kernel(query.ptr, self.regions.vector(slot).ptr, query.len);
        return if (self.dot) 1.0 - raw else raw;
    }

    pub const Located = union(enum) {
        words: [*]u32,
        /// The node's upper records lie in an arena grown after this view was pinned: a node
        /// newer than the view, whose list a newer generation holds.
        stale,
        /// The metadata names no such level, or records outside every arena.
        corrupt,
    };

    /// Where the list of `slot` at `level` lives in this view's generation.
    pub fn locate(self: View, slot: u32, level: u32) Located {
        if (level == 0) return .{ .words = self.regions.list(slot, 0, 0) };
        const meta = self.regions.meta(slot);
        const level_max = meta.level;
        const upper_offset = meta.upper_offset;
        if (level_max < level) return .corrupt;
        const upper_end = @as(u64, upper_offset) + level_max;
        if (upper_end <= self.regions.upper_capacity) {
            return .{ .words = self.regions.list(slot, level, upper_offset) };
        }
        const storage = self.storage orelse return .corrupt;
        // Arenas only grow while a view can exist (compaction's adopt takes the exclusive
        // path), so a record within the newest arena belongs to a node this view predates.
        const newest = storage.pin();
        defer storage.unpin(newest);
        return if (upper_end <= newest.payload.upper_capacity) .stale else .corrupt;
    }

    /// The list of `slot` at `level`, or null when this view cannot see it: counted as
    /// corruption when the node's metadata says it has no such level or its upper records lie
    /// outside every arena, and as a stale list when a newer arena holds them.
    pub fn list(self: View, slot: u32, level: u32) ?[*]u32 {
        switch (self.locate(slot, level)) {
            .words => |words| return words,
            .stale => {
                _ = self.counters.stale_lists.fetchAdd(1, .monotonic);
                return null;
            },
            .corrupt => {
                _ = self.counters.corruption_detected.fetchAdd(1, .monotonic);
                return null;
            },
        }
    }

    /// The view an insert walks: every slot the mapping holds, not only those allocated before
    /// the pin. Lists name only written nodes, and a neighbour list can name nodes newer than
    /// the pin (other inserters' links); a writer that ignored them would drop their links.
    pub fn widened(self: View) View {
        var wide = self;
        wide.bound = @intCast(@min(self.regions.capacity, std.math.maxInt(u32)));
        return wide;
    }

    /// A consistent copy of a list as stored: ids may be at or beyond the bound, which the
    /// caller must drop before using them (`neighbours` does).
    pub inline fn neighboursUnchecked(self: View, slot: u32, level: u32, out: []u32) []u32 {
        const words = if (level == 0)
            self.regions.list(slot, 0, 0)
        else
            self.list(slot, level) orelse return out[0..0];
        const degree_max = self.regions.layout.maxDegree(level);
        return self.node_locks.read(slot, words, degree_max, out, self.counters);
    }

    /// A consistent copy of a list, with out-of-bound ids dropped.
    pub fn neighbours(self: View, slot: u32, level: u32, out: []u32) []u32 {
        const got = self.neighboursUnchecked(slot, level, out);
        var kept: usize = 0;
        for (got) |id| {
            // Ids at or beyond the bound are either newer than this generation or corrupt; a
            // newer node is simply not seen by this operation.
            if (id < self.bound and id != slot) {
                out[kept] = id;
                kept += 1;
            }
        }
        return out[0..kept];
    }
};

/// Prefetching more lines than this per neighbour (up to 32 of them per expansion) would fill
/// the core's line-fill buffers; the hardware streamer follows the rest of a longer vector.
pub const prefetch_lines_max: u32 = 8;

/// The record offset of the first line a distance reads.
fn lineStart(l: layout.Layout) u32 {
    return l.walkSpan().offset / 64 * 64;
}

fn walkLines(l: layout.Layout) u32 {
    const span = l.walkSpan();
    const lines = std.math.divCeil(u32, span.offset + span.bytes - lineStart(l), 64) catch
        unreachable;
    return @min(prefetch_lines_max, lines);
}

comptime {
    // The storage's constants and the kernels' format are one format.
    std.debug.assert(layout.i8_terms_bytes == i8k.terms_bytes);
    std.debug.assert(layout.i8_granule == i8k.granule);
}

/// Whether a slot is visible to a reader at sequence number `seq` (the live view reads at
/// `live_seq`). Creation and deletion sequence numbers are set under the commit lock.
pub fn visible(meta: *const layout.Meta, seq: u64) bool {
    return Slots(sync.Production, .correct).visible(meta, seq);
}

pub const SlotsVariant = enum {
    correct,
    /// Canary: gives the slot its sequence number before marking it ready, so a live reader
    /// can see a visible slot that is still `inserting` (half-published).
    created_before_ready,
    /// Canary: retires the old slot before the new one is visible, so a live reader can find
    /// neither (an upserted key briefly missing).
    deleted_before_created,
    /// Canary: advances the sequence number before the slots, so a reader at the new current
    /// sequence number can see the old slot and the new one (a key twice).
    seq_before_slots,
    /// Canary: the key lookup stops at the key map's newest slot instead of walking the upsert
    /// chain, so a snapshot reader misses the older slot it should see.
    chain_without_walk,
    /// Canary: sets the new slot's live bit before its state and sequence number, so a live
    /// search, which tests the bit, can return a slot that is still `inserting`.
    live_bit_first,
};

/// The slot-visibility protocol over slot metadata, generic over the sync layer so that the
/// interleaving checker (native/sim/slot_check.zig) runs this code; `variant` holds the broken
/// orders it must catch. Production is `Slots(sync.Production, .correct)`.
pub fn Slots(comptime Sync: type, comptime variant: SlotsVariant) type {
    return struct {
        const Self = @This();

        pub fn visible(meta: *const layout.Meta, seq: u64) bool {
            const created = Sync.load(u64, &meta.created_seq, .acquire);
            // 0 is a slot never written (files start zeroed); `unpublished` is above every
            // reader's seq.
            if (created == 0 or created > seq) return false;
            const deleted = Sync.load(u64, &meta.deleted_seq, .acquire);
            return deleted == 0 or deleted > seq;
        }

        /// Whether `slot` is visible to a live reader, by its live bit (graph.zig
        /// `NodeLocks.isLive`): what a live search tests instead of the slot's metadata.
        /// `bits` has `isLive(slot) bool` and `setLive(slot, bool)`.
        pub fn visibleLive(bits: anytype, slot: u32) bool {
            return bits.isLive(slot);
        }

        /// Makes `meta` (slot `slot`) visible and its predecessor (if any, and still visible)
        /// invisible at one new sequence number, which it returns. The caller holds the commit
        /// lock, so `seq` has one writer. The order is the protocol: the state, then the slot's
        /// sequence number and its live bit, then the old slot's deletion and its live bit, then
        /// `seq`. A reader at the current `seq` sees the key once (old slot until `seq` moves,
        /// new one after); a live reader, by metadata or by live bit, sees it at least once and
        /// at most twice (searches drop the duplicate), and a set bit only on a ready slot.
        pub fn publish(
            meta: *layout.Meta,
            slot: u32,
            previous: ?Previous,
            seq_current: *Sync.Atomic(u64),
            live: *Sync.Atomic(u64),
            bits: anytype,
        ) u64 {
            const seq = seq_current.load(.monotonic) + 1;
            if (variant == .seq_before_slots) seq_current.store(seq, .release);
            if (variant == .live_bit_first) bits.setLive(slot, true);
            const retire_first = variant == .deleted_before_created;
            const replaced = if (retire_first) retire(previous, seq, bits) else false;
            if (variant != .created_before_ready) {
                Sync.store(u8, &meta.state, @intFromEnum(layout.SlotState.ready), .release);
            }
            Sync.store(u64, &meta.created_seq, seq, .release);
            if (variant == .created_before_ready) {
                Sync.store(u8, &meta.state, @intFromEnum(layout.SlotState.ready), .release);
            }
            if (variant != .live_bit_first) bits.setLive(slot, true);
            const retired = if (retire_first) replaced else retire(previous, seq, bits);
            if (!retired) _ = live.fetchAdd(1, .release);
            if (variant != .seq_before_slots) seq_current.store(seq, .release);
            return seq;
        }

        /// The slot an upsert replaces: its metadata and its number (for its live bit).
        pub const Previous = struct { meta: *layout.Meta, slot: u32 };

        fn retire(previous: ?Previous, seq: u64, bits: anytype) bool {
            const old = previous orelse return false;
            if (!Self.visible(old.meta, live_seq)) return false;
            Sync.store(u64, &old.meta.deleted_seq, seq, .release);
            bits.setLive(old.slot, false);
            return true;
        }

        /// The slot of `key` visible at `seq`, walking the upsert chain from `newest` (the key
        /// map's entry) through `prev_slot`; the walk of `slotAt` (index/read.zig), whose
        /// caller holds the key's stripe. `StaleView` when the chain leads past
        /// `regions.capacity` (the caller's mapping predates a remap the chain needed).
        pub fn chainAt(
            regions: anytype,
            newest: u32,
            used: u64,
            key: u64,
            seq: u64,
        ) error{StaleView}!?u32 {
            var slot = newest;
            var steps: u64 = 0;
            while (slot != layout.no_slot and slot < used and steps < used) : (steps += 1) {
                if (slot >= regions.capacity) return error.StaleView;
                const meta = regions.meta(slot);
                if (meta.key != key) break;
                if (Self.visible(meta, seq)) return slot;
                if (variant == .chain_without_walk) break;
                slot = meta.prev_slot;
            }
            return null;
        }

        /// The scan of `keys()`: writes up to `out.len` keys of slots below `bound` visible at
        /// `seq` (slot order) and returns how many were visible in all. `regions` has
        /// `meta(slot) *Meta`.
        pub fn collectKeys(regions: anytype, bound: u64, seq: u64, out: []u64) u64 {
            var n: u64 = 0;
            for (0..bound) |slot| {
                const meta = regions.meta(@intCast(slot));
                if (!Self.visible(meta, seq)) continue;
                if (n < out.len) out[n] = meta.key;
                n += 1;
            }
            return n;
        }
    };
}

pub const live_seq: u64 = std.math.maxInt(u64) - 1;

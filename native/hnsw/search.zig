//! The HNSW read path: greedy descent through the upper levels and the best-first search of one
//! level. Tombstones and nodes invisible to the reader's snapshot still route the search; they
//! are only kept out of the results.
const std = @import("std");
const assert = std.debug.assert;
const scratch_mod = @import("scratch.zig");
const Scratch = scratch_mod.Scratch;
const Candidate = scratch_mod.Candidate;
const view_mod = @import("view.zig");
const View = view_mod.View;
const Query = view_mod.Query;
const Production = @import("../sync/atomics.zig").Production;
const Slots = view_mod.Slots(Production, .correct);
const rabitq = @import("../kernels/rabitq.zig");
const i8k = @import("../kernels/i8.zig");
const codes = @import("codes.zig");

/// Moves greedily towards `query` on `level` until no neighbour is closer.
pub fn greedy(view: View, query: Query, start: Candidate, level: u32, scratch: *Scratch) Candidate {
    var best = start;
    // Each step strictly decreases the distance, so this ends; the bound is a backstop against
    // a corrupt graph with NaN distances.
    var steps: u32 = 0;
    while (steps < view.bound) : (steps += 1) {
        var moved = false;
        // As in `searchLayer`: prefetch every neighbour, then one batch-kernel call, so the
        // loads overlap (the same distances in the same order as one call each).
        const list = view.neighbours(best.slot, level, scratch.links);
        for (list) |slot| view.prefetchWalk(slot);
        const distances = scratch.distances[0..list.len];
        view.distancesTo(query, list, distances);
        for (list, distances) |slot, d| {
            if (d < best.distance) {
                best = .{ .distance = d, .slot = slot };
                moved = true;
            }
        }
        if (!moved) break;
    }
    return best;
}

pub const Filter = union(enum) {
    /// Construction: every node counts (tombstones are valid neighbours).
    none,
    /// Reads: only nodes visible at this sequence number enter the results.
    visible_at: u64,
    /// Filtered reads: only nodes visible at `seq` whose bit is set in `words` (a bitset over
    /// slots, from records/filter.zig) enter the results; every node still routes.
    /// `budget`: the distances the walk may compute before it stops and sets
    /// `scratch.over_budget` (the caller then scans the matches exactly instead).
    visible_matching: struct { seq: u64, words: []const u64, budget: u64 },
};

/// Best-first search of one level from `entry`; leaves at most `ef` results in
/// `scratch.results` (a max-heap by distance).
pub fn searchLayer(
    view: View,
    query: Query,
    entry: Candidate,
    ef: u32,
    level: u32,
    filter: Filter,
    scratch: *Scratch,
) !void {
    assert(ef > 0);
    const start = try begin(view, entry, filter, scratch);
    var lower_bound = start.lower_bound;
    const budget = start.budget;
    var computed: u64 = 0;

    while (scratch.candidates.count() > 0) {
        // Pop up to `beam_width` candidates that can still improve the results, and expand
        // them together: their lists' reads, then all their fresh neighbours' vectors, overlap
        // in memory instead of costing two dependent misses per expansion.
        var beam: [scratch_mod.beam_width]u32 = undefined;
        var popped: usize = 0;
        while (popped < beam.len) {
            const closest = scratch.candidates.peek() orelse break;
            if (closest.distance > lower_bound and scratch.results.count() >= ef) break;
            _ = scratch.candidates.remove();
            beam[popped] = closest.slot;
            popped += 1;
            if (level == 0) view.prefetchList(closest.slot);
        }
        if (popped == 0) break;
        // The next round's lists are most likely the new tops': ask for one now, so its
        // random read overlaps this round's distances (hnswlib does the same).
        if (level == 0) {
            if (scratch.candidates.peek()) |next| view.prefetchList(next.slot);
        }
        // First drop visited and out-of-bound ids and prefetch the rest, so the memory loads of
        // all the neighbours' vectors overlap instead of stalling one distance at a time. Each
        // list is copied just past the fresh ids so far and compacted in place. A node itself
        // is marked visited, so its own id (only a corrupt list holds it) drops too.
        var fresh: usize = 0;
        for (beam[0..popped]) |node| {
            for (view.neighboursUnchecked(node, level, scratch.links[fresh..])) |slot| {
                if (slot >= view.bound) continue;
                if (scratch.visited.testAndSet(slot)) continue;
                view.prefetchWalk(slot);
                if (readsMeta(filter)) prefetchMeta(view, slot);
                scratch.links[fresh] = slot;
                fresh += 1;
            }
        }
        computed += fresh;
        if (computed > budget) {
            scratch.over_budget = true;
            break;
        }
        const distances = scratch.distances[0..fresh];
        view.distancesTo(query, scratch.links[0..fresh], distances);
        for (scratch.links[0..fresh], distances) |slot, d| {
            const full = scratch.results.count() >= ef;
            if (full and !(d < lower_bound)) continue;
            try scratch.candidates.add(.{ .distance = d, .slot = slot });
            if (!accepts(view, filter, slot)) continue;
            const c = Candidate{ .distance = d, .slot = slot };
            if (full) scratch.results.replaceTop(c) else try scratch.results.add(c);
            lower_bound = scratch.results.peek().?.distance;
        }
    }
}

/// The start of a layer search: the scratch emptied, `entry` visited, a candidate and (if the
/// filter accepts it) a result; the results' worst distance and the filter's distance budget.
fn begin(
    view: View,
    entry: Candidate,
    filter: Filter,
    scratch: *Scratch,
) !struct { lower_bound: f32, budget: u64 } {
    try scratch.visited.reset(scratch.candidates.allocator, view.bound);
    scratch.candidates.items.len = 0;
    scratch.results.items.len = 0;
    _ = scratch.visited.testAndSet(entry.slot);
    try scratch.candidates.add(entry);
    if (accepts(view, filter, entry.slot)) try scratch.results.add(entry);
    scratch.over_budget = false;
    return .{
        .lower_bound = if (scratch.results.count() > 0) entry.distance else std.math.inf(f32),
        .budget = switch (filter) {
            .visible_matching => |m| m.budget,
            else => std.math.maxInt(u64),
        },
    };
}

/// How much of an edge estimate's error bound a rabitq walk subtracts before it compares the
/// estimate with the results' worst distance: larger costs more reads, smaller more recall.
pub const walk_bound_scale: f32 = 0.7;

/// `searchLayer` of level 0 under rabitq storage, on the edge codes inline in each record
/// (hnsw/codes.zig). Candidates are ranked by their estimate less `walk_bound_scale` of its
/// bound; a popped candidate gets its walk distance from its own record, the one its expansion
/// reads anyway, and enters the results as in `searchLayer`; only a candidate that can still
/// enter them is expanded. Its neighbours are scored in one scan of its edges, and only those
/// whose estimate could beat the results' worst become candidates: the others cost no read of
/// their records. `scratch.code_query` holds the rotated query less the rotated centre.
pub fn searchCodes(
    view: View,
    query: Query,
    entry: Candidate,
    ef: u32,
    filter: Filter,
    scratch: *Scratch,
) !void {
    assert(ef > 0);
    const l = view.regions.layout;
    assert(l.storage == .rabitq);
    const start = try begin(view, entry, filter, scratch);
    var lower_bound = start.lower_bound;
    const budget = start.budget;
    var computed: u64 = 0;
    var expanded_entry = false;
    const dims: f32 = @floatFromInt(view.regions.layout.walk_dims);
    const rounding = 2 * walk_bound_scale * scratch.code_terms.delta * @sqrt(dims / 12);

    while (scratch.candidates.count() > 0) {
        const closest = scratch.candidates.peek().?;
        if (closest.distance > lower_bound and scratch.results.count() >= ef) break;
        _ = scratch.candidates.remove();
        if (scratch.candidates.peek()) |next| view.prefetchRecord(next.slot);
        // The entry's key is its walk distance; every other key is an estimate's.
        var parent = closest.distance;
        if (expanded_entry) {
            parent = view.distanceTo(query, closest.slot);
            computed += 1;
            const full = scratch.results.count() >= ef;
            if (full and !(parent < lower_bound)) continue;
            if (accepts(view, filter, closest.slot)) {
                const c = Candidate{ .distance = parent, .slot = closest.slot };
                if (full) scratch.results.replaceTop(c) else try scratch.results.add(c);
                lower_bound = scratch.results.peek().?.distance;
            }
        }
        expanded_entry = true;
        const bound = walk_bound_scale * residualNorm(view, scratch, closest.slot, parent);
        const scan = Scan{
            .view = view,
            .slot = closest.slot,
            .scratch = scratch,
            .parent = parent,
            .bound = bound,
            .rounding = rounding,
        };
        const ids = view.neighboursWith(closest.slot, scratch.links, scan);
        for (ids, scratch.code_low[0..ids.len]) |slot, low| {
            if (slot >= view.bound or slot == closest.slot) continue;
            if (scratch.visited.isSet(slot)) continue;
            if (scratch.results.count() >= ef and !(low < lower_bound)) continue;
            scratch.visited.set(slot);
            if (readsMeta(filter)) prefetchMeta(view, slot);
            try scratch.candidates.add(.{ .distance = low, .slot = slot });
        }
        if (computed > budget) {
            scratch.over_budget = true;
            break;
        }
    }
}

/// |q - x_u| from u's walk distance `parent`, what an edge estimate's error scales with
/// (kernels/rabitq.zig): l2sq, the square root; cosine (unit vectors), of twice it; ip, from
/// |q|^2 and |x_u|^2 (stored in u's terms by index/write.zig `encodeWalk`).
inline fn residualNorm(view: View, scratch: *const Scratch, slot: u32, parent: f32) f32 {
    const squared = switch (view.metric) {
        .l2sq => parent,
        .cosine => 2 * parent,
        .ip => scratch.code_query_norm + codes.normOf(view.regions.walkI8(slot)) - 2 * (1 - parent),
    };
    return @sqrt(@max(0, squared));
}

/// Scores the edges of one record inside the seqlock's versioned section: the table sum of
/// every edge the list uses, and from it and the edge's factors (atomic loads: writers store
/// them under the node's lock) the lower end of its estimate, into `scratch.code_low`.
const Scan = struct {
    view: View,
    slot: u32,
    scratch: *Scratch,
    parent: f32,
    bound: f32,
    rounding: f32,

    pub fn copy(self: Scan, count: u32) void {
        const l = self.view.regions.layout;
        const words = self.view.regions.blocks(self.slot);
        const terms = self.scratch.code_terms;
        const block_words = l.block_bytes / 8;
        const table_words = l.walk_dims / 8 * 4;
        const blocks_used = std.math.divCeil(u32, count, rabitq.block_codes) catch unreachable;
        const lanes = 8;
        const V = @Vector(lanes, f32);
        for (0..blocks_used) |b| {
            const block = words[b * block_words ..][0..block_words];
            var sums: [rabitq.block_codes]u32 = undefined;
            const bytes: [*]const u8 = @ptrCast(block.ptr);
            self.view.scan(bytes, self.scratch.code_tables.ptr, l.walk_dims / 4, &sums);
            var fields: [3][rabitq.block_codes]f32 = undefined;
            for (&fields, 0..) |*field, f| {
                const half = rabitq.block_codes / 2;
                const at = block[table_words + f * half ..][0..half];
                for (at, 0..) |*word, w| {
                    const pair: [2]f32 = @bitCast(@atomicLoad(u64, word, .monotonic));
                    field[2 * w ..][0..2].* = pair;
                }
            }
            const low = self.scratch.code_low[b * rabitq.block_codes ..][0..rabitq.block_codes];
            inline for (0..rabitq.block_codes / lanes) |c| {
                const counts: @Vector(lanes, u32) = sums[c * lanes ..][0..lanes].*;
                const s: V = @floatFromInt(counts);
                const add: V = fields[0][c * lanes ..][0..lanes].*;
                const mul: V = fields[1][c * lanes ..][0..lanes].*;
                const err: V = fields[2][c * lanes ..][0..lanes].*;
                const e = rabitq.estimate(
                    V,
                    terms,
                    .{ .add = add, .mul = mul, .err = err },
                    s,
                    self.parent,
                    self.bound,
                    self.rounding,
                );
                low[c * lanes ..][0..lanes].* = e.low;
            }
        }
        // The seqlock then reads the version again: every edge load must come first.
        codes.loadBarrier();
    }
};

inline fn prefetchMeta(view: View, slot: u32) void {
    @prefetch(@as([*]const u8, @ptrCast(view.regions.meta(slot))), .{});
}

/// Whether `accepts` reads the slot's metadata: a snapshot's reads do; live reads test the
/// slot's live bit instead (graph.zig `NodeLocks.isLive`), which stays in cache.
inline fn readsMeta(filter: Filter) bool {
    return switch (filter) {
        .none => false,
        .visible_at => |seq| seq != view_mod.live_seq,
        .visible_matching => |m| m.seq != view_mod.live_seq,
    };
}

inline fn visibleAt(view: View, slot: u32, seq: u64) bool {
    if (seq == view_mod.live_seq) return Slots.visibleLive(view.node_locks, slot);
    return view_mod.visible(view.regions.meta(slot), seq);
}

inline fn accepts(view: View, filter: Filter, slot: u32) bool {
    return switch (filter) {
        .none => true,
        .visible_at => |seq| visibleAt(view, slot, seq),
        .visible_matching => |m| blk: {
            const word = slot / 64;
            if (word >= m.words.len) break :blk false;
            if (m.words[word] & (@as(u64, 1) << @intCast(slot % 64)) == 0) break :blk false;
            break :blk visibleAt(view, slot, m.seq);
        },
    };
}

/// Drains the results heap into `out`, closest first.
pub fn drainSorted(
    scratch: *Scratch,
    out: *std.ArrayListUnmanaged(Candidate),
    gpa: std.mem.Allocator,
) !void {
    out.clearRetainingCapacity();
    try out.ensureTotalCapacity(gpa, scratch.results.count());
    while (scratch.results.removeOrNull()) |c| out.appendAssumeCapacity(c);
    std.mem.reverse(Candidate, out.items);
}

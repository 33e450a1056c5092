//! The HNSW insert path: find neighbours level by level, link the new node, add back-links
//! (pruning a full list with the same heuristic), and promote the entry point last. Only one node
//! lock is held at a time; the new node's vector and metadata are written before any list can
//! name it, so readers that find it through a link always see its vector.
const std = @import("std");
const assert = std.debug.assert;
const scratch_mod = @import("scratch.zig");
const Scratch = scratch_mod.Scratch;
const Candidate = scratch_mod.Candidate;
const View = @import("view.zig").View;
const search = @import("search.zig");
const graph = @import("graph.zig");
const entry_mod = @import("entry.zig");
const sync = @import("../sync/atomics.zig");
const locks = @import("../sync/locks.zig");
const abi = @import("../abi.zig");
const layout = @import("../storage/layout.zig");
const Generation = @import("../storage/storage.zig").Generation;

pub const EntryPoint = entry_mod.EntryPoint(sync.Production);

const degree_limit_max = 2 * abi.m_max;

pub const Params = struct {
    m: u32,
    ef_construction: u32,
};

/// Links `slot` (whose metadata and vector are written) into every level up to `level`.
pub fn link(
    view_pinned: View,
    entry_point: *EntryPoint,
    params: Params,
    slot: u32,
    level: u32,
    scratch: *Scratch,
) !void {
    const view = view_pinned.widened();
    const query = view.regions.walk(slot);
    const entry = while (true) {
        if (entry_point.load()) |e| break e;
        // The first node becomes the entry point; if another thread won the race, link to it.
        if (entry_point.promote(.{ .slot = slot, .level = level })) return;
    };
    if (entry.slot >= view.bound) {
        // The entry point moved to a node newer than this view's mapping (a remap happened in
        // between): nothing is linked yet, so the caller retries with a fresh view.
        return error.StaleView;
    }
    var current = Candidate{ .distance = view.distanceTo(query, entry.slot), .slot = entry.slot };
    var lc = entry.level;
    while (lc > level) : (lc -= 1) current = search.greedy(view, query, current, lc, scratch);
    try linkLevels(view, params, slot, current, .{ .top = @min(level, entry.level) }, scratch);
    try promote(view, entry_point, params, .{ .slot = slot, .level = level }, entry, scratch);
}

const Levels = struct { top: u32, bottom: u32 = 0 };

/// Searches, selects and links `slot` on the levels `top` down to `bottom`, from `start`.
fn linkLevels(
    view: View,
    params: Params,
    slot: u32,
    start: Candidate,
    levels: Levels,
    scratch: *Scratch,
) !void {
    assert(levels.top >= levels.bottom);
    const query = view.regions.walk(slot);
    var current = start;
    var lc = levels.top;
    while (true) : (lc -= 1) {
        try search.searchLayer(view, query, current, params.ef_construction, lc, .none, scratch);
        try collect(scratch, slot);
        if (scratch.selection.items.len > 0) current = scratch.selection.items[0];
        try selectNeighbours(view, scratch, params.m, .duplicates);
        // The merges reuse the selection buffers, so keep the chosen ids on the stack.
        var chosen: [degree_limit_max]u32 = undefined;
        const n = scratch.chosen.items.len;
        for (scratch.chosen.items, 0..) |c, i| chosen[i] = c.slot;
        try mergeOwnList(view, slot, lc, chosen[0..n], scratch);
        // Level 0 is what every search ends on: there a backlink may not cost an old neighbour
        // its only path (see `Backlink`). Upper levels only route, and prune as HNSW does.
        const mode = Mode{ .protect = lc == 0 };
        var accepted: u32 = 0;
        for (chosen[0..n]) |neighbour| {
            if (try addBacklink(view, neighbour, slot, lc, mode, scratch)) {
                accepted += 1;
            }
        }
        if (n > 0 and accepted == 0) {
            // Every list refused the new node (full, and the heuristic preferred the old links,
            // or a link it would drop had no other path): the closest takes it anyway, so it
            // is never left without an in-link.
            const insist = Mode{ .protect = mode.protect, .insist = true };
            _ = try addBacklink(view, chosen[0], slot, lc, insist, scratch);
        }
        if (lc == levels.bottom) break;
    }
}

/// Makes the node the entry point if it is higher than the entry it was linked against. If a
/// higher node was promoted meanwhile, the levels that node added are linked first (from it),
/// so two high nodes racing promotion never leave their upper levels unlinked.
fn promote(
    view_pinned: View,
    entry_point: *EntryPoint,
    params: Params,
    node: entry_mod.Entry,
    linked_against: entry_mod.Entry,
    scratch: *Scratch,
) !void {
    var view = view_pinned;
    var newer: ?*Generation = null;
    defer if (newer) |generation| view.storage.?.unpin(generation);
    var seen = linked_against;
    var linked_top = @min(node.level, seen.level);
    // Each round sees a strictly higher entry, so at most `max_level` rounds.
    var rounds: u32 = 0;
    while (node.level > linked_top and rounds <= layout.max_level) : (rounds += 1) {
        if (entry_point.promoteFrom(seen, node)) return;
        const now = entry_point.load().?;
        assert(now.level > seen.level);
        if (now.slot >= view.bound) {
            // Promoted after a remap this view predates: link those levels through the newest
            // generation, which maps the new entry (left unlinked, the node's lists at those
            // levels stayed empty: seen as a graph-quality failure under load).
            const storage = view.storage.?;
            const generation = storage.pin();
            if (newer) |old| storage.unpin(old);
            newer = generation;
            view = view.over(generation.payload);
            // A promoted node is written before it is promoted, so the newest mapping holds it.
            assert(now.slot < view.bound);
        }
        const query = view.regions.walk(node.slot);
        const top = @min(node.level, now.level);
        var current = Candidate{ .distance = view.distanceTo(query, now.slot), .slot = now.slot };
        var lc = now.level;
        while (lc > top) : (lc -= 1) current = search.greedy(view, query, current, lc, scratch);
        try linkLevels(view, params, node.slot, current, .{
            .top = top,
            .bottom = linked_top + 1,
        }, scratch);
        linked_top = top;
        seen = now;
    }
}

/// Moves the search results into `selection`, closest first, without the node itself.
fn collect(scratch: *Scratch, self_slot: u32) !void {
    const gpa = scratch.candidates.allocator;
    scratch.selection.clearRetainingCapacity();
    try scratch.selection.ensureTotalCapacity(gpa, scratch.results.count());
    while (scratch.results.removeOrNull()) |c| {
        if (c.slot != self_slot) scratch.selection.appendAssumeCapacity(c);
    }
    std.mem.reverse(Candidate, scratch.selection.items);
}

/// What tops a selection up after the heuristic: exact duplicates of the base only (a new
/// node's own list), or every skipped candidate, closest first (a pruned list).
const Fill = enum { duplicates, all };

/// The HNSW heuristic (Malkov & Yashunin, algorithm 4): walk candidates closest first and keep
/// one only if it is closer to the base than to every neighbour already kept. An exact
/// duplicate of a kept neighbour is never kept by the heuristic, even when it is a duplicate of
/// the base too (there `d < distance` cannot hold, 0 < 0): keeping every copy would fill the
/// list with one point and cut the base off from the rest of the graph. The fill then adds
/// skipped candidates back into the room left. Reads `scratch.selection` (sorted ascending),
/// writes at most `max` into `scratch.chosen`.
fn selectNeighbours(view: View, scratch: *Scratch, max: u32, fill: Fill) !void {
    const gpa = scratch.candidates.allocator;
    scratch.chosen.clearRetainingCapacity();
    try scratch.chosen.ensureTotalCapacity(gpa, max);
    for (scratch.selection.items) |candidate| {
        if (scratch.chosen.items.len >= max) break;
        var good = true;
        for (scratch.chosen.items) |kept| {
            const d = view.distanceBetween(candidate.slot, kept.slot);
            if (d < candidate.distance or
                (d <= candidate.distance and view.sameWalk(candidate.slot, kept.slot)))
            {
                good = false;
                break;
            }
        }
        if (good) scratch.chosen.appendAssumeCapacity(candidate);
    }
    fillSkipped(view, scratch, max, fill);
}

/// Tops a selection back up with the closest candidates the heuristic skipped. Without this a
/// full list shrinks to its heuristic core on every overflow and nodes lose their last in-links
/// (measured: 4% of nodes unreachable on clustered data, 0.1% with the fill).
fn fillSkipped(view: View, scratch: *Scratch, max: u32, fill: Fill) void {
    _ = view;
    for (scratch.selection.items) |candidate| {
        if (scratch.chosen.items.len >= max) break;
        if (fill == .duplicates and candidate.distance > 0) break;
        var kept = false;
        for (scratch.chosen.items) |c| kept = kept or c.slot == candidate.slot;
        if (!kept) scratch.chosen.appendAssumeCapacity(candidate);
    }
}

/// Prunes `candidates` (ids, in no order) to at most `max` as seen from `base`, into `out`.
/// Ids beyond this view's mapping (nodes newer than a remap it predates) cannot be measured:
/// they are kept, never dropped for being unknown.
fn pruneInto(
    view: View,
    base: u32,
    candidates: []const u32,
    max: u32,
    scratch: *Scratch,
    out: []u32,
) []u32 {
    assert(scratch.selection.capacity >= candidates.len);
    assert(scratch.chosen.capacity >= max);
    scratch.selection.clearRetainingCapacity();
    var pinned: u32 = 0;
    for (candidates) |id| {
        if (id >= view.bound) {
            if (pinned < max) out[pinned] = id;
            pinned += 1;
            continue;
        }
        scratch.selection.appendAssumeCapacity(
            .{ .distance = view.distanceBetween(base, id), .slot = id },
        );
    }
    pinned = @min(pinned, max);
    // Stable: among equal distances the earlier candidate (the new link) comes first.
    std.mem.sort(Candidate, scratch.selection.items, {}, candidateLess);
    // The capacity is reserved, so selection cannot allocate here.
    selectNeighbours(view, scratch, max - pinned, .all) catch unreachable;
    for (scratch.chosen.items, pinned..) |c, i| out[i] = c.slot;
    return out[0 .. pinned + scratch.chosen.items.len];
}

fn contains(ids: []const u32, id: u32) bool {
    return std.mem.indexOfScalar(u32, ids, id) != null;
}

/// Reserves what a merge of `extra` more ids into a list of `degree_max` may use, so that the
/// merge itself never allocates (it may run under the node's lock).
fn reserve(scratch: *Scratch, degree_max: u32, extra: usize) !void {
    const gpa = scratch.candidates.allocator;
    try scratch.selection.ensureTotalCapacity(gpa, degree_max + extra);
    try scratch.chosen.ensureTotalCapacity(gpa, degree_max);
}

/// The merge of a new node's own selection into its list. The list is usually empty, but
/// another inserter may already have linked the node (it became reachable on a higher level):
/// those links are kept, not overwritten. At level 0 (`protect`) they are never pruned either:
/// such a link may be its node's only in-link, so the selection gives way to them instead.
const OwnList = struct {
    view: View,
    slot: u32,
    degree_max: u32,
    chosen: []const u32,
    scratch: *Scratch,
    protect: bool,

    pub fn merge(self: *OwnList, current: []const u32, out: []u32, locked: bool) ?[]u32 {
        _ = locked;
        var joined: [2 * degree_limit_max]u32 = undefined;
        var n: usize = 0;
        for (self.chosen) |id| {
            joined[n] = id;
            n += 1;
        }
        for (current) |id| {
            if (contains(self.chosen, id)) continue;
            joined[n] = id;
            n += 1;
        }
        if (n == current.len) return null;
        if (n <= self.degree_max) {
            @memcpy(out[0..n], joined[0..n]);
            return out[0..n];
        }
        if (self.protect) {
            // The current links first, then the closest of the selection that still fit.
            @memcpy(out[0..current.len], current);
            var kept = current.len;
            for (self.chosen) |id| {
                if (kept == self.degree_max) break;
                if (contains(current, id)) continue;
                out[kept] = id;
                kept += 1;
            }
            return out[0..kept];
        }
        return pruneInto(self.view, self.slot, joined[0..n], self.degree_max, self.scratch, out);
    }
};

fn mergeOwnList(view: View, slot: u32, level: u32, chosen: []const u32, scratch: *Scratch) !void {
    const words = view.list(slot, level).?;
    const degree_max = view.regions.layout.maxDegree(level);
    assert(chosen.len <= degree_max);
    try reserve(scratch, degree_max, chosen.len);
    var context = OwnList{
        .view = view,
        .slot = slot,
        .degree_max = degree_max,
        .chosen = chosen,
        .scratch = scratch,
        .protect = level == 0,
    };
    var current: [degree_limit_max]u32 = undefined;
    var out: [degree_limit_max]u32 = undefined;
    _ = view.node_locks.update(slot, words, degree_max, &context, .{
        .current = &current,
        .out = &out,
    }, view.counters, view.blocksAt(level));
}

/// How a full list takes a backlink. `protect`: only if the old neighbour it drops keeps a path
/// from the base, read under the dropped node's unlink stripe: a node the list keeps (the new
/// node included) links to it, or it moves into the new node's list. `insist`: the list takes
/// the new node even when the heuristic would not (in place of its last pick), so no new node
/// is left without an in-link.
const Mode = struct { protect: bool, insist: bool = false };

/// The merge of one backlink into a neighbour's list.
const Backlink = struct {
    view: View,
    base: u32,
    new: u32,
    level: u32,
    degree_max: u32,
    mode: Mode,
    scratch: *Scratch,
    accepted: bool = false,
    /// The unlink stripe held since a merge checked a drop's cover.
    stripe: ?*locks.Mutex = null,
    /// Merges run so far, and the one that took `stripe`.
    attempt: u32 = 0,
    stripe_attempt: u32 = 0,

    pub fn merge(self: *Backlink, current: []const u32, out: []u32, locked: bool) ?[]u32 {
        self.attempt += 1;
        self.accepted = contains(current, self.new);
        if (self.accepted) return null;
        if (current.len < self.degree_max) {
            @memcpy(out[0..current.len], current);
            out[current.len] = self.new;
            self.accepted = true;
            return out[0 .. current.len + 1];
        }
        var joined: [degree_limit_max + 1]u32 = undefined;
        joined[0] = self.new;
        @memcpy(joined[1 .. 1 + current.len], current);
        const next = pruneInto(
            self.view,
            self.base,
            joined[0 .. 1 + current.len],
            self.degree_max,
            self.scratch,
            out,
        );
        if (!contains(next, self.new)) {
            if (!self.mode.insist) return null;
            next[next.len - 1] = self.new;
        }
        if (self.mode.protect) {
            for (current) |old| {
                if (contains(next, old)) continue;
                // Reading other lists and moving the link wait on other nodes' versions:
                // never while this node's lock is held. The check holds the dropped node's
                // unlink stripe until the list is written (released by `addBacklink`): any
                // other drop of `old` then waits, and sees this list without it.
                if (!locked and self.holdStripe(old) and
                    (self.coveredByKept(next, old) or self.relocate(old))) continue;
                // Insisting, the link goes even without a cover (counted).
                if (!self.mode.insist) return null;
                _ = self.view.counters.uncovered_drops.fetchAdd(1, .monotonic);
            }
        }
        self.accepted = true;
        return next;
    }

    /// Takes `old`'s unlink stripe, giving up a stripe an earlier attempt took (no node lock is
    /// held here). False when this attempt already holds another stripe (a drop of two ids,
    /// only when insisting): the second drop is then treated as uncovered.
    fn holdStripe(self: *Backlink, old: u32) bool {
        const stripe = self.view.node_locks.unlinkStripe(old);
        if (self.stripe) |held| {
            if (held == stripe) return true;
            if (self.stripe_attempt == self.attempt) return false;
            held.unlock();
            self.stripe = null;
        }
        stripe.lock(&self.view.counters.lock_contention);
        self.stripe = stripe;
        self.stripe_attempt = self.attempt;
        return true;
    }

    fn releaseStripe(self: *Backlink) void {
        if (self.stripe) |held| held.unlock();
        self.stripe = null;
    }

    /// Whether a node the pruned list keeps (the new node included) links to `old`
    /// (base -> kept -> old), read now: under `old`'s stripe no other drop can take it away.
    fn coveredByKept(self: *Backlink, kept: []const u32, old: u32) bool {
        var ids: [degree_limit_max]u32 = undefined;
        for (kept) |relay| {
            if (relay >= self.view.bound) continue;
            if (contains(self.view.neighbours(relay, self.level, &ids), old)) return true;
        }
        return false;
    }

    /// Adds `old` to the new node's list if there is room (the new node is in the base's list
    /// once this merge is written, so base -> new -> old replaces base -> old).
    fn relocate(self: *Backlink, old: u32) bool {
        const words = self.view.list(self.new, self.level) orelse return false;
        var context = Append{ .id = old, .degree_max = self.degree_max };
        var current: [degree_limit_max]u32 = undefined;
        var out: [degree_limit_max]u32 = undefined;
        _ = self.view.node_locks.update(self.new, words, self.degree_max, &context, .{
            .current = &current,
            .out = &out,
        }, self.view.counters, self.view.blocksAt(self.level));
        return context.placed;
    }
};

/// The merge that appends one id if there is room.
const Append = struct {
    id: u32,
    degree_max: u32,
    placed: bool = false,

    pub fn merge(self: *Append, current: []const u32, out: []u32, locked: bool) ?[]u32 {
        _ = locked;
        self.placed = contains(current, self.id);
        if (self.placed or current.len >= self.degree_max) return null;
        @memcpy(out[0..current.len], current);
        out[current.len] = self.id;
        self.placed = true;
        return out[0 .. current.len + 1];
    }
};

/// Adds `new` to `neighbour`'s list at `level`, pruning with the heuristic when it is full.
/// The pruning runs outside the node's lock and is written only if the list did not change
/// meanwhile (graph.zig `Protocol.update`). Returns whether the list holds `new` afterwards.
fn addBacklink(
    view_pinned: View,
    neighbour: u32,
    new: u32,
    level: u32,
    mode: Mode,
    scratch: *Scratch,
) !bool {
    var view = view_pinned;
    var newer: ?*Generation = null;
    defer if (newer) |generation| view.storage.?.unpin(generation);
    const words = switch (view.locate(neighbour, level)) {
        .words => |words| words,
        .corrupt => {
            _ = view.counters.corruption_detected.fetchAdd(1, .monotonic);
            return false;
        },
        .stale => stale: {
            // The neighbour's upper records are in an arena grown after this view was pinned:
            // link through the newest generation rather than lose the link.
            const generation = view.storage.?.pin();
            newer = generation;
            view = view.over(generation.payload);
            break :stale view.list(neighbour, level) orelse return false;
        },
    };
    const degree_max = view.regions.layout.maxDegree(level);
    try reserve(scratch, degree_max, 1);
    var context = Backlink{
        .view = view,
        .base = neighbour,
        .new = new,
        .level = level,
        .degree_max = degree_max,
        .mode = mode,
        .scratch = scratch,
    };
    var current: [degree_limit_max]u32 = undefined;
    var out: [degree_limit_max]u32 = undefined;
    defer context.releaseStripe();
    _ = view.node_locks.update(neighbour, words, degree_max, &context, .{
        .current = &current,
        .out = &out,
    }, view.counters, view.blocksAt(level));
    return context.accepted;
}

fn candidateLess(_: void, a: Candidate, b: Candidate) bool {
    return a.distance < b.distance;
}

/// A node's level from its key and the index seed: reproducible whatever the thread interleaving.
pub fn levelFor(seed: u64, key: u64, m: u32) u32 {
    var mixer = std.Random.SplitMix64.init(std.hash.Wyhash.hash(seed, std.mem.asBytes(&key)));
    const bits = mixer.next();
    // A uniform in (0, 1]: never 0, so the log is finite.
    const uniform = (@as(f64, @floatFromInt(bits >> 11)) + 1.0) / 9007199254740992.0;
    const mult = 1.0 / @log(@as(f64, @floatFromInt(m)));
    const level = @floor(-@log(uniform) * mult);
    return @intFromFloat(
        @min(level, @as(f64, @floatFromInt(layout.max_level))),
    );
}

test "levelFor: geometric with ratio about 1/m and reproducible" {
    var counts = [_]u32{0} ** 8;
    for (0..100_000) |key| {
        const level = levelFor(7, key, 16);
        try std.testing.expectEqual(level, levelFor(7, key, 16));
        counts[@min(level, 7)] += 1;
    }
    // P(level >= 1) = 1/16: about 6250 of 100000.
    const upper = 100_000 - counts[0];
    try std.testing.expect(upper > 5500 and upper < 7000);
    try std.testing.expect(counts[1] > counts[2] * 8);
}

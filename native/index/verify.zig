//! The integrity walk. It holds the writers lock exclusively (reads go on) so the graph it walks
//! is quiescent, and checks every rule the rest of the code relies on: ids in range, no
//! self-links, no duplicate neighbours, degree limits, level consistency, finite vectors, live
//! exact vectors that match their slot's check, walk copies (f16, i8 codes) that match their
//! exact vector, and that every live node is reachable from the entry point; and every record
//! payload (records/store.zig): it parses against the schema, a string id hashes to its slot's
//! key, and the fields index agrees with it.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");
const layout = @import("../storage/layout.zig");
const Index = @import("index.zig").Index;
const view_mod = @import("../hnsw/view.zig");
const graph = @import("../hnsw/graph.zig");
const quantize = @import("../kernels/quantize.zig");
const rabitq = @import("../kernels/rabitq.zig");
const codes = @import("../hnsw/codes.zig");
const write = @import("write.zig");
const payload = @import("../records/payload.zig");

pub fn verify(self: *Index) !abi.VerifyReport {
    self.writers.lock(&self.counters.lock_contention);
    defer self.writers.unlock();
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const used: u32 = @intCast(@min(self.slots_used.load(.acquire), regions.capacity));
    var report = std.mem.zeroes(abi.VerifyReport);
    report.max_level = self.maxLevel();

    const seen = try self.gpa.alloc(u32, self.layout.m0);
    defer self.gpa.free(seen);
    const coded = try walkBuffer(self);
    defer coded.deinit(self.gpa);
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        const meta = regions.meta(slot);
        if (meta.state == @intFromEnum(layout.SlotState.empty)) continue;
        report.nodes += 1;
        if (view_mod.visible(meta, view_mod.live_seq)) report.live += 1 else report.tombstones += 1;
        // A slot still `inserting` was interrupted by a crash before publication: it never was
        // the entry point recovery chose, so its levels may rise above the top (they are only
        // unreachable routing). A ready slot above the top level is a real mismatch.
        const published = meta.state == @intFromEnum(layout.SlotState.ready);
        if (meta.level > report.max_level and published) report.level_mismatches += 1;
        if (@as(u64, meta.upper_offset) + meta.level > self.upper_used.load(.acquire)) {
            report.level_mismatches += 1;
            continue;
        }
        for (regions.vector(slot)) |x| {
            if (!std.math.isFinite(x)) {
                report.vector_mismatches += 1;
                break;
            }
        }
        // A live slot holds the vector it was written with: a dirty open drops any that a
        // power loss left without it, as a routing tombstone whose walk copy may still be
        // the vector that was lost (so it is not held against the exact one).
        const intact = meta.vectorMatches(regions.vector(slot));
        const live = view_mod.visible(meta, view_mod.live_seq);
        if (live and !intact) report.vector_mismatches += 1;
        // A slot still `inserting` (an add a crash interrupted; never visible) may hold its
        // exact vector without its walk copy yet.
        if (published and intact and !walkCopyMatches(self, regions, slot, coded)) {
            report.vector_mismatches += 1;
        }
        var level: u32 = 0;
        while (level <= meta.level) : (level += 1) checkList(
            self,
            regions,
            slot,
            level,
            used,
            seen,
            &report,
        );
    }
    report.unreachable_live = try countUnreachable(self, regions, used);
    report.record_mismatches = checkRecords(self, regions, used);
    // The writers lock excludes publish and remove: every bit matches its slot, and no bit is
    // set past the slots in use.
    for (0..regions.capacity) |i| {
        const slot: u32 = @intCast(i);
        const want = slot < used and view_mod.visible(regions.meta(slot), view_mod.live_seq);
        if (self.node_locks.isLive(slot) != want) report.live_bit_mismatches += 1;
    }
    // A live node no search can reach is as lost as a corrupt one: insert never drops a
    // level-0 link without another path to its node (hnsw/insert.zig), so `ok` counts them.
    const bad = report.out_of_range_links + report.self_links +
        report.duplicate_links + report.over_degree + report.level_mismatches +
        report.vector_mismatches + report.unreachable_live + report.record_mismatches +
        report.live_bit_mismatches + report.code_mismatches;
    if (report.live != self.size()) report.level_mismatches += 1;
    report.ok = @intFromBool(bad == 0 and report.live == self.size());
    if (report.ok == 0) _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
    return report;
}

/// Payloads that do not parse, whose string id does not hash to the slot's key, or that sit on
/// slots past `slots_used`.
fn checkRecords(self: *Index, regions: layout.Regions, used: u32) u64 {
    const store = self.records;
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    var bad: u64 = 0;
    var with_payload: u64 = 0;
    for (store.heads.items, 0..) |head, i| {
        const version = head orelse continue;
        with_payload += 1;
        const slot: u32 = @intCast(i);
        if (slot >= used) {
            bad += 1;
            continue;
        }
        const parsed = payload.parse(version.bytes, &store.schema) catch {
            bad += 1;
            continue;
        };
        if (parsed.id.len > 0 and payload.keyOfId(parsed.id) != regions.meta(slot).key) bad += 1;
    }
    if (with_payload != store.records) bad += 1;
    return bad;
}

/// The buffer `walkCopyMatches` encodes into: room for every code byte the record reserves
/// (aligned records: to 64 bytes, past the granules `encode` writes), zeroed as a record's
/// padding is. Both callers (verify, open's repair) take it from here.
pub fn walkBuffer(self: *Index) error{OutOfMemory}!quantize.Coded {
    const buffer = try self.gpa.alignedAlloc(u8, 64, 64 + @as(usize, self.layout.walk_bytes));
    @memset(buffer, 0);
    return .{ .buffer = buffer };
}

/// Whether the copy the walk reads is what writing the exact vector would have produced: the
/// f16 rounding, or the i8 codes and terms (encoding is deterministic, so bit for bit).
pub fn walkCopyMatches(
    self: *Index,
    regions: layout.Regions,
    slot: u32,
    coded: quantize.Coded,
) bool {
    const exact = regions.vector(slot);
    switch (self.layout.storage) {
        .f32 => return true,
        .f16 => {
            for (regions.walkF16(slot), exact) |h, x| {
                const want: f16 = @floatCast(x);
                if (@as(u16, @bitCast(h)) != @as(u16, @bitCast(want))) return false;
            }
            return true;
        },
        .i8, .rabitq => {
            write.encodeWalk(self, regions, exact, coded.codes());
            // The terms and every code byte the record reserves (aligned records' padding too:
            // older libraries read it).
            const bytes = layout.i8_terms_bytes + self.layout.walk_bytes;
            assert(coded.buffer.len >= 64 + @as(usize, self.layout.walk_bytes));
            const want = (coded.codes() - layout.i8_terms_bytes)[0..bytes];
            const got = (regions.walkI8(slot) - layout.i8_terms_bytes)[0..bytes];
            return std.mem.eql(u8, want, got);
        },
    }
}

fn checkList(
    self: *Index,
    regions: layout.Regions,
    slot: u32,
    level: u32,
    used: u32,
    seen: []u32,
    report: *abi.VerifyReport,
) void {
    const words = regions.list(slot, level, regions.meta(slot).upper_offset);
    const degree_max = self.layout.maxDegree(level);
    const count = graph.countOf(words);
    if (count > degree_max) {
        report.over_degree += 1;
        return;
    }
    for (words[1 .. 1 + count], 0..) |id, i| {
        seen[i] = id;
        if (id >= used) {
            report.out_of_range_links += 1;
            continue;
        }
        if (id == slot) report.self_links += 1;
        if (std.mem.indexOfScalar(u32, seen[0..i], id) != null) report.duplicate_links += 1;
        if (regions.meta(id).level < level) report.level_mismatches += 1;
    }
    if (level == 0 and self.layout.storage == .rabitq) {
        const writer = codes.Writer.of(regions, self.metric);
        if (!codes.blocksMatch(writer, slot, seen[0..count])) report.code_mismatches += 1;
    }
}

/// Live nodes not reachable from the entry point over the links of every level.
fn countUnreachable(self: *Index, regions: layout.Regions, used: u32) !u64 {
    const entry = self.entry.load() orelse return self.size();
    if (entry.slot >= used) return self.size();
    const reached = try reachedFrom(self, regions, used);
    defer self.gpa.free(reached);
    var missing: u64 = 0;
    for (0..used) |i| {
        if (!reached[i] and view_mod.visible(
            regions.meta(@intCast(i)),
            view_mod.live_seq,
        )) missing += 1;
    }
    return missing;
}

/// Which of the first `used` slots some link of some level reaches from the entry point (all
/// false without one). The caller frees the slice.
pub fn reachedFrom(self: *Index, regions: layout.Regions, used: u32) ![]bool {
    const reached = try self.gpa.alloc(bool, used);
    errdefer self.gpa.free(reached);
    @memset(reached, false);
    const entry = self.entry.load() orelse return reached;
    if (entry.slot >= used) return reached;
    var stack = std.ArrayListUnmanaged(u32){};
    defer stack.deinit(self.gpa);
    try stack.append(self.gpa, entry.slot);
    reached[entry.slot] = true;
    while (stack.pop()) |slot| {
        const meta = regions.meta(slot);
        if (@as(u64, meta.upper_offset) + meta.level > regions.upper_capacity) continue;
        var level: u32 = 0;
        while (level <= meta.level) : (level += 1) {
            const words = regions.list(slot, level, meta.upper_offset);
            const count = @min(graph.countOf(words), self.layout.maxDegree(level));
            for (words[1 .. 1 + count]) |id| {
                if (id >= used or reached[id]) continue;
                reached[id] = true;
                try stack.append(self.gpa, id);
            }
        }
    }
    return reached;
}

//! The index's records (docs/records.md): the schema, metadata updates, reads of payloads, and
//! filtered search, count and delete. The payloads themselves live in records/store.zig; adds
//! with a payload go through write.zig's insert path like every add.
//!
//! A filter compiles to a bitset of matching slots under the records lock (shared), which is
//! then released: the walk reads only its private bitset. Few matches are scanned exactly
//! instead of walked (`scanLimit`), and a walk that finds fewer than k matches while more exist
//! falls back to the scan, so a search returns k results whenever k visible records match.
const std = @import("std");
const assert = std.debug.assert;
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const write = @import("write.zig");
const read = @import("read.zig");
const view_mod = @import("../hnsw/view.zig");
const distance = @import("../kernels/distance.zig");
const locks = @import("../sync/locks.zig");
const parallel = @import("../sync/pool.zig");
const filter = @import("../records/filter.zig");
const Bitset = @import("../records/bitset.zig").Bitset;
const payload = @import("../records/payload.zig");

/// Sets the schema of an index without records; the same schema again is accepted at any time.
pub fn setSchema(self: *Index, bytes: []const u8) Error!void {
    if (!self.writable) return error.ReadOnly;
    self.writers.lock(&self.counters.lock_contention);
    defer self.writers.unlock();
    const store = self.records;
    store.lock.lock(&self.counters.lock_contention);
    defer store.lock.unlock();
    if (std.mem.eql(u8, store.schema.bytes, bytes)) return;
    if (self.slots_used.load(.acquire) > 0 or store.records > 0) return error.Busy;
    store.setSchema(bytes) catch |err| return switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        error.InvalidArgument => error.InvalidArgument,
    };
    store.writeSchemaEntry() catch |err| return index_mod.mapRecordsError(err);
}

/// Copies the schema's encoding into `out`; returns its length (`BufferTooSmall` if it does not
/// fit, with the length still returned through `needed`).
pub fn schema(self: *Index, out: []u8, needed: *u32) Error!void {
    const store = self.records;
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    const bytes = store.schema.bytes;
    needed.* = @intCast(bytes.len);
    if (out.len < bytes.len) return error.BufferTooSmall;
    @memcpy(out[0..bytes.len], bytes);
}

/// Replaces the payload (metadata) of the live record `key` without touching its vector. The
/// record's id must be the payload's id, else `NotFound`. Snapshots keep the old payload.
pub fn update(self: *Index, key: u64, record: []const u8) Error!void {
    if (!self.writable) return error.ReadOnly;
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    try updateLocked(self, key, record, true);
}

pub fn updateLocked(self: *Index, key: u64, record: []const u8, log: bool) Error!void {
    assert(locks.holds(.writers) or self.replaying);
    if (record.len == 0) return error.InvalidMetadata;
    const store = self.records;
    const prepared = store.prepare(record) catch |err| return index_mod.mapRecordsError(err);
    var attached = false;
    defer if (!attached) store.cancel(prepared);
    const id = payload.idOf(prepared.version.bytes);
    const stripe = self.keys.stripeOf(key);
    stripe.mutex.lock(&self.counters.lock_contention);
    defer stripe.mutex.unlock();
    const slot = stripe.map.get(key) orelse return error.NotFound;
    {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        if (!view_mod.visible(generation.payload.meta(slot), view_mod.live_seq)) {
            return error.NotFound;
        }
    }
    // Replay: see addLocked (the log was checked when it was written).
    if (!self.replaying and !write.sameId(self, slot, id)) return error.NotFound;
    store.reserveSlot(slot) catch |err| return index_mod.mapRecordsError(err);
    if (log) {
        if (self.wal) |*wal| {
            try wal.append(.set_record, key, &.{}, record, &self.counters.lock_contention);
        }
    }
    // Logged: nothing below fails.
    attached = true;
    store.lock.lock(&self.counters.lock_contention);
    defer store.lock.unlock();
    self.commit.lock(&self.counters.lock_contention);
    defer self.commit.unlock();
    const seq = self.seq.load(.monotonic) + 1;
    assert(seq < view_mod.live_seq);
    store.pushLocked(slot, prepared, seq, self.snapshots.oldestSeq() orelse seq);
    self.seq.store(seq, .release);
}

/// Writes, for each key, `u32 length` and the payload a read at `seq` sees (0xFFFFFFFF: no
/// record visible; 0: a record without payload). `BufferTooSmall` if `out` is too short;
/// `needed` is then the length required.
pub fn readPayloads(self: *Index, seq: u64, keys: []const u64, out: []u8, needed: *u64) Error!void {
    // Slots first (the key stripes rank below the records lock), then their payloads.
    const slots = self.gpa.alloc(?u32, keys.len) catch return error.OutOfMemory;
    defer self.gpa.free(slots);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    for (keys, slots) |key, *slot| slot.* = try slotVisible(self, generation, key, seq);
    const store = self.records;
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    var total: u64 = 0;
    for (slots) |slot| {
        total += 4;
        if (slot) |s| {
            if (store.at(s, seq)) |version| total += version.bytes.len;
        }
    }
    needed.* = total;
    if (out.len < total) return error.BufferTooSmall;
    var at: usize = 0;
    for (slots) |slot| {
        const bytes: ?[]const u8 = if (slot) |s|
            (if (store.at(s, seq)) |version| version.bytes else "")
        else
            null;
        const length: u32 = if (bytes) |b| @intCast(b.len) else std.math.maxInt(u32);
        std.mem.writeInt(u32, out[at..][0..4], length, .little);
        at += 4;
        if (bytes) |b| {
            @memcpy(out[at..][0..b.len], b);
            at += b.len;
        }
    }
    assert(at == total);
}

fn slotVisible(self: *Index, generation: anytype, key: u64, seq: u64) Error!?u32 {
    // The generation is pinned by the caller; a chain past it (a newer remap) is read on the
    // current mapping, which holds every allocated slot.
    return read.slotAt(self, generation.payload, key, seq) catch {
        const current = self.storage.pin();
        defer self.storage.unpin(current);
        return read.slotAt(self, current.payload, key, seq) catch error.Internal;
    };
}

/// A compiled filter and the bitset of the slots it matches at one sequence number.
const Matched = struct {
    bits: Bitset,
    /// Set bits: matching slots, visible or not at the read's sequence number.
    count: u64,

    fn deinit(self: *Matched, gpa: std.mem.Allocator) void {
        self.bits.deinit(gpa);
    }
};

/// Compiles `program_bytes` and computes the slots it matches at `seq`.
fn match(self: *Index, program_bytes: []const u8, seq: u64) Error!Matched {
    const store = self.records;
    var program = blk: {
        store.lock.lockShared(&self.counters.lock_contention);
        defer store.lock.unlockShared();
        break :blk filter.Program.parse(self.gpa, program_bytes, &store.schema) catch |err|
            return switch (err) {
                error.OutOfMemory => error.OutOfMemory,
                error.InvalidFilter => error.InvalidFilter,
            };
    };
    defer program.deinit(self.gpa);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    for (program.allows) |*allow| {
        for (allow.keys) |key| {
            const slot = try slotVisible(self, generation, key, seq) orelse continue;
            allow.slots.append(self.gpa, slot) catch return error.OutOfMemory;
        }
    }
    const used: u32 = @intCast(@min(
        self.slots_used.load(.acquire),
        generation.payload.capacity,
    ));
    var bits = Bitset{};
    errdefer bits.deinit(self.gpa);
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    // Rebuilt only after an update ran out of memory (rare): the common case stays shared.
    var attempts: u32 = 0;
    while (!store.fields_valid) : (attempts += 1) {
        if (attempts == 2) return error.OutOfMemory;
        store.lock.unlockShared();
        defer store.lock.lockShared(&self.counters.lock_contention);
        try ensureFields(self);
    }
    store.matchLocked(
        &program,
        used,
        seq,
        index_mod.SlotKeys{ .regions = generation.payload },
        &bits,
    ) catch return error.OutOfMemory;
    return .{ .bits = bits, .count = bits.count() };
}

/// Rebuilds the field indexes if an update could not apply to them for lack of memory.
fn ensureFields(self: *Index) Error!void {
    const store = self.records;
    store.lock.lock(&self.counters.lock_contention);
    defer store.lock.unlock();
    if (store.fields_valid) return;
    store.rebuildFields() catch return error.OutOfMemory;
}

/// Matching records above this are walked, at or below it scanned exactly. A walk admits a
/// fraction s = matches/n of what it visits, so reaching `ef` matches costs about ef/s distances;
/// a scan costs `matches`. They cross near matches^2 = c * ef * n: bench/filter.ts measured
/// c = 11 to 16 on uncorrelated filters at 15,000 to 60,000 vectors (BENCHMARKS.md, "Walk
/// against scan"). Filters correlated with the query's region favour the scan further.
pub fn scanLimit(slots: u64, ef: u32, k: u32) u64 {
    const c: u64 = 12;
    const cross = std.math.sqrt(c * @as(u64, ef) * slots);
    return @max(cross, 2 * @as(u64, k));
}

/// The distances a filtered walk may compute before the exact scan of the matches is the cheaper
/// way: the scan costs `matches` distances (in slot order), a walk's distances are random reads,
/// so a walk past about `matches` of them has lost and gives up; the search then costs at most
/// about two scans. bench/filter.ts found class filters (correlated with the vectors) walking
/// 3.4 to 13.6x slower than the scan, which no count-based rule can foresee.
pub fn walkBudget(matches: u64, ef: u32) u64 {
    return matches + 8 * @as(u64, ef);
}

/// Filtered search: the k nearest records visible at `seq` that `program_bytes` matches.
pub fn search(
    self: *Index,
    query: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    ranking: read.Ranking,
    program_bytes: []const u8,
    out: read.Results,
) Error!u32 {
    var matched = try match(self, program_bytes, seq);
    defer matched.deinit(self.gpa);
    return searchMatched(self, query, k, ef, seq, ranking, &matched, out);
}

/// Filtered search of many queries (`dimensions` floats each) against one filter, on up to
/// `threads` threads: the filter is compiled and its bitset computed once for the batch, and the
/// searches share it (read-only). `counts[i]` receives query i's result count.
pub fn searchBatch(
    self: *Index,
    queries: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    ranking: read.Ranking,
    program_bytes: []const u8,
    threads: u32,
    keys: []u64,
    distances: []f32,
    counts: []u32,
) Error!void {
    const d = self.layout.dimensions;
    assert(queries.len == counts.len * d);
    assert(keys.len == counts.len * k and distances.len == keys.len);
    var matched = try match(self, program_bytes, seq);
    defer matched.deinit(self.gpa);
    const Job = struct {
        index: *Index,
        queries: []const f32,
        k: u32,
        ef: u32,
        seq: u64,
        ranking: read.Ranking,
        matched: *const Matched,
        keys: []u64,
        distances: []f32,
        counts: []u32,

        fn run(job: *const @This(), i: usize) Error!void {
            const dims = job.index.layout.dimensions;
            job.counts[i] = try searchMatched(
                job.index,
                job.queries[i * dims ..][0..dims],
                job.k,
                job.ef,
                job.seq,
                job.ranking,
                job.matched,
                .{
                    .keys = job.keys[i * job.k ..][0..job.k],
                    .distances = job.distances[i * job.k ..][0..job.k],
                },
            );
        }
    };
    const job = Job{
        .index = self,
        .queries = queries,
        .k = k,
        .ef = ef,
        .seq = seq,
        .ranking = ranking,
        .matched = &matched,
        .keys = keys,
        .distances = distances,
        .counts = counts,
    };
    try parallel.forEach(Error, threads, counts.len, &job, Job.run);
}

/// One filtered search over the matches computed for it: the walk when enough match, else (or
/// when the walk falls short or over budget) the exact scan.
fn searchMatched(
    self: *Index,
    query: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    ranking: read.Ranking,
    matched: *const Matched,
    out: read.Results,
) Error!u32 {
    if (matched.count == 0) return 0;
    const slots = self.slots_used.load(.acquire);
    if (matched.count > scanLimit(slots, ef, k)) {
        var over_budget = false;
        const found = try read.searchOneWith(self, query, k, ef, seq, ranking, .{
            .words = matched.bits.words.items,
            .budget = walkBudget(matched.count, ef),
            .over_budget = &over_budget,
        }, out);
        if (!over_budget and found == k) return found;
        // Fewer than k: the walk may have run out of matches it could reach. Over budget: the
        // matches lie away from the query's region (a filter correlated with the vectors), where
        // a walk pays far more than a count predicts.
    }
    return scan(self, query, k, seq, &matched.bits, out);
}

/// The exact k nearest of the visible slots set in `bits`, closest first.
fn scan(
    self: *Index,
    query: []const f32,
    k: u32,
    seq: u64,
    bits: *const Bitset,
    out: read.Results,
) Error!u32 {
    const q = self.gpa.dupe(f32, query) catch return error.OutOfMemory;
    defer self.gpa.free(q);
    if (self.metric == .cosine) _ = distance.normalize(q);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const view = self.view(generation);
    const regions = generation.payload;
    const best_d = self.gpa.alloc(f32, k) catch return error.OutOfMemory;
    defer self.gpa.free(best_d);
    const best_s = self.gpa.alloc(u32, k) catch return error.OutOfMemory;
    defer self.gpa.free(best_s);
    var n: u32 = 0;
    var it = bits.iterator();
    while (it.next()) |slot| {
        if (slot >= view.bound) break;
        if (!view_mod.visible(regions.meta(slot), seq)) continue;
        const d = view.exactDistance(q, slot);
        if (n == k and !(d < best_d[k - 1])) continue;
        // Insertion into the sorted top k.
        var i: u32 = if (n < k) n else k - 1;
        while (i > 0 and best_d[i - 1] > d) : (i -= 1) {
            best_d[i] = best_d[i - 1];
            best_s[i] = best_s[i - 1];
        }
        best_d[i] = d;
        best_s[i] = slot;
        if (n < k) n += 1;
    }
    for (0..n) |i| {
        out.keys[i] = regions.meta(best_s[i]).key;
        out.distances[i] = best_d[i];
    }
    return n;
}

/// How many records visible at `seq` match.
pub fn count(self: *Index, seq: u64, program_bytes: []const u8) Error!u64 {
    var matched = try match(self, program_bytes, seq);
    defer matched.deinit(self.gpa);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    var visible: u64 = 0;
    var it = matched.bits.iterator();
    while (it.next()) |slot| {
        if (slot >= regions.capacity) break;
        if (view_mod.visible(regions.meta(slot), seq)) visible += 1;
    }
    return visible;
}

/// Removes every live record that matches; returns how many. Each removal is logged and applied
/// like `remove`; records added while it runs may or may not be removed.
pub fn removeMatching(self: *Index, program_bytes: []const u8) Error!u64 {
    if (!self.writable) return error.ReadOnly;
    var matched = try match(self, program_bytes, view_mod.live_seq);
    defer matched.deinit(self.gpa);
    var keys = std.ArrayListUnmanaged(u64){};
    defer keys.deinit(self.gpa);
    {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const regions = generation.payload;
        var it = matched.bits.iterator();
        while (it.next()) |slot| {
            if (slot >= regions.capacity) break;
            const meta = regions.meta(slot);
            if (!view_mod.visible(meta, view_mod.live_seq)) continue;
            keys.append(self.gpa, meta.key) catch return error.OutOfMemory;
        }
    }
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    var removed: u64 = 0;
    for (keys.items) |key| {
        const id = idOfKey(self, key) orelse continue;
        defer self.gpa.free(id);
        if (try write.removeLocked(self, key, id, true)) removed += 1;
    }
    return removed;
}

/// A copy of the id of `key`'s live record, or null if it has none.
fn idOfKey(self: *Index, key: u64) ?[]u8 {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const slot = (read.slotAt(self, generation.payload, key, view_mod.live_seq) catch
        return null) orelse return null;
    const store = self.records;
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    const id = if (store.at(slot, view_mod.live_seq)) |v| payload.idOf(v.bytes) else "";
    return self.gpa.dupe(u8, id) catch null;
}

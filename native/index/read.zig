//! The read path: k-nearest-neighbour search (one query or a batch on native threads), get, has,
//! snapshots and zero-copy guards. Reads take no lock on the graph: they pin a generation of the
//! mappings and read neighbour lists through the per-node seqlocks.
const std = @import("std");
const assert = std.debug.assert;
const layout = @import("../storage/layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const search = @import("../hnsw/search.zig");
const view_mod = @import("../hnsw/view.zig");
const distance = @import("../kernels/distance.zig");
const parallel = @import("../sync/pool.zig");
const tables = @import("tables.zig");
const Candidate = @import("../hnsw/scratch.zig").Candidate;
const quantize = @import("../kernels/quantize.zig");
const storage_mod = @import("../storage/storage.zig");
const abi = @import("../abi.zig");
const scratch_mod = @import("../hnsw/scratch.zig");
const sync = @import("../sync/atomics.zig");
const rabitq = @import("../kernels/rabitq.zig");

/// The sequence number a read sees: the live view, or a snapshot's.
pub fn readSeq(self: *Index, snapshot: u64) Error!u64 {
    if (snapshot == 0) return view_mod.live_seq;
    const snap = self.snapshots.table.get(snapshot) orelse return error.InvalidArgument;
    return snap.seq;
}

pub const Results = struct {
    keys: []u64,
    distances: []f32,
};

/// A filtered walk's slots (a bitset over slots, records/filter.zig) and the distances it may
/// compute before giving up (`over_budget` then says so).
pub const Matching = struct {
    words: []const u64,
    budget: u64,
    over_budget: *bool,
};

/// Searches for the `k` nearest visible neighbours of `query` with beam width `ef` (>= k).
/// Writes them closest first and returns how many it found.
pub fn searchOne(
    self: *Index,
    query: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    out: Results,
) Error!u32 {
    return searchOneWith(self, query, k, ef, seq, .exact, null, out);
}

/// Under f16 and i8 storage, whether the best candidates are reranked on the exact f32 vectors
/// (`exact`: exact distances, and reads of the `.vectors` file) or ranked by the walk's own
/// distances (`walk`: no f32 vector is read; distances are the quantized approximations).
pub const Ranking = enum { exact, walk };

pub fn searchOneWith(
    self: *Index,
    query: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    ranking: Ranking,
    /// Only set slots are results (index/records.zig). Null: every slot.
    matching: ?Matching,
    out: Results,
) Error!u32 {
    assert(out.keys.len >= k);
    assert(out.distances.len >= k);
    // The entry point first: it was promoted after its node's storage existed, so the mapping
    // pinned next is at least as new and covers it.
    const entry = self.entry.load() orelse return 0;
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const view = self.view(generation);
    const scratch = self.pool.take(&self.counters) catch return error.OutOfMemory;
    defer self.pool.give(scratch, &self.counters);

    const q = scratch.query;
    @memcpy(q, query);
    if (self.metric == .cosine) _ = distance.normalize(q);
    const walk = walkQuery(self, generation, scratch);
    if (entry.slot >= view.bound) {
        _ = self.counters.corruption_detected.fetchAdd(1, .monotonic);
        return error.Corrupt;
    }
    var current = Candidate{ .distance = view.distanceTo(walk, entry.slot), .slot = entry.slot };
    var level = entry.level;
    while (level > 0) : (level -= 1) current = search.greedy(view, walk, current, level, scratch);
    const filter: search.Filter = if (matching) |m| .{ .visible_matching = .{
        .seq = seq,
        .words = m.words,
        .budget = m.budget,
    } } else .{ .visible_at = seq };
    if (self.layout.storage == .rabitq) {
        search.searchCodes(view, walk, current, @max(ef, k), filter, scratch) catch
            return error.OutOfMemory;
    } else {
        search.searchLayer(view, walk, current, @max(ef, k), 0, filter, scratch) catch
            return error.OutOfMemory;
    }
    if (matching) |m| {
        m.over_budget.* = scratch.over_budget;
        if (scratch.over_budget) return 0;
    }
    search.drainSorted(scratch, &scratch.selection, self.gpa) catch return error.OutOfMemory;
    var candidates = scratch.selection.items;
    if (self.layout.storage != .f32 and ranking == .exact) {
        // Walk distances are within a rounding (f16) or a quantization step (i8) of the exact
        // ones, so the exact top k lies among the walk's first few more than k: rerank only
        // those, sparing random reads of the f32 vectors of the whole beam.
        candidates = candidates[0..@min(candidates.len, rerankCount(self.layout.storage, k))];
        rerank(view, q, candidates);
    }
    return emit(view, candidates, k, out);
}

/// The query as the walk reads it: the f32 query itself, its f16 copy under f16 storage, or its
/// codes under i8 storage.
fn walkQuery(
    self: *Index,
    generation: *storage_mod.Generation,
    scratch: *scratch_mod.Scratch,
) view_mod.Query {
    return switch (self.layout.storage) {
        .f32 => @ptrCast(scratch.query.ptr),
        .f16 => blk: {
            for (scratch.query_f16, scratch.query) |*h, x| h.* = @floatCast(x);
            break :blk @ptrCast(scratch.query_f16.ptr);
        },
        .rabitq => blk: {
            // The rotated query, coded as the stored vectors are (index/write.zig
            // `encodeWalk`); the edges' residuals start from it less the rotated centre.
            const codes = scratch.query_i8.ptr + 64;
            const regions = generation.payload;
            const rotated = scratch.code_query;
            rabitq.rotateVector(scratch.query, regions.signs(), rotated);
            const formula: quantize.Formula = if (self.metric == .l2sq) .l2sq else .dot;
            quantize.encode(formula, rotated, regions.rotatedCentre(), codes);
            var norm: f32 = 0;
            for (rotated, regions.rotatedCentre()) |*q, c| {
                norm += q.* * q.*;
                q.* -= c;
            }
            scratch.code_query_norm = norm;
            scratch.code_terms = rabitq.prepareQuery(rotated, scratch.code_tables);
            break :blk codes;
        },
        .i8 => blk: {
            const codes = scratch.query_i8.ptr + 64;
            // Before the first add the centre is still zero; nothing is coded yet either.
            const centre = generation.payload.centre();
            quantize.encode(
                if (self.metric == .l2sq) .l2sq else .dot,
                scratch.query,
                centre,
                codes,
            );
            break :blk codes;
        },
    };
}

/// How many of the walk's best candidates are reranked on exact vectors.
pub fn rerankCount(storage: abi.StorageKind, k: u32) usize {
    return switch (storage) {
        .f32 => k,
        .f16 => @max(2 * k, k + 16),
        .i8, .rabitq => @max(3 * k, k + 32),
    };
}

/// Replaces the walk distances of the candidates by exact f32 distances and sorts again, so
/// quantized storage ranks and reports results as exactly as f32.
fn rerank(view: view_mod.View, query: []const f32, candidates: []Candidate) void {
    // The exact vectors are random reads of another file: ask for all of them (their first
    // lines; the streamer follows) before the first distance, so the misses overlap.
    for (candidates) |c| {
        const bytes: [*]const u8 = @ptrCast(view.regions.vector(c.slot).ptr);
        @prefetch(bytes, .{});
        @prefetch(bytes + 64, .{});
    }
    for (candidates) |*c| c.distance = view.exactDistance(query, c.slot);
    std.mem.sort(Candidate, candidates, {}, struct {
        fn less(_: void, a: Candidate, b: Candidate) bool {
            return a.distance < b.distance;
        }
    }.less);
}

/// Copies the best `k` into `out`, dropping a key seen twice (an upsert racing the search can
/// briefly leave its old and new slot both visible to a live read).
fn emit(view: view_mod.View, sorted: []const Candidate, k: u32, out: Results) u32 {
    var n: u32 = 0;
    for (sorted) |c| {
        if (n == k) break;
        const key = view.regions.meta(c.slot).key;
        if (std.mem.indexOfScalar(u64, out.keys[0..n], key) != null) continue;
        out.keys[n] = key;
        out.distances[n] = c.distance;
        n += 1;
    }
    return n;
}

/// Searches `counts.len` queries on up to `threads` threads; query i's results go to
/// `keys[i*k..]`/`distances[i*k..]` and its count to `counts[i]`.
pub fn searchBatch(
    self: *Index,
    queries: []const f32,
    k: u32,
    ef: u32,
    seq: u64,
    ranking: Ranking,
    threads: u32,
    out_keys: []u64,
    distances: []f32,
    counts: []u32,
) Error!void {
    const d = self.layout.dimensions;
    assert(queries.len == counts.len * d);
    const Job = struct {
        index: *Index,
        queries: []const f32,
        k: u32,
        ef: u32,
        seq: u64,
        ranking: Ranking,
        keys: []u64,
        distances: []f32,
        counts: []u32,
        fn run(job: *const @This(), i: usize) Error!void {
            const dims = job.index.layout.dimensions;
            const out = Results{
                .keys = job.keys[i * job.k ..][0..job.k],
                .distances = job.distances[i * job.k ..][0..job.k],
            };
            job.counts[i] = try searchOneWith(
                job.index,
                job.queries[i * dims ..][0..dims],
                job.k,
                job.ef,
                job.seq,
                job.ranking,
                null,
                out,
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
        .keys = out_keys,
        .distances = distances,
        .counts = counts,
    };
    try parallel.forEach(Error, threads, counts.len, &job, Job.run);
}

/// The slot of `key` visible at `seq`, walking the upsert chain from the key map's newest slot.
/// `StaleView` when the chain leads past `regions` (the mapping pinned by the caller predates a
/// remap that an upsert's new slot needed): the caller pins again (`pinSlot`). Without this, a
/// reader on an older mapping stopped at the new slot and missed the older one it should see.
pub fn slotAt(
    self: *Index,
    regions: layout.Regions,
    key: u64,
    seq: u64,
) error{StaleView}!?u32 {
    const stripe = self.keys.stripeOf(key);
    stripe.mutex.lock(&self.counters.lock_contention);
    defer stripe.mutex.unlock();
    const newest = stripe.map.get(key) orelse return null;
    const used = self.slots_used.load(.acquire);
    const slots = view_mod.Slots(sync.Production, .correct);
    return slots.chainAt(regions, newest, used, key, seq);
}

const Pinned = struct { generation: *storage_mod.Generation, slot: u32 };

/// Pins a mapping that holds `key`'s slot visible at `seq` (null: none is). The caller unpins
/// `generation`. A retry means a remap published after the pin; the current mapping always
/// holds every allocated slot, so retries end once remaps stop.
fn pinSlot(self: *Index, key: u64, seq: u64) ?Pinned {
    var attempts: u32 = 0;
    while (attempts < pin_attempts_max) : (attempts += 1) {
        const generation = self.storage.pin();
        const found = slotAt(self, generation.payload, key, seq) catch {
            self.storage.unpin(generation);
            _ = self.counters.read_retries.fetchAdd(1, .monotonic);
            continue;
        };
        if (found) |slot| return .{ .generation = generation, .slot = slot };
        self.storage.unpin(generation);
        return null;
    }
    _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
    return null;
}

const pin_attempts_max: u32 = 1024;

/// Copies the stored vector of `key` (normalized under cosine). Returns false if absent.
pub fn get(self: *Index, key: u64, seq: u64, out: []f32) bool {
    const pinned = pinSlot(self, key, seq) orelse return false;
    defer self.storage.unpin(pinned.generation);
    @memcpy(out, pinned.generation.payload.vector(pinned.slot));
    return true;
}

pub fn has(self: *Index, key: u64, seq: u64) bool {
    const pinned = pinSlot(self, key, seq) orelse return false;
    self.storage.unpin(pinned.generation);
    return true;
}

/// Writes up to `out.len` visible keys (slot order) and returns how many were visible in all.
pub fn keys(self: *Index, seq_wanted: u64, out: []u64) u64 {
    // The live view reads at the current sequence number, so an upsert publishing during the
    // scan shows its key once (old slot or new), never twice.
    const seq = if (seq_wanted == view_mod.live_seq) self.seq.load(.acquire) else seq_wanted;
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const bound = @min(self.slots_used.load(.acquire), regions.capacity);
    return view_mod.Slots(sync.Production, .correct).collectKeys(regions, bound, seq, out);
}

/// A point-in-time view: later writes, upserts and remaps do not change what it sees.
pub fn snapshotCreate(self: *Index) Error!u64 {
    // Registered under the commit lock: a metadata update (index/records.zig) that takes a
    // sequence number after this one sees the snapshot, and keeps the version it reads.
    self.commit.lock(&self.counters.lock_contention);
    defer self.commit.unlock();
    const snap = tables.Snapshot{
        .seq = self.seq.load(.acquire),
        .live = self.live.load(.acquire),
        .slots_used = self.slots_used.load(.acquire),
    };
    return self.snapshots.table.add(self.gpa, snap) catch |err| switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        error.TooManyHandles => error.TooManyHandles,
    };
}

pub fn snapshotSize(self: *Index, snapshot: u64) Error!u64 {
    if (snapshot == 0) return self.size();
    const snap = self.snapshots.table.get(snapshot) orelse return error.InvalidArgument;
    return snap.live;
}

pub fn snapshotRelease(self: *Index, snapshot: u64) Error!void {
    _ = self.snapshots.table.remove(snapshot) orelse return error.InvalidArgument;
}

pub const GuardInfo = struct { handle: u64, ptr: [*]f32, epoch: u64 };

/// Pins the current generation and returns a zero-copy pointer to `key`'s vector. The memory
/// stays mapped until `guardRelease`; after a remap the guard reads as stale.
pub fn guardAcquire(self: *Index, key: u64) Error!GuardInfo {
    const pinned = pinSlot(self, key, view_mod.live_seq) orelse return error.NotFound;
    const generation = pinned.generation;
    const slot = pinned.slot;
    const handle = self.guards.table.add(
        self.gpa,
        .{ .generation = generation, .slot = slot },
    ) catch |err| {
        self.storage.unpin(generation);
        return switch (err) {
            error.OutOfMemory => error.OutOfMemory,
            error.TooManyHandles => error.TooManyHandles,
        };
    };
    return .{
        .handle = handle,
        .ptr = generation.payload.vector(slot).ptr,
        .epoch = generation.epoch,
    };
}

/// Ok while the guard's generation is current; `StaleGuard` after a remap.
pub fn guardCheck(self: *Index, handle: u64) Error!void {
    const guard = self.guards.table.get(handle) orelse return error.InvalidArgument;
    if (!self.storage.epochs.isCurrent(guard.generation)) return error.StaleGuard;
}

pub fn guardRelease(self: *Index, handle: u64) Error!void {
    const guard = self.guards.table.remove(handle) orelse return error.InvalidArgument;
    self.storage.unpin(guard.generation);
}

//! The write path: add (upsert), remove, batch add on native threads, reserve.
//! A mutation holds the writers lock shared and its key's stripe for its whole length; it is
//! logged before it is applied and published under the commit lock with a sequence number.
const std = @import("std");
const assert = std.debug.assert;
const layout = @import("../storage/layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const hnsw_insert = @import("../hnsw/insert.zig");
const distance = @import("../kernels/distance.zig");
const view_mod = @import("../hnsw/view.zig");
const parallel = @import("../sync/pool.zig");
const centre = @import("centre.zig");
const rabitq = @import("../kernels/rabitq.zig");
const abi = @import("../abi.zig");
const quantize = @import("../kernels/quantize.zig");
const scratch_mod = @import("../hnsw/scratch.zig");
const locks = @import("../sync/locks.zig");
const Production = @import("../sync/atomics.zig").Production;
/// The slot-visibility protocol (hnsw/view.zig), the checked code.
const Slots = view_mod.Slots(Production, .correct);
const wal_mod = @import("../storage/wal.zig");
const Wal = wal_mod.Wal;
const payload = @import("../records/payload.zig");
const Prepared = @import("../records/store.zig").Prepared;

/// Squared norms above this would overflow f32 distances (|a - b|^2 <= 4 * 1e37 < f32 max).
pub const norm_squared_max = distance.norm_squared_max;

/// Rejects NaN, infinities and magnitudes whose distances would overflow f32; under cosine also
/// the zero vector (it has no direction).
pub fn validateVector(self: *Index, vector: []const f32) Error!void {
    if (vector.len != self.layout.dimensions) return error.DimensionMismatch;
    const norm = try distance.boundedNorm(vector);
    if (self.layout.storage == .f16) {
        // Beyond f16's range the walk copy would be infinite.
        for (vector) |x| if (@abs(x) > std.math.floatMax(f16)) return error.InvalidVector;
    }
    if (self.metric == .cosine and norm == 0) return error.InvalidVector;
}

/// Inserts `key`, or replaces its vector if it exists (upsert). Safe from any thread.
pub fn add(self: *Index, key: u64, vector: []const f32) Error!void {
    if (!self.writable) return error.ReadOnly;
    try validateVector(self, vector);
    try centre.ensure(self, vector, 1);
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    try addLocked(self, key, vector, &.{}, true);
}

/// `add` with a record payload (docs/records.md): a string id and metadata stored with the
/// vector. An empty `record` is a plain add.
pub fn addRecord(self: *Index, key: u64, vector: []const f32, record: []const u8) Error!void {
    if (!self.writable) return error.ReadOnly;
    try validateVector(self, vector);
    try centre.ensure(self, vector, 1);
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    try addLocked(self, key, vector, record, true);
}

/// The id a slot's record carries: its string id, or empty for a numeric id. The caller holds
/// the slot's key stripe.
pub fn idOf(self: *Index, slot: u32) []const u8 {
    self.records.lock.lockShared(&self.counters.lock_contention);
    defer self.records.lock.unlockShared();
    const version = self.records.at(slot, view_mod.live_seq) orelse return "";
    return payload.idOf(version.bytes);
}

/// Whether the slot's record has exactly the id `id` (empty: a numeric id). The caller holds
/// the slot's key stripe, so the record cannot change in between.
pub fn sameId(self: *Index, slot: u32, id: []const u8) bool {
    self.records.lock.lockShared(&self.counters.lock_contention);
    defer self.records.lock.unlockShared();
    const stored = if (self.records.at(slot, view_mod.live_seq)) |version|
        payload.idOf(version.bytes)
    else
        "";
    return std.mem.eql(u8, stored, id);
}

/// Runs a due checkpoint. Checkpoints need the writers lock exclusively, so the FFI layer calls
/// this after a mutation has released its locks. The mutation is applied and logged by then:
/// its caller must hear that it succeeded, so a failed checkpoint is counted
/// (`stats().checkpoint_failures`), leaves the log as it was, and is tried again by the next
/// mutation that finds it due. `checkpoint()` called directly reports its errors.
pub fn checkpointIfDue(self: *Index) void {
    const wal = if (self.wal) |*w| w else return;
    if (wal.bytes(&self.counters.lock_contention) < index_mod.wal_checkpoint_bytes) return;
    self.checkpoint() catch {
        _ = self.checkpoint_failures.fetchAdd(1, .monotonic);
    };
}

/// The body of `add`; the caller holds the writers lock shared. `log` is false during replay.
///
/// Every fallible step comes before the log record: the key map's room, the scratch space, the
/// slot and its storage (growth), and linking the slot into the graph. Until it is published the
/// slot is invisible (an `inserting` slot routes searches but is never a result), and a call that
/// fails after linking retires the slot as a routing tombstone (`retire`), so a call that fails
/// at any of those steps or at the append itself changes nothing a caller can see and leaves
/// nothing to replay. After the append only infallible steps
/// remain (publication and the key map's entry), so a logged add is always an applied one.
pub fn addLocked(
    self: *Index,
    key: u64,
    vector: []const f32,
    record: []const u8,
    log: bool,
) Error!void {
    assert(vector.len == self.layout.dimensions);
    assert(locks.holds(.writers) or self.replaying);
    assert(self.writable);
    const prepared: ?Prepared = if (record.len > 0)
        self.records.prepare(record) catch |err| return index_mod.mapRecordsError(err)
    else
        null;
    errdefer if (prepared) |p| self.records.cancel(p);
    const id = if (prepared) |p| payload.idOf(p.version.bytes) else "";
    // A string id's key is its hash (docs/records.md): ids and keys are one mapping.
    if (id.len > 0 and payload.keyOfId(id) != key) return error.InvalidKey;
    const stripe = self.keys.stripeOf(key);
    stripe.mutex.lock(&self.counters.lock_contention);
    defer stripe.mutex.unlock();
    stripe.map.ensureUnusedCapacity(self.gpa, 1) catch return error.OutOfMemory;
    const scratch = self.pool.take(&self.counters) catch return error.OutOfMemory;
    defer self.pool.give(scratch, &self.counters);
    const previous = stripe.map.get(key);
    // One key, one id: a different id under this key (a hash collision of two string ids, or a
    // numeric id over a string one) is refused rather than replaced.
    // Replay applies what was checked when it was logged: the log is the truth, and the slot
    // it finds may have lost its payload to the kill (mapped, but only in memory until a
    // checkpoint), so its empty id says nothing.
    if (previous) |p| {
        if (!self.replaying and !sameId(self, p, id)) return error.IdConflict;
    }
    const level = hnsw_insert.levelFor(self.seed, key, self.params.m);
    const slot = try allocate(self, level);
    assert(slot.id < self.slots_used.load(.acquire));
    // The header says "not clean" before the first byte of the mapping changes.
    if (self.persistent) self.storage.markDirty(&self.dirty, &self.counters.lock_contention);
    writeSlot(self, slot, key, vector, previous, level);
    linkWithFreshView(self, slot.id, level, scratch) catch |err| {
        retire(self, slot.id);
        return err;
    };
    if (prepared != null) self.records.reserveSlot(slot.id) catch |err| {
        retire(self, slot.id);
        return index_mod.mapRecordsError(err);
    };
    if (log) {
        if (self.wal) |*wal| {
            const op: wal_mod.Op = if (prepared != null) .add_record else .add;
            appendLogged(self, wal, op, key, vector, record) catch |err| {
                retire(self, slot.id);
                return err;
            };
        }
    }
    // From here nothing fails: the record is logged.
    if (prepared) |p| self.records.attach(slot.id, p);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const meta = regions.meta(slot.id);
    assert(meta.state == @intFromEnum(layout.SlotState.inserting));
    assert(meta.key == key);
    const replaced: ?Slots.Previous =
        if (previous) |p| .{ .meta = regions.meta(p), .slot = p } else null;
    publish(self, meta, slot.id, replaced);
    stripe.map.putAssumeCapacity(key, slot.id);
}

/// Turns the slot of an add that failed after it was (perhaps partly) linked into a routing
/// tombstone: ready, created and deleted at one new sequence number, so it is invisible at every
/// sequence number yet a valid node for recovery (whose counters must cover its sequence number).
/// Other nodes may already link to it, and it may even be the entry point: it keeps routing.
fn retire(self: *Index, slot: u32) void {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const meta = generation.payload.meta(slot);
    assert(meta.state == @intFromEnum(layout.SlotState.inserting));
    self.commit.lock(&self.counters.lock_contention);
    defer self.commit.unlock();
    const seq = self.seq.load(.monotonic) + 1;
    assert(seq < view_mod.live_seq);
    // Ready first (ready and unpublished is a state a kill may leave, and recovery ignores it),
    // then deleted before created: at no step is the slot inserting with a sequence number,
    // which recovery rightly calls corrupt, nor visible.
    @atomicStore(u8, &meta.state, @intFromEnum(layout.SlotState.ready), .release);
    @atomicStore(u64, &meta.deleted_seq, seq, .release);
    @atomicStore(u64, &meta.created_seq, seq, .release);
    self.seq.store(seq, .release);
}

fn appendLogged(
    self: *Index,
    wal: *Wal,
    op: wal_mod.Op,
    key: u64,
    vector: []const f32,
    record: []const u8,
) Error!void {
    try wal.append(op, key, vector, record, &self.counters.lock_contention);
}

/// Writes a new slot's vectors, then its metadata, the state last by a release store: a kill can
/// stop this at any store, and recovery reads a slot marked `inserting` as one whose other fields
/// (`created_seq = unpublished` above all) are written. A plain struct assignment leaves the
/// order of its stores to the compiler. The vectors come first so that the metadata can carry
/// their check (`Meta.vector_check`): until the state changes the slot's old metadata (empty, or
/// a previous life's unpublished slot) hides whatever the vectors hold.
fn writeSlot(
    self: *Index,
    slot: Allocated,
    key: u64,
    vector: []const f32,
    previous: ?u32,
    level: u32,
) void {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    assert(slot.id < regions.capacity);
    const meta = regions.meta(slot.id);
    // Slots at or past `slots_used` were never written in this life of the index. In memory they
    // are zero; in files recovered from a dirty header they may hold a previous life's stale
    // metadata (written before a crash, never published, beyond what the scan trusted), which
    // this overwrites whole.
    assert(meta.state == @intFromEnum(layout.SlotState.empty) or self.persistent);
    writeVectors(self, regions, slot.id, vector);
    meta.key = key;
    // Atomic like every other access to the sequence numbers: scans (`keys`, `visible`) read
    // them from slots below `slots_used` while this slot is still being written.
    @atomicStore(u64, &meta.created_seq, layout.unpublished, .monotonic);
    @atomicStore(u64, &meta.deleted_seq, 0, .monotonic);
    meta.prev_slot = previous orelse layout.no_slot;
    meta.upper_offset = slot.upper_offset;
    meta.level = @intCast(level);
    meta.setVectorCheck(regions.vector(slot.id));
    meta.reserved = [_]u8{0} ** 2;
    @atomicStore(u8, &meta.state, @intFromEnum(layout.SlotState.inserting), .release);
}

/// The exact vector (normalized under cosine) and the walk copy derived from it.
fn writeVectors(self: *Index, regions: layout.Regions, slot: u32, vector: []const f32) void {
    const stored = regions.vector(slot);
    assert(stored.len == vector.len);
    @memcpy(stored, vector);
    if (self.metric == .cosine) _ = distance.normalize(stored);
    writeWalkCopy(self, regions, slot);
}

/// Derives the copy the graph walk reads from the slot's exact vector (nothing under f32
/// storage, where they are one). Also recovery's repair of a walk copy a power loss left older
/// than its exact vector.
pub fn writeWalkCopy(self: *Index, regions: layout.Regions, slot: u32) void {
    const stored = regions.vector(slot);
    switch (self.layout.storage) {
        .f32 => {},
        .f16 => {
            for (regions.walkF16(slot), stored) |*h, x| h.* = @floatCast(x);
        },
        .i8, .rabitq => {
            assert(centre.ready(self));
            const codes = regions.walkI8(slot);
            encodeWalk(self, regions, stored, codes);
            // Aligned records (format 2) reserve codes to 64 bytes, and older libraries read all
            // of them: the bytes past the granules encode wrote are zeroed too (a repair may be
            // writing over a torn record).
            const written = layout.i8CodeBytes(self.layout.walk_dims);
            @memset(codes[written..self.layout.walk_bytes], 0);
        },
    }
}

/// The i8 codes (and terms, in the 16 bytes before `codes`) the walk reads for `vector`: taken
/// around the centre (i8), or of the rotated vector around the rotated centre (rabitq,
/// kernels/rabitq.zig), which keeps every distance.
pub fn encodeWalk(self: *Index, regions: layout.Regions, vector: []const f32, codes: [*]u8) void {
    const formula: quantize.Formula = if (self.metric == .l2sq) .l2sq else .dot;
    if (self.layout.storage == .i8) {
        return quantize.encode(formula, vector, regions.centre(), codes);
    }
    assert(self.layout.storage == .rabitq);
    var work: [abi.rabitq_dimensions_max]f32 = undefined;
    const rotated = work[0..self.layout.walk_dims];
    rabitq.rotateVector(vector, regions.signs(), rotated);
    quantize.encode(formula, rotated, regions.rotatedCentre(), codes);
    // The terms' unused word: |x|^2, which the walk's error bound needs under ip
    // (hnsw/search.zig `residualNorm`).
    var norm: f64 = 0;
    for (vector) |x| norm += @as(f64, x) * x;
    const terms = codes - layout.i8_terms_bytes;
    std.mem.writeInt(u32, terms[12..16], @bitCast(@as(f32, @floatCast(norm))), .little);
}

/// Links a written slot into the graph. A view can be older than the entry point (a remap and a
/// promotion of a newer node between the pin and the load of the entry); then link reports
/// `StaleView` before touching anything and runs again on a fresh pin. Remaps are rare, so
/// a bounded number of retries is plenty; running out of them means the entry is corrupt.
/// Links an existing, published slot into the graph again (open's repair of live nodes that no
/// link reaches, after a power loss left the graph file older than the metadata): the node keeps
/// its own list and gains back-links from the neighbours a fresh search picks. Open runs this
/// alone, before any other user can reach the index.
pub fn relink(self: *Index, slot: u32) Error!void {
    assert(self.writable);
    const level = blk: {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const meta = generation.payload.meta(slot);
        assert(meta.state == @intFromEnum(layout.SlotState.ready));
        break :blk meta.level;
    };
    const scratch = self.pool.take(&self.counters) catch return error.OutOfMemory;
    defer self.pool.give(scratch, &self.counters);
    try linkWithFreshView(self, slot, level, scratch);
}

fn linkWithFreshView(
    self: *Index,
    slot: u32,
    level: u32,
    scratch: *scratch_mod.Scratch,
) Error!void {
    var attempts: u32 = 0;
    while (attempts < 16) : (attempts += 1) {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        hnsw_insert.link(
            self.view(generation),
            &self.entry,
            self.params,
            slot,
            level,
            scratch,
        ) catch |err| switch (err) {
            error.StaleView => {
                _ = self.counters.read_retries.fetchAdd(1, .monotonic);
                continue;
            },
            error.OutOfMemory => return error.OutOfMemory,
        };
        return;
    }
    _ = self.counters.corruption_detected.fetchAdd(1, .monotonic);
    return error.Corrupt;
}

/// Makes a new slot visible and its predecessor (if any) invisible at one sequence number.
fn publish(self: *Index, meta: *layout.Meta, slot: u32, previous: ?Slots.Previous) void {
    assert(locks.holds(.key_stripe));
    assert(@atomicLoad(u64, &meta.created_seq, .acquire) == layout.unpublished);
    self.commit.lock(&self.counters.lock_contention);
    defer self.commit.unlock();
    // The stores and their order are the checked protocol (hnsw/view.zig `Slots`).
    const seq = Slots.publish(meta, slot, previous, &self.seq, &self.live, &self.node_locks);
    assert(seq < view_mod.live_seq);
}

const Allocated = struct { id: u32, upper_offset: u32 };

/// Takes a slot and `level` upper records. Each counter moves only after the storage it needs
/// exists (compare-and-swap after growth), so a failed growth leaves both counters as they were
/// and `slots_used` never exceeds the mapped capacity: a checkpoint after a failed add hashes
/// and records only mapped, written slots. The upper range is taken first: if the slot then
/// fails, only arena space is skipped, never a slot left unwritten below `slots_used`.
fn allocate(self: *Index, level: u32) Error!Allocated {
    const upper_offset = try takeUpper(self, level);
    var attempts: u32 = 0;
    while (attempts < allocate_attempts_max) : (attempts += 1) {
        const id = self.slots_used.load(.acquire);
        if (id >= layout.capacity_max) return error.CapacityExceeded;
        try ensureSlots(self, id + 1, upper_offset + level);
        if (self.slots_used.cmpxchgWeak(id, id + 1, .acq_rel, .acquire) == null) {
            assert(id < layout.capacity_max);
            return .{ .id = @intCast(id), .upper_offset = upper_offset };
        }
    }
    // Every failed exchange means another thread took a slot: a bounded number of threads
    // cannot keep winning forever, so running out means something is very wrong.
    _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
    return error.Internal;
}

const allocate_attempts_max: u32 = 1 << 20;

fn takeUpper(self: *Index, level: u32) Error!u32 {
    if (level == 0) return @intCast(self.upper_used.load(.acquire));
    var attempts: u32 = 0;
    while (attempts < allocate_attempts_max) : (attempts += 1) {
        const offset = self.upper_used.load(.acquire);
        if (offset + level > std.math.maxInt(u32)) return error.CapacityExceeded;
        try ensureSlots(self, self.slots_used.load(.acquire) + 1, offset + level);
        if (self.upper_used.cmpxchgWeak(offset, offset + level, .acq_rel, .acquire) == null) {
            return @intCast(offset);
        }
    }
    _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
    return error.Internal;
}

fn ensureSlots(self: *Index, slots: u64, upper: u64) Error!void {
    try self.node_locks.ensure(self.gpa, slots);
    self.storage.ensureCapacity(slots, upper, &self.counters.lock_contention) catch |err|
        return index_mod.mapStorageError(err);
}

/// Soft-deletes `key`: it stays in the graph as a routing tombstone. Returns whether it was live.
pub fn remove(self: *Index, key: u64) Error!bool {
    return removeId(self, key, "");
}

/// `remove` of the record with id `id` (empty: a numeric id): a key held by another id is not
/// found.
pub fn removeId(self: *Index, key: u64, id: []const u8) Error!bool {
    if (!self.writable) return error.ReadOnly;
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    return removeLocked(self, key, id, true);
}

pub fn removeLocked(self: *Index, key: u64, id: []const u8, log: bool) Error!bool {
    assert(locks.holds(.writers) or self.replaying);
    assert(self.writable);
    const stripe = self.keys.stripeOf(key);
    stripe.mutex.lock(&self.counters.lock_contention);
    defer stripe.mutex.unlock();
    const slot = stripe.map.get(key) orelse return false;
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const meta = generation.payload.meta(slot);
    if (!view_mod.visible(meta, view_mod.live_seq)) return false;
    // Replay applies what was checked when it was logged (the log names keys, not ids).
    if (!self.replaying and !sameId(self, slot, id)) return false;
    if (log) {
        if (self.wal) |*wal| try appendLogged(self, wal, .remove, key, &.{}, &.{});
    }
    if (self.persistent) self.storage.markDirty(&self.dirty, &self.counters.lock_contention);
    self.commit.lock(&self.counters.lock_contention);
    defer self.commit.unlock();
    const seq = self.seq.load(.monotonic) + 1;
    @atomicStore(u64, &meta.deleted_seq, seq, .release);
    self.node_locks.setLive(slot, false);
    _ = self.live.fetchSub(1, .release);
    self.seq.store(seq, .release);
    return true;
}

/// Grows the storage so that `slots` slots fit without another remap.
pub fn reserve(self: *Index, slots: u64) Error!void {
    if (!self.writable) return error.ReadOnly;
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    return reserveLocked(self, slots);
}

fn reserveLocked(self: *Index, slots: u64) Error!void {
    if (slots > layout.capacity_max) return error.CapacityExceeded;
    self.node_locks.ensure(self.gpa, slots) catch |err| return switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        error.CapacityExceeded => error.CapacityExceeded,
    };
    // Upper levels for the slots still to come: a node has 1/(m - 1) upper levels on average;
    // the slack absorbs the variance.
    const coming = slots -| self.slots_used.load(.acquire);
    const upper = self.upper_used.load(.acquire) + coming / (self.params.m - 1) + 64;
    self.storage.ensureCapacity(slots, upper, &self.counters.lock_contention) catch |err|
        return index_mod.mapStorageError(err);
}

/// Adds `keys.len` vectors from one flat array on up to `threads` native threads. Every vector
/// is validated before any is applied, so a bad batch changes nothing.
pub fn addBatch(self: *Index, keys: []const u64, vectors: []const f32, threads: u32) Error!void {
    return addBatchRecords(self, keys, vectors, &.{}, threads);
}

/// `addBatch` with one payload per vector (`records.len == keys.len`), or none (empty).
/// Vectors and payloads are all validated before any is applied.
pub fn addBatchRecords(
    self: *Index,
    keys: []const u64,
    vectors: []const f32,
    records: []const []const u8,
    threads: u32,
) Error!void {
    if (!self.writable) return error.ReadOnly;
    const dims = self.layout.dimensions;
    if (vectors.len != keys.len * dims) return error.DimensionMismatch;
    if (records.len != 0 and records.len != keys.len) return error.InvalidArgument;
    for (0..keys.len) |i| try validateVector(self, vectors[i * dims ..][0..dims]);
    if (records.len > 0) {
        for (records, keys) |record, key| try validateRecord(self, key, record);
    }
    if (keys.len == 0) return;
    const order = try insertionOrder(self, keys);
    defer self.gpa.free(order);
    // The first batch trains i8 storage's centre on all of its vectors.
    try centre.ensure(self, vectors, keys.len);
    try reserve(self, self.slots_used.load(.acquire) + keys.len);
    const Job = struct {
        index: *Index,
        keys: []const u64,
        vectors: []const f32,
        records: []const []const u8,
        order: []const u32,
        fn run(job: *const @This(), n: usize) Error!void {
            const i = job.order[n];
            const d = job.index.layout.dimensions;
            const record = if (job.records.len > 0) job.records[i] else &.{};
            try addRecord(job.index, job.keys[i], job.vectors[i * d ..][0..d], record);
        }
    };
    const job = Job{
        .index = self,
        .keys = keys,
        .vectors = vectors,
        .records = records,
        .order = order,
    };
    try parallel.forEach(Error, threads, order.len, &job, Job.run);
}

/// The order a batch is inserted in: its highest nodes first (a node's level depends on its key
/// alone, `hnsw_insert.levelFor`), so the upper levels and the hubs they route through are
/// linked, and take the first slots, before the bulk of level 0 is built against them (FAISS
/// builds in the same order). A key given more than once is inserted once, from its last
/// occurrence: what adding the batch one by one leaves, whatever the threads. Stable otherwise.
pub fn insertionOrder(self: *Index, keys: []const u64) Error![]u32 {
    const gpa = self.gpa;
    var last = std.AutoHashMapUnmanaged(u64, u32){};
    defer last.deinit(gpa);
    last.ensureTotalCapacity(gpa, @intCast(keys.len)) catch return error.OutOfMemory;
    for (keys, 0..) |key, i| last.putAssumeCapacity(key, @intCast(i));
    const order = gpa.alloc(u32, last.count()) catch return error.OutOfMemory;
    errdefer gpa.free(order);
    const levels = gpa.alloc(u8, keys.len) catch return error.OutOfMemory;
    defer gpa.free(levels);
    var n: usize = 0;
    for (keys, levels, 0..) |key, *level, i| {
        level.* = @intCast(hnsw_insert.levelFor(self.seed, key, self.params.m));
        if (last.get(key).? != i) continue;
        order[n] = @intCast(i);
        n += 1;
    }
    assert(n == order.len);
    std.sort.block(u32, order, levels, struct {
        fn higher(by: []const u8, a: u32, b: u32) bool {
            return by[a] > by[b];
        }
    }.higher);
    return order;
}

/// Checks a payload and its key without storing anything (a batch validates all first).
pub fn validateRecord(self: *Index, key: u64, record: []const u8) Error!void {
    if (record.len == 0) return;
    const store = self.records;
    store.lock.lockShared(&self.counters.lock_contention);
    defer store.lock.unlockShared();
    const parsed = payload.parse(record, &store.schema) catch return error.InvalidMetadata;
    if (parsed.id.len > 0 and payload.keyOfId(parsed.id) != key) return error.InvalidKey;
}

/// Maps the storage again at its current size: a real remap without growth.
pub fn remap(self: *Index) Error!void {
    if (!self.writable) return error.ReadOnly;
    const storage = self.storage;
    storage.grow_lock.lock(&self.counters.lock_contention);
    defer storage.grow_lock.unlock();
    const current = storage.epochs.current.load(.acquire).payload;
    storage.remapLocked(
        current.capacity,
        current.upper_capacity,
    ) catch |err| return index_mod.mapStorageError(
        err,
    );
}

/// Makes the index and every acknowledged write durable against power loss: the WAL first, then
/// the mapped files (their grown sizes and the header that names them). The log goes first
/// because it alone holds the payloads (records) written since the last checkpoint: a slot made
/// durable before its log record would survive a power loss without its payload (the VOPR found
/// one when the log's fsync failed after the mapped files').
pub fn sync(self: *Index) Error!void {
    if (!self.persistent) return;
    if (self.wal) |*wal| try wal.sync();
    if (self.writable) self.storage.sync() catch |err| return index_mod.mapStorageError(err);
}

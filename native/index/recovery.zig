//! Opening a persisted index. A clean file (closed or checkpointed, empty WAL) opens by mapping
//! and one pass over the 40-byte metadata column to rebuild the key map; no vector is read. A
//! dirty file (the process died with writes in flight) is recovered from the WAL: every logged
//! operation is replayed idempotently on top of the mapped state, then a checkpoint is taken.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");
const layout = @import("../storage/layout.zig");
const storage_mod = @import("../storage/storage.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const index_write = @import("write.zig");
const centre = @import("centre.zig");
const view_mod = @import("../hnsw/view.zig");
const entry_mod = @import("../hnsw/entry.zig");
const codes = @import("../hnsw/codes.zig");
const graph = @import("../hnsw/graph.zig");
const Wal = @import("../storage/wal.zig").Wal;
const wal_mod = @import("../storage/wal.zig");
const index_records = @import("records.zig");
const read = @import("read.zig");
const verify_mod = @import("verify.zig");
const distance = @import("../kernels/distance.zig");
const quantize = @import("../kernels/quantize.zig");

pub const Validation = enum { fast, full };

pub fn open(
    gpa: std.mem.Allocator,
    path: []const u8,
    options: abi.Options,
    validation: Validation,
) Error!*Index {
    const writable = options.flags & abi.Options.flag_read_only == 0;
    const storage =
        storage_mod.Storage.open(gpa, path, writable) catch |err| return index_mod.mapStorageError(
            err,
        );
    errdefer storage.destroy();
    var contention = std.atomic.Value(u64).init(0);
    const header = storage.currentHeader(&contention);
    if (options.dimensions != 0 and
        options.dimensions != header.dimensions) return error.DimensionMismatch;
    if (options.flags & abi.Options.flag_metric_given != 0 and
        options.metric != header.metric) return error.InvalidArgument;
    if (options.flags & abi.Options.flag_storage_given != 0 and
        options.storage != header.storage) return error.InvalidArgument;
    const ef_search = if (options.ef_search == 0) 64 else options.ef_search;
    const self = try Index.init(gpa, storage, header, ef_search, true, writable);
    errdefer self.destroyState();
    self.path = gpa.dupe(u8, path) catch return error.OutOfMemory;
    try scan(self, header, validation);
    // A dirty file is writable here (scan refuses it read-only).
    if (header.clean == 0) {
        _ = try repairWalkCopies(self);
        _ = repairTornLists(self);
        // A kill can land between a list and its edges: rewrite them all (hnsw/codes.zig).
        if (self.layout.storage == .rabitq) {
            const generation = self.storage.pin();
            defer self.storage.unpin(generation);
            const capacity = generation.payload.capacity;
            const used: u32 = @intCast(@min(self.slots_used.load(.acquire), capacity));
            codes.rebuild(codes.Writer.of(generation.payload, self.metric), used);
        }
    }
    try loadRecords(self, path, writable, header.recordsEnd());
    self.wal = Wal.open(path, header.dimensions, writable) catch |err| switch (err) {
        error.Corrupt => null,
        error.NotRegular => return error.InvalidArgument,
        error.Io, error.DiskFull => |e| return e,
    };
    if (self.wal == null and header.clean == 0) return error.Corrupt;
    if (self.wal) |wal| self.storage.log_fd = wal.fd;
    try replay(self);
    if (header.clean == 0 and self.writable) {
        if (try relinkUnreachable(self) > 0) try self.checkpoint();
    }
    return self;
}

/// A dirty open's repair: a power loss can leave the graph file older than the metadata and
/// vector files (each keeps what its own last flush wrote), and replaying the log restores every
/// vector but not every link, so a live node may be left that no search reaches. Each such node
/// is linked again. Costs one walk of the graph on opens after a crash; returns the count.
fn relinkUnreachable(self: *Index) Error!u64 {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const used: u32 = @intCast(@min(self.slots_used.load(.acquire), regions.capacity));
    if (self.entry.load() == null) return 0;
    const reached = verify_mod.reachedFrom(self, regions, used) catch return error.OutOfMemory;
    defer self.gpa.free(reached);
    var relinked: u64 = 0;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        if (reached[slot] or !view_mod.visible(regions.meta(slot), view_mod.live_seq)) continue;
        // Replay's checkpoint may have marked the image clean: say it is not before a list
        // changes, so a kill in the middle is recovered again rather than trusted.
        if (relinked == 0) self.storage.markDirty(&self.dirty, &self.counters.lock_contention);
        try index_write.relink(self, slot);
        relinked += 1;
    }
    return relinked;
}

/// A dirty open's repair of lists a kill tore. `graph.write` stores a list's ids in place, then
/// its count: killed in between, a list holds the new list's first ids over the old one's rest,
/// where an id can appear twice (verify failed such a recovered index: `duplicate_links`, crash
/// spec, CI). Each list keeps the first of every id; a link the tear lost is restored by the
/// reachability pass after replay (relinkUnreachable). Other damage (a count over the degree, an
/// id out of range) is not what a tear makes: verify reports it. Returns the lists rewritten.
/// O(slots * degree^2) on lists of at most 2M ids, once per dirty open.
pub fn repairTornLists(self: *Index) u64 {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const used: u32 = @intCast(@min(self.slots_used.load(.acquire), regions.capacity));
    const upper_used = self.upper_used.load(.acquire);
    var repaired: u64 = 0;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        const meta = regions.meta(slot);
        if (meta.state == @intFromEnum(layout.SlotState.empty)) continue;
        if (@as(u64, meta.upper_offset) + meta.level > upper_used) continue;
        var level: u32 = 0;
        while (level <= meta.level) : (level += 1) {
            const words = regions.list(slot, level, meta.upper_offset);
            const count = graph.countOf(words);
            if (count > self.layout.maxDegree(level)) continue;
            var kept: u32 = 0;
            for (0..count) |j| {
                const id = words[1 + j];
                if (std.mem.indexOfScalar(u32, words[1 .. 1 + kept], id) != null) continue;
                words[1 + kept] = id;
                kept += 1;
            }
            if (kept == count) continue;
            @atomicStore(u32, &words[0], kept, .release);
            repaired += 1;
        }
    }
    return repaired;
}

/// Rebuilds the in-memory state from the metadata column, validating every field it will
/// later trust: a bad field is `Corrupt`, never a wild read.
pub fn scan(self: *Index, header: layout.Header, validation: Validation) Error!void {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const clean = header.clean == 1;
    if (validation == .full) {
        // Full validation checks every byte its checksums cover, or refuses: a file not closed
        // cleanly (its log holds writes, or its newest header copy is damaged and only an
        // older, dirty one is intact) has no checksums that describe its bytes. (The newest
        // clean copy's predecessor is always a dirty one: checkpoints write dirty, then clean.)
        if (!clean) return error.Unverifiable;
    }
    // A fast open survives a damaged header copy by using the other; it is still counted.
    if (self.storage.header_damaged) _ = self.counters.corruption_detected.fetchAdd(1, .monotonic);
    if (clean and validation == .full) {
        const hashes = index_mod.regionHashes(regions, header.slots_used, header.upper_used);
        if (hashes[0] != header.data_hash or hashes[1] != header.graph_hash or
            hashes[2] != header.upper_hash or hashes[3] != header.exact_hash)
        {
            _ = self.counters.corruption_detected.fetchAdd(1, .monotonic);
            return error.Corrupt;
        }
    }
    // A dirty file's counters are stale: scan every slot the files can hold.
    if (!clean and !self.writable) {
        // Only a writer can repair what the crash left half-published.
        return error.ReadOnly;
    }
    if (header.seq >= view_mod.live_seq) return error.Corrupt;
    const limit = if (clean) header.slots_used else regions.capacity;
    if (!clean) _ = dropTorn(regions);
    var state = ScanState{ .clean = clean };
    for (0..limit) |i| try scanSlot(self, regions, @intCast(i), &state);
    if (clean) {
        if (state.live != header.live or state.max_seq > header.seq) return error.Corrupt;
        if (header.entry != entry_mod.empty) {
            const e = entry_mod.unpack(header.entry) orelse return error.Corrupt;
            if (e.slot >= header.slots_used or
                e.level != regions.meta(e.slot).level) return error.Corrupt;
            // The entry point must sit on the top level, or searches would miss its levels.
            if (state.entry == null or e.level != state.entry.?.level) return error.Corrupt;
        }
        self.entry.reset(entry_mod.unpack(header.entry));
    } else {
        self.entry.reset(state.entry);
    }
    if (state.live > 0 and self.entry.load() == null) return error.Corrupt;
    self.slots_used.store(if (clean) header.slots_used else state.used, .release);
    self.upper_used.store(if (clean) header.upper_used else state.upper_used, .release);
    self.live.store(state.live, .release);
    self.seq.store(@max(state.max_seq, header.seq), .release);
    self.node_locks.ensure(self.gpa, regions.capacity) catch return error.OutOfMemory;
    // After every repair above; the log's replay then keeps the bits as any write does.
    self.rebuildLiveBits();
}

/// A dirty open's first repair, before the scan reads any liveness. A slot's metadata (the data
/// file) and its exact vector (the graph file under f32 storage, else the vector file) reach the
/// disk each on its own, so a power loss can keep a slot's publication without its vector: its
/// check (`Meta.vector_check`) then fails. Such a write was never synced (`sync()` and every
/// checkpoint fsync every file), so it is dropped whole: the slot becomes a routing tombstone and
/// the slot it replaced, if that one is the key's state before it, is live again. The log
/// applies the write again if it holds it. Returns how many slots were dropped.
pub fn dropTorn(regions: layout.Regions) u64 {
    var dropped: u64 = 0;
    for (0..regions.capacity) |i| {
        var slot: u32 = @intCast(i);
        // Down an upsert chain of torn slots to its first intact one; a chain revives each slot
        // at most once (its deletion is undone only by the one slot that replaced it), so it
        // is never longer than the slots.
        var steps: u64 = 0;
        while (steps < regions.capacity) : (steps += 1) {
            const meta = regions.meta(slot);
            if (!publishedLive(meta) or meta.vectorMatches(regions.vector(slot))) break;
            const seq = meta.created_seq;
            meta.deleted_seq = seq;
            dropped += 1;
            assert(!view_mod.visible(meta, view_mod.live_seq));
            // `no_slot`, or a damaged field the scan reports.
            if (meta.prev_slot >= regions.capacity) break;
            const older = regions.meta(meta.prev_slot);
            const replaced = older.state == @intFromEnum(layout.SlotState.ready) and
                older.created_seq != 0 and older.created_seq < seq and older.deleted_seq == seq;
            if (!replaced) break; // removed before the dropped write, or never published
            older.deleted_seq = 0;
            slot = meta.prev_slot;
        }
    }
    return dropped;
}

/// Ready, published at a plausible sequence number, and not deleted.
fn publishedLive(meta: *const layout.Meta) bool {
    if (meta.state != @intFromEnum(layout.SlotState.ready)) return false;
    if (meta.created_seq == 0 or meta.created_seq >= view_mod.live_seq) return false;
    return meta.deleted_seq == 0;
}

/// A dirty open's repair of the copies the walk reads (f16, i8 codes): a power loss can leave
/// the graph file older than the exact vectors, and a live slot's walk copy is rewritten from
/// its exact vector (checked by `dropTorn`) where they disagree. Returns the count rewritten.
pub fn repairWalkCopies(self: *Index) Error!u64 {
    if (self.layout.storage == .f32) return 0;
    assert(self.writable);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const used: u32 = @intCast(@min(self.slots_used.load(.acquire), regions.capacity));
    if (used == 0) return 0;
    const coded = try verify_mod.walkBuffer(self);
    defer coded.deinit(self.gpa);
    var rewritten: u64 = 0;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        if (!view_mod.visible(regions.meta(slot), view_mod.live_seq)) continue;
        if (verify_mod.walkCopyMatches(self, regions, slot, coded)) continue;
        index_write.writeWalkCopy(self, regions, slot);
        rewritten += 1;
    }
    return rewritten;
}

const ScanState = struct {
    clean: bool,
    used: u64 = 0,
    upper_used: u64 = 0,
    live: u64 = 0,
    max_seq: u64 = 0,
    entry: ?entry_mod.Entry = null,
};

/// Validates one slot's metadata and records it. A crash can leave an add or upsert half
/// published (`publish` stores the state, then the sequence number, then retires the old slot):
/// a ready slot without a sequence number is still being inserted, and two visible slots of one
/// key mean the older was not retired yet; both are repaired here (dirty files only).
fn scanSlot(self: *Index, regions: layout.Regions, slot: u32, state: *ScanState) Error!void {
    const meta = regions.meta(slot);
    if (meta.state > @intFromEnum(layout.SlotState.ready)) return error.Corrupt;
    if (meta.state == @intFromEnum(layout.SlotState.empty)) {
        // Never written, or killed while its metadata was being written (before publication):
        // either way not yet visible. A published sequence number here is corruption, and
        // would make a key visible to scans that the key map does not know.
        if (meta.created_seq != 0 and meta.created_seq != layout.unpublished) return error.Corrupt;
        return;
    }
    if (meta.level > layout.max_level) return error.Corrupt;
    const upper_end = @as(u64, meta.upper_offset) + meta.level;
    if (upper_end > regions.upper_capacity) return error.Corrupt;
    if (meta.prev_slot != layout.no_slot and
        meta.prev_slot >= regions.capacity) return error.Corrupt;
    state.used = slot + 1;
    state.upper_used = @max(state.upper_used, upper_end);
    const published = meta.created_seq != layout.unpublished;
    if (meta.state == @intFromEnum(layout.SlotState.inserting)) {
        // `publish` marks the slot ready before it gives it a sequence number.
        if (published) return error.Corrupt;
        return;
    }
    if (!published) {
        if (state.clean) return error.Corrupt;
        return; // Killed between the two stores of `publish`: the WAL replays the add.
    }
    if (meta.created_seq == 0 or meta.created_seq >= view_mod.live_seq) return error.Corrupt;
    if (meta.deleted_seq >= view_mod.live_seq) return error.Corrupt;
    if (meta.deleted_seq != 0 and meta.deleted_seq < meta.created_seq) return error.Corrupt;
    state.max_seq = @max(state.max_seq, meta.created_seq, meta.deleted_seq);
    const live = meta.deleted_seq == 0;
    if (live) state.live += 1;
    if (state.entry == null or meta.level > state.entry.?.level) state.entry = .{
        .slot = slot,
        .level = meta.level,
    };
    try mapKey(self, regions, slot, live, state);
}

/// Points the key map at the key's visible slot (else its newest), retiring an older visible
/// twin left by a crash in the middle of an upsert.
fn mapKey(
    self: *Index,
    regions: layout.Regions,
    slot: u32,
    live: bool,
    state: *ScanState,
) Error!void {
    const meta = regions.meta(slot);
    const stripe = self.keys.stripeOf(meta.key);
    const got = stripe.map.getOrPut(self.gpa, meta.key) catch return error.OutOfMemory;
    if (!got.found_existing) {
        got.value_ptr.* = slot;
        return;
    }
    const other = regions.meta(got.value_ptr.*);
    const other_live = other.deleted_seq == 0;
    if (live and other_live) {
        if (state.clean) return error.Corrupt;
        const newer, const older = if (meta.created_seq > other.created_seq) .{
            meta,
            other,
        } else .{ other, meta };
        older.deleted_seq = newer.created_seq;
        state.live -= 1;
        if (newer == meta) got.value_ptr.* = slot;
        return;
    }
    const prefer = if (live != other_live) live else meta.created_seq > other.created_seq;
    if (prefer) got.value_ptr.* = slot;
}

fn replay(self: *Index) Error!void {
    var wal = &(self.wal orelse return);
    if (wal.end == 0) return;
    if (!self.writable) {
        // A read-only open cannot repair; it must not serve a state missing logged writes either.
        return error.ReadOnly;
    }
    const Apply = struct {
        fn apply(index: *Index, record: wal_mod.Record) Error!void {
            switch (record.op) {
                .add, .add_record => {
                    // Records are validated before they are logged: an invalid vector under a
                    // valid checksum is a damaged log, never a record to skip.
                    index_write.validateVector(index, record.vector) catch return error.Corrupt;
                    if (alreadyApplied(index, record.key, record.vector, record.payload)) return;
                    try centre.ensure(index, record.vector, 1);
                    index_write.addLocked(
                        index,
                        record.key,
                        record.vector,
                        record.payload,
                        false,
                    ) catch |err| return switch (err) {
                        // A payload that was valid when it was logged: the log is damaged.
                        error.InvalidMetadata, error.InvalidKey, error.IdConflict => error.Corrupt,
                        else => |e| e,
                    };
                },
                .set_record => index_records.updateLocked(
                    index,
                    record.key,
                    record.payload,
                    false,
                ) catch |err| switch (err) {
                    // The mapped files may already hold a later record's effect: a remove (or
                    // a deleteMany) of this key after the update. That record follows in the
                    // log; the update has nothing left to change.
                    error.NotFound => {},
                    error.InvalidMetadata => return error.Corrupt,
                    else => |e| return e,
                },
                .remove => _ = try index_write.removeLocked(index, record.key, "", false),
            }
        }
    };
    self.replaying = true;
    defer self.replaying = false;
    _ = try wal.replay(self.gpa, self, Error, Apply.apply);
    try self.checkpoint();
}

/// Loads `path.records` and checks it against the slots the scan kept.
fn loadRecords(self: *Index, path: []const u8, writable: bool, end_expected: u64) Error!void {
    const store = self.records;
    const used: u32 = @intCast(self.slots_used.load(.acquire));
    store.openFile(path, writable, used, end_expected) catch |err|
        return index_mod.mapRecordsError(err);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    store.checkLoaded(used, index_mod.SlotKeys{ .regions = generation.payload }) catch |err|
        return index_mod.mapRecordsError(err);
}

/// True when the key is live with exactly this vector and payload (the logged add finished
/// before the crash).
fn alreadyApplied(self: *Index, key: u64, vector: []const f32, record: []const u8) bool {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    // Recovery runs alone, on the mapping it just made: a stale view cannot happen, and if it
    // did the record would simply be applied again (an upsert).
    const found = read.slotAt(self, generation.payload, key, view_mod.live_seq) catch return false;
    const slot = found orelse return false;
    const stored_record = if (self.records.at(slot, view_mod.live_seq)) |v| v.bytes else "";
    if (!std.mem.eql(u8, stored_record, record)) return false;
    const stored = generation.payload.vector(slot);
    if (self.metric == .cosine) {
        // Without memory for the comparison the add is simply applied again (an upsert).
        const copy = self.gpa.dupe(f32, vector) catch return false;
        defer self.gpa.free(copy);
        _ = distance.normalize(copy);
        return std.mem.eql(f32, copy, stored);
    }
    return std.mem.eql(f32, vector, stored);
}

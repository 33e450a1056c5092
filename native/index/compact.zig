//! Compaction: reclaims tombstones by rebuilding the graph from the live vectors into fresh
//! storage, then swapping it in as a new mapping generation. It runs on the exclusive path: the
//! caller holds the structure lock exclusively, so no other call on the index is in flight.
//! Views and snapshots pin slot numbers that compaction changes, so it refuses while any is alive.
//!
//! A persistent index builds `path~compact*` beside itself and swaps it in through
//! storage/swap.zig, whose commit record makes the four renames crash-atomic: a kill at any point
//! leaves either the old index or (rolled forward by the next open) the compacted one.
const std = @import("std");
const layout = @import("../storage/layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const write = @import("write.zig");
const view_mod = @import("../hnsw/view.zig");
const storage_mod = @import("../storage/storage.zig");
const swap = @import("../storage/swap.zig");
const os = @import("../storage/os.zig");
const centre = @import("centre.zig");
const index_records = @import("records.zig");

/// Lets a caller on another thread watch a compaction's rebuild and stop it before the swap
/// (the async API's `compactAsync` with an AbortSignal). Both words may live in shared memory.
pub const Control = struct {
    /// Nonzero asks the rebuild to stop at its next chunk; the index is then left as it was.
    cancel: *const u32,
    /// Written as the rebuild goes: [0] vectors rebuilt so far, [1] vectors to rebuild.
    progress: *[2]u64,

    /// Vectors rebuilt between two looks at `cancel`.
    const chunk_vectors = 4096;

    fn cancelled(control: Control) bool {
        return @atomicLoad(u32, control.cancel, .acquire) != 0;
    }
};

pub fn compact(self: *Index, threads: u32) Error!void {
    rebuild(self, threads, null) catch |err| return switch (err) {
        // Only a Control can cancel.
        error.Cancelled => unreachable,
        else => |e| e,
    };
}

/// `compact` that reports progress and stops when asked: returns false if it was cancelled
/// (before the swap: the index is unchanged and the temporary files are removed).
pub fn compactControlled(self: *Index, threads: u32, control: Control) Error!bool {
    rebuild(self, threads, control) catch |err| return switch (err) {
        error.Cancelled => false,
        else => |e| e,
    };
    return true;
}

fn rebuild(self: *Index, threads: u32, control: ?Control) (Error || error{Cancelled})!void {
    if (!self.writable) return error.ReadOnly;
    if (self.guards.live() > 0 or self.snapshots.live() > 0) return error.Busy;
    try self.checkpoint();

    const live = try inInsertionOrder(self, try collectLive(self));
    defer self.gpa.free(live.keys);
    defer self.gpa.free(live.vectors);
    defer self.gpa.free(live.records);

    var tmp_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const tmp_path: ?[]const u8 = if (self.path) |p| swap.tempPath(
        &tmp_buffer,
        p,
    ) catch return error.InvalidArgument else null;
    if (self.path) |p| {
        // A swap this process committed but could not finish (a rename failed) comes first:
        // its files are the live index under their temporary names.
        if (try swap.pending(p)) try swap.rollForward(p);
        try swap.removeLeftovers(p);
        swap.begin(p) catch |err| return switch (err) {
            // `path~compact` is somebody's index, not a build of ours: leave it alone.
            error.Exists => error.Busy,
            error.Io => error.Io,
            error.DiskFull => error.DiskFull,
        };
    }
    var committed = false;
    errdefer if (self.path) |p| if (!committed) swap.removeLeftovers(p) catch |err| {
        // The index itself is unchanged; the next writable open removes the leftovers.
        std.log.warn("quiver: could not remove {s}~compact files: {s}", .{ p, @errorName(err) });
    };

    const options = self.derivedOptions(live.keys.len);
    // The same layout (an index's generations share one): aligned i8 codes stay aligned.
    const fresh = try Index.createWith(self.gpa, options, tmp_path, self.layout.codes);
    var fresh_alive = true;
    defer if (fresh_alive) fresh.destroy();
    // i8 keeps its centre (given or trained): compaction must not re-centre the codes behind
    // the caller's back, nor refuse the options the index was created with afterwards.
    if (self.layout.codedI8() and centre.ready(self)) {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        try centre.set(fresh, generation.payload.centre());
    }
    // The structure lock is held exclusively: the store and its schema cannot change.
    try index_records.setSchema(fresh, self.records.schema.bytes);
    try addLive(fresh, live, threads, control);
    if (fresh.persistent) {
        try fresh.checkpoint();
    } else {
        // An in-memory index never checkpoints; its header must still describe the new state.
        const contention = &fresh.counters.lock_contention;
        var header = fresh.storage.currentHeader(contention);
        fresh.fillCounters(&header, fresh.storage.epochs.current.load(.acquire).payload);
        header.clean = 1;
        fresh.storage.writeHeader(header, contention);
    }

    const current = fresh.storage.epochs.current.load(.acquire).payload;
    const capacity = current.capacity;
    const upper_capacity = current.upper_capacity;
    var fds: [storage_mod.file_count]os.Fd = undefined;
    var duped: usize = 0;
    errdefer for (fds[0..duped]) |fd| os.close(fd);
    // Duplicates keep the files (and the writer's flock on the new data file) alive after the
    // temporary index closes its own descriptors.
    for (fresh.storage.fds, 0..) |fd, i| {
        fds[i] = try os.dup(fd);
        duped += 1;
    }
    // The build's key map and counters describe the new files exactly: they move over, so the
    // adopting index needs no rescan (open's recovery scan is for files of unknown state).
    var state = fresh.takeState();
    var state_taken = false;
    defer if (!state_taken) {
        state.keys.deinit(self.gpa);
        // The build's records store moved into the state with its key map.
        state.records.deinit();
        self.gpa.destroy(state.records);
    };
    fresh_alive = false;
    fresh.destroy();
    // Node versions for every slot of the new files, before the commit: adoptState below must
    // not fail once the new files are the index (the call is then a no-op, nothing allocates).
    try self.node_locks.ensure(self.gpa, capacity);
    // Mapped before the commit: once the new files are the index, nothing may fail that would
    // leave this index writing to the old, unlinked ones.
    duped = 0;
    var prepared = self.storage.prepareAdopt(fds, capacity, upper_capacity) catch |err|
        return index_mod.mapStorageError(err);
    var adopted = false;
    defer if (!adopted) prepared.discard();
    if (self.path) |p| {
        try swap.commit(p);
        committed = true;
        // Past the commit point the new files are the index, whatever their names: they are
        // adopted even if a rename fails, and the next writable open finishes the renames.
        swap.rollForward(p) catch |err|
            std.log.warn(
                "quiver: compaction of {s} committed; its renames finish at the next open ({s})",
                .{ p, @errorName(err) },
            );
    }
    self.storage.adopt(&prepared, &self.counters.lock_contention) catch |err| {
        if (committed) {
            // The index on disk is the compacted one, which holds every write (the log was
            // checkpointed first and no call ran since); this handle still maps the old files.
            // It must not write to them: it becomes read-only, so nothing acknowledged later
            // can be lost, and a reopen gives the compacted index.
            self.writable = false;
            std.log.warn("quiver: compaction of {s} committed but could not be adopted ({s}); " ++
                "the index is read-only until reopened", .{ self.path.?, @errorName(err) });
        }
        return index_mod.mapStorageError(err);
    };
    adopted = true;
    try self.adoptState(state);
    state_taken = true;
}

/// The live records: keys, vectors, and payloads (pointing into the store, which cannot change
/// while compaction holds the structure lock; empty when no record has one).
const Live = struct { keys: []u64, vectors: []f32, records: [][]const u8 };

/// The live records permuted into the order one batch of them is inserted in
/// (`write.insertionOrder`), so that the chunks of a controlled rebuild, each sorted again on
/// its own, insert exactly what one batch would. Frees `live`'s arrays (also on failure).
fn inInsertionOrder(self: *Index, live: Live) Error!Live {
    defer self.gpa.free(live.keys);
    defer self.gpa.free(live.vectors);
    defer self.gpa.free(live.records);
    const dims = self.layout.dimensions;
    const order = try write.insertionOrder(self, live.keys);
    defer self.gpa.free(order);
    // Live keys are distinct: the order is a permutation of all of them.
    if (order.len != live.keys.len) return error.Internal;
    const keys = self.gpa.alloc(u64, order.len) catch return error.OutOfMemory;
    errdefer self.gpa.free(keys);
    const vectors = self.gpa.alloc(f32, live.vectors.len) catch return error.OutOfMemory;
    errdefer self.gpa.free(vectors);
    const records = self.gpa.alloc([]const u8, live.records.len) catch return error.OutOfMemory;
    for (order, 0..) |from, to| {
        keys[to] = live.keys[from];
        @memcpy(vectors[to * dims ..][0..dims], live.vectors[from * dims ..][0..dims]);
        if (records.len > 0) records[to] = live.records[from];
    }
    return .{ .keys = keys, .vectors = vectors, .records = records };
}

/// The rebuild: one batch, or chunks between which a Control's cancel word is read. Chunks add
/// in the same order as one batch does (`inInsertionOrder`).
fn addLive(
    fresh: *Index,
    live: Live,
    threads: u32,
    control: ?Control,
) (Error || error{Cancelled})!void {
    const c = control orelse
        return write.addBatchRecords(fresh, live.keys, live.vectors, live.records, threads);
    const dims = fresh.layout.dimensions;
    const total = live.keys.len;
    @atomicStore(u64, &c.progress[1], total, .release);
    var done: usize = 0;
    while (done < total) {
        if (c.cancelled()) return error.Cancelled;
        const n = @min(Control.chunk_vectors, total - done);
        const vectors = live.vectors[done * dims ..][0 .. n * dims];
        const records = if (live.records.len > 0) live.records[done..][0..n] else live.records;
        try write.addBatchRecords(fresh, live.keys[done..][0..n], vectors, records, threads);
        done += n;
        @atomicStore(u64, &c.progress[0], done, .release);
    }
    std.debug.assert(done == total);
    // The last look: a cancel that arrived during the last chunk still stops before the swap.
    if (c.cancelled()) return error.Cancelled;
}

fn collectLive(self: *Index) Error!Live {
    const count = self.size();
    const dims = self.layout.dimensions;
    const keys = self.gpa.alloc(u64, count) catch return error.OutOfMemory;
    errdefer self.gpa.free(keys);
    const vectors = self.gpa.alloc(f32, count * dims) catch return error.OutOfMemory;
    errdefer self.gpa.free(vectors);
    const has_records = self.records.records > 0;
    const records = self.gpa.alloc([]const u8, if (has_records) count else 0) catch
        return error.OutOfMemory;
    errdefer self.gpa.free(records);
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const regions = generation.payload;
    const used = @min(self.slots_used.load(.acquire), regions.capacity);
    var n: usize = 0;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        if (!view_mod.visible(regions.meta(slot), view_mod.live_seq)) continue;
        if (n == count) return error.Internal;
        keys[n] = regions.meta(slot).key;
        @memcpy(vectors[n * dims ..][0..dims], regions.vector(slot));
        if (has_records) {
            records[n] = if (self.records.at(slot, view_mod.live_seq)) |v| v.bytes else "";
        }
        n += 1;
    }
    if (n != count) {
        _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
        return error.Internal;
    }
    return .{ .keys = keys, .vectors = vectors, .records = records };
}

//! Saving a snapshot: a consistent on-disk copy of the index as it was at the snapshot's
//! sequence number, written while writers go on. Slots that did not exist or were not visible
//! at that moment become tombstones; links to slots beyond the snapshot are dropped; the copy is
//! checkpointed (clean, empty WAL), so opening it gives exactly the snapshot's contents.
//! The copy is built under `path~backup` and moved into place only when complete
//! (storage/swap.zig): a backup that fails or is killed midway leaves nothing at `path` that
//! opens, and an existing file at `path` or any companion (`path.graph`, `path.wal`, ...) is
//! refused (`Exists`), never overwritten.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");
const layout = @import("../storage/layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const view_mod = @import("../hnsw/view.zig");
const tables = @import("tables.zig");
const entry_mod = @import("../hnsw/entry.zig");
const codes = @import("../hnsw/codes.zig");
const centre = @import("centre.zig");
const read = @import("read.zig");
const swap = @import("../storage/swap.zig");

pub fn save(self: *Index, snapshot_handle: u64, path: []const u8) Error!void {
    const snap: tables.Snapshot = if (snapshot_handle == 0) blk: {
        // Saving the live view: take a snapshot for the length of the copy.
        const handle = try read.snapshotCreate(self);
        defer _ = self.snapshots.table.remove(handle);
        break :blk self.snapshots.table.get(handle).?;
    } else self.snapshots.table.get(snapshot_handle) orelse return error.InvalidArgument;

    try swap.beginBackup(path);
    var published = false;
    errdefer if (!published) swap.abandonBackup(path) catch |err| {
        // Nothing is at `path`; the next backup to it removes these files (they are marked).
        std.log.warn("quiver: could not remove {s}~backup files: {s}", .{ path, @errorName(err) });
    };
    var temp_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const temp = swap.backupTempPath(&temp_buffer, path) catch return error.InvalidArgument;
    try copyTo(self, snap, temp);
    swap.publishBackup(path) catch |err| return err;
    published = true;
}

/// Writes the snapshot as a complete, checkpointed index at `path` (the temporary name).
fn copyTo(self: *Index, snap: tables.Snapshot, path: []const u8) Error!void {
    const options = self.derivedOptions(snap.slots_used);
    // The same layout: a copy of a format 2 index opens wherever the index does.
    const copy = try Index.createWith(self.gpa, options, path, self.layout.codes);
    var copy_open = true;
    defer if (copy_open) copy.destroy();
    try fill(self, snap, copy, options);
    try copy.checkpoint();
    // Closed (descriptors and lock released) before its files are moved into place, without
    // the second checkpoint `destroy` would take: one that failed would leave the copy dirty.
    copy_open = false;
    const storage = copy.storage;
    copy.destroyState();
    storage.destroy();
}

/// Copies the snapshot's slots, lists and counters into `copy`.
fn fill(self: *Index, snap: tables.Snapshot, copy: *Index, options: abi.Options) Error!void {
    const source = self.storage.pin();
    defer self.storage.unpin(source);
    // The copy's codes are the source's, bit for bit: so is the rotation they were taken with
    // (set before the centre, whose rotation `centre.set` derives).
    if (self.layout.storage == .rabitq) {
        const target = copy.storage.pin();
        defer copy.storage.unpin(target);
        @memcpy(target.payload.signs(), source.payload.signs());
    }
    // i8 codes are only meaningful around the centre they were taken from.
    if (self.layout.codedI8() and centre.ready(self)) try centre.set(
        copy,
        source.payload.centre(),
    );
    const upper_used = self.upper_used.load(.acquire);
    copy.storage.ensureCapacity(
        options.capacity,
        @max(upper_used, 1),
        &copy.counters.lock_contention,
    ) catch |err|
        return index_mod.mapStorageError(err);
    const target = copy.storage.pin();
    defer copy.storage.unpin(target);

    const used: u32 = @intCast(@min(snap.slots_used, source.payload.capacity));
    var entry: ?entry_mod.Entry = null;
    var live: u64 = 0;
    const links = self.gpa.alloc(u32, self.layout.m0) catch return error.OutOfMemory;
    defer self.gpa.free(links);
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        if (copySlot(self, source.payload, target.payload, slot, used, snap.seq, links)) {
            live += 1;
        }
        const meta = target.payload.meta(slot);
        if (meta.state == @intFromEnum(layout.SlotState.ready) and (entry == null or
            meta.level > entry.?.level))
        {
            entry = .{ .slot = slot, .level = meta.level };
        }
    }
    if (live != snap.live) {
        // The snapshot's count and its copy disagree: a bug, reported rather than saved.
        _ = self.counters.invariant_violations.fetchAdd(1, .monotonic);
        return error.Internal;
    }
    // Each copied list's edges (hnsw/codes.zig), once every slot's codes are in the copy.
    if (self.layout.storage == .rabitq) {
        codes.rebuild(codes.Writer.of(target.payload, self.metric), used);
    }
    copy.slots_used.store(used, .release);
    copy.upper_used.store(upper_used, .release);
    copy.live.store(live, .release);
    copy.seq.store(snap.seq, .release);
    copy.entry.reset(entry);
    copy.rebuildLiveBits();
    try copyRecords(self, snap.seq, copy, target.payload, used);
}

/// Copies the schema and the payload each slot live in the copy had at `seq`. The copy is
/// private to this call, so its store is filled without its writers lock.
fn copyRecords(
    self: *Index,
    seq: u64,
    copy: *Index,
    target: layout.Regions,
    used: u32,
) Error!void {
    // Copied out first: the two stores' locks share a rank, so one is never taken inside the
    // other.
    const Copied = struct { slot: u32, bytes: []u8 };
    var copied = std.ArrayListUnmanaged(Copied){};
    defer {
        for (copied.items) |c| self.gpa.free(c.bytes);
        copied.deinit(self.gpa);
    }
    const from = self.records;
    const schema_bytes = blk: {
        from.lock.lockShared(&self.counters.lock_contention);
        defer from.lock.unlockShared();
        for (0..used) |i| {
            const slot: u32 = @intCast(i);
            if (!view_mod.visible(target.meta(slot), view_mod.live_seq)) continue;
            const version = from.at(slot, seq) orelse continue;
            copied.ensureUnusedCapacity(self.gpa, 1) catch return error.OutOfMemory;
            const bytes = self.gpa.dupe(u8, version.bytes) catch return error.OutOfMemory;
            copied.appendAssumeCapacity(.{ .slot = slot, .bytes = bytes });
        }
        break :blk self.gpa.dupe(u8, from.schema.bytes) catch return error.OutOfMemory;
    };
    defer self.gpa.free(schema_bytes);
    const to = copy.records;
    {
        to.lock.lock(&copy.counters.lock_contention);
        defer to.lock.unlock();
        to.setSchema(schema_bytes) catch |err| return switch (err) {
            error.OutOfMemory => error.OutOfMemory,
            error.InvalidArgument => error.Internal,
        };
        to.writeSchemaEntry() catch |err| return index_mod.mapRecordsError(err);
    }
    for (copied.items) |c| {
        const prepared = to.prepare(c.bytes) catch |err| return index_mod.mapRecordsError(err);
        to.reserveSlot(c.slot) catch |err| {
            to.cancel(prepared);
            return index_mod.mapRecordsError(err);
        };
        to.attach(c.slot, prepared);
    }
}

/// Copies one slot as it was at `seq`; returns whether it is live in the copy.
fn copySlot(
    self: *Index,
    from: layout.Regions,
    to: layout.Regions,
    slot: u32,
    used: u32,
    seq: u64,
    links: []u32,
) bool {
    const src = from.meta(slot);
    const dst = to.meta(slot);
    const state = @atomicLoad(u8, &src.state, .acquire);
    if (state != @intFromEnum(layout.SlotState.ready)) {
        // Still being inserted (its metadata may be mid-write): a key-less tombstone in the copy,
        // so links that already reach it stay harmless.
        dst.* = std.mem.zeroes(layout.Meta);
        dst.prev_slot = layout.no_slot;
        dst.state = @intFromEnum(layout.SlotState.ready);
        dst.created_seq = 1;
        dst.deleted_seq = 1;
        return false;
    }
    const created = @atomicLoad(u64, &src.created_seq, .acquire);
    const deleted = @atomicLoad(u64, &src.deleted_seq, .acquire);
    const visible = view_mod.visible(src, seq);
    // Field by field: writers store the sequence numbers and the state atomically while this
    // copies, and a plain struct read would race them. The other fields of a ready slot are
    // immutable (written before its state was released).
    dst.key = src.key;
    dst.prev_slot = src.prev_slot;
    dst.upper_offset = src.upper_offset;
    dst.level = src.level;
    // The vector is copied bit for bit below, so its check holds in the copy.
    dst.vector_check = src.vector_check;
    dst.reserved = [_]u8{0} ** 2;
    dst.state = @intFromEnum(layout.SlotState.ready);
    if (visible) {
        dst.created_seq = created;
        dst.deleted_seq = 0;
    } else if (created <= seq) {
        dst.created_seq = created;
        dst.deleted_seq = deleted; // removed at or before the snapshot
    } else {
        // Not yet visible at the snapshot: a routing tombstone in the copy.
        dst.created_seq = 1;
        dst.deleted_seq = 1;
    }
    @memcpy(to.vector(slot), from.vector(slot));
    switch (from.layout.storage) {
        .f32 => {},
        .f16 => @memcpy(
            to.walkF16(slot),
            @as([*]const f16, @ptrCast(@alignCast(from.walk(slot))))[0..from.layout.dimensions],
        ),
        .i8, .rabitq => {
            // The terms and the codes, as the record reserves them (the copy has the layout).
            const bytes = layout.i8_terms_bytes + from.layout.walk_bytes;
            assert(std.meta.eql(from.layout, to.layout));
            @memcpy(
                (to.walkI8(slot) - layout.i8_terms_bytes)[0..bytes],
                (from.walk(slot) - layout.i8_terms_bytes)[0..bytes],
            );
        },
    }
    var level: u32 = 0;
    while (level <= src.level) : (level += 1) copyList(self, from, to, slot, level, used, links);
    return visible;
}

fn copyList(
    self: *Index,
    from: layout.Regions,
    to: layout.Regions,
    slot: u32,
    level: u32,
    used: u32,
    links: []u32,
) void {
    const meta = from.meta(slot);
    if (@as(u64, meta.upper_offset) + meta.level > from.upper_capacity) return;
    const words = from.list(slot, level, meta.upper_offset);
    const got = self.node_locks.read(
        slot,
        words,
        self.layout.maxDegree(level),
        links,
        &self.counters,
    );
    var kept: usize = 0;
    for (got) |id| {
        if (id < used and id != slot) {
            links[kept] = id;
            kept += 1;
        }
    }
    const out = to.list(slot, level, meta.upper_offset);
    out[0] = @intCast(kept);
    @memcpy(out[1 .. 1 + kept], links[0..kept]);
}

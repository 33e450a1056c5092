//! The records store: each slot's payload (docs/records.md) as a chain of versions in memory, the
//! field indexes over the newest versions, and the file `path.records` that every checkpoint
//! appends the changed payloads to.
//!
//! Versions: the payload a slot is made with has sequence number 0 (visible whenever the slot
//! is); each update pushes a version with its own sequence number, so a snapshot at `seq` reads
//! the newest version at or below it. Versions no live snapshot can read are dropped as updates
//! push new ones.
//!
//! File: | entry | entry | ... with entry = | u32 bytes | u32 checksum | u32 slot | u8 kind |
//! 3 pad | u64 key | payload |. The first entry is the schema (kind 1); each later one (kind 2)
//! is the newest payload of `slot` at a checkpoint, so the last entry of a slot wins. The file is
//! synced before the log is emptied: a torn tail is a checkpoint that did not finish, whose
//! records the log still holds, and is cut; a bad entry with data after it is `Corrupt`. Once
//! superseded entries outweigh live ones (past `rewrite_bytes_min`), a checkpoint rewrites the
//! file with the live ones alone and renames it into place (`rewriteFile`).
const std = @import("std");
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");
const os = @import("../storage/os.zig");
const wal = @import("../storage/wal.zig");
const swap = @import("../storage/swap.zig");
const schema_mod = @import("schema.zig");
const Schema = schema_mod.Schema;
const payload_mod = @import("payload.zig");
const Parsed = payload_mod.Parsed;
const Fields = @import("fields.zig").Fields;
const filter = @import("filter.zig");
const Bitset = @import("bitset.zig").Bitset;

pub const file_suffix = ".records";
/// The rewritten file before it replaces `path.records` (see `rewriteFile`).
pub const rewrite_suffix = file_suffix ++ "~rewrite";

/// A checkpoint rewrites the file once it holds at least this many bytes and less than half of
/// them are live (the rest superseded payloads).
pub const rewrite_bytes_min: u64 = 1 << 20;

comptime {
    assert(payload_mod.bytes_max <= wal.payload_bytes_max);
}

pub const Version = struct {
    seq: u64,
    bytes: []u8,
    older: ?*Version = null,
};

/// A payload copied, validated and allocated before its log record, so that attaching it after
/// the record is written cannot fail.
pub const Prepared = struct {
    version: *Version,

    pub fn parsed(self: Prepared, schema: *const Schema) Parsed {
        // Validated by `prepare` against the same schema, which never changes once records exist.
        return payload_mod.parse(self.version.bytes, schema) catch unreachable;
    }
};

pub const Error = error{ OutOfMemory, InvalidMetadata, Io, DiskFull, Corrupt };

const EntryHeader = extern struct {
    bytes: u32,
    checksum: u32,
    slot: u32,
    kind: u8,
    pad: [3]u8,
    key: u64,
};

comptime {
    assert(@sizeOf(EntryHeader) == 24);
}

const kind_schema: u8 = 1;
const kind_record: u8 = 2;
const slot_none: u32 = std.math.maxInt(u32);

pub const Store = struct {
    gpa: std.mem.Allocator,
    /// Shared by readers of payloads and fields (filter materialization, record reads), exclusive
    /// for every change. Taken under a key stripe, before the commit lock.
    lock: locks.RwLock = .{ .rank = .records },
    lock_contention: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    schema: Schema,
    fields: Fields,
    heads: std.ArrayListUnmanaged(?*Version) = .{},
    /// Slots whose newest payload is not yet in the file.
    dirty: std.AutoArrayHashMapUnmanaged(u32, void) = .{},
    /// Slots with more than one version (read by snapshots older than their newest update).
    chained: std.AutoArrayHashMapUnmanaged(u32, void) = .{},
    /// Room reserved in `dirty` and `chained` by prepared payloads not yet attached.
    reserved: u32 = 0,
    /// False after a field update failed for memory: the next filter rebuilds them (the payloads,
    /// which are the truth, were applied).
    fields_valid: bool = true,
    /// Slots with a payload, and their newest payloads' bytes.
    records: u64 = 0,
    payload_bytes: u64 = 0,
    file: ?os.Fd = null,
    file_end: u64 = 0,
    /// A failed append may have left bytes past `file_end`; they are cut before the next one.
    tail_dirty: bool = false,
    /// Rewrites of the file that failed (`rewriteFile`; the appended file stayed in use).
    rewrite_failures: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// The key each loaded entry named, checked against the slots by `checkLoaded`.
    loaded_keys: std.AutoHashMapUnmanaged(u32, u64) = .{},

    /// Initializes the store in place: the field indexes point at `schema`, so the store must not
    /// move afterwards (it lives inside the index).
    pub fn init(self: *Store, gpa: std.mem.Allocator) error{OutOfMemory}!void {
        self.* = .{ .gpa = gpa, .schema = Schema.empty(), .fields = undefined };
        self.fields = try Fields.init(gpa, &self.schema);
    }

    pub fn deinit(self: *Store) void {
        for (self.heads.items) |head| {
            var next = head;
            while (next) |version| {
                next = version.older;
                self.freeVersion(version);
            }
        }
        self.heads.deinit(self.gpa);
        self.dirty.deinit(self.gpa);
        self.chained.deinit(self.gpa);
        self.loaded_keys.deinit(self.gpa);
        self.fields.deinit(self.gpa);
        self.schema.deinit(self.gpa);
        if (self.file) |fd| os.close(fd);
        self.* = undefined;
    }

    fn freeVersion(self: *Store, version: *Version) void {
        self.gpa.free(version.bytes);
        self.gpa.destroy(version);
    }

    /// Replaces the schema of a store without records. The caller holds the lock exclusively.
    pub fn setSchema(self: *Store, bytes: []const u8) error{ OutOfMemory, InvalidArgument }!void {
        assert(self.records == 0);
        var schema = Schema.parse(self.gpa, bytes) catch |err| return switch (err) {
            error.OutOfMemory => error.OutOfMemory,
            error.InvalidSchema => error.InvalidArgument,
        };
        errdefer schema.deinit(self.gpa);
        // The new fields point at `self.schema`, so the schema moves in first; the old one is
        // kept until the fields exist, so a failure leaves the store as it was.
        var old = self.schema;
        self.schema = schema;
        const fields = Fields.init(self.gpa, &self.schema) catch {
            self.schema = old;
            return error.OutOfMemory;
        };
        self.fields.deinit(self.gpa);
        self.fields = fields;
        old.deinit(self.gpa);
    }

    /// Copies and validates a payload and reserves room in the dirty and chained sets for it.
    /// Takes the lock.
    pub fn prepare(self: *Store, bytes: []const u8) Error!Prepared {
        if (bytes.len > payload_mod.bytes_max) return error.InvalidMetadata;
        self.lock.lock(&self.lock_contention);
        defer self.lock.unlock();
        _ = payload_mod.parse(bytes, &self.schema) catch return error.InvalidMetadata;
        const version = try self.gpa.create(Version);
        errdefer self.gpa.destroy(version);
        version.* = .{ .seq = 0, .bytes = try self.gpa.dupe(u8, bytes) };
        errdefer self.gpa.free(version.bytes);
        try self.dirty.ensureTotalCapacity(self.gpa, self.dirty.count() + self.reserved + 1);
        try self.chained.ensureTotalCapacity(self.gpa, self.chained.count() + self.reserved + 1);
        self.reserved += 1;
        return .{ .version = version };
    }

    /// Makes room for the payload of `slot`, once the slot is known. Takes the lock.
    pub fn reserveSlot(self: *Store, slot: u32) Error!void {
        self.lock.lock(&self.lock_contention);
        defer self.lock.unlock();
        if (slot < self.heads.capacity) return;
        try self.heads.ensureTotalCapacity(self.gpa, @max(slot + 1, self.heads.capacity * 2));
    }

    /// Gives back a prepared payload that will not be attached. Takes the lock.
    pub fn cancel(self: *Store, prepared: Prepared) void {
        self.lock.lock(&self.lock_contention);
        defer self.lock.unlock();
        assert(self.reserved > 0);
        self.reserved -= 1;
        self.freeVersion(prepared.version);
    }

    /// Makes `prepared` the first payload of a new `slot`. Cannot fail. Takes the lock.
    pub fn attach(self: *Store, slot: u32, prepared: Prepared) void {
        self.lock.lock(&self.lock_contention);
        defer self.lock.unlock();
        self.attachLocked(slot, prepared);
    }

    fn attachLocked(self: *Store, slot: u32, prepared: Prepared) void {
        assert(self.reserved > 0);
        assert(prepared.version.seq == 0);
        self.reserved -= 1;
        // `reserveSlot` made room for this slot.
        assert(slot < self.heads.capacity);
        while (self.heads.items.len <= slot) self.heads.appendAssumeCapacity(null);
        // Slots are never reused: a new slot has no payload yet.
        assert(self.heads.items[slot] == null);
        self.heads.items[slot] = prepared.version;
        self.dirty.putAssumeCapacity(slot, {});
        self.records += 1;
        self.payload_bytes += prepared.version.bytes.len;
        self.fields.add(self.gpa, slot, prepared.parsed(&self.schema)) catch {
            self.fields_valid = false;
        };
    }

    fn dropChain(self: *Store, slot: u32, head: *Version) void {
        self.fields.remove(slot, payload_mod.parse(head.bytes, &self.schema) catch unreachable);
        self.records -= 1;
        self.payload_bytes -= head.bytes.len;
        var next: ?*Version = head;
        while (next) |version| {
            next = version.older;
            self.freeVersion(version);
        }
        self.heads.items[slot] = null;
        _ = self.chained.swapRemove(slot);
    }

    /// Pushes `prepared` as the newest payload of `slot` at `seq`, and drops the versions no
    /// snapshot at or after `oldest_read` can see. The caller holds the lock exclusively and
    /// the commit lock (so no snapshot is made between the sequence number and the push).
    pub fn pushLocked(
        self: *Store,
        slot: u32,
        prepared: Prepared,
        seq: u64,
        oldest_read: u64,
    ) void {
        assert(self.reserved > 0);
        assert(seq > 0);
        self.reserved -= 1;
        const version = prepared.version;
        version.seq = seq;
        assert(slot < self.heads.capacity);
        while (self.heads.items.len <= slot) self.heads.appendAssumeCapacity(null);
        if (self.heads.items[slot]) |head| {
            self.fields.remove(slot, payload_mod.parse(head.bytes, &self.schema) catch unreachable);
            self.payload_bytes -= head.bytes.len;
        } else {
            self.records += 1;
        }
        version.older = self.heads.items[slot];
        self.heads.items[slot] = version;
        self.payload_bytes += version.bytes.len;
        // A slot whose first payload comes from an update reads as having none before it.
        if (self.trim(version, oldest_read)) {
            // No snapshot reads an older version any more: no fix-up for this slot.
            _ = self.chained.swapRemove(slot);
        } else {
            self.chained.putAssumeCapacity(slot, {});
        }
        self.dirty.putAssumeCapacity(slot, {});
        self.fields.add(self.gpa, slot, prepared.parsed(&self.schema)) catch {
            self.fields_valid = false;
        };
    }

    /// Frees the versions below the newest one a read at `oldest_read` sees; returns whether
    /// `head` is then all that any read sees.
    fn trim(self: *Store, head: *Version, oldest_read: u64) bool {
        var keep = head;
        while (keep.seq > oldest_read) {
            keep = keep.older orelse return false;
        }
        var next = keep.older;
        keep.older = null;
        while (next) |version| {
            next = version.older;
            self.freeVersion(version);
        }
        return keep == head;
    }

    /// The payload of `slot` a read at `seq` sees, or null. The caller holds the lock.
    pub fn at(self: *const Store, slot: u32, seq: u64) ?*const Version {
        if (slot >= self.heads.items.len) return null;
        var next: ?*const Version = self.heads.items[slot];
        while (next) |version| : (next = version.older) {
            if (version.seq <= seq) return version;
        }
        return null;
    }

    /// Rebuilds the field indexes from the newest payloads. The caller holds the lock exclusively.
    pub fn rebuildFields(self: *Store) error{OutOfMemory}!void {
        var fields = try Fields.init(self.gpa, &self.schema);
        errdefer fields.deinit(self.gpa);
        for (self.heads.items, 0..) |head, slot| {
            const version = head orelse continue;
            try fields.add(self.gpa, @intCast(slot), payload_mod.parse(
                version.bytes,
                &self.schema,
            ) catch unreachable);
        }
        self.fields.deinit(self.gpa);
        self.fields = fields;
        self.fields_valid = true;
    }

    /// The slots in [0, slots_used) whose payload, as a read at `seq` sees it, matches `program`
    /// (ALLOW lists resolved by the caller). The caller holds the lock, shared; the fields must
    /// be valid. Snapshots older than an update re-evaluate the updated slots on their version.
    pub fn matchLocked(
        self: *const Store,
        program: *const filter.Program,
        slots_used: u32,
        seq: u64,
        keys: anytype,
        out: *Bitset,
    ) error{OutOfMemory}!void {
        assert(self.fields_valid);
        try filter.materialize(program, &self.fields, slots_used, out, self.gpa);
        if (self.chained.count() == 0) return;
        for (self.chained.keys()) |slot| {
            if (slot >= slots_used) continue;
            const head = self.heads.items[slot].?;
            if (head.seq <= seq) continue;
            // No version at `seq`: the slot had no payload then (its first came by an update).
            const parsed = if (self.at(slot, seq)) |version|
                payload_mod.parse(version.bytes, &self.schema) catch unreachable
            else
                Parsed.none;
            if (filter.evalPayload(program, parsed, keys.keyOf(slot))) {
                out.set(slot);
            } else {
                out.unset(slot);
            }
        }
    }

    // The file.

    /// Creates `path.records` holding the (empty) schema; fails if it exists.
    pub fn createFile(self: *Store, path: []const u8) Error!void {
        assert(self.file == null);
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const full = std.fmt.bufPrintZ(&buffer, "{s}" ++ file_suffix, .{path}) catch
            return error.Io;
        const fd = os.open(full, .{ .writable = true, .create = true }) catch return error.Io;
        self.file = fd;
        self.file_end = 0;
        try self.writeSchemaEntry();
        try os.syncDirectoryOf(full);
    }

    /// Rewrites the file as the schema alone (a store without records). Syncs it.
    pub fn writeSchemaEntry(self: *Store) Error!void {
        const fd = self.file orelse return;
        assert(self.records == 0);
        try os.truncate(fd, 0);
        self.file_end = 0;
        self.tail_dirty = false;
        try self.appendEntries(&.{.{
            .slot = slot_none,
            .kind = kind_schema,
            .key = 0,
            .bytes = self.schema.bytes,
        }});
        try os.fsync(fd);
    }

    const Entry = struct { slot: u32, kind: u8, key: u64, bytes: []const u8 };

    fn appendEntries(self: *Store, entries: []const Entry) Error!void {
        const fd = self.file.?;
        if (self.tail_dirty) {
            try os.truncate(fd, self.file_end);
            self.tail_dirty = false;
        }
        var buffer = std.ArrayListUnmanaged(u8){};
        defer buffer.deinit(self.gpa);
        for (entries) |entry| try encodeEntry(self.gpa, &buffer, entry);
        writeAll(fd, buffer.items, self.file_end) catch |err| {
            self.tail_dirty = true;
            return err;
        };
        self.file_end += buffer.items.len;
    }

    /// What the header's `records_end` records after a checkpoint: the file's length, or 0 while
    /// the store holds no payload (a schema alone is not worth a check, and may still change).
    pub fn checkpointedEnd(self: *const Store) u64 {
        return if (self.file != null and self.records > 0) self.file_end else 0;
    }

    /// Bytes the file would hold rewritten: the schema and each slot's newest payload.
    fn liveBytes(self: *const Store) u64 {
        return (self.records + 1) * @sizeOf(EntryHeader) + self.payload_bytes +
            self.schema.bytes.len;
    }

    /// Whether `rewriteFile` is due: the file has grown past `rewrite_bytes_min` and holds more
    /// superseded entries than live ones (every update appends; nothing else shrinks it).
    pub fn rewriteDue(self: *const Store) bool {
        return self.file != null and self.dirty.count() == 0 and
            self.file_end >= rewrite_bytes_min and self.file_end > 2 * self.liveBytes();
    }

    /// Writes the schema and every slot's newest payload to `path.records~rewrite`, syncs it,
    /// renames it over `path.records` and syncs the directory; the store then appends to it.
    /// Runs after a checkpoint (nothing dirty), with mutations excluded and the lock held
    /// shared: both files hold the same payloads, so a crash at any point leaves a whole file at
    /// `path.records`. A failure before the rename removes the new file and keeps the old one in
    /// use; the caller may ignore it (the old file is complete).
    pub fn rewriteFile(self: *Store, path: []const u8, keys: anytype) Error!void {
        assert(self.dirty.count() == 0);
        var final_buf: [std.fs.max_path_bytes]u8 = undefined;
        var temp_buf: [std.fs.max_path_bytes]u8 = undefined;
        const final = std.fmt.bufPrintZ(&final_buf, "{s}" ++ file_suffix, .{path}) catch
            return error.Io;
        const temp = std.fmt.bufPrintZ(&temp_buf, "{s}" ++ rewrite_suffix, .{path}) catch
            return error.Io;
        // A leftover of an attempt that died before its rename holds payloads `path.records`
        // holds too; a file of that name that is not one is left alone (and no rewrite runs).
        removeLeftover(temp);
        const create = os.OpenOptions{ .writable = true, .create = true, .exclusive = true };
        const fd = os.open(temp, create) catch |err| return switch (err) {
            error.Exists, error.Io, error.NotFound, error.NotRegular => error.Io,
        };
        var renamed = false;
        errdefer if (!renamed) {
            os.close(fd);
            os.unlink(temp) catch {};
        };
        var buffer = std.ArrayListUnmanaged(u8){};
        defer buffer.deinit(self.gpa);
        var end: u64 = 0;
        try encodeEntry(self.gpa, &buffer, .{
            .slot = slot_none,
            .kind = kind_schema,
            .key = 0,
            .bytes = self.schema.bytes,
        });
        for (self.heads.items, 0..) |maybe_head, i| {
            const head = maybe_head orelse continue;
            const slot: u32 = @intCast(i);
            try encodeEntry(self.gpa, &buffer, .{
                .slot = slot,
                .kind = kind_record,
                .key = keys.keyOf(slot),
                .bytes = head.bytes,
            });
            // Written in pieces of about a MiB: a large store is never buffered whole.
            if (buffer.items.len >= 1 << 20) {
                try writeAll(fd, buffer.items, end);
                end += buffer.items.len;
                buffer.clearRetainingCapacity();
            }
        }
        try writeAll(fd, buffer.items, end);
        end += buffer.items.len;
        try os.fsync(fd);
        os.rename(temp, final) catch |err| return switch (err) {
            error.DiskFull => error.DiskFull,
            error.Exists, error.NotFound, error.Io => error.Io,
        };
        renamed = true;
        const old = self.file.?;
        self.file = fd;
        self.file_end = end;
        self.tail_dirty = false;
        os.close(old);
        // Past the rename the new file is the store's whatever the directory sync says: both
        // files hold the same payloads, so either name's content is whole.
        try os.syncDirectoryOf(final);
    }

    /// Appends the newest payload of every dirty slot and syncs the file. The caller holds the
    /// lock (shared is enough: writers are excluded by the index's writers lock). The file is
    /// synced even when nothing is dirty: an open may have loaded entries that a failed
    /// checkpoint wrote and never synced, and the log that also holds them is emptied next
    /// (the VOPR found a power loss after such an open losing a payload).
    pub fn checkpointLocked(self: *Store, keys: anytype) Error!void {
        const fd = self.file orelse return;
        if (self.dirty.count() > 0) {
            var entries = std.ArrayListUnmanaged(Entry){};
            defer entries.deinit(self.gpa);
            try entries.ensureTotalCapacity(self.gpa, self.dirty.count());
            for (self.dirty.keys()) |slot| {
                const head = self.heads.items[slot].?;
                entries.appendAssumeCapacity(.{
                    .slot = slot,
                    .kind = kind_record,
                    .key = keys.keyOf(slot),
                    .bytes = head.bytes,
                });
            }
            try self.appendEntries(entries.items);
        }
        try os.fsync(fd);
        self.dirty.clearRetainingCapacity();
    }

    /// Opens and loads `path.records` (every payload at sequence number 0). A missing file is an
    /// index from before records: a writable open creates it, a read-only one has no records.
    /// `end_expected` is the header's `records_end`: a file (or its intact prefix) shorter than
    /// that, or missing, is `Corrupt`.
    /// Entries of slots at or past `slots_used` (the slots the open's scan kept) are skipped: a
    /// checkpoint that did not finish wrote them, and the log holds their records.
    pub fn openFile(
        self: *Store,
        path: []const u8,
        writable: bool,
        slots_used: u32,
        end_expected: u64,
    ) Error!void {
        assert(self.file == null);
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const full = std.fmt.bufPrintZ(&buffer, "{s}" ++ file_suffix, .{path}) catch
            return error.Io;
        // A read-only open may not finish a compaction's swap: it reads the replacement's
        // file while one is pending, as storage.zig does for the mapped files.
        const opened = if (writable)
            os.open(full, .{ .writable = true })
        else
            swap.openResolved(path, file_suffix);
        if (writable) {
            var temp_buf: [std.fs.max_path_bytes]u8 = undefined;
            const temp = std.fmt.bufPrintZ(&temp_buf, "{s}" ++ rewrite_suffix, .{path}) catch
                return error.Io;
            removeLeftover(temp);
        }
        const fd = opened catch |err| switch (err) {
            error.NotFound => {
                // The last checkpoint left payloads here that the log no longer holds.
                if (end_expected > 0) return error.Corrupt;
                if (writable) return self.createFile(path);
                return;
            },
            error.NotRegular => return error.Corrupt,
            error.Exists, error.Io => return error.Io,
        };
        self.file = fd;
        const end = os.size(fd) catch return error.Io;
        const bytes = try self.gpa.alloc(u8, @intCast(end));
        defer self.gpa.free(bytes);
        if ((os.pread(fd, bytes, 0) catch return error.Io) != bytes.len) return error.Io;
        const valid = try self.load(bytes, slots_used);
        // Shorter than the last checkpoint left it (a truncation, even one at an entry boundary,
        // which reads as a whole file): payloads are lost that the log no longer holds.
        if (valid < end_expected) return error.Corrupt;
        if (valid < end) {
            if (writable) try os.truncate(fd, valid);
        }
        self.file_end = valid;
        // Empty, or only a torn schema entry: nothing was stored, and appends need the schema
        // entry first (else the open after the next checkpoint met a file without one).
        if (valid == 0 and writable) try self.writeSchemaEntry();
    }

    /// Parses the file's entries; returns the length of its intact prefix.
    fn load(self: *Store, bytes: []const u8, slots_used: u32) Error!u64 {
        var offset: usize = 0;
        var first = true;
        while (offset < bytes.len) {
            if (bytes.len - offset < @sizeOf(EntryHeader)) break;
            var header: EntryHeader = undefined;
            @memcpy(std.mem.asBytes(&header), bytes[offset..][0..@sizeOf(EntryHeader)]);
            const body_at = offset + @sizeOf(EntryHeader);
            const intact = header.bytes <= payload_mod.bytes_max and
                header.bytes <= bytes.len - body_at and
                checksum(&header, bytes[body_at..][0..header.bytes]) == header.checksum;
            if (!intact) {
                if (tailOnly(bytes, offset, header)) break;
                return error.Corrupt;
            }
            const body = bytes[body_at..][0..header.bytes];
            if (first) {
                if (header.kind != kind_schema) return error.Corrupt;
                self.setSchema(body) catch |err| return switch (err) {
                    error.OutOfMemory => error.OutOfMemory,
                    error.InvalidArgument => error.Corrupt,
                };
                first = false;
            } else {
                if (header.kind != kind_record or header.slot == slot_none) return error.Corrupt;
                // Also keeps a damaged slot number from sizing the slot table.
                if (header.slot < slots_used) try self.loadRecord(header.slot, header.key, body);
            }
            offset = body_at + header.bytes;
        }
        // No intact entry at all (a torn first one: a schema write that did not finish, when
        // no payload can exist yet): offset 0, and a writable open writes the schema anew.
        return offset;
    }

    fn loadRecord(self: *Store, slot: u32, key: u64, body: []const u8) Error!void {
        const parsed = payload_mod.parse(body, &self.schema) catch return error.Corrupt;
        if (parsed.id.len > 0 and payload_mod.keyOfId(parsed.id) != key) return error.Corrupt;
        const prepared = try self.prepare(body);
        try self.reserveSlot(slot);
        if (slot < self.heads.items.len) {
            if (self.heads.items[slot]) |old| {
                self.dropChain(slot, old);
            }
        }
        self.attachLocked(slot, prepared);
        self.loaded_keys.put(self.gpa, slot, key) catch return error.OutOfMemory;
    }

    /// After the slot scan: drops payloads of slots the scan did not keep (beyond `slots_used`:
    /// a checkpoint that did not finish; the log holds their records) and checks that every kept
    /// payload names its slot's key. Marks nothing dirty: the file already holds them.
    pub fn checkLoaded(self: *Store, slots_used: u32, keys: anytype) Error!void {
        defer self.loaded_keys.clearAndFree(self.gpa);
        var it = self.loaded_keys.iterator();
        while (it.next()) |entry| {
            const slot = entry.key_ptr.*;
            if (slot >= slots_used) {
                self.dropChain(slot, self.heads.items[slot].?);
                continue;
            }
            if (keys.keyOf(slot) != entry.value_ptr.*) return error.Corrupt;
        }
        self.dirty.clearRetainingCapacity();
    }
};

/// Removes `path` if it is a records file (its first entry an intact schema entry), empty, or
/// starts with zeros: a rewrite that did not reach its rename.
/// Anything else at that name is not the store's, and stays.
pub fn removeLeftover(path: [:0]const u8) void {
    const fd = os.open(path, .{ .writable = false }) catch return;
    const ours = blk: {
        defer os.close(fd);
        var header: EntryHeader = undefined;
        const got = os.pread(fd, std.mem.asBytes(&header), 0) catch break :blk false;
        // A rewrite killed before its first write (or a power loss before its fsync) leaves the
        // file empty or starting with zeros: also ours, and it would block every later rewrite
        // (the exclusive create fails). Any other short file is not ours.
        if (std.mem.allEqual(u8, std.mem.asBytes(&header)[0..got], 0)) break :blk true;
        if (got != @sizeOf(EntryHeader) or header.kind != kind_schema) break :blk false;
        if (header.slot != slot_none or header.bytes > schema_mod.bytes_max) break :blk false;
        var body: [schema_mod.bytes_max]u8 = undefined;
        const n = os.pread(fd, body[0..header.bytes], @sizeOf(EntryHeader)) catch
            break :blk false;
        break :blk n == header.bytes and checksum(&header, body[0..n]) == header.checksum;
    };
    if (ours) os.unlink(path) catch {};
}

fn encodeEntry(
    gpa: std.mem.Allocator,
    buffer: *std.ArrayListUnmanaged(u8),
    entry: Store.Entry,
) error{OutOfMemory}!void {
    var header = EntryHeader{
        .bytes = @intCast(entry.bytes.len),
        .checksum = 0,
        .slot = entry.slot,
        .kind = entry.kind,
        .pad = .{ 0, 0, 0 },
        .key = entry.key,
    };
    header.checksum = checksum(&header, entry.bytes);
    try buffer.appendSlice(gpa, std.mem.asBytes(&header));
    try buffer.appendSlice(gpa, entry.bytes);
}

fn writeAll(fd: os.Fd, bytes: []const u8, offset: u64) Error!void {
    var written: usize = 0;
    while (written < bytes.len) {
        const n = try os.pwrite(fd, bytes[written..], offset + written);
        if (n == 0) return error.DiskFull;
        written += n;
    }
}

/// Whether a bad entry at `offset` can be a torn tail: the file ends inside it.
fn tailOnly(bytes: []const u8, offset: usize, header: EntryHeader) bool {
    const body_at = offset + @sizeOf(EntryHeader);
    if (header.bytes > payload_mod.bytes_max) {
        // A garbage length: a tail only if everything from here is zeros (a torn append).
        for (bytes[offset..]) |byte| if (byte != 0) return false;
        return true;
    }
    return body_at + header.bytes >= bytes.len;
}

fn checksum(header: *const EntryHeader, body: []const u8) u32 {
    var hasher = std.hash.XxHash64.init(0x52_45_43);
    hasher.update(std.mem.asBytes(header)[8..]);
    hasher.update(std.mem.asBytes(&header.bytes));
    hasher.update(body);
    return @truncate(hasher.final());
}

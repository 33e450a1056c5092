//! Folder index/: the index as a whole. index.zig (state, lifecycle, counters), write.zig (the
//! insert path: add, upsert, remove, batch), read.zig (the search path, get, keys, snapshots,
//! guards), recovery.zig (open: scan and log replay), compact.zig, backup.zig, verify.zig,
//! centre.zig (i8), keymap.zig, tables.zig (guard and snapshot handles). May import: hnsw/,
//! storage/, kernels/, sync/, abi.zig; never ffi/.
//!
//! The index: its state, its lifecycle (create, open, checkpoint, destroy) and its counters. The
//! write path is in index/write.zig, the read path in index/read.zig, the HNSW algorithms in
//! hnsw/insert.zig and hnsw/search.zig, the remap path in storage/storage.zig and
//! storage/epoch.zig.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");
const layout_mod = @import("../storage/layout.zig");
const Layout = layout_mod.Layout;
const Header = layout_mod.Header;
const storage_mod = @import("../storage/storage.zig");
const swap = @import("../storage/swap.zig");
const Storage = storage_mod.Storage;
const graph = @import("../hnsw/graph.zig");
const locks = @import("../sync/locks.zig");
const KeyMap = @import("keymap.zig").KeyMap;
const scratch = @import("../hnsw/scratch.zig");
const hnsw_insert = @import("../hnsw/insert.zig");
const Wal = @import("../storage/wal.zig").Wal;
const tables = @import("tables.zig");
const view_mod = @import("../hnsw/view.zig");
const View = view_mod.View;
const rabitq = @import("../kernels/rabitq.zig");
const records_store = @import("../records/store.zig");
const Store = records_store.Store;

pub const Error = error{
    InvalidArgument,
    DimensionMismatch,
    InvalidVector,
    NotFound,
    OutOfMemory,
    CapacityExceeded,
    Io,
    DiskFull,
    NoIndex,
    Exists,
    Unverifiable,
    Corrupt,
    UnsupportedVersion,
    Locked,
    StaleGuard,
    TooManyHandles,
    Busy,
    ReadOnly,
    UnknownMetric,
    InvalidDimensions,
    InvalidEf,
    InvalidKey,
    InvalidMetadata,
    InvalidFilter,
    IdConflict,
    BufferTooSmall,
    Internal,
};

/// A WAL larger than this triggers a checkpoint at the end of the mutation that grew it.
pub const wal_checkpoint_bytes: u64 = 64 << 20;

pub const Index = struct {
    gpa: std.mem.Allocator,
    storage: *Storage,
    layout: Layout,
    metric: abi.Metric,
    params: hnsw_insert.Params,
    ef_search: u32,
    seed: u64,
    writable: bool,
    persistent: bool,
    /// The files' path (owned) for a persistent index.
    path: ?[]u8 = null,

    node_locks: graph.NodeLocks = .{},
    keys: KeyMap = .{},
    entry: hnsw_insert.EntryPoint = .{},
    slots_used: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    upper_used: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    live: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    seq: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// The header says `clean = 0`: set before the first mutation after a checkpoint.
    dirty: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
    /// Set while open replays the log: the one thread that can reach the index applies records
    /// without the writers lock (write.zig asserts one or the other).
    replaying: bool = false,
    /// Checkpoints that a mutation found due and that failed (`write.checkpointIfDue`).
    checkpoint_failures: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// `takeState` handed the records store to another index.
    records_taken: bool = false,
    /// i8 storage: the centre is final (index/centre.zig).
    centre_ready: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),

    /// Shared by every call through the FFI, exclusive while `compact` swaps the storage.
    structure: locks.RwLock = .{ .rank = .structure },
    writers: locks.RwLock = .{ .rank = .writers },
    commit: locks.Mutex = .{ .rank = .commit },
    pool: scratch.Pool,
    counters: graph.Counters = .{},
    wal: ?Wal = null,
    /// Payloads (string ids, metadata) and their field indexes (records/store.zig). Owned; on
    /// the heap so that it can move between indexes (compaction's `takeState`).
    records: *Store,
    guards: tables.Guards = .{},
    snapshots: tables.Snapshots = .{},

    /// Whether codes may be written (index/centre.zig): always outside i8 storage. A slot in use
    /// implies a final centre too (the centre is set before the first slot is written), which
    /// keeps an index whose header lost the flag from ever re-centring codes that exist.
    pub fn centreReady(self: *Index) bool {
        if (!self.layout.codedI8()) return true;
        return self.centre_ready.load(.acquire) or self.slots_used.load(.acquire) > 0;
    }

    pub fn validateOptions(options: abi.Options) Error!void {
        if (options.dimensions < 1 or
            options.dimensions > abi.dimensions_max) return error.InvalidDimensions;
        if (std.meta.intToEnum(abi.Metric, options.metric) == error.InvalidEnumTag) {
            return error.UnknownMetric;
        }
        if (options.m < 2 or options.m > abi.m_max) return error.InvalidArgument;
        if (options.ef_construction < 1 or
            options.ef_construction > abi.ef_max) return error.InvalidArgument;
        if (options.ef_search < 1 or options.ef_search > abi.ef_max) return error.InvalidEf;
        if (options.capacity > graph.slots_max) return error.CapacityExceeded;
        if (options.storage > @intFromEnum(abi.StorageKind.rabitq)) return error.InvalidArgument;
        if (options.storage == @intFromEnum(abi.StorageKind.rabitq) and
            options.dimensions > abi.rabitq_dimensions_max) return error.InvalidDimensions;
    }

    /// Creates an empty index: in memory when `path` is null, else as new files at `path`.
    pub fn create(gpa: std.mem.Allocator, options: abi.Options, path: ?[]const u8) Error!*Index {
        return createWith(gpa, options, path, .@"packed");
    }

    /// `create` with the i8 codes placed as `codes` says: `.aligned` makes the files an older
    /// version wrote, for the tests that open them.
    pub fn createWith(
        gpa: std.mem.Allocator,
        options: abi.Options,
        path: ?[]const u8,
        codes: layout_mod.I8Codes,
    ) Error!*Index {
        try validateOptions(options);
        assert(options.dimensions >= 1);
        const storage_kind: abi.StorageKind = @enumFromInt(options.storage);
        const layout = Layout.initWith(options.dimensions, options.m, storage_kind, codes);
        var header = std.mem.zeroes(Header);
        header.magic = layout_mod.magic;
        header.version = layout_mod.versionFor(layout);
        header.header_bytes = layout_mod.header_bytes;
        header.dimensions = options.dimensions;
        header.metric = options.metric;
        header.m = options.m;
        header.m0 = layout.m0;
        header.ef_construction = options.ef_construction;
        header.record_bytes = layout.record_bytes;
        header.vector_offset = layout.vector_offset;
        header.upper_record_bytes = layout.upper_record_bytes;
        header.storage = options.storage;
        header.seed = options.seed;
        header.clean = 1;
        const capacity = @max(options.capacity, 64);
        const storage =
            Storage.create(gpa, path, header, capacity) catch |err| return mapStorageError(
                err,
            );
        errdefer storage.destroy();
        if (storage_kind == .rabitq) {
            // The rotation, fixed for the life of the index (compaction and backups copy it):
            // the exact file's prefix is synced with the centre before any code is written.
            const regions = storage.epochs.current.load(.acquire).payload;
            rabitq.fillSigns(options.seed, regions.signs());
        }
        const self = try init(gpa, storage, header, options.ef_search, path != null, true);
        errdefer self.destroyState();
        if (path) |p| {
            self.path = gpa.dupe(u8, p) catch return error.OutOfMemory;
            self.wal = Wal.open(p, options.dimensions, true) catch |err| return switch (err) {
                error.NotRegular => error.InvalidArgument,
                error.Corrupt => error.Io, // a writable open creates the log
                else => |e| e,
            };
            self.storage.log_fd = self.wal.?.fd;
            self.records.createFile(p) catch |err| return mapRecordsError(err);
            try self.checkpoint();
        }
        return self;
    }

    pub fn init(
        gpa: std.mem.Allocator,
        storage: *Storage,
        header: Header,
        ef_search: u32,
        persistent: bool,
        writable: bool,
    ) Error!*Index {
        assert(header.dimensions == storage.layout.dimensions);
        assert(header.m >= 2 and header.m <= abi.m_max);
        const self = gpa.create(Index) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        const records = gpa.create(Store) catch return error.OutOfMemory;
        errdefer gpa.destroy(records);
        records.init(gpa) catch return error.OutOfMemory;
        errdefer records.deinit();
        self.* = .{
            .records = records,
            .gpa = gpa,
            .storage = storage,
            .layout = storage.layout,
            .metric = @enumFromInt(header.metric),
            .params = .{ .m = header.m, .ef_construction = header.ef_construction },
            .ef_search = ef_search,
            .seed = header.seed,
            .writable = writable,
            .persistent = persistent,
            .pool = .{
                .gpa = gpa,
                .m0 = storage.layout.m0,
                .dimensions = storage.layout.dimensions,
                .walk_dims = storage.layout.walk_dims,
                .codes = storage.layout.storage == .rabitq,
            },
            .centre_ready = std.atomic.Value(bool).init(
                header.flags & layout_mod.flag_centre_set != 0,
            ),
        };
        const capacity = storage.epochs.current.load(.acquire).payload.capacity;
        self.node_locks.ensure(gpa, capacity) catch |err| {
            self.node_locks.deinit(gpa);
            return err;
        };
        return self;
    }

    /// Frees everything. Every user has left: no op is running and no pin is held but guards.
    pub fn destroy(self: *Index) void {
        if (self.writable and self.persistent) self.checkpoint() catch |err| {
            // Nothing is lost: the WAL still holds every write and the next open replays it.
            std.log.warn(
                "quiver: checkpoint at close failed ({s}); the next open recovers from the log",
                .{@errorName(err)},
            );
        };
        const storage = self.storage;
        self.destroyState();
        storage.destroy();
    }

    /// The in-memory state a built index hands to the index that adopts its files (compaction):
    /// the key map and the counters, exactly as the build left them.
    pub const State = struct {
        keys: KeyMap,
        slots_used: u64,
        upper_used: u64,
        live: u64,
        seq: u64,
        entry_word: u64,
        records: *Store,
    };

    /// Moves the key map and the counters out; this index is left with an empty key map.
    /// Nothing may use it afterwards but `destroy`. The caller excludes every other user.
    pub fn takeState(self: *Index) State {
        const state: State = .{
            .keys = self.keys,
            .slots_used = self.slots_used.load(.acquire),
            .upper_used = self.upper_used.load(.acquire),
            .live = self.live.load(.acquire),
            .seq = self.seq.load(.acquire),
            .entry_word = self.entry.word.load(.acquire),
            .records = self.records,
        };
        self.keys = .{};
        self.records_taken = true;
        assert(state.live <= state.slots_used);
        return state;
    }

    /// Takes over the state of the index whose files this one adopted (compaction, with the
    /// structure lock held exclusively): no rescan of what the build already knows.
    pub fn adoptState(self: *Index, state: State) Error!void {
        const capacity = self.storage.epochs.current.load(.acquire).payload.capacity;
        assert(state.slots_used <= capacity);
        try self.node_locks.ensure(self.gpa, capacity);
        self.keys.deinit(self.gpa);
        self.keys = state.keys;
        self.records.deinit();
        self.gpa.destroy(self.records);
        self.records = state.records;
        self.slots_used.store(state.slots_used, .release);
        self.upper_used.store(state.upper_used, .release);
        self.live.store(state.live, .release);
        self.seq.store(state.seq, .release);
        self.entry.word.store(state.entry_word, .release);
        self.dirty.store(false, .release);
        self.rebuildLiveBits();
    }

    /// Sets the live bits (graph.zig `NodeLocks.isLive`) from the metadata of the slots in use
    /// and clears the rest: after open's scan, a compaction's adoption and a backup's copy,
    /// whose metadata came from elsewhere than `publish` and `remove`. Allocates nothing (the
    /// chunks exist for the capacity). The caller excludes every other user. O(capacity / 64).
    pub fn rebuildLiveBits(self: *Index) void {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const regions = generation.payload;
        const used: u32 = @intCast(@min(self.slots_used.load(.acquire), regions.capacity));
        self.node_locks.rebuildLive(regions, used, visibleLive);
    }

    fn visibleLive(meta: *const layout_mod.Meta) bool {
        return view_mod.visible(meta, view_mod.live_seq);
    }

    /// Frees the in-memory state (not the storage). Also used when an open fails half-way.
    pub fn destroyState(self: *Index) void {
        self.guards.releaseAll(self.storage);
        self.snapshots.table.deinit(self.gpa);
        if (self.wal) |*wal| wal.close();
        if (self.path) |p| self.gpa.free(p);
        self.pool.deinit();
        self.keys.deinit(self.gpa);
        self.node_locks.deinit(self.gpa);
        if (!self.records_taken) {
            self.records.deinit();
            self.gpa.destroy(self.records);
        }
        self.gpa.destroy(self);
    }

    /// Makes the mapped files a consistent, durable image and empties the WAL. Takes the
    /// writers lock exclusively: mutations wait, reads go on.
    pub fn checkpoint(self: *Index) Error!void {
        if (!self.persistent or !self.writable) return;
        self.writers.lock(&self.counters.lock_contention);
        defer self.writers.unlock();
        try self.checkpointLocked();
    }

    pub fn checkpointLocked(self: *Index) Error!void {
        assert(locks.holds(.writers));
        assert(self.persistent);
        assert(self.writable);
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const contention = &self.counters.lock_contention;
        // Dirty while the counters and hashes are rewritten, so a crash in between is seen.
        var header = self.storage.currentHeader(contention);
        header.clean = 0;
        self.fillCounters(&header, generation.payload);
        self.storage.writeHeader(header, contention);
        // The log, then the mapped files, then the payloads changed since the last checkpoint,
        // and only then is the log emptied. A payload entry names a slot number, so it is
        // written once that slot is durable: written first (as it was), a power loss could keep
        // the entry and lose the slot, whose number the next life then reused for another key,
        // and the open after that met the entry on the wrong key (Corrupt; the VOPR found it).
        // A slot made durable before its entry has its payload in the log, synced first.
        if (self.wal) |*wal| try wal.sync();
        self.storage.sync() catch |err| return mapStorageError(err);
        const keys = SlotKeys{ .regions = generation.payload };
        const rewrite_due = blk: {
            self.records.lock.lockShared(contention);
            defer self.records.lock.unlockShared();
            self.records.checkpointLocked(keys) catch |err| return mapRecordsError(err);
            // Not while a compaction's swap is unfinished: the store's file then still has the
            // build's name, and a rewrite would replace the old `path.records`, which the next
            // open's roll-forward would rename over the live one.
            break :blk self.records.rewriteDue() and
                !(swap.pending(self.path.?) catch true);
        };
        // Updates only append: once most of the file is superseded payloads, rewrite it (the
        // writers lock keeps the store unchanged meanwhile). A rewrite that fails leaves the
        // appended file, which is complete, in use. The header's `records_end`, which the file
        // may not fall short of, is lowered to 0 and made durable before the file can shrink.
        if (rewrite_due) rewrite: {
            header.records_end = 0;
            self.storage.writeHeader(header, contention);
            self.storage.sync() catch {
                _ = self.records.rewrite_failures.fetchAdd(1, .monotonic);
                break :rewrite;
            };
            self.records.lock.lockShared(contention);
            defer self.records.lock.unlockShared();
            self.records.rewriteFile(self.path.?, keys) catch {
                _ = self.records.rewrite_failures.fetchAdd(1, .monotonic);
            };
        }
        header.records_end = self.records.checkpointedEnd();
        // The WAL is emptied before the header says clean: a crash in between leaves a dirty
        // header and an empty log, which recovers by scanning the (complete) mapped state.
        if (self.wal) |*wal| try wal.reset(contention);
        header.clean = 1;
        self.storage.writeHeader(header, contention);
        self.storage.sync() catch |err| {
            // The mapped header must not stay "clean" while `dirty` says a mutation may skip
            // marking it (markDirty only writes when `dirty` is false): later writes would then
            // change an image whose header claims it is checkpointed.
            header.clean = 0;
            self.storage.writeHeader(header, contention);
            return mapStorageError(err);
        };
        self.dirty.store(false, .release);
        assert(header.clean == 1);
    }

    /// Puts the in-memory counters and the region hashes into `header`. Writers must be
    /// excluded, so that the hashes describe a quiescent image.
    pub fn fillCounters(self: *Index, header: *Header, regions: layout_mod.Regions) void {
        header.capacity = regions.capacity;
        header.upper_capacity = regions.upper_capacity;
        header.slots_used = self.slots_used.load(.acquire);
        header.upper_used = self.upper_used.load(.acquire);
        header.entry = self.entry.word.load(.acquire);
        header.seq = self.seq.load(.acquire);
        header.live = self.live.load(.acquire);
        // Counters only move after the storage they need exists (write.allocate): a header
        // can never describe slots past the mapping it hashes.
        assert(header.slots_used <= header.capacity);
        assert(header.upper_used <= header.upper_capacity);
        assert(header.live <= header.slots_used);
        const hashes = regionHashes(regions, header.slots_used, header.upper_used);
        header.data_hash = hashes[0];
        header.graph_hash = hashes[1];
        header.upper_hash = hashes[2];
        header.exact_hash = hashes[3];
    }

    /// The options this index was created with (for indexes derived from it).
    pub fn derivedOptions(self: *const Index, capacity: u64) abi.Options {
        return .{
            .dimensions = self.layout.dimensions,
            .metric = @intFromEnum(self.metric),
            .m = self.params.m,
            .ef_construction = self.params.ef_construction,
            .ef_search = self.ef_search,
            .flags = 0,
            .seed = self.seed,
            .capacity = @max(capacity, 64),
            .storage = @intFromEnum(self.layout.storage),
            .reserved = 0,
        };
    }

    /// Pins the current generation and describes it for one operation.
    pub fn view(self: *Index, generation: *storage_mod.Generation) View {
        var result = View.init(
            generation.payload,
            &self.node_locks,
            &self.counters,
            self.metric,
            self.slots_used.load(.acquire),
        );
        result.storage = self.storage;
        return result;
    }

    pub fn size(self: *Index) u64 {
        return self.live.load(.acquire);
    }

    pub fn maxLevel(self: *Index) u32 {
        return if (self.entry.load()) |e| e.level else 0;
    }

    pub fn stats(self: *Index) abi.Stats {
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const slots = self.slots_used.load(.acquire);
        const live = self.live.load(.acquire);
        return .{
            .size = live,
            .slots_used = slots,
            .capacity = generation.payload.capacity,
            .tombstones = slots - @min(slots, live),
            .dimensions = self.layout.dimensions,
            .metric = @intFromEnum(self.metric),
            .m = self.params.m,
            .max_level = self.maxLevel(),
            .epoch = self.storage.epochs.epoch.load(.acquire),
            .remaps = self.storage.remaps.load(.monotonic),
            .mapped_bytes = self.storage.mappedBytes(),
            .mappings_live = self.storage.epochs.liveCount(),
            .guards_live = self.guards.live(),
            .snapshots_live = self.snapshots.live(),
            .lock_contention = self.counters.lock_contention.load(.monotonic),
            .read_retries = self.counters.read_retries.load(.monotonic) +
                self.storage.epochs.retries.load(
                    .monotonic,
                ),
            .invariant_violations = self.counters.invariant_violations.load(.monotonic),
            .corruption_detected = self.counters.corruption_detected.load(.monotonic),
            .lock_order_violations = locks.violations.load(.monotonic),
            .wal_bytes = if (self.wal) |*w| w.bytes(&self.counters.lock_contention) else 0,
            .seq = self.seq.load(.acquire),
            .storage = @intFromEnum(self.layout.storage),
            .centre_set = @intFromBool(
                self.layout.codedI8() and self.centreReady(),
            ),
            .checkpoint_failures = self.checkpoint_failures.load(.monotonic),
            .records = records: {
                self.records.lock.lockShared(&self.counters.lock_contention);
                defer self.records.lock.unlockShared();
                break :records self.records.records;
            },
            .record_bytes = bytes: {
                self.records.lock.lockShared(&self.counters.lock_contention);
                defer self.records.lock.unlockShared();
                break :bytes self.records.payload_bytes;
            },
        };
    }
};

/// Hashes of the bytes in use, written at checkpoint and checked by a full-validation open.
pub fn regionHashes(regions: layout_mod.Regions, slots_used: u64, upper_used: u64) [4]u64 {
    const data_end = layout_mod.header_bytes + slots_used * @sizeOf(layout_mod.Meta);
    const graph_end = slots_used * regions.layout.record_bytes;
    const upper_end = upper_used * regions.layout.upper_record_bytes;
    const exact_end = regions.layout.exact_prefix + slots_used * regions.layout.exact_bytes;
    return .{
        hashMeta(regions.data[layout_mod.header_bytes..data_end]),
        std.hash.XxHash3.hash(1, regions.graph[0..graph_end]),
        std.hash.XxHash3.hash(2, regions.upper[0..upper_end]),
        std.hash.XxHash3.hash(3, regions.exact[0..exact_end]),
    };
}

/// The metadata hash skips nothing: checkpoints run with writers excluded, so it is stable.
fn hashMeta(bytes: []const u8) u64 {
    return std.hash.XxHash3.hash(0, bytes);
}

/// Names each slot's key for the records store (its file entries carry them).
pub const SlotKeys = struct {
    regions: layout_mod.Regions,

    pub fn keyOf(self: SlotKeys, slot: u32) u64 {
        return self.regions.meta(slot).key;
    }
};

pub fn mapRecordsError(err: records_store.Error) Error {
    return switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        error.InvalidMetadata => error.InvalidMetadata,
        error.Io => error.Io,
        error.DiskFull => error.DiskFull,
        error.Corrupt => error.Corrupt,
    };
}

pub fn mapStorageError(err: storage_mod.Error) Error {
    return switch (err) {
        error.Io => error.Io,
        error.DiskFull => error.DiskFull,
        error.OutOfMemory => error.OutOfMemory,
        error.Corrupt => error.Corrupt,
        error.UnsupportedVersion => error.UnsupportedVersion,
        error.Locked => error.Locked,
        error.NoIndex => error.NoIndex,
        error.Exists => error.Exists,
        // Only regular files back an index: the path names something else.
        error.NotRegular => error.InvalidArgument,
        error.CapacityExceeded => error.CapacityExceeded,
    };
}

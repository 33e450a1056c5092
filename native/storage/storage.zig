//! Folder storage/: bytes on disk and in memory. layout.zig (file format, header, slot
//! metadata), storage.zig (mapped files and THE REMAP PATH: growth, publish), epoch.zig (epochs
//! that keep an old mapping alive while readers pin it), wal.zig (the log), swap.zig (the
//! crash-atomic file swap of compaction). May import: sync/, abi.zig; never kernels/ or above.
//!
//! Mapped storage and the remap path. Four files back an index (an anonymous memfd each when it
//! has no path): the data file (header + metadata column), the graph file (level-0 records with
//! the vectors the graph is walked on), the upper-level arena and the exact f32 vectors (used
//! under f16 storage for the rerank). All are mapped MAP_SHARED, so a new, larger mapping of the
//! same file sees every byte written through the old one: growth is ftruncate + mmap + publish,
//! never a copy, and readers keep using the old generation until they unpin it.
const std = @import("std");
const assert = std.debug.assert;
const layout_mod = @import("layout.zig");
const Layout = layout_mod.Layout;
const Regions = layout_mod.Regions;
const Header = layout_mod.Header;
const locks = @import("../sync/locks.zig");
const sync = @import("../sync/atomics.zig");
const epoch_mod = @import("epoch.zig");
const swap = @import("swap.zig");
const abi = @import("../abi.zig");
const os = @import("os.zig");

pub const Epochs = epoch_mod.Epochs(sync.Production, Regions, .correct);
pub const Generation = Epochs.Generation;

pub const Error = error{
    Io,
    /// ENOSPC, EDQUOT or EFBIG: blocks could not be reserved (nothing was mapped over them).
    DiskFull,
    OutOfMemory,
    Corrupt,
    UnsupportedVersion,
    Locked,
    /// No index at the path (its data file is missing).
    NoIndex,
    /// A file is already at a path a new index would take.
    Exists,
    /// The path names a FIFO, a device or a directory: only regular files back an index.
    NotRegular,
    CapacityExceeded,
};

pub const Kind = enum { data, graph, upper, exact };
pub const suffixes = swap.suffixes;
pub const file_count = suffixes.len;

pub const Storage = struct {
    gpa: std.mem.Allocator,
    layout: Layout,
    fds: [file_count]os.Fd,
    writable: bool,
    /// Backed by files at a path (else by anonymous files, which have no disk to fill).
    persistent: bool,
    epochs: Epochs,
    grow_lock: locks.Mutex = .{ .rank = .grow },
    /// The index's log (storage/wal.zig), synced before a remap syncs the mapped files; set by
    /// the index once the log is open, and never closed while the storage lives.
    log_fd: os.Fd = os.no_fd,
    remaps: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
    /// The header slot holding the newest header; written only under the grow lock.
    header_active: u1 = 0,
    /// At open, a header copy was neither valid nor unwritten (all zeros): damage that a fast
    /// open survives by using the other copy, and that full validation reports.
    header_damaged: bool = false,

    /// Creates storage for a new index: memfds when `path` is null, else new files (which must
    /// not exist yet). The header is written with `clean = 1`.
    pub fn create(
        gpa: std.mem.Allocator,
        path: ?[]const u8,
        initial: Header,
        capacity: u64,
    ) Error!*Storage {
        const layout = layout_mod.layoutOf(&initial);
        var fds: [file_count]os.Fd = @splat(os.no_fd);
        // Until `finish` hands them to the storage (whose destroy closes them).
        var fds_owned = true;
        errdefer if (fds_owned) closeAll(&fds);
        // The data file is locked before any file is truncated: a second creator of the same
        // path stops at the lock instead of truncating files the first one has mapped.
        fds[0] = try createFile(gpa, path, .data);
        if (path) |p| {
            try lockFile(fds[0], false);
            // An index already at `path` (a backup aimed at one, say) must not lose its side
            // files to the truncations below; the link at the end would refuse it anyway.
            var buffer: [std.fs.max_path_bytes]u8 = undefined;
            if (os.exists(try filePath(&buffer, p, .data)) catch return error.Io) {
                return error.Exists;
            }
            os.truncate(fds[0], 0) catch |err| return err;
        }
        for (1..file_count) |i| fds[i] = try createFile(gpa, path, @enumFromInt(i));
        const upper_capacity = @max(64, capacity / 8);
        try resizeFiles(&fds, layout, capacity, upper_capacity, path != null);
        const regions = try mapAll(&fds, layout, capacity, upper_capacity, true);
        var first = initial;
        first.capacity = capacity;
        first.upper_capacity = upper_capacity;
        first.header_seq = 1;
        first.checksum = first.computeChecksum();
        first.sealExt();
        regions.headerSlot(0).* = first;
        const self = try finish(gpa, layout, fds, regions, true, path != null, 0);
        fds_owned = false;
        errdefer self.destroy();
        if (path) |p| {
            // The image is durable before its name appears: after a power loss `path` is
            // either absent or a complete empty index.
            try self.sync();
            try publishCreated(p);
        }
        return self;
    }

    /// Opens existing files after validating the header against the file sizes.
    pub fn open(gpa: std.mem.Allocator, path: []const u8, writable: bool) Error!*Storage {
        var fds: [file_count]os.Fd = @splat(os.no_fd);
        errdefer closeAll(&fds);
        if (writable) {
            // The writer lock first: only its holder may finish or discard a compaction swap.
            fds[0] = try openLocked(gpa, path, true);
            if (try swap.pending(path)) {
                try swap.rollForward(path);
                os.close(fds[0]);
                fds[0] = os.no_fd;
                fds[0] = try openLocked(gpa, path, true);
            } else {
                try swap.removeLeftovers(path);
            }
            for (1..file_count) |i| fds[i] = try openFile(gpa, path, @enumFromInt(i), true);
        } else if (try swap.pending(path)) {
            for (0..file_count) |i| {
                fds[i] = swap.openResolved(path, suffixes[i]) catch |err| return openError(
                    err,
                    @enumFromInt(i),
                );
            }
            try lockFile(fds[0], true);
        } else {
            fds[0] = try openLocked(gpa, path, false);
            for (1..file_count) |i| fds[i] = try openFile(gpa, path, @enumFromInt(i), false);
        }
        const latest = try readHeader(fds[0]);
        const layout = try validateHeader(&latest.header, &fds);
        if (writable) {
            // Blocks for every mapped byte, so no write through the mapping can meet a full
            // disk: files this version wrote have them already (and open on a full disk);
            // the holes of a sparse file an older version left are filled, or `DiskFull`.
            try reserveHoles(&fds, layout, latest.header.capacity, latest.header.upper_capacity);
        }
        const regions = try mapAll(
            &fds,
            layout,
            latest.header.capacity,
            latest.header.upper_capacity,
            writable,
        );
        const self = try finish(gpa, layout, fds, regions, writable, true, latest.slot);
        self.header_damaged = latest.damaged;
        return self;
    }

    fn finish(
        gpa: std.mem.Allocator,
        layout: Layout,
        fds: [file_count]os.Fd,
        regions: Regions,
        writable: bool,
        persistent: bool,
        header_active: u1,
    ) Error!*Storage {
        errdefer releaseRegions(regions);
        const self = gpa.create(Storage) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{
            .gpa = gpa,
            .layout = layout,
            .fds = fds,
            .writable = writable,
            .persistent = persistent,
            .epochs = Epochs.init(gpa, regions, releaseRegions) catch return error.OutOfMemory,
            .header_active = header_active,
        };
        return self;
    }

    /// The caller has drained every user: no pins remain.
    pub fn destroy(self: *Storage) void {
        self.epochs.deinit(self.gpa);
        var fds = self.fds;
        closeAll(&fds);
        self.gpa.destroy(self);
    }

    pub fn pin(self: *Storage) *Generation {
        return self.epochs.pin();
    }

    pub fn unpin(self: *Storage, generation: *Generation) void {
        self.epochs.unpin(generation);
    }

    /// Grows so that `slots` slots and `upper` upper records fit, doubling to amortize remaps.
    /// Readers are never blocked: they finish on the generation they pinned.
    pub fn ensureCapacity(
        self: *Storage,
        slots: u64,
        upper: u64,
        contention: *std.atomic.Value(u64),
    ) Error!void {
        const current = self.epochs.current.load(.acquire);
        if (slots <= current.payload.capacity and upper <= current.payload.upper_capacity) return;
        self.grow_lock.lock(contention);
        defer self.grow_lock.unlock();
        const latest = self.epochs.current.load(.acquire).payload;
        if (slots <= latest.capacity and upper <= latest.upper_capacity) return;
        try self.remap(grownTo(latest.capacity, slots), grownTo(latest.upper_capacity, upper));
    }

    /// Maps the files at (at least) the given sizes as a new generation. Holding the grow lock.
    /// Also used by tests to force a remap at the same size.
    pub fn remapLocked(self: *Storage, capacity: u64, upper_capacity: u64) Error!void {
        try self.remap(capacity, upper_capacity);
    }

    fn remap(self: *Storage, capacity: u64, upper_capacity: u64) Error!void {
        if (capacity > layout_mod.capacity_max) return error.CapacityExceeded;
        assert(self.writable);
        try resizeFiles(&self.fds, self.layout, capacity, upper_capacity, self.persistent);
        if (self.persistent) {
            // The log first: these fsyncs also make every mapped slot written so far durable,
            // and a published slot durable without its log record would survive a power loss
            // without the payload (records) that only the log holds until a checkpoint (the
            // VOPR found one). Published slots were logged before publication.
            if (self.log_fd != os.no_fd) try os.fsync(self.log_fd);
            // The new sizes are durable before the header says them: after a power loss the
            // header never names a capacity the files do not have (open would refuse it).
            for (self.fds) |fd| try os.fsync(fd);
        }
        const regions = try mapAll(&self.fds, self.layout, capacity, upper_capacity, true);
        _ = self.epochs.publish(self.gpa, regions) catch {
            releaseRegions(regions);
            return error.OutOfMemory;
        };
        // The header must describe the file sizes even if the process dies before a checkpoint,
        // or recovery would map (and lose) only the old capacity.
        var updated = self.headerLocked();
        updated.capacity = capacity;
        updated.upper_capacity = upper_capacity;
        self.writeHeaderLocked(updated);
        _ = self.remaps.fetchAdd(1, .monotonic);
    }

    /// Files compaction built, mapped and checked, ready to replace the current ones. Made
    /// before the swap commits, so that no mapping can fail once the new files are the index.
    pub const Prepared = struct {
        fds: [file_count]os.Fd,
        regions: Regions,
        header_active: u1,

        /// Unmaps and closes them (the compaction did not commit).
        pub fn discard(prepared: *Prepared) void {
            releaseRegions(prepared.regions);
            closeAll(&prepared.fds);
        }
    };

    /// Maps `fds` (compaction built them) at the given sizes. Takes ownership of `fds`.
    pub fn prepareAdopt(
        self: *Storage,
        fds: [file_count]os.Fd,
        capacity: u64,
        upper_capacity: u64,
    ) Error!Prepared {
        var owned = fds;
        errdefer closeAll(&owned);
        const regions = try mapAll(&owned, self.layout, capacity, upper_capacity, true);
        errdefer releaseRegions(regions);
        // The new files carry their own header copies: which one is newest is theirs to say.
        const latest = try newest(.{ regions.headerSlot(0).*, regions.headerSlot(1).* });
        // Every generation of an index has its one layout: files of another (i8 codes placed
        // otherwise) would be read at the wrong offsets. The header's raw fields are compared,
        // so that a damaged one is refused before anything derives a layout from it.
        const h = latest.header;
        const l = self.layout;
        if (h.dimensions != l.dimensions or h.m != l.m or h.storage != @intFromEnum(l.storage) or
            h.record_bytes != l.record_bytes or h.vector_offset != l.vector_offset or
            h.upper_record_bytes != l.upper_record_bytes or h.version != layout_mod.versionFor(l))
        {
            return error.Corrupt;
        }
        return .{ .fds = owned, .regions = regions, .header_active = latest.slot };
    }

    /// Publishes the prepared mapping as a new generation and replaces the files; the old
    /// mappings are released once unpinned. Fails only if the generation cannot be allocated,
    /// and then nothing changed (the caller still owns `prepared`).
    pub fn adopt(
        self: *Storage,
        prepared: *Prepared,
        contention: *std.atomic.Value(u64),
    ) Error!void {
        self.grow_lock.lock(contention);
        defer self.grow_lock.unlock();
        _ = self.epochs.publish(self.gpa, prepared.regions) catch return error.OutOfMemory;
        self.header_active = prepared.header_active;
        self.header_damaged = false; // the adopted files' headers were just written
        var old = self.fds;
        self.fds = prepared.fds;
        prepared.fds = @splat(os.no_fd);
        closeAll(&old);
        _ = self.remaps.fetchAdd(1, .monotonic);
    }

    /// Marks the header dirty before the first mutation after a checkpoint, so that an open
    /// after a crash knows its counters are stale and recovers from the WAL.
    pub fn markDirty(
        self: *Storage,
        dirty: *std.atomic.Value(bool),
        contention: *std.atomic.Value(u64),
    ) void {
        if (dirty.load(.acquire)) return;
        self.grow_lock.lock(contention);
        defer self.grow_lock.unlock();
        if (dirty.load(.acquire)) return;
        var updated = self.headerLocked();
        updated.clean = 0;
        self.writeHeaderLocked(updated);
        dirty.store(true, .release);
    }

    /// A copy of the newest header.
    pub fn currentHeader(self: *Storage, contention: *std.atomic.Value(u64)) Header {
        self.grow_lock.lock(contention);
        defer self.grow_lock.unlock();
        return self.headerLocked();
    }

    /// Replaces the header (see `Header` for why this survives a crash at any point).
    pub fn writeHeader(self: *Storage, new: Header, contention: *std.atomic.Value(u64)) void {
        self.grow_lock.lock(contention);
        defer self.grow_lock.unlock();
        self.writeHeaderLocked(new);
    }

    fn headerLocked(self: *Storage) Header {
        return self.epochs.current.load(.acquire).payload.headerSlot(self.header_active).*;
    }

    fn writeHeaderLocked(self: *Storage, new: Header) void {
        const regions = self.epochs.current.load(.acquire).payload;
        const current = regions.headerSlot(self.header_active);
        var next = new;
        next.header_seq = current.header_seq + 1;
        next.checksum = next.computeChecksum();
        next.sealExt();
        const target: u1 = self.header_active ^ 1;
        regions.headerSlot(target).* = next;
        self.header_active = target;
    }

    pub fn sync(self: *Storage) Error!void {
        const generation = self.pin();
        defer self.unpin(generation);
        const regions = generation.payload;
        inline for (.{ regions.data, regions.graph, regions.upper, regions.exact }) |region| {
            try os.msync(region);
        }
        for (self.fds) |fd| try os.fsync(fd);
    }

    pub fn mappedBytes(self: *Storage) u64 {
        var total: u64 = 0;
        var it: ?*Generation = self.epochs.newest.load(.acquire);
        while (it) |generation| : (it = generation.older) {
            if (generation.state.load(.seq_cst) != @intFromEnum(epoch_mod.State.released)) {
                total += generation.payload.mappedBytes();
            }
        }
        return total;
    }
};

fn grownTo(have: u64, need: u64) u64 {
    var next = @max(have, 64);
    while (next < need) next = next * 2;
    return @min(next, @max(need, layout_mod.capacity_max));
}

fn releaseRegions(regions: Regions) void {
    os.unmap(regions.data);
    os.unmap(regions.graph);
    os.unmap(regions.upper);
    os.unmap(regions.exact);
}

pub fn closeAll(fds: *[file_count]os.Fd) void {
    for (fds) |*fd| {
        if (fd.* != os.no_fd) os.close(fd.*);
        fd.* = os.no_fd;
    }
}

fn filePath(buffer: []u8, path: []const u8, kind: Kind) Error![:0]const u8 {
    return std.fmt.bufPrintZ(
        buffer,
        "{s}{s}",
        .{ path, suffixes[@intFromEnum(kind)] },
    ) catch error.Io;
}

/// A new index's files. The data file is built as `path.creating` and linked to `path` only when
/// complete (`publishCreated`), so a crash during creation never leaves a half-made index at
/// `path`; leftovers of such a crash are truncated and reused by the next creation.
fn createFile(gpa: std.mem.Allocator, path: ?[]const u8, kind: Kind) Error!os.Fd {
    _ = gpa;
    const p = path orelse return os.createAnonymous(@tagName(kind));
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const data = kind == .data;
    const full = if (data)
        std.fmt.bufPrintZ(&buffer, "{s}.creating", .{p}) catch return error.Io
    else
        try filePath(&buffer, p, kind);
    // The data file is truncated by the caller once it holds the lock.
    return os.open(full, .{ .writable = true, .create = true, .truncate = !data }) catch |err|
        switch (err) {
            error.NotRegular => error.NotRegular,
            error.NotFound, error.Exists, error.Io => error.Io,
        };
}

/// Makes a fully written new index visible at `path`: empties any WAL left there, then links
/// the data file into place (failing if an index appeared there meanwhile), and makes the new
/// names durable with a directory fsync.
fn publishCreated(path: []const u8) Error!void {
    var wal_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const wal = std.fmt.bufPrintZ(&wal_buffer, "{s}.wal", .{path}) catch return error.Io;
    const wal_fd = os.open(wal, .{ .writable = true, .create = true, .truncate = true }) catch |err|
        return switch (err) {
            error.NotRegular => error.NotRegular,
            error.NotFound, error.Exists, error.Io => error.Io,
        };
    defer os.close(wal_fd);
    try os.fsync(wal_fd);
    var from_buffer: [std.fs.max_path_bytes]u8 = undefined;
    var to_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const from = std.fmt.bufPrintZ(&from_buffer, "{s}.creating", .{path}) catch return error.Io;
    const to = std.fmt.bufPrintZ(&to_buffer, "{s}", .{path}) catch return error.Io;
    os.renameNoReplace(from, to) catch |err| return switch (err) {
        error.Exists => error.Exists,
        error.DiskFull => error.DiskFull,
        error.NotFound, error.Io => error.Io,
    };
    try os.syncDirectoryOf(path);
}

fn openFile(gpa: std.mem.Allocator, path: []const u8, kind: Kind, writable: bool) Error!os.Fd {
    _ = gpa;
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const full = try filePath(&buffer, path, kind);
    return os.open(full, .{ .writable = writable }) catch |err| openError(err, kind);
}

pub fn openError(err: os.OpenError, kind: Kind) Error {
    return switch (err) {
        error.NotFound => if (kind == .data) error.NoIndex else error.Corrupt,
        error.NotRegular => error.NotRegular,
        error.Exists, error.Io => error.Io,
    };
}

/// Opens and locks the data file at `path`, making sure the file locked is still the one at
/// `path`: a compaction swap (or its roll-forward) can rename a new data file over it between
/// the open and the lock, and the lock on a replaced file guards nothing. The side files are
/// opened after this, so they belong to the locked data file.
fn openLocked(gpa: std.mem.Allocator, path: []const u8, writable: bool) Error!os.Fd {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const full = try filePath(&buffer, path, .data);
    var attempts: u32 = 0;
    while (attempts < 8) : (attempts += 1) {
        const fd = try openFile(gpa, path, .data, writable);
        errdefer os.close(fd);
        try lockFile(fd, !writable);
        const held = try os.identity(fd);
        const named = os.identityAt(full) catch |err| return switch (err) {
            error.NotFound => error.NoIndex,
            error.Io => error.Io,
        };
        if (held.dev == named.dev and held.ino == named.ino) return fd;
        os.close(fd); // replaced meanwhile: lock the new one
    }
    return error.Locked;
}

fn lockFile(fd: os.Fd, shared: bool) Error!void {
    return os.lock(fd, shared);
}

/// Sizes the files for `capacity` slots. Persistent files get their blocks reserved (see
/// `os.reserve`): a full disk is `DiskFull` here, never a SIGBUS at a write through the
/// mapping. Anonymous files are only extended: their pages are memory, taken on first touch.
fn resizeFiles(
    fds: *const [file_count]os.Fd,
    layout: Layout,
    capacity: u64,
    upper_capacity: u64,
    persistent: bool,
) Error!void {
    const sizes = fileSizes(layout, capacity, upper_capacity);
    for (fds, sizes) |fd, size| {
        if (persistent) {
            try os.reserve(fd, size);
        } else if (try os.size(fd) < size) {
            try os.truncate(fd, size);
        }
        assert(try os.size(fd) >= size);
    }
}

fn reserveHoles(
    fds: *const [file_count]os.Fd,
    layout: Layout,
    capacity: u64,
    upper_capacity: u64,
) Error!void {
    const sizes = fileSizes(layout, capacity, upper_capacity);
    for (fds, sizes) |fd, size| {
        if (!try os.allocated(fd, size)) try os.reserve(fd, size);
    }
}

fn mapAll(
    fds: *const [file_count]os.Fd,
    layout: Layout,
    capacity: u64,
    upper_capacity: u64,
    writable: bool,
) Error!Regions {
    const sizes = fileSizes(layout, capacity, upper_capacity);
    var maps: [file_count][]align(layout_mod.page_bytes) u8 = undefined;
    var mapped: usize = 0;
    errdefer for (maps[0..mapped]) |m| os.unmap(m);
    for (fds, sizes, 0..) |fd, size, i| {
        assert(size > 0);
        maps[i] = try os.map(fd, size, writable);
        mapped += 1;
    }
    return .{
        .layout = layout,
        .data = maps[0],
        .graph = maps[1],
        .upper = maps[2],
        .exact = maps[3],
        .capacity = capacity,
        .upper_capacity = upper_capacity,
    };
}

const Newest = struct { header: Header, slot: u1, damaged: bool = false };

fn fileSizes(layout: Layout, capacity: u64, upper_capacity: u64) [file_count]u64 {
    return .{
        layout.dataBytes(capacity),
        layout.graphBytes(capacity),
        layout.upperBytes(upper_capacity),
        layout.exactBytes(capacity),
    };
}

/// Reads both header copies and returns the valid one with the highest sequence number.
fn readHeader(fd: os.Fd) Error!Newest {
    var copies: [2]?Header = .{ null, null };
    for ([_]u1{ 0, 1 }) |slot| {
        var header: Header = undefined;
        const bytes = std.mem.asBytes(&header);
        const got = try os.pread(fd, bytes, @as(u64, slot) * layout_mod.header_slot_bytes);
        if (got == bytes.len) copies[slot] = header;
    }
    var latest = try newest(copies);
    const other = copies[latest.slot ^ 1] orelse return latest;
    const unwritten = std.mem.allEqual(u8, std.mem.asBytes(&other), 0);
    const intact = std.mem.eql(u8, &other.magic, &layout_mod.magic) and
        other.checksum == other.computeChecksum();
    latest.damaged = !unwritten and !intact;
    return latest;
}

/// The header copy to trust: intact (magic, checksum, a sequence number that can still advance),
/// of this format version, and the newer of the two.
fn newest(copies: [2]?Header) Error!Newest {
    var best: ?Newest = null;
    var version_seen = false;
    for (copies, [_]u1{ 0, 1 }) |copy, slot| {
        const header = copy orelse continue;
        if (!std.mem.eql(u8, &header.magic, &layout_mod.magic)) continue;
        if (header.checksum != header.computeChecksum()) continue;
        if (header.header_seq >= 1 << 63) continue;
        if (header.version < layout_mod.format_version_oldest or
            header.version > layout_mod.format_version)
        {
            version_seen = true;
            continue;
        }
        if (best == null or header.header_seq > best.?.header.header_seq) best = .{
            .header = header,
            .slot = slot,
        };
    }
    if (best) |b| return b;
    if (version_seen) return error.UnsupportedVersion;
    return error.Corrupt;
}

/// Every length is checked against the file sizes before anything is mapped.
fn validateHeader(header: *const Header, fds: *const [file_count]os.Fd) Error!Layout {
    if (header.header_bytes != layout_mod.header_bytes) return error.Corrupt;
    if (header.dimensions < 1 or
        header.dimensions > abi.dimensions_max) return error.Corrupt;
    if (header.m < 2 or header.m > abi.m_max or
        header.m0 != 2 * header.m) return error.Corrupt;
    if (std.meta.intToEnum(abi.Metric, header.metric) == error.InvalidEnumTag) return error.Corrupt;
    if (header.storage > @intFromEnum(abi.StorageKind.rabitq)) return error.Corrupt;
    if (header.storage == @intFromEnum(abi.StorageKind.rabitq) and
        header.dimensions > abi.rabitq_dimensions_max) return error.Corrupt;
    if (header.ef_construction < 1 or header.ef_construction > abi.ef_max) return error.Corrupt;
    const layout = layout_mod.layoutOf(header);
    if (header.version != layout_mod.versionFor(layout)) return error.Corrupt;
    if (header.record_bytes != layout.record_bytes) return error.Corrupt;
    if (header.vector_offset != layout.vector_offset) return error.Corrupt;
    if (header.upper_record_bytes != layout.upper_record_bytes) return error.Corrupt;
    if (header.capacity == 0 or header.capacity > layout_mod.capacity_max) return error.Corrupt;
    if (header.upper_capacity == 0 or header.upper_capacity > std.math.maxInt(
        u32,
    )) return error.Corrupt;
    if (header.slots_used > header.capacity) return error.Corrupt;
    if (header.upper_used > header.upper_capacity) return error.Corrupt;
    if (header.live > header.slots_used) return error.Corrupt;
    const sizes = fileSizes(layout, header.capacity, header.upper_capacity);
    for (fds, sizes) |fd, size| {
        if (try os.size(fd) < size) return error.Corrupt;
    }
    return layout;
}

test "storage: growth remaps, old generations stay readable while pinned, then are unmapped" {
    var header = std.mem.zeroes(Header);
    header.magic = layout_mod.magic;
    header.version = layout_mod.versionFor(Layout.init(4, 4, .f32));
    header.header_bytes = layout_mod.header_bytes;
    header.dimensions = 4;
    header.m = 4;
    header.m0 = 8;
    const layout = Layout.init(4, 4, .f32);
    header.record_bytes = layout.record_bytes;
    header.vector_offset = layout.vector_offset;
    header.upper_record_bytes = layout.upper_record_bytes;
    const storage = try Storage.create(std.testing.allocator, null, header, 64);
    defer storage.destroy();
    var contention = std.atomic.Value(u64).init(0);

    const old = storage.pin();
    old.payload.vector(63)[0] = 42.5;
    try storage.ensureCapacity(1000, 0, &contention);
    const fresh = storage.pin();
    try std.testing.expect(fresh.payload.capacity >= 1000);
    try std.testing.expect(fresh.payload.graph.ptr != old.payload.graph.ptr);
    // The same file pages: writes through either mapping are visible through the other.
    try std.testing.expectEqual(@as(f32, 42.5), fresh.payload.vector(63)[0]);
    fresh.payload.vector(999)[3] = 7;
    try std.testing.expect(!storage.epochs.isCurrent(old));
    try std.testing.expectEqual(@as(u64, 2), storage.epochs.liveCount());
    storage.unpin(old);
    try std.testing.expectEqual(@as(u64, 1), storage.epochs.liveCount());
    storage.unpin(fresh);
    try std.testing.expectEqual(@as(u64, 1), storage.remaps.load(.monotonic));
}

test "storage: adopting files of another layout (i8 codes placed otherwise) is refused" {
    const gpa = std.testing.allocator;
    var storages: [2]*Storage = undefined;
    for (&storages, [_]layout_mod.I8Codes{ .aligned, .@"packed" }) |*storage, codes| {
        const layout = Layout.initWith(16, 4, .i8, codes);
        var header = std.mem.zeroes(Header);
        header.magic = layout_mod.magic;
        header.version = layout_mod.versionFor(layout);
        header.header_bytes = layout_mod.header_bytes;
        header.dimensions = 16;
        header.m = 4;
        header.m0 = 8;
        header.storage = @intFromEnum(abi.StorageKind.i8);
        header.record_bytes = layout.record_bytes;
        header.vector_offset = layout.vector_offset;
        header.upper_record_bytes = layout.upper_record_bytes;
        header.capacity = 64;
        header.upper_capacity = 64;
        header.clean = 1;
        storage.* = try Storage.create(gpa, null, header, 64);
        try std.testing.expectEqual(codes, storage.*.layout.codes);
    }
    defer for (storages) |storage| storage.destroy();
    // Each storage's own files adopt; the other's are refused before anything is published.
    for ([_]usize{ 0, 1 }) |from| for ([_]usize{ 0, 1 }) |into| {
        var fds: [file_count]os.Fd = undefined;
        for (&fds, storages[from].fds) |*fd, source| fd.* = try os.dup(source);
        const generation = storages[from].epochs.current.load(.acquire).payload;
        const result =
            storages[into].prepareAdopt(fds, generation.capacity, generation.upper_capacity);
        if (from == into) {
            var prepared = try result;
            prepared.discard();
        } else {
            try std.testing.expectError(error.Corrupt, result);
        }
    };
}

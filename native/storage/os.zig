//! The OS layer: every platform-specific call the core makes (anonymous files, opening,
//! block reservation, truncation, mapping, msync, fsync, directory fsync, locks, links and
//! renames) goes through this file, so nothing else under native/ asks which OS it runs on.
//! Linux is the tested target; the Darwin branch compiles (`zig build -Dtarget=aarch64-macos`)
//! and takes every flag from Darwin's own constants (Linux's MS_SYNC value 4 is MS_KILLPAGES on
//! Darwin: a checkpoint would discard its dirty pages). Windows is not ported yet (see
//! `supported`).
//!
//! Errors are classified once, here: ENOSPC, EDQUOT and EFBIG are `DiskFull` (a full disk, a
//! quota, a file-size limit), a typed error the caller can report and survive; anything else
//! unexpected is `Io`.
//!
//! Test builds carry a fault hook (`faults`): the Nth call of an operation (write, fallocate,
//! fsync, directory fsync, ftruncate, rename, mmap), or every call from the Nth on, fails with
//! ENOSPC, EIO or EFBIG, so native tests can prove the disk-full and crash paths without a
//! full disk.
const std = @import("std");
const builtin = @import("builtin");
const posix = std.posix;
const assert = std.debug.assert;

const native_os = builtin.os.tag;
pub const is_linux = native_os == .linux;
pub const is_darwin = native_os.isDarwin();
/// The platforms this layer implements. Windows needs CreateFileMapping/MapViewOfFile,
/// FlushViewOfFile + FlushFileBuffers, LockFileEx and MoveFileEx in the branches below.
pub const supported = is_linux or is_darwin;

comptime {
    if (!supported) @compileError("quiver: the OS layer (storage/os.zig) has no port for " ++
        @tagName(native_os) ++ " yet");
}

pub const Fd = posix.fd_t;
/// The "no descriptor" value of this OS (-1 on POSIX; INVALID_HANDLE_VALUE would be Windows').
pub const no_fd: Fd = -1;
pub const page_bytes = std.heap.page_size_min;
pub const Region = []align(page_bytes) u8;

/// Errors of calls that change a file: a full disk (or quota, or file-size limit) is told apart.
pub const Error = error{ Io, DiskFull };
pub const OpenError = error{ Io, NotFound, Exists, NotRegular };
pub const LockError = error{ Io, Locked };
pub const MapError = error{ Io, OutOfMemory };
pub const LinkError = error{ Io, Exists, NotFound, DiskFull };

/// Test-only fault injection (a no-op struct outside test builds).
pub const Op = enum(u8) { write, fallocate, fsync, dirsync, ftruncate, rename, mmap };
pub const Fault = enum(u8) { nospc, io, fbig };
const op_count = @typeInfo(Op).@"enum".fields.len;

pub const faults = struct {
    const State = struct {
        /// 0: disarmed; n: the nth call counted from `arm` fails.
        nth: [op_count]std.atomic.Value(u64) = @splat(std.atomic.Value(u64).init(0)),
        calls: [op_count]std.atomic.Value(u64) = @splat(std.atomic.Value(u64).init(0)),
        fired: [op_count]std.atomic.Value(u64) = @splat(std.atomic.Value(u64).init(0)),
        sticky: [op_count]std.atomic.Value(bool) = @splat(std.atomic.Value(bool).init(false)),
        kind: [op_count]std.atomic.Value(u8) = @splat(std.atomic.Value(u8).init(0)),
    };
    var state: State = .{};

    /// Makes call `nth` (1-based, counted from now) of `op` fail with `kind`; with `sticky`,
    /// every later call too (a disk that stays full).
    pub fn arm(op: Op, nth: u64, kind: Fault, sticky: bool) void {
        comptime assert(builtin.is_test);
        assert(nth >= 1);
        const i = @intFromEnum(op);
        state.calls[i].store(0, .seq_cst);
        state.fired[i].store(0, .seq_cst);
        state.kind[i].store(@intFromEnum(kind), .seq_cst);
        state.sticky[i].store(sticky, .seq_cst);
        state.nth[i].store(nth, .seq_cst);
    }

    /// Disarms every operation.
    pub fn reset() void {
        comptime assert(builtin.is_test);
        for (0..op_count) |i| {
            state.nth[i].store(0, .seq_cst);
            state.calls[i].store(0, .seq_cst);
            state.fired[i].store(0, .seq_cst);
        }
    }

    /// Called with the descriptor after every fsync that succeeded (test builds only), so a
    /// simulator can keep each file's durable image for its power-loss mode (sim/vopr.zig).
    pub var on_fsync: ?*const fn (Fd) void = null;

    /// How many calls of `op` failed by injection since it was armed.
    pub fn fired(op: Op) u64 {
        comptime assert(builtin.is_test);
        return state.fired[@intFromEnum(op)].load(.seq_cst);
    }

    /// How many calls of `op` were made since it was armed (or reset).
    pub fn calls(op: Op) u64 {
        comptime assert(builtin.is_test);
        return state.calls[@intFromEnum(op)].load(.seq_cst);
    }

    /// The errno an injected failure of this call gives, if one is armed and due.
    fn due(op: Op) ?posix.E {
        if (!builtin.is_test) return null;
        const i = @intFromEnum(op);
        const call = state.calls[i].fetchAdd(1, .seq_cst) + 1;
        const nth = state.nth[i].load(.seq_cst);
        if (nth == 0) return null;
        if (call != nth and !(call > nth and state.sticky[i].load(.seq_cst))) return null;
        _ = state.fired[i].fetchAdd(1, .seq_cst);
        return switch (@as(Fault, @enumFromInt(state.kind[i].load(.seq_cst)))) {
            .nospc => .NOSPC,
            .io => .IO,
            .fbig => .FBIG,
        };
    }
};

/// The one place errnos become errors.
fn classify(errno: posix.E) Error {
    return switch (errno) {
        .NOSPC, .DQUOT, .FBIG => error.DiskFull,
        else => error.Io,
    };
}

/// An anonymous file for an in-memory index: a memfd on Linux; on Darwin (no memfd) a file
/// created exclusively in the temporary directory and unlinked at once. (Darwin's shm_open
/// objects can be sized only once, and an index grows.)
pub fn createAnonymous(name: [:0]const u8) Error!Fd {
    if (is_linux) {
        return posix.memfd_createZ(name, std.os.linux.MFD.CLOEXEC) catch |err| switch (err) {
            error.SystemFdQuotaExceeded, error.ProcessFdQuotaExceeded => error.Io,
            error.OutOfMemory => error.Io,
            else => error.Io,
        };
    }
    const dir = posix.getenv("TMPDIR") orelse "/tmp";
    var attempts: u32 = 0;
    while (attempts < 16) : (attempts += 1) {
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const path = std.fmt.bufPrintZ(&buffer, "{s}/quiver-{s}-{x}", .{
            std.mem.trimRight(u8, dir, "/"),
            name,
            std.crypto.random.int(u64),
        }) catch return error.Io;
        const fd = posix.openZ(
            path,
            .{ .ACCMODE = .RDWR, .CREAT = true, .EXCL = true, .CLOEXEC = true },
            0o600,
        ) catch |err| switch (err) {
            error.PathAlreadyExists => continue,
            error.NoSpaceLeft => return error.DiskFull,
            else => return error.Io,
        };
        posix.unlinkZ(path) catch {
            posix.close(fd);
            return error.Io;
        };
        return fd;
    }
    return error.Io;
}

pub const OpenOptions = struct {
    writable: bool,
    create: bool = false,
    /// With `create`: fail with `Exists` if the file is there.
    exclusive: bool = false,
    truncate: bool = false,
};

/// Opens a regular file. Non-blocking, so a FIFO (or a device) at the path cannot hang the
/// open, and then refused (`NotRegular`): only regular files can back an index.
pub fn open(path: [:0]const u8, options: OpenOptions) OpenError!Fd {
    assert(!options.exclusive or options.create);
    const fd = posix.openZ(path, .{
        .ACCMODE = if (options.writable) .RDWR else .RDONLY,
        .CREAT = options.create,
        .EXCL = options.exclusive,
        .TRUNC = false,
        .NONBLOCK = true,
        .CLOEXEC = true,
    }, 0o644) catch |err| return switch (err) {
        error.FileNotFound => error.NotFound,
        error.PathAlreadyExists => error.Exists,
        // Opening a FIFO without a reader for writing.
        error.NoDevice, error.WouldBlock => error.NotRegular,
        else => error.Io,
    };
    errdefer posix.close(fd);
    const stat = posix.fstat(fd) catch return error.Io;
    if (!posix.S.ISREG(stat.mode)) return error.NotRegular;
    // Truncated only once known to be a regular file.
    if (options.truncate) truncate(fd, 0) catch return error.Io;
    return fd;
}

pub fn close(fd: Fd) void {
    posix.close(fd);
}

pub fn dup(fd: Fd) error{Io}!Fd {
    return posix.dup(fd) catch error.Io;
}

pub fn size(fd: Fd) error{Io}!u64 {
    const stat = posix.fstat(fd) catch return error.Io;
    return @intCast(stat.size);
}

/// Whether every byte below `bytes` has a block (no hole a write through a mapping could meet
/// a full disk in). Conservative: a file system that reports fewer blocks (compression) says no.
pub fn allocated(fd: Fd, bytes: u64) error{Io}!bool {
    const stat = posix.fstat(fd) catch return error.Io;
    const blocks: u64 = @intCast(stat.blocks);
    return @as(u64, @intCast(stat.size)) >= bytes and blocks * 512 >= bytes;
}

/// Which file a descriptor or a path names (device and inode).
pub const Identity = struct { dev: u64, ino: u64 };

pub fn identity(fd: Fd) error{Io}!Identity {
    const stat = posix.fstat(fd) catch return error.Io;
    return .{ .dev = @intCast(stat.dev), .ino = @intCast(stat.ino) };
}

pub fn identityAt(path: [:0]const u8) error{ Io, NotFound }!Identity {
    const stat = posix.fstatatZ(posix.AT.FDCWD, path, 0) catch |err| return switch (err) {
        error.FileNotFound => error.NotFound,
        else => error.Io,
    };
    return .{ .dev = @intCast(stat.dev), .ino = @intCast(stat.ino) };
}

/// Whether anything (a file, a FIFO, a directory, a dangling link) is at `path`.
pub fn exists(path: [:0]const u8) error{Io}!bool {
    const flags = posix.AT.SYMLINK_NOFOLLOW;
    _ = posix.fstatatZ(posix.AT.FDCWD, path, flags) catch |err| return switch (err) {
        error.FileNotFound => false,
        else => error.Io,
    };
    return true;
}

/// Makes the file at least `bytes` long with every block allocated, so that a write through a
/// mapping of it can never meet a full disk (which is SIGBUS, not an error). Holes below
/// `bytes` (a sparse file written by an older version) are filled too. Where the file system
/// has no fallocate, the bytes past the end are written as zeros.
pub fn reserve(fd: Fd, bytes: u64) Error!void {
    if (bytes == 0) return;
    if (faults.due(.fallocate)) |errno| return classify(errno);
    const have = size(fd) catch return error.Io;
    if (is_linux) {
        const rc = std.c.fallocate(fd, 0, 0, @intCast(bytes));
        switch (posix.errno(rc)) {
            .SUCCESS => return,
            .OPNOTSUPP, .NOSYS => {}, // below: zeros
            .INTR => return reserve(fd, bytes),
            else => |errno| return classify(errno),
        }
    }
    if (have >= bytes) return;
    try writeZeros(fd, have, bytes);
}

/// Writes zeros over [from, to): the portable way to allocate blocks.
fn writeZeros(fd: Fd, from: u64, to: u64) Error!void {
    assert(from < to);
    const zeros: [64 * 1024]u8 = @splat(0);
    var at = from;
    while (at < to) {
        const want: usize = @intCast(@min(zeros.len, to - at));
        const wrote = try pwrite(fd, zeros[0..want], at);
        assert(wrote > 0);
        at += wrote;
    }
    assert(at == to);
}

/// Sets the file's length (the WAL's cut and reset; never used to grow a mapped file).
pub fn truncate(fd: Fd, bytes: u64) Error!void {
    if (faults.due(.ftruncate)) |errno| return classify(errno);
    posix.ftruncate(fd, bytes) catch |err| return switch (err) {
        error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

/// One positioned write; returns the bytes written (short on a full disk).
pub fn pwrite(fd: Fd, bytes: []const u8, offset: u64) Error!usize {
    if (faults.due(.write)) |errno| return classify(errno);
    return posix.pwrite(fd, bytes, offset) catch |err| switch (err) {
        error.NoSpaceLeft, error.DiskQuota, error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

pub fn pwritev(fd: Fd, iov: []const posix.iovec_const, offset: u64) Error!usize {
    if (faults.due(.write)) |errno| return classify(errno);
    return posix.pwritev(fd, iov, offset) catch |err| switch (err) {
        error.NoSpaceLeft, error.DiskQuota, error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

pub fn pread(fd: Fd, bytes: []u8, offset: u64) error{Io}!usize {
    return posix.pread(fd, bytes, offset) catch error.Io;
}

/// Flushes the file's data and metadata to stable storage. On Darwin fsync only reaches the
/// drive's cache; F_FULLFSYNC asks the drive to flush it (falling back to fsync where the file
/// system refuses it).
pub fn fsync(fd: Fd) Error!void {
    if (faults.due(.fsync)) |errno| return classify(errno);
    if (is_darwin) {
        switch (posix.errno(std.c.fcntl(fd, std.c.F.FULLFSYNC, @as(c_int, 0)))) {
            .SUCCESS => {
                if (builtin.is_test) if (faults.on_fsync) |hook| hook(fd);
                return;
            },
            else => {},
        }
    }
    posix.fsync(fd) catch |err| return switch (err) {
        error.NoSpaceLeft, error.DiskQuota => error.DiskFull,
        else => error.Io,
    };
    if (builtin.is_test) if (faults.on_fsync) |hook| hook(fd);
}

/// Makes the directory entries of `path`'s directory durable (a file created, linked, renamed
/// or removed there). Some file systems answer EINVAL for a directory (std's wrapper would
/// treat it as unreachable): the entries are then as durable as that file system makes them.
pub fn syncDirectoryOf(path: []const u8) Error!void {
    const dir = std.fs.path.dirname(path) orelse ".";
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const z = std.fmt.bufPrintZ(&buffer, "{s}", .{dir}) catch return error.Io;
    const fd = posix.openZ(
        z,
        .{ .ACCMODE = .RDONLY, .DIRECTORY = true, .CLOEXEC = true },
        0,
    ) catch return error.Io;
    defer posix.close(fd);
    if (faults.due(.dirsync)) |errno| return classify(errno);
    if (is_darwin) {
        if (posix.errno(std.c.fcntl(fd, std.c.F.FULLFSYNC, @as(c_int, 0))) == .SUCCESS) return;
    }
    switch (posix.errno(posix.system.fsync(fd))) {
        .SUCCESS, .INVAL, .ROFS => {},
        else => |errno| return classify(errno),
    }
}

/// Writes the mapped pages of `region` back to the file and waits (the per-OS MS_SYNC).
pub fn msync(region: Region) error{Io}!void {
    posix.msync(region, posix.MSF.SYNC) catch return error.Io;
}

/// A shared mapping of the first `bytes` of the file.
pub fn map(fd: Fd, bytes: u64, writable: bool) MapError!Region {
    assert(bytes > 0);
    if (faults.due(.mmap)) |errno| return if (errno == .NOSPC) error.OutOfMemory else error.Io;
    const prot: u32 = if (writable) posix.PROT.READ | posix.PROT.WRITE else posix.PROT.READ;
    return posix.mmap(null, bytes, prot, .{ .TYPE = .SHARED }, fd, 0) catch |err| switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        else => error.Io,
    };
}

pub fn unmap(region: Region) void {
    posix.munmap(region);
}

/// A whole-file advisory lock, not waiting: `Locked` if another holder conflicts.
pub fn lock(fd: Fd, shared: bool) LockError!void {
    const mode: i32 = if (shared) posix.LOCK.SH else posix.LOCK.EX;
    posix.flock(fd, mode | posix.LOCK.NB) catch |err| return switch (err) {
        error.WouldBlock => error.Locked,
        else => error.Io,
    };
}

/// Renames `from` over `to` (atomic; replaces `to`).
pub fn rename(from: [:0]const u8, to: [:0]const u8) LinkError!void {
    if (faults.due(.rename)) |errno| return classify(errno);
    posix.renameZ(from, to) catch |err| return switch (err) {
        error.FileNotFound => error.NotFound,
        error.NoSpaceLeft, error.DiskQuota => error.DiskFull,
        else => error.Io,
    };
}

/// Moves `from` to `to` only if nothing is at `to` (`Exists` otherwise): a hard link, which
/// fails atomically on an existing name, then the removal of the old name.
pub fn renameNoReplace(from: [:0]const u8, to: [:0]const u8) LinkError!void {
    if (faults.due(.rename)) |errno| return classify(errno);
    posix.linkZ(from, to) catch |err| return switch (err) {
        error.PathAlreadyExists => error.Exists,
        error.FileNotFound => error.NotFound,
        error.NoSpaceLeft, error.DiskQuota => error.DiskFull,
        else => error.Io,
    };
    try unlink(from);
}

/// Removes `path`; a missing file is not an error.
pub fn unlink(path: [:0]const u8) LinkError!void {
    posix.unlinkZ(path) catch |err| return switch (err) {
        error.FileNotFound => {},
        else => error.Io,
    };
}

test "os: an injected fault fails exactly the armed call, or every call from it when sticky" {
    defer faults.reset();
    const fd = try createAnonymous("os-test");
    defer close(fd);
    faults.arm(.fallocate, 2, .nospc, false);
    try reserve(fd, 4096);
    try std.testing.expectError(error.DiskFull, reserve(fd, 8192));
    try reserve(fd, 8192);
    try std.testing.expectEqual(@as(u64, 1), faults.fired(.fallocate));
    faults.arm(.fsync, 1, .io, true);
    try std.testing.expectError(error.Io, fsync(fd));
    try std.testing.expectError(error.Io, fsync(fd));
    try std.testing.expectEqual(@as(u64, 2), faults.fired(.fsync));
    faults.arm(.write, 1, .fbig, false);
    try std.testing.expectError(error.DiskFull, pwrite(fd, "x", 0));
    try std.testing.expectEqual(@as(usize, 1), try pwrite(fd, "x", 0));
    try std.testing.expectEqual(@as(u64, 8192), try size(fd));
}

test "os: open refuses a FIFO at once instead of blocking, and a missing file is NotFound" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const fifo = try std.fmt.bufPrintZ(&path_buffer, "{s}/fifo", .{dir});
    const mkfifo = @extern(*const fn ([*:0]const u8, c_uint) callconv(.c) c_int, .{
        .name = "mkfifo",
    });
    try std.testing.expectEqual(@as(c_int, 0), mkfifo(fifo, 0o644));
    try std.testing.expectError(error.NotRegular, open(fifo, .{ .writable = false }));
    try std.testing.expectError(error.NotRegular, open(fifo, .{ .writable = true }));
    var missing_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const missing = try std.fmt.bufPrintZ(&missing_buffer, "{s}/missing", .{dir});
    try std.testing.expectError(error.NotFound, open(missing, .{ .writable = false }));
    try std.testing.expect(!try exists(missing));
    try std.testing.expect(try exists(fifo));
}

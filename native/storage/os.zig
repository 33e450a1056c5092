//! The OS layer: every platform-specific call the core makes (anonymous files, opening,
//! block reservation, truncation, mapping, msync, fsync, directory fsync, locks, links and
//! renames) goes through this file, so nothing else under native/ asks which OS it runs on.
//! Linux is the tested target; the Darwin branch compiles (`zig build -Dtarget=aarch64-macos`)
//! and takes every flag from Darwin's own constants (Linux's MS_SYNC value 4 is MS_KILLPAGES on
//! Darwin: a checkpoint would discard its dirty pages). The Windows branch (`win` below:
//! handles, CreateFileMappingW/MapViewOfFile, FlushViewOfFile + FlushFileBuffers, LockFileEx,
//! MoveFileExW) compiles for x86_64-windows-gnu and its tests run under wine, not on Windows.
//!
//! Errors are classified once, here: ENOSPC, EDQUOT and EFBIG (ERROR_DISK_FULL,
//! ERROR_HANDLE_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED and ERROR_FILE_TOO_LARGE on Windows) are
//! `DiskFull` (a full disk, a quota, a file-size limit), a typed error the caller can report and
//! survive; anything else unexpected is `Io`.
//!
//! Test builds carry a fault hook (`faults`): the Nth call of an operation (write, fallocate,
//! fsync, directory fsync, ftruncate, rename, mmap), or every call from the Nth on, fails with
//! ENOSPC, EIO or EFBIG, so native tests can prove the disk-full and crash paths without a
//! full disk. It sits before the system call on every OS, Windows included.
const std = @import("std");
const builtin = @import("builtin");
const posix = std.posix;
const windows = std.os.windows;
const assert = std.debug.assert;

const native_os = builtin.os.tag;
pub const is_linux = native_os == .linux;
pub const is_darwin = native_os.isDarwin();
pub const is_windows = native_os == .windows;
/// The platforms this layer implements.
pub const supported = is_linux or is_darwin or is_windows;

comptime {
    if (!supported) @compileError("quiver: the OS layer (storage/os.zig) has no port for " ++
        @tagName(native_os) ++ " yet");
}

/// A descriptor on POSIX, a HANDLE on Windows.
pub const Fd = posix.fd_t;
/// The "no descriptor" value of this OS: -1 on POSIX, INVALID_HANDLE_VALUE on Windows.
pub const no_fd: Fd = if (is_windows) windows.INVALID_HANDLE_VALUE else -1;
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

    /// The injected failure of this call, if one is armed and due.
    fn due(op: Op) ?Fault {
        if (!builtin.is_test) return null;
        const i = @intFromEnum(op);
        const call = state.calls[i].fetchAdd(1, .seq_cst) + 1;
        const nth = state.nth[i].load(.seq_cst);
        if (nth == 0) return null;
        if (call != nth and !(call > nth and state.sticky[i].load(.seq_cst))) return null;
        _ = state.fired[i].fetchAdd(1, .seq_cst);
        return @enumFromInt(state.kind[i].load(.seq_cst));
    }
};

/// The error an injected fault stands for: ENOSPC and EFBIG are `DiskFull`, EIO is `Io`.
fn injected(fault: Fault) Error {
    return switch (fault) {
        .nospc, .fbig => error.DiskFull,
        .io => error.Io,
    };
}

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
    if (is_windows) return win.createAnonymous(name);
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
    if (is_windows) return win.open(path, options);
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
    assert(fd != no_fd);
    if (is_windows) return windows.CloseHandle(fd);
    posix.close(fd);
}

pub fn dup(fd: Fd) error{Io}!Fd {
    if (is_windows) return win.dup(fd);
    return posix.dup(fd) catch error.Io;
}

pub fn size(fd: Fd) error{Io}!u64 {
    if (is_windows) return win.size(fd);
    const stat = posix.fstat(fd) catch return error.Io;
    return @intCast(stat.size);
}

/// Whether every byte below `bytes` has a block (no hole a write through a mapping could meet
/// a full disk in). Conservative: a file system that reports fewer blocks (compression) says no.
pub fn allocated(fd: Fd, bytes: u64) error{Io}!bool {
    if (is_windows) return win.allocated(fd, bytes);
    const stat = posix.fstat(fd) catch return error.Io;
    const blocks: u64 = @intCast(stat.blocks);
    return @as(u64, @intCast(stat.size)) >= bytes and blocks * 512 >= bytes;
}

/// Which file a descriptor or a path names (device and inode).
pub const Identity = struct { dev: u64, ino: u64 };

pub fn identity(fd: Fd) error{Io}!Identity {
    if (is_windows) return win.identity(fd);
    const stat = posix.fstat(fd) catch return error.Io;
    return .{ .dev = @intCast(stat.dev), .ino = @intCast(stat.ino) };
}

pub fn identityAt(path: [:0]const u8) error{ Io, NotFound }!Identity {
    if (is_windows) return win.identityAt(path);
    const stat = posix.fstatatZ(posix.AT.FDCWD, path, 0) catch |err| return switch (err) {
        error.FileNotFound => error.NotFound,
        else => error.Io,
    };
    return .{ .dev = @intCast(stat.dev), .ino = @intCast(stat.ino) };
}

/// Whether anything (a file, a FIFO, a directory, a dangling link) is at `path`.
pub fn exists(path: [:0]const u8) error{Io}!bool {
    if (is_windows) return win.exists(path);
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
    if (faults.due(.fallocate)) |fault| return injected(fault);
    if (is_windows) return win.reserve(fd, bytes);
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
    if (faults.due(.ftruncate)) |fault| return injected(fault);
    if (is_windows) return win.truncate(fd, bytes);
    posix.ftruncate(fd, bytes) catch |err| return switch (err) {
        error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

/// One positioned write; returns the bytes written (short on a full disk).
pub fn pwrite(fd: Fd, bytes: []const u8, offset: u64) Error!usize {
    if (faults.due(.write)) |fault| return injected(fault);
    if (is_windows) return win.pwrite(fd, bytes, offset);
    return posix.pwrite(fd, bytes, offset) catch |err| switch (err) {
        error.NoSpaceLeft, error.DiskQuota, error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

pub fn pwritev(fd: Fd, iov: []const posix.iovec_const, offset: u64) Error!usize {
    if (faults.due(.write)) |fault| return injected(fault);
    if (is_windows) return win.pwritev(fd, iov, offset);
    return posix.pwritev(fd, iov, offset) catch |err| switch (err) {
        error.NoSpaceLeft, error.DiskQuota, error.FileTooBig => error.DiskFull,
        else => error.Io,
    };
}

pub fn pread(fd: Fd, bytes: []u8, offset: u64) error{Io}!usize {
    if (is_windows) return win.pread(fd, bytes, offset);
    return posix.pread(fd, bytes, offset) catch error.Io;
}

/// Flushes the file's data and metadata to stable storage. On Darwin fsync only reaches the
/// drive's cache; F_FULLFSYNC asks the drive to flush it (falling back to fsync where the file
/// system refuses it).
pub fn fsync(fd: Fd) Error!void {
    if (faults.due(.fsync)) |fault| return injected(fault);
    if (is_windows) {
        try win.fsync(fd);
        if (builtin.is_test) if (faults.on_fsync) |hook| hook(fd);
        return;
    }
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
    if (is_windows) {
        // NTFS journals its metadata, directory entries included, and Win32 has no flush for a
        // directory handle (FlushFileBuffers wants a file or a volume): a rename is made
        // durable by its own MOVEFILE_WRITE_THROUGH instead. The fault hook still counts.
        if (faults.due(.dirsync)) |fault| return injected(fault);
        return;
    }
    const dir = std.fs.path.dirname(path) orelse ".";
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const z = std.fmt.bufPrintZ(&buffer, "{s}", .{dir}) catch return error.Io;
    const fd = posix.openZ(
        z,
        .{ .ACCMODE = .RDONLY, .DIRECTORY = true, .CLOEXEC = true },
        0,
    ) catch return error.Io;
    defer posix.close(fd);
    if (faults.due(.dirsync)) |fault| return injected(fault);
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
    if (is_windows) return win.msync(region);
    posix.msync(region, posix.MSF.SYNC) catch return error.Io;
}

/// A shared mapping of the first `bytes` of the file.
pub fn map(fd: Fd, bytes: u64, writable: bool) MapError!Region {
    assert(bytes > 0);
    if (faults.due(.mmap)) |fault| return if (fault == .nospc) error.OutOfMemory else error.Io;
    if (is_windows) return win.map(fd, bytes, writable);
    const prot: u32 = if (writable) posix.PROT.READ | posix.PROT.WRITE else posix.PROT.READ;
    return posix.mmap(null, bytes, prot, .{ .TYPE = .SHARED }, fd, 0) catch |err| switch (err) {
        error.OutOfMemory => error.OutOfMemory,
        else => error.Io,
    };
}

pub fn unmap(region: Region) void {
    if (is_windows) return win.unmap(region);
    posix.munmap(region);
}

/// A whole-file advisory lock, not waiting: `Locked` if another holder conflicts.
pub fn lock(fd: Fd, shared: bool) LockError!void {
    if (is_windows) return win.lock(fd, shared);
    const mode: i32 = if (shared) posix.LOCK.SH else posix.LOCK.EX;
    posix.flock(fd, mode | posix.LOCK.NB) catch |err| return switch (err) {
        error.WouldBlock => error.Locked,
        else => error.Io,
    };
}

/// Renames `from` over `to` (atomic; replaces `to`).
pub fn rename(from: [:0]const u8, to: [:0]const u8) LinkError!void {
    if (faults.due(.rename)) |fault| return injected(fault);
    if (is_windows) return win.move(from, to, true);
    posix.renameZ(from, to) catch |err| return switch (err) {
        error.FileNotFound => error.NotFound,
        error.NoSpaceLeft, error.DiskQuota => error.DiskFull,
        else => error.Io,
    };
}

/// Moves `from` to `to` only if nothing is at `to` (`Exists` otherwise): a hard link, which
/// fails atomically on an existing name, then the removal of the old name (on Windows one
/// MoveFileExW without MOVEFILE_REPLACE_EXISTING, which fails atomically the same way).
pub fn renameNoReplace(from: [:0]const u8, to: [:0]const u8) LinkError!void {
    if (faults.due(.rename)) |fault| return injected(fault);
    if (is_windows) return win.move(from, to, false);
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
    if (is_windows) return win.unlink(path);
    posix.unlinkZ(path) catch |err| return switch (err) {
        error.FileNotFound => {},
        else => error.Io,
    };
}

/// The Windows branch. A file is a HANDLE from CreateFileW, opened with FILE_SHARE_READ, _WRITE
/// and _DELETE, so that a file the index holds open can be renamed, replaced or removed by
/// name the way the POSIX code expects (a removed file's name stays taken until its last handle
/// closes: Windows' delete-pending state). A mapping is a section (CreateFileMappingW) with one
/// view (MapViewOfFile); the section handle is closed at once, the view keeps it alive, so a
/// Region is the view alone and a remap simply maps a second, larger view of the same file,
/// coherent with the first (both views are the file's one set of cached pages) and valid until
/// it is unmapped. What differs from POSIX: a file that some view still maps cannot be renamed
/// over or removed (ERROR_ACCESS_DENIED), so compaction's swap, which renames over files the
/// index still maps, fails there with `Io` (its tests skip on Windows).
const win = struct {
    const kernel32 = windows.kernel32;
    const HANDLE = windows.HANDLE;
    const BOOL = windows.BOOL;
    const DWORD = windows.DWORD;
    const LPCWSTR = windows.LPCWSTR;

    extern "kernel32" fn CreateFileMappingW(
        file: HANDLE,
        attributes: ?*anyopaque,
        protect: DWORD,
        size_high: DWORD,
        size_low: DWORD,
        name: ?LPCWSTR,
    ) callconv(.winapi) ?HANDLE;
    extern "kernel32" fn MapViewOfFile(
        section: HANDLE,
        access: DWORD,
        offset_high: DWORD,
        offset_low: DWORD,
        bytes: usize,
    ) callconv(.winapi) ?*anyopaque;
    extern "kernel32" fn UnmapViewOfFile(base: *const anyopaque) callconv(.winapi) BOOL;
    extern "kernel32" fn FlushViewOfFile(
        base: *const anyopaque,
        bytes: usize,
    ) callconv(.winapi) BOOL;
    extern "kernel32" fn LockFileEx(
        file: HANDLE,
        flags: DWORD,
        reserved: DWORD,
        bytes_low: DWORD,
        bytes_high: DWORD,
        overlapped: *windows.OVERLAPPED,
    ) callconv(.winapi) BOOL;
    extern "kernel32" fn GetFileType(file: HANDLE) callconv(.winapi) DWORD;
    extern "kernel32" fn GetFileInformationByHandle(
        file: HANDLE,
        info: *windows.BY_HANDLE_FILE_INFORMATION,
    ) callconv(.winapi) BOOL;
    extern "kernel32" fn GetFileInformationByHandleEx(
        file: HANDLE,
        class: windows.FILE_INFO_BY_HANDLE_CLASS,
        info: *anyopaque,
        bytes: DWORD,
    ) callconv(.winapi) BOOL;
    extern "kernel32" fn SetFileInformationByHandle(
        file: HANDLE,
        class: windows.FILE_INFO_BY_HANDLE_CLASS,
        info: *const anyopaque,
        bytes: DWORD,
    ) callconv(.winapi) BOOL;
    extern "kernel32" fn DeleteFileW(path: LPCWSTR) callconv(.winapi) BOOL;
    extern "kernel32" fn GetTempPathW(length: DWORD, buffer: [*]u16) callconv(.winapi) DWORD;

    const FILE_TYPE_DISK: DWORD = 1;
    const FILE_MAP_WRITE: DWORD = 2;
    const FILE_MAP_READ: DWORD = 4;
    const LOCKFILE_FAIL_IMMEDIATELY: DWORD = 1;
    const LOCKFILE_EXCLUSIVE_LOCK: DWORD = 2;
    const share_all = windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE |
        windows.FILE_SHARE_DELETE;
    /// The byte LockFileEx locks, far past any data: Windows locks are mandatory (a locked
    /// range refuses ReadFile and WriteFile through other handles), so the lock takes a byte
    /// no read or write ever touches, as SQLite's lock bytes do, and stays advisory like flock.
    const lock_offset: u64 = 1 << 62;

    const FileStandardInfo = extern struct {
        allocation_bytes: i64,
        end_of_file: i64,
        links: DWORD,
        delete_pending: windows.BOOLEAN,
        directory: windows.BOOLEAN,
    };

    /// A path as the NUL-terminated UTF-16 that the W calls take.
    const WidePath = struct {
        buffer: [windows.PATH_MAX_WIDE:0]u16,
        len: usize,

        fn z(self: *const WidePath) [*:0]const u16 {
            return self.buffer[0..self.len :0].ptr;
        }
    };

    fn wide(out: *WidePath, path: []const u8) error{Io}!void {
        if (path.len > out.buffer.len) return error.Io;
        out.len = std.unicode.wtf8ToWtf16Le(&out.buffer, path) catch return error.Io;
        if (out.len >= out.buffer.len) return error.Io;
        out.buffer[out.len] = 0;
    }

    fn lastError() windows.Win32Error {
        return kernel32.GetLastError();
    }

    /// The one place Win32 errors of calls that change a file become errors.
    fn changeError(code: windows.Win32Error) Error {
        return switch (code) {
            .DISK_FULL, .HANDLE_DISK_FULL, .DISK_QUOTA_EXCEEDED, .FILE_TOO_LARGE => {
                return error.DiskFull;
            },
            else => error.Io,
        };
    }

    fn overlappedAt(offset: u64) windows.OVERLAPPED {
        return .{
            .Internal = 0,
            .InternalHigh = 0,
            .DUMMYUNIONNAME = .{ .DUMMYSTRUCTNAME = .{
                .Offset = @truncate(offset),
                .OffsetHigh = @truncate(offset >> 32),
            } },
            .hEvent = null,
        };
    }

    /// A temporary file that the system deletes when its last handle closes (and that, as
    /// FILE_ATTRIBUTE_TEMPORARY, it keeps in memory while it can). Not a pagefile-backed
    /// section: such a section has one size for life, and an index grows; and its pages
    /// could not be read with ReadFile or written with WriteFile as a file's are.
    fn createAnonymous(name: [:0]const u8) Error!Fd {
        var dir: [windows.MAX_PATH + 1]u16 = undefined;
        const dir_len = GetTempPathW(dir.len, &dir);
        if (dir_len == 0 or dir_len >= dir.len) return error.Io;
        var attempts: u32 = 0;
        while (attempts < 16) : (attempts += 1) {
            var path: WidePath = undefined;
            @memcpy(path.buffer[0..dir_len], dir[0..dir_len]);
            var tail_buffer: [128]u8 = undefined;
            const tail = std.fmt.bufPrint(&tail_buffer, "quiver-{s}-{x}", .{
                name[0..@min(name.len, 64)],
                std.crypto.random.int(u64),
            }) catch return error.Io;
            const tail_len = std.unicode.wtf8ToWtf16Le(path.buffer[dir_len..], tail) catch
                return error.Io;
            path.len = dir_len + tail_len;
            path.buffer[path.len] = 0;
            const handle = kernel32.CreateFileW(
                path.z(),
                windows.GENERIC_READ | windows.GENERIC_WRITE,
                share_all,
                null,
                windows.CREATE_NEW,
                windows.FILE_ATTRIBUTE_TEMPORARY | windows.FILE_FLAG_DELETE_ON_CLOSE,
                null,
            );
            if (handle != windows.INVALID_HANDLE_VALUE) return handle;
            switch (lastError()) {
                .FILE_EXISTS, .ALREADY_EXISTS => continue,
                else => |code| return changeError(code),
            }
        }
        return error.Io;
    }

    /// CreateFileW cannot hang on a pipe or a device the way open(2) can on a FIFO; what it
    /// opens is refused unless GetFileType says disk file, and a directory (which CreateFileW
    /// refuses without FILE_FLAG_BACKUP_SEMANTICS) is `NotRegular` too.
    fn open(path: [:0]const u8, options: OpenOptions) OpenError!Fd {
        var name: WidePath = undefined;
        try wide(&name, path);
        const access: DWORD = if (options.writable)
            windows.GENERIC_READ | windows.GENERIC_WRITE
        else
            windows.GENERIC_READ;
        const disposition: DWORD = if (options.exclusive)
            windows.CREATE_NEW
        else if (options.create) windows.OPEN_ALWAYS else windows.OPEN_EXISTING;
        const handle = kernel32.CreateFileW(
            name.z(),
            access,
            share_all,
            null,
            disposition,
            windows.FILE_ATTRIBUTE_NORMAL,
            null,
        );
        if (handle == windows.INVALID_HANDLE_VALUE) return switch (lastError()) {
            .FILE_NOT_FOUND, .PATH_NOT_FOUND => error.NotFound,
            .FILE_EXISTS, .ALREADY_EXISTS => error.Exists,
            .ACCESS_DENIED => if (isDirectory(&name)) error.NotRegular else error.Io,
            else => error.Io,
        };
        errdefer windows.CloseHandle(handle);
        if (GetFileType(handle) != FILE_TYPE_DISK) return error.NotRegular;
        var info: FileStandardInfo = undefined;
        try standardInfo(handle, &info);
        if (info.directory != 0) return error.NotRegular;
        // Truncated only once known to be a regular file.
        if (options.truncate) win.truncate(handle, 0) catch return error.Io;
        return handle;
    }

    fn isDirectory(name: *const WidePath) bool {
        const attributes = kernel32.GetFileAttributesW(name.z());
        if (attributes == windows.INVALID_FILE_ATTRIBUTES) return false;
        return attributes & windows.FILE_ATTRIBUTE_DIRECTORY != 0;
    }

    fn standardInfo(handle: HANDLE, info: *FileStandardInfo) error{Io}!void {
        const class = windows.FILE_INFO_BY_HANDLE_CLASS.FileStandardInfo;
        if (GetFileInformationByHandleEx(handle, class, info, @sizeOf(FileStandardInfo)) == 0) {
            return error.Io;
        }
        assert(info.end_of_file >= 0);
    }

    fn dup(fd: Fd) error{Io}!Fd {
        const process = kernel32.GetCurrentProcess();
        var out: HANDLE = undefined;
        const access = windows.DUPLICATE_SAME_ACCESS;
        if (kernel32.DuplicateHandle(process, fd, process, &out, 0, 0, access) == 0) {
            return error.Io;
        }
        assert(out != no_fd);
        return out;
    }

    fn size(fd: Fd) error{Io}!u64 {
        var bytes: windows.LARGE_INTEGER = undefined;
        if (kernel32.GetFileSizeEx(fd, &bytes) == 0) return error.Io;
        assert(bytes >= 0);
        return @intCast(bytes);
    }

    /// NTFS allocates the clusters of a non-sparse file when its end moves out (the bytes
    /// past the valid data read as zeros), and Quiver never makes a file sparse: the
    /// allocation size the file system reports is the test.
    fn allocated(fd: Fd, bytes: u64) error{Io}!bool {
        var info: FileStandardInfo = undefined;
        try standardInfo(fd, &info);
        if (info.allocation_bytes < 0) return false;
        const end: u64 = @intCast(info.end_of_file);
        return end >= bytes and @as(u64, @intCast(info.allocation_bytes)) >= bytes;
    }

    fn identity(fd: Fd) error{Io}!Identity {
        var info: windows.BY_HANDLE_FILE_INFORMATION = undefined;
        if (GetFileInformationByHandle(fd, &info) == 0) return error.Io;
        const index = @as(u64, info.nFileIndexHigh) << 32 | info.nFileIndexLow;
        return .{ .dev = info.dwVolumeSerialNumber, .ino = index };
    }

    /// Opened for no access at all (attributes only), so no sharing mode of another opener
    /// can refuse it; FILE_FLAG_BACKUP_SEMANTICS lets it name a directory too.
    fn identityAt(path: [:0]const u8) error{ Io, NotFound }!Identity {
        var name: WidePath = undefined;
        try wide(&name, path);
        const handle = kernel32.CreateFileW(
            name.z(),
            0,
            share_all,
            null,
            windows.OPEN_EXISTING,
            windows.FILE_FLAG_BACKUP_SEMANTICS,
            null,
        );
        if (handle == windows.INVALID_HANDLE_VALUE) return switch (lastError()) {
            .FILE_NOT_FOUND, .PATH_NOT_FOUND => error.NotFound,
            else => error.Io,
        };
        defer windows.CloseHandle(handle);
        return win.identity(handle);
    }

    /// GetFileAttributesW does not follow a reparse point, so a dangling link exists too.
    fn exists(path: [:0]const u8) error{Io}!bool {
        var name: WidePath = undefined;
        try wide(&name, path);
        if (kernel32.GetFileAttributesW(name.z()) != windows.INVALID_FILE_ATTRIBUTES) return true;
        return switch (lastError()) {
            .FILE_NOT_FOUND, .PATH_NOT_FOUND => false,
            // A file removed while open keeps its name until its last handle closes.
            .ACCESS_DENIED, .DELETE_PENDING => true,
            else => error.Io,
        };
    }

    /// Moves the end of file out; NTFS allocates the clusters then, so a full disk is
    /// `DiskFull` here, never later at a write through a mapping. Quiver's files are never
    /// sparse, so there are no holes below the old end to fill.
    fn reserve(fd: Fd, bytes: u64) Error!void {
        assert(bytes > 0);
        const have = win.size(fd) catch return error.Io;
        if (have >= bytes) return;
        setEnd(fd, bytes) catch |err| switch (err) {
            // The documented way to grow a file a section maps: a larger section extends it.
            error.UserMapped => return growBySection(fd, bytes),
            else => |e| return e,
        };
        assert(try win.size(fd) >= bytes);
    }

    fn growBySection(fd: Fd, bytes: u64) Error!void {
        const high: DWORD = @truncate(bytes >> 32);
        const low: DWORD = @truncate(bytes);
        const section = CreateFileMappingW(fd, null, windows.PAGE_READWRITE, high, low, null) orelse
            return changeError(lastError());
        windows.CloseHandle(section);
    }

    fn setEnd(fd: Fd, bytes: u64) (Error || error{UserMapped})!void {
        const end: i64 = std.math.cast(i64, bytes) orelse return error.DiskFull;
        const class = windows.FILE_INFO_BY_HANDLE_CLASS.FileEndOfFileInfo;
        if (SetFileInformationByHandle(fd, class, &end, @sizeOf(i64)) != 0) return;
        return switch (lastError()) {
            .USER_MAPPED_FILE => error.UserMapped,
            else => |code| changeError(code),
        };
    }

    /// Shrinking a file below a mapped view is refused by Windows (ERROR_USER_MAPPED_FILE, so
    /// `Io`); the WAL, which this cuts, is never mapped.
    fn truncate(fd: Fd, bytes: u64) Error!void {
        setEnd(fd, bytes) catch |err| return switch (err) {
            error.UserMapped => error.Io,
            else => |e| e,
        };
    }

    fn pwrite(fd: Fd, bytes: []const u8, offset: u64) Error!usize {
        var overlapped = overlappedAt(offset);
        const want: DWORD = @intCast(@min(bytes.len, 1 << 30));
        var wrote: DWORD = 0;
        if (kernel32.WriteFile(fd, bytes.ptr, want, &wrote, &overlapped) == 0) {
            return changeError(lastError());
        }
        assert(wrote <= want);
        return wrote;
    }

    /// Windows has no positioned gather write for a cached file (WriteFileGather wants
    /// unbuffered I/O), so a record that fits is gathered into one buffer and written with one
    /// call, as the WAL wants; a larger one is written a piece at a time and may be short.
    fn pwritev(fd: Fd, iov: []const posix.iovec_const, offset: u64) Error!usize {
        var total: usize = 0;
        for (iov) |piece| total += piece.len;
        var buffer: [64 * 1024]u8 = undefined;
        if (total <= buffer.len) {
            var at: usize = 0;
            for (iov) |piece| {
                @memcpy(buffer[at..][0..piece.len], piece.base[0..piece.len]);
                at += piece.len;
            }
            assert(at == total);
            return win.pwrite(fd, buffer[0..total], offset);
        }
        var wrote: usize = 0;
        for (iov) |piece| {
            var done: usize = 0;
            while (done < piece.len) {
                const n = try win.pwrite(fd, piece.base[done..piece.len], offset + wrote);
                if (n == 0) return wrote;
                done += n;
                wrote += n;
            }
        }
        assert(wrote == total);
        return wrote;
    }

    fn pread(fd: Fd, bytes: []u8, offset: u64) error{Io}!usize {
        var overlapped = overlappedAt(offset);
        const want: DWORD = @intCast(@min(bytes.len, 1 << 30));
        var got: DWORD = 0;
        if (kernel32.ReadFile(fd, bytes.ptr, want, &got, &overlapped) == 0) {
            return switch (lastError()) {
                .HANDLE_EOF => 0,
                else => error.Io,
            };
        }
        assert(got <= want);
        return got;
    }

    /// FlushFileBuffers writes the file's cached data and metadata and asks the drive to empty
    /// its cache (what Darwin needs F_FULLFSYNC for).
    fn fsync(fd: Fd) Error!void {
        if (kernel32.FlushFileBuffers(fd) == 0) return changeError(lastError());
    }

    /// Writes the view's dirty pages to the file (FlushFileBuffers then makes them durable).
    fn msync(region: Region) error{Io}!void {
        if (FlushViewOfFile(region.ptr, region.len) == 0) return error.Io;
    }

    fn map(fd: Fd, bytes: u64, writable: bool) MapError!Region {
        const protect: DWORD = if (writable) windows.PAGE_READWRITE else windows.PAGE_READONLY;
        const high: DWORD = @truncate(bytes >> 32);
        const low: DWORD = @truncate(bytes);
        const section = CreateFileMappingW(fd, null, protect, high, low, null) orelse
            return mapError(lastError());
        // The view holds the section: its handle is not needed past MapViewOfFile.
        defer windows.CloseHandle(section);
        const len = std.math.cast(usize, bytes) orelse return error.OutOfMemory;
        const access: DWORD = if (writable) FILE_MAP_WRITE else FILE_MAP_READ;
        const base = MapViewOfFile(section, access, 0, 0, len) orelse
            return mapError(lastError());
        // Views start on the allocation granularity (64 KiB), which the page divides.
        const aligned: [*]align(page_bytes) u8 = @alignCast(@ptrCast(base));
        return aligned[0..len];
    }

    fn mapError(code: windows.Win32Error) MapError {
        return switch (code) {
            .NOT_ENOUGH_MEMORY, .OUTOFMEMORY, .COMMITMENT_LIMIT => error.OutOfMemory,
            else => error.Io,
        };
    }

    fn unmap(region: Region) void {
        const ok = UnmapViewOfFile(region.ptr);
        assert(ok != 0);
    }

    /// Exclusive or shared, failing at once: `Locked` on a conflict. Like flock's, the lock
    /// belongs to the open file (a duplicated handle shares it), and two opens of one file in
    /// one process conflict; it is released when the file's last handle closes.
    fn lock(fd: Fd, shared: bool) LockError!void {
        var overlapped = overlappedAt(lock_offset);
        var flags: DWORD = LOCKFILE_FAIL_IMMEDIATELY;
        if (!shared) flags |= LOCKFILE_EXCLUSIVE_LOCK;
        if (LockFileEx(fd, flags, 0, 1, 0, &overlapped) != 0) return;
        return switch (lastError()) {
            .LOCK_VIOLATION, .SHARING_VIOLATION, .IO_PENDING => error.Locked,
            else => error.Io,
        };
    }

    /// MoveFileExW, written through. With `replace` it replaces `to` (which may be open: every
    /// opener shares delete); without, it fails atomically on an existing `to`, the Windows
    /// spelling of the link-then-unlink the POSIX branch uses.
    fn move(from: [:0]const u8, to: [:0]const u8, replace: bool) LinkError!void {
        var from_w: WidePath = undefined;
        var to_w: WidePath = undefined;
        try wide(&from_w, from);
        try wide(&to_w, to);
        var flags: DWORD = windows.MOVEFILE_WRITE_THROUGH;
        if (replace) flags |= windows.MOVEFILE_REPLACE_EXISTING;
        if (kernel32.MoveFileExW(from_w.z(), to_w.z(), flags) != 0) return;
        return switch (lastError()) {
            .FILE_NOT_FOUND, .PATH_NOT_FOUND => error.NotFound,
            .FILE_EXISTS, .ALREADY_EXISTS => if (replace) error.Io else error.Exists,
            .DISK_FULL, .HANDLE_DISK_FULL, .DISK_QUOTA_EXCEEDED => error.DiskFull,
            else => error.Io,
        };
    }

    fn unlink(path: [:0]const u8) LinkError!void {
        var name: WidePath = undefined;
        try wide(&name, path);
        if (DeleteFileW(name.z()) != 0) return;
        return switch (lastError()) {
            .FILE_NOT_FOUND, .PATH_NOT_FOUND => {},
            else => error.Io,
        };
    }
};

/// The absolute path of a test's temporary directory. Under wine, Dir.realpath fails (it
/// asks the mount manager, which wine does not answer), so on Windows the path is built from
/// the working directory and std.testing's layout (`.zig-cache/tmp/<sub_path>`).
pub fn tmpDirPath(tmp: *const std.testing.TmpDir, buffer: []u8) ![]u8 {
    comptime assert(builtin.is_test);
    if (!is_windows) return tmp.dir.realpath(".", buffer);
    var cwd_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const cwd = try std.process.getCwd(&cwd_buffer);
    return std.fmt.bufPrint(buffer, "{s}\\.zig-cache\\tmp\\{s}", .{ cwd, tmp.sub_path });
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
    // Windows has no FIFO in the file system; its test is the named pipe below.
    if (is_windows) return error.SkipZigTest;
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmpDirPath(&tmp, &buffer);
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

test "os: on Windows open refuses a named pipe and a directory, and a missing file is NotFound" {
    if (!is_windows) return error.SkipZigTest;
    var name_buffer: [64]u8 = undefined;
    const name = try std.fmt.bufPrintZ(&name_buffer, "\\\\.\\pipe\\quiver-{x}", .{
        std.crypto.random.int(u64),
    });
    var name_w: win.WidePath = undefined;
    try win.wide(&name_w, name);
    const pipe = windows.kernel32.CreateNamedPipeW(
        name_w.z(),
        windows.PIPE_ACCESS_DUPLEX,
        windows.PIPE_TYPE_BYTE,
        1,
        4096,
        4096,
        0,
        null,
    );
    try std.testing.expect(pipe != windows.INVALID_HANDLE_VALUE);
    defer windows.CloseHandle(pipe);
    try std.testing.expectError(error.NotRegular, open(name, .{ .writable = true }));
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmpDirPath(&tmp, &buffer);
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir_z = try std.fmt.bufPrintZ(&dir_buffer, "{s}", .{dir});
    try std.testing.expectError(error.NotRegular, open(dir_z, .{ .writable = false }));
    try std.testing.expect(try exists(dir_z));
    var missing_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const missing = try std.fmt.bufPrintZ(&missing_buffer, "{s}/missing", .{dir});
    try std.testing.expectError(error.NotFound, open(missing, .{ .writable = false }));
    try std.testing.expect(!try exists(missing));
}

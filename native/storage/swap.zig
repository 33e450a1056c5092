//! Crash-atomic replacement of an index's files by a complete set built beside them (compaction
//! builds `path~compact*`). Four renames cannot be one atomic step, so the swap has a commit
//! record, the way a database commits a transaction:
//!
//!   1. create `path~compact.building`                                 marks the files below ours
//!   2. build and sync `path~compact`, `.graph`, `.upper`, `.vectors`   crash: the old index
//!   3. create `path~compact.commit`, sync it and the directory         the commit point
//!   4. rename the side files, then the data file, over `path*`        crash: rolled forward
//!   5. remove what is left, the commit record, then the build marker; sync the directory
//!
//! A writable open holds the writer lock and then finishes a committed swap (`rollForward`) or
//! removes an abandoned build (`removeLeftovers`). Only files under a build marker are removed:
//! `path~compact` may also be somebody's own index. A read-only open may not rename; it resolves
//! each file to `path~compact<suffix>` while that exists, else `path<suffix>`, which is exactly the
//! set the roll-forward leaves (renames only ever move a file from the first name to the second).
const std = @import("std");
const os = @import("os.zig");

pub const Error = error{ Io, DiskFull };

/// The suffixes of an index's files, data file first (storage/storage.zig indexes them by `Kind`).
pub const suffixes = [_][]const u8{ "", ".graph", ".upper", ".vectors" };

/// Files of an index beside the mapped ones, swapped with them: the records file
/// (records/store.zig). Renamed before the mapped files, so the data file is still last.
pub const side_suffixes = [_][]const u8{".records"};
/// The data file carries the header, so it is renamed last: until it moves, `path` still names
/// the old header, and a reader of the old header never opens a new side file (see above).
const rename_order = [_]usize{ 1, 2, 3, 0 };
const temp_suffix = "~compact";
const commit_suffix = temp_suffix ++ ".commit";
const building_suffix = temp_suffix ++ ".building";

pub const BeginError = error{ Io, DiskFull, Exists };

/// `path` followed by `a` and `b` (suffixes), as a C string in `buffer`.
fn joined(buffer: []u8, path: []const u8, a: []const u8, b: []const u8) Error![:0]const u8 {
    return std.fmt.bufPrintZ(buffer, "{s}{s}{s}", .{ path, a, b }) catch error.Io;
}

/// Step 1: marks `path~compact*` as a build of ours. `Exists` when a file of that name is there
/// without a marker (an index of the caller's, which must not be overwritten or removed).
pub fn begin(path: []const u8) BeginError!void {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    if (!(marked(path) catch return error.Io)) {
        const data = joined(&buffer, path, temp_suffix, "") catch return error.Io;
        if (exists(data) catch return error.Io) return error.Exists;
    }
    const marker = try joined(&buffer, path, building_suffix, "");
    const fd = os.open(marker, .{ .writable = true, .create = true }) catch return error.Io;
    os.close(fd);
    // Durable before the build's files are: after a power loss, files without their marker
    // would look like somebody's index, and every later compaction would refuse.
    try os.syncDirectoryOf(path);
}

/// The path the replacement set is built at: `path~compact`.
pub fn tempPath(buffer: []u8, path: []const u8) Error![]const u8 {
    return std.fmt.bufPrint(buffer, "{s}" ++ temp_suffix, .{path}) catch error.Io;
}

/// Step 3: the set at `tempPath` is complete and synced; from here on it is the index.
pub fn commit(path: []const u8) Error!void {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const record = try joined(&buffer, path, commit_suffix, "");
    const fd = os.open(record, .{ .writable = true, .create = true, .truncate = true }) catch
        return error.Io;
    defer os.close(fd);
    try os.fsync(fd);
    try os.syncDirectoryOf(path);
}

/// Whether a committed swap is unfinished (the commit record exists).
pub fn pending(path: []const u8) Error!bool {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    return exists(try joined(&buffer, path, commit_suffix, ""));
}

/// Whether `path~compact*` belongs to a build of ours (the marker exists).
fn marked(path: []const u8) Error!bool {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    return exists(try joined(&buffer, path, building_suffix, ""));
}

fn exists(path: [:0]const u8) Error!bool {
    return os.exists(path);
}

/// Steps 4-5, idempotent: a file already renamed is skipped, so a crash during a roll-forward is
/// finished by the next one. The caller holds the writer lock (or is the compacting writer).
pub fn rollForward(path: []const u8) Error!void {
    for (side_suffixes) |suffix| {
        var a: [std.fs.max_path_bytes]u8 = undefined;
        var b: [std.fs.max_path_bytes]u8 = undefined;
        const from = try joined(&a, path, temp_suffix, suffix);
        const to = try joined(&b, path, suffix, "");
        os.rename(from, to) catch |err| switch (err) {
            error.NotFound => {},
            error.DiskFull => return error.DiskFull,
            error.Exists, error.Io => return error.Io,
        };
    }
    for (rename_order) |i| {
        var a: [std.fs.max_path_bytes]u8 = undefined;
        var b: [std.fs.max_path_bytes]u8 = undefined;
        const from = try joined(&a, path, temp_suffix, suffixes[i]);
        const to = try joined(&b, path, suffixes[i], "");
        os.rename(from, to) catch |err| switch (err) {
            error.NotFound => {},
            error.DiskFull => return error.DiskFull,
            error.Exists, error.Io => return error.Io,
        };
    }
    try os.syncDirectoryOf(path);
    try removeLeftovers(path);
}

/// Removes the files of our build (abandoned, or what a roll-forward left: its log), then the
/// commit record, then the marker, and syncs the directory so that no commit record can come
/// back after a power loss beside the next build. Without a marker there is nothing of ours.
pub fn removeLeftovers(path: []const u8) Error!void {
    if (!try marked(path)) return;
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    for (suffixes ++ side_suffixes ++ [_][]const u8{ ".wal", ".creating" }) |suffix| {
        try unlinkIfPresent(try joined(&buffer, path, temp_suffix, suffix));
    }
    try unlinkIfPresent(try joined(&buffer, path, commit_suffix, ""));
    try unlinkIfPresent(try joined(&buffer, path, building_suffix, ""));
    try os.syncDirectoryOf(path);
}

/// Opens file `suffix` of the index at `path` read-only, resolving an unfinished swap (see the
/// file comment): the replacement's name first, then the index's own.
pub fn openResolved(path: []const u8, suffix: []const u8) os.OpenError!os.Fd {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const temp = joined(&buffer, path, temp_suffix, suffix) catch return error.Io;
    if (os.open(temp, .{ .writable = false })) |fd| return fd else |err| switch (err) {
        error.NotFound => {},
        else => return err,
    }
    const own = joined(&buffer, path, suffix, "") catch return error.Io;
    return os.open(own, .{ .writable = false });
}

fn unlinkIfPresent(path: [:0]const u8) Error!void {
    os.unlink(path) catch |err| return switch (err) {
        error.DiskFull => error.DiskFull,
        error.Exists, error.NotFound, error.Io => error.Io,
    };
}

/// A backup is built at `path~backup*` under the marker `path~backup.building` and moved into
/// place only when complete (`publishBackup`), so a backup killed midway never leaves an index
/// at `path` that opens (empty or partial). The data file moves last: until it does, `path`
/// names nothing, and the files moved before it are the companions of no index.
const backup_suffix = "~backup";
const backup_marker_suffix = backup_suffix ++ ".building";
/// Every file an index at `path` has, data file first.
pub const companion_suffixes = suffixes ++ [_][]const u8{".wal"} ++ side_suffixes;

/// The first file of an index at `path` (data file or companion) that is already there, as
/// its suffix ("" for `path` itself), or null when all are free.
pub fn firstExisting(path: []const u8) Error!?[]const u8 {
    for (companion_suffixes) |suffix| {
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        if (try exists(try joined(&buffer, path, suffix, ""))) return suffix;
    }
    return null;
}

/// Starts a backup to `path`: refuses (`Exists`) when `path` or any companion is there, or when
/// `path~backup` is somebody's file; removes what a killed backup of ours left; marks the build.
pub fn beginBackup(path: []const u8) BeginError!void {
    if (try firstExisting(path) != null) return error.Exists;
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const marker = try joined(&buffer, path, backup_marker_suffix, "");
    if (try exists(marker)) {
        try removeBackupFiles(path);
    } else {
        for (companion_suffixes ++ [_][]const u8{".creating"}) |suffix| {
            var temp: [std.fs.max_path_bytes]u8 = undefined;
            if (try exists(try joined(&temp, path, backup_suffix, suffix))) return error.Exists;
        }
    }
    const fd = os.open(marker, .{ .writable = true, .create = true }) catch return error.Io;
    os.close(fd);
    try os.syncDirectoryOf(path);
}

/// The path the backup is built at: `path~backup`.
pub fn backupTempPath(buffer: []u8, path: []const u8) Error![]const u8 {
    return std.fmt.bufPrint(buffer, "{s}" ++ backup_suffix, .{path}) catch error.Io;
}

/// Moves the complete, synced backup into place without replacing anything (`Exists` if a
/// file appeared at a target name meanwhile), data file last; then removes the marker. On
/// failure the files already moved are removed again, so `path` is left as it was.
pub fn publishBackup(path: []const u8) (Error || error{Exists})!void {
    const order = [_]usize{ 1, 2, 3, 4, 5, 0 };
    comptime std.debug.assert(order.len == companion_suffixes.len);
    var moved: usize = 0;
    errdefer for (order[0..moved]) |i| {
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const to = joined(&buffer, path, companion_suffixes[i], "") catch continue;
        os.unlink(to) catch |err| std.log.warn(
            "quiver: could not remove {s} of an unfinished backup: {s}",
            .{ to, @errorName(err) },
        );
    };
    for (order) |i| {
        var a: [std.fs.max_path_bytes]u8 = undefined;
        var b: [std.fs.max_path_bytes]u8 = undefined;
        const from = try joined(&a, path, backup_suffix, companion_suffixes[i]);
        const to = try joined(&b, path, companion_suffixes[i], "");
        os.renameNoReplace(from, to) catch |err| return switch (err) {
            error.Exists => error.Exists,
            error.DiskFull => error.DiskFull,
            error.NotFound, error.Io => error.Io,
        };
        moved += 1;
    }
    try os.syncDirectoryOf(path);
    moved = 0; // the backup is in place and durable: nothing to undo from here on
    // The marker only guards `path~backup*`, which is empty now: a failure to remove it leaves
    // a stray file that the next backup to `path` removes, not a failed backup.
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const marker = try joined(&buffer, path, backup_marker_suffix, "");
    unlinkIfPresent(marker) catch |err| return warnMarker(marker, err);
    os.syncDirectoryOf(path) catch |err| return warnMarker(marker, err);
}

fn warnMarker(marker: []const u8, err: anyerror) void {
    std.log.warn("quiver: backup complete; could not remove {s}: {s}", .{
        marker,
        @errorName(err),
    });
}

/// Removes the files of an unfinished backup to `path` (if the marker says they are ours).
pub fn abandonBackup(path: []const u8) Error!void {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    if (!try exists(try joined(&buffer, path, backup_marker_suffix, ""))) return;
    try removeBackupFiles(path);
    try unlinkIfPresent(try joined(&buffer, path, backup_marker_suffix, ""));
    try os.syncDirectoryOf(path);
}

fn removeBackupFiles(path: []const u8) Error!void {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    for (companion_suffixes ++ [_][]const u8{".creating"}) |suffix| {
        try unlinkIfPresent(try joined(&buffer, path, backup_suffix, suffix));
    }
}

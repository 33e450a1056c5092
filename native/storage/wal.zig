//! The write-ahead log. Every mutation of a persistent index is appended (one write() call per
//! record, so it is in the kernel's page cache before the call returns and survives the process
//! being killed) before it is applied; `sync` makes the log durable against power loss with
//! fsync. Each record carries its length and a checksum: a torn or corrupt tail is detected on
//! replay and cut off, never applied. A checkpoint empties the log.
//!
//! Record: | u32 payload_bytes | u32 checksum | u64 lsn | u8 op | 7 pad | u64 key | f32 x dims |
const std = @import("std");
const posix = std.posix;
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");

pub const Op = enum(u8) { add = 1, remove = 2 };

pub const RecordHeader = extern struct {
    payload_bytes: u32,
    checksum: u32,
    lsn: u64,
    op: u8,
    pad: [7]u8,
    key: u64,
};

comptime {
    assert(@sizeOf(RecordHeader) == 32);
}

pub const Record = struct {
    lsn: u64,
    op: Op,
    key: u64,
    vector: []const f32,
};

pub const Wal = struct {
    fd: posix.fd_t,
    dimensions: u32,
    mutex: locks.Mutex = .{ .rank = .wal },
    end: u64,
    lsn: u64,

    /// Opens `path.wal`; a writable open creates it if missing, a read-only one only reads it.
    pub fn open(path: []const u8, dimensions: u32, writable: bool) !Wal {
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const full = std.fmt.bufPrintZ(&buffer, "{s}.wal", .{path}) catch return error.Io;
        const flags: posix.O = .{ .ACCMODE = if (writable) .RDWR else .RDONLY, .CREAT = writable, .CLOEXEC = true };
        const fd = posix.openZ(full, flags, 0o644) catch |err| switch (err) {
            error.FileNotFound => return error.Corrupt,
            else => return error.Io,
        };
        const stat = posix.fstat(fd) catch return error.Io;
        return .{ .fd = fd, .dimensions = dimensions, .end = @intCast(stat.size), .lsn = 0 };
    }

    pub fn close(self: *Wal) void {
        posix.close(self.fd);
    }

    /// Appends one record with a single write; the caller holds the key's stripe lock, so the
    /// log order of one key's records is the order they are applied in.
    pub fn append(self: *Wal, op: Op, key: u64, vector: []const f32, contention: *std.atomic.Value(u64)) !void {
        assert(op == .remove or vector.len == self.dimensions);
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        self.lsn += 1;
        var header = RecordHeader{
            .payload_bytes = @intCast(@sizeOf(RecordHeader) - 8 + vector.len * 4),
            .checksum = 0,
            .lsn = self.lsn,
            .op = @intFromEnum(op),
            .pad = [_]u8{0} ** 7,
            .key = key,
        };
        header.checksum = checksum(&header, std.mem.sliceAsBytes(vector));
        var iov = [_]posix.iovec_const{
            .{ .base = std.mem.asBytes(&header), .len = @sizeOf(RecordHeader) },
            .{ .base = std.mem.sliceAsBytes(vector).ptr, .len = vector.len * 4 },
        };
        const total = @sizeOf(RecordHeader) + vector.len * 4;
        const written = posix.pwritev(self.fd, iov[0..if (vector.len == 0) 1 else 2], self.end) catch return error.Io;
        if (written != total) {
            // A short write (disk full) leaves a torn record that replay cuts off; overwrite it
            // next time rather than leaving a gap.
            return error.Io;
        }
        self.end += total;
    }

    /// The log's length; writers may be appending, so it is read under the log's lock.
    pub fn bytes(self: *Wal, contention: *std.atomic.Value(u64)) u64 {
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        return self.end;
    }

    pub fn sync(self: *Wal) !void {
        posix.fsync(self.fd) catch return error.Io;
    }

    /// Empties the log after a checkpoint made its contents redundant.
    pub fn reset(self: *Wal, contention: *std.atomic.Value(u64)) !void {
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        posix.ftruncate(self.fd, 0) catch return error.Io;
        posix.fsync(self.fd) catch return error.Io;
        self.end = 0;
    }

    /// Calls `apply` for every intact record in order, then cuts off a torn tail. Returns the
    /// number of records applied and whether a tail was cut.
    pub fn replay(self: *Wal, gpa: std.mem.Allocator, context: anytype, apply: fn (@TypeOf(context), Record) anyerror!void) !struct { records: u64, torn: bool } {
        const vector = try gpa.alloc(f32, self.dimensions);
        defer gpa.free(vector);
        var offset: u64 = 0;
        var records: u64 = 0;
        var torn = false;
        while (offset < self.end) {
            var header: RecordHeader = undefined;
            const got = posix.pread(self.fd, std.mem.asBytes(&header), offset) catch return error.Io;
            if (got != @sizeOf(RecordHeader) or !plausible(&header, self.dimensions)) {
                torn = true;
                break;
            }
            const floats: usize = if (header.op == @intFromEnum(Op.add)) self.dimensions else 0;
            const body = std.mem.sliceAsBytes(vector[0..floats]);
            const got_body = posix.pread(self.fd, body, offset + @sizeOf(RecordHeader)) catch return error.Io;
            if (got_body != body.len or checksum(&header, body) != header.checksum) {
                torn = true;
                break;
            }
            try apply(context, .{ .lsn = header.lsn, .op = @enumFromInt(header.op), .key = header.key, .vector = vector[0..floats] });
            records += 1;
            self.lsn = header.lsn;
            offset += @sizeOf(RecordHeader) + body.len;
        }
        if (torn) {
            posix.ftruncate(self.fd, offset) catch return error.Io;
            self.end = offset;
        }
        return .{ .records = records, .torn = torn };
    }
};

fn plausible(header: *const RecordHeader, dimensions: u32) bool {
    const floats: u64 = switch (header.op) {
        @intFromEnum(Op.add) => dimensions,
        @intFromEnum(Op.remove) => 0,
        else => return false,
    };
    return header.payload_bytes == @sizeOf(RecordHeader) - 8 + floats * 4;
}

fn checksum(header: *const RecordHeader, body: []const u8) u32 {
    var hasher = std.hash.XxHash64.init(0x57_41_4c);
    hasher.update(std.mem.asBytes(header)[8..]);
    hasher.update(std.mem.asBytes(&header.payload_bytes));
    hasher.update(body);
    return @truncate(hasher.final());
}

test "wal: records replay in order and a torn tail is cut, not applied" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/idx", .{dir});
    var contention = std.atomic.Value(u64).init(0);

    var wal = try Wal.open(path, 3, true);
    try wal.append(.add, 7, &.{ 1, 2, 3 }, &contention);
    try wal.append(.remove, 7, &.{}, &contention);
    try wal.append(.add, 9, &.{ 4, 5, 6 }, &contention);
    const full_end = wal.end;
    wal.close();
    // Tear the last record in half, as a crash in the middle of a write would.
    var truncate_buf: [std.fs.max_path_bytes]u8 = undefined;
    const wal_path = try std.fmt.bufPrint(&truncate_buf, "{s}.wal", .{path});
    const file = try std.fs.openFileAbsolute(wal_path, .{ .mode = .read_write });
    try file.setEndPos(full_end - 5);
    file.close();

    wal = try Wal.open(path, 3, true);
    defer wal.close();
    const Seen = struct {
        keys: std.ArrayListUnmanaged(u64) = .{},
        fn apply(self: *@This(), record: Record) anyerror!void {
            try self.keys.append(std.testing.allocator, record.key * 10 + @intFromEnum(record.op));
        }
    };
    var seen = Seen{};
    defer seen.keys.deinit(std.testing.allocator);
    const result = try wal.replay(std.testing.allocator, &seen, Seen.apply);
    try std.testing.expectEqual(@as(u64, 2), result.records);
    try std.testing.expect(result.torn);
    try std.testing.expectEqualSlices(u64, &.{ 71, 72 }, seen.keys.items);
    try std.testing.expectEqual(@as(u64, 2 * 32 + 12), wal.end);
}

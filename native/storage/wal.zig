//! The write-ahead log. Every mutation of a persistent index is appended (one write() call per
//! record, so it is in the kernel's page cache before the call returns and survives the process
//! being killed) before it is applied; `sync` makes the log durable against power loss with
//! fsync. Each record carries its length and a checksum: a torn or corrupt tail is detected on
//! replay and cut off, never applied. A checkpoint empties the log.
//!
//! Record: | u32 payload_bytes | u32 checksum | u64 lsn | u8 op | 7 pad | u64 key | body |
//! The body of `add` is the vector (f32 x dims); of `add_record` the vector and then the record's
//! payload (docs/records.md); of `set_record` the payload alone; `remove` has none.
const std = @import("std");
const posix = std.posix;
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");
const os = @import("os.zig");

/// The log is the file `path ++ file_suffix`.
pub const file_suffix = ".wal";

pub const Op = enum(u8) { add = 1, remove = 2, add_record = 3, set_record = 4 };

/// The largest payload a record may carry (native/records/payload.zig stays within it).
pub const payload_bytes_max: u32 = 1 << 18;

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
    /// `add_record` and `set_record`: the record's payload; empty otherwise.
    payload: []const u8,
};

pub const Wal = struct {
    fd: os.Fd,
    dimensions: u32,
    mutex: locks.Mutex = .{ .rank = .wal },
    end: u64,
    lsn: u64,
    /// A short write left bytes past `end` that are not yet cut off.
    tail_dirty: bool = false,

    /// Opens `path.wal`; a writable open creates it if missing, a read-only one only reads it.
    /// A missing log is `Corrupt` for a read-only open; a FIFO or device is `NotRegular`.
    pub fn open(
        path: []const u8,
        dimensions: u32,
        writable: bool,
    ) error{ Io, DiskFull, Corrupt, NotRegular }!Wal {
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const full =
            std.fmt.bufPrintZ(&buffer, "{s}" ++ file_suffix, .{path}) catch return error.Io;
        const fd = os.open(full, .{ .writable = writable, .create = writable }) catch |err|
            return switch (err) {
                error.NotFound => error.Corrupt,
                error.NotRegular => error.NotRegular,
                error.Exists, error.Io => error.Io,
            };
        errdefer os.close(fd);
        // A log this open created must not vanish in a power loss with the writes it holds.
        if (writable) try os.syncDirectoryOf(full);
        const end = try os.size(fd);
        return .{ .fd = fd, .dimensions = dimensions, .end = end, .lsn = 0 };
    }

    pub fn close(self: *Wal) void {
        os.close(self.fd);
    }

    /// Appends one record with a single write; the caller holds the key's stripe lock, so the
    /// log order of one key's records is the order they are applied in.
    pub fn append(
        self: *Wal,
        op: Op,
        key: u64,
        vector: []const f32,
        payload: []const u8,
        contention: *std.atomic.Value(u64),
    ) !void {
        switch (op) {
            .add => assert(vector.len == self.dimensions and payload.len == 0),
            .add_record => assert(vector.len == self.dimensions and payload.len > 0),
            .set_record => assert(vector.len == 0 and payload.len > 0),
            .remove => assert(vector.len == 0 and payload.len == 0),
        }
        assert(payload.len <= payload_bytes_max);
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        if (self.tail_dirty) try self.cutTail();
        self.lsn += 1;
        var header = RecordHeader{
            .payload_bytes = @intCast(@sizeOf(RecordHeader) - 8 + vector.len * 4 + payload.len),
            .checksum = 0,
            .lsn = self.lsn,
            .op = @intFromEnum(op),
            .pad = [_]u8{0} ** 7,
            .key = key,
        };
        header.checksum = checksum(&header, &.{ std.mem.sliceAsBytes(vector), payload });
        var iov: [3]posix.iovec_const = undefined;
        var iov_len: usize = 0;
        const parts = [_][]const u8{
            std.mem.asBytes(&header),
            std.mem.sliceAsBytes(vector),
            payload,
        };
        for (parts) |part| {
            if (part.len == 0) continue;
            iov[iov_len] = .{ .base = part.ptr, .len = part.len };
            iov_len += 1;
        }
        const total = @sizeOf(RecordHeader) + vector.len * 4 + payload.len;
        const written = os.pwritev(
            self.fd,
            iov[0..iov_len],
            self.end,
        ) catch |err| return err; // a failed write wrote nothing
        if (written != total) {
            // A short write (disk full) must not stay in the file: a later, shorter record
            // written at `end` would leave its remains behind a valid record, where replay
            // would rightly call them corruption. Until the cut succeeds no record is appended.
            self.tail_dirty = true;
            // The append fails either way; a failed cut is retried by the next append.
            self.cutTail() catch |err| return err;
            return error.DiskFull;
        }
        self.end += total;
    }

    /// Cuts the file back to `end` after a short write. The caller holds the log's lock.
    fn cutTail(self: *Wal) os.Error!void {
        assert(self.tail_dirty);
        try os.truncate(self.fd, self.end);
        self.tail_dirty = false;
    }

    /// The log's length; writers may be appending, so it is read under the log's lock.
    pub fn bytes(self: *Wal, contention: *std.atomic.Value(u64)) u64 {
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        return self.end;
    }

    pub fn sync(self: *Wal) os.Error!void {
        try os.fsync(self.fd);
    }

    /// Empties the log after a checkpoint made its contents redundant.
    pub fn reset(self: *Wal, contention: *std.atomic.Value(u64)) os.Error!void {
        self.mutex.lock(contention);
        defer self.mutex.unlock();
        try os.truncate(self.fd, 0);
        // The file is empty from here on, whether or not the fsync below succeeds: appends go
        // at offset 0. (Set after the fsync, a failed fsync left `end` at the old length, and
        // the next append wrote behind a hole of zeros that replay calls corruption.)
        self.end = 0;
        try os.fsync(self.fd);
    }

    pub const ReplayError = error{ Io, OutOfMemory, Corrupt };

    /// Calls `apply` for every intact record in order, then cuts off a torn tail. Returns the
    /// number of records applied and whether a tail was cut. A torn tail is what a killed or
    /// powered-off append can leave: fewer bytes than a record, a record longer than the file,
    /// the last record with a bad checksum, or zeros. A bad record with more data after it is a
    /// damaged log, not a tail: `Corrupt`, and nothing after it is dropped silently. `apply`'s
    /// errors come back with their own type.
    pub fn replay(
        self: *Wal,
        gpa: std.mem.Allocator,
        context: anytype,
        comptime ApplyError: type,
        apply: fn (@TypeOf(context), Record) ApplyError!void,
    ) (ReplayError || ApplyError)!struct { records: u64, torn: bool } {
        const vector = try gpa.alloc(f32, self.dimensions);
        defer gpa.free(vector);
        const payload = try gpa.alloc(u8, payload_bytes_max);
        defer gpa.free(payload);
        var offset: u64 = 0;
        var records: u64 = 0;
        var lsn_last: u64 = 0;
        const torn = while (offset < self.end) {
            var header: RecordHeader = undefined;
            const got =
                try os.pread(self.fd, std.mem.asBytes(&header), offset);
            if (got != @sizeOf(RecordHeader)) break true;
            if (!plausible(&header, self.dimensions)) {
                if (try self.zerosFrom(offset)) break true;
                return error.Corrupt;
            }
            const op: Op = @enumFromInt(header.op);
            const floats: usize = switch (op) {
                .add, .add_record => self.dimensions,
                .remove, .set_record => 0,
            };
            const body = std.mem.sliceAsBytes(vector[0..floats]);
            const extra = payload[0 .. header.payload_bytes - (@sizeOf(RecordHeader) - 8) -
                body.len];
            const record_end = offset + @sizeOf(RecordHeader) + body.len + extra.len;
            if (record_end > self.end) break true;
            const body_at = offset + @sizeOf(RecordHeader);
            if (try os.pread(self.fd, body, body_at) != body.len) return error.Io;
            if (try os.pread(self.fd, extra, body_at + body.len) != extra.len) return error.Io;
            if (checksum(&header, &.{ body, extra }) != header.checksum) {
                if (record_end == self.end) break true;
                return error.Corrupt;
            }
            // Sequence numbers only grow (a failed append skips one, never reuses it).
            if (header.lsn <= lsn_last) return error.Corrupt;
            lsn_last = header.lsn;
            try apply(context, .{
                .lsn = header.lsn,
                .op = op,
                .key = header.key,
                .vector = vector[0..floats],
                .payload = extra,
            });
            records += 1;
            self.lsn = header.lsn;
            offset = record_end;
        } else false;
        assert(offset <= self.end);
        if (torn) {
            os.truncate(self.fd, offset) catch return error.Io;
            self.end = offset;
        }
        return .{ .records = records, .torn = torn };
    }

    /// Whether every byte from `offset` to the end of the log is zero.
    fn zerosFrom(self: *Wal, offset: u64) error{Io}!bool {
        var buffer: [4096]u8 = undefined;
        var at = offset;
        while (at < self.end) {
            const want: usize = @intCast(@min(buffer.len, self.end - at));
            const got = try os.pread(self.fd, buffer[0..want], at);
            if (got == 0) return error.Io;
            for (buffer[0..got]) |byte| if (byte != 0) return false;
            at += got;
        }
        return true;
    }
};

/// Whether the header's length fits its op: exact for `add` and `remove`; for the ops with a
/// payload, the fixed part plus 1 to `payload_bytes_max` payload bytes.
fn plausible(header: *const RecordHeader, dimensions: u32) bool {
    const fixed: u64 = @sizeOf(RecordHeader) - 8;
    const vector: u64 = @as(u64, dimensions) * 4;
    const bytes: u64 = header.payload_bytes;
    return switch (header.op) {
        @intFromEnum(Op.add) => bytes == fixed + vector,
        @intFromEnum(Op.remove) => bytes == fixed,
        @intFromEnum(Op.add_record) => bytes > fixed + vector and
            bytes <= fixed + vector + payload_bytes_max,
        @intFromEnum(Op.set_record) => bytes > fixed and bytes <= fixed + payload_bytes_max,
        else => false,
    };
}

fn checksum(header: *const RecordHeader, parts: []const []const u8) u32 {
    var hasher = std.hash.XxHash64.init(0x57_41_4c);
    hasher.update(std.mem.asBytes(header)[8..]);
    hasher.update(std.mem.asBytes(&header.payload_bytes));
    for (parts) |part| hasher.update(part);
    return @truncate(hasher.final());
}

test "wal: records replay in order and a torn tail is cut, not applied" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/idx", .{dir});
    var contention = std.atomic.Value(u64).init(0);

    var wal = try Wal.open(path, 3, true);
    try wal.append(.add, 7, &.{ 1, 2, 3 }, &.{}, &contention);
    try wal.append(.remove, 7, &.{}, &.{}, &contention);
    try wal.append(.add, 9, &.{ 4, 5, 6 }, &.{}, &contention);
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
        fn apply(self: *@This(), record: Record) error{OutOfMemory}!void {
            try self.keys.append(std.testing.allocator, record.key * 10 + @intFromEnum(record.op));
        }
    };
    var seen = Seen{};
    defer seen.keys.deinit(std.testing.allocator);
    const result = try wal.replay(std.testing.allocator, &seen, error{OutOfMemory}, Seen.apply);
    try std.testing.expectEqual(@as(u64, 2), result.records);
    try std.testing.expect(result.torn);
    try std.testing.expectEqualSlices(u64, &.{ 71, 72 }, seen.keys.items);
    try std.testing.expectEqual(@as(u64, 2 * 32 + 12), wal.end);
}

const TestLog = struct {
    tmp: std.testing.TmpDir,
    path_buf: [std.fs.max_path_bytes]u8 = undefined,
    path: []const u8 = "",

    fn init(self: *TestLog) !void {
        self.tmp = std.testing.tmpDir(.{});
        var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
        const dir = try os.tmpDirPath(&self.tmp, &dir_buf);
        self.path = try std.fmt.bufPrint(&self.path_buf, "{s}/idx", .{dir});
    }

    /// Flips one bit at `offset` of the log file, or writes `bytes` zeros at its end.
    fn damage(self: *TestLog, offset: ?u64, zeros: usize) !void {
        var buf: [std.fs.max_path_bytes]u8 = undefined;
        const wal_path = try std.fmt.bufPrint(&buf, "{s}.wal", .{self.path});
        const file = try std.fs.openFileAbsolute(wal_path, .{ .mode = .read_write });
        defer file.close();
        if (offset) |at| {
            var byte: [1]u8 = undefined;
            _ = try file.preadAll(&byte, at);
            byte[0] ^= 0x10;
            try file.pwriteAll(&byte, at);
        }
        if (zeros > 0) {
            const end = try file.getEndPos();
            const nothing = [_]u8{0} ** 256;
            try file.pwriteAll(nothing[0..zeros], end);
        }
    }
};

const Keys = struct {
    keys: std.ArrayListUnmanaged(u64) = .{},
    fn apply(self: *@This(), record: Record) error{OutOfMemory}!void {
        try self.keys.append(std.testing.allocator, record.key);
    }
};

fn threeRecords(log: *TestLog) !void {
    var contention = std.atomic.Value(u64).init(0);
    var wal = try Wal.open(log.path, 3, true);
    defer wal.close();
    try wal.append(.add, 7, &.{ 1, 2, 3 }, &.{}, &contention);
    try wal.append(.add, 8, &.{ 4, 5, 6 }, &.{}, &contention);
    try wal.append(.add, 9, &.{ 7, 8, 9 }, &.{}, &contention);
}

test "wal: a bit flip in a record with records after it is corruption, never a torn tail" {
    var log = TestLog{ .tmp = undefined };
    try log.init();
    defer log.tmp.cleanup();
    try threeRecords(&log);
    // Inside the second record's vector: its checksum fails, and the third record follows.
    try log.damage(44 + 32 + 4, 0);
    var wal = try Wal.open(log.path, 3, true);
    defer wal.close();
    var seen = Keys{};
    defer seen.keys.deinit(std.testing.allocator);
    const end = wal.end;
    try std.testing.expectError(
        error.Corrupt,
        wal.replay(std.testing.allocator, &seen, error{OutOfMemory}, Keys.apply),
    );
    // Nothing was cut: the damaged log is left as it was for whoever repairs it.
    try std.testing.expectEqual(end, wal.end);
    try std.testing.expectEqual(@as(u64, 3 * 44), wal.end);
}

test "wal: a flip in a header (not the last) is corruption; zeros after the last are a tail" {
    var log = TestLog{ .tmp = undefined };
    try log.init();
    defer log.tmp.cleanup();
    try threeRecords(&log);
    try log.damage(null, 100);
    {
        var wal = try Wal.open(log.path, 3, true);
        defer wal.close();
        var seen = Keys{};
        defer seen.keys.deinit(std.testing.allocator);
        const result = try wal.replay(std.testing.allocator, &seen, error{OutOfMemory}, Keys.apply);
        try std.testing.expect(result.torn);
        try std.testing.expectEqualSlices(u64, &.{ 7, 8, 9 }, seen.keys.items);
        try std.testing.expectEqual(@as(u64, 3 * 44), wal.end);
    }
    // The second record's op byte: its header is no longer a record's.
    try log.damage(44 + 16, 0);
    var wal = try Wal.open(log.path, 3, true);
    defer wal.close();
    var seen = Keys{};
    defer seen.keys.deinit(std.testing.allocator);
    try std.testing.expectError(
        error.Corrupt,
        wal.replay(std.testing.allocator, &seen, error{OutOfMemory}, Keys.apply),
    );
}

test "wal: the last record with a bad checksum is a torn tail" {
    var log = TestLog{ .tmp = undefined };
    try log.init();
    defer log.tmp.cleanup();
    try threeRecords(&log);
    try log.damage(2 * 44 + 40, 0);
    var wal = try Wal.open(log.path, 3, true);
    defer wal.close();
    var seen = Keys{};
    defer seen.keys.deinit(std.testing.allocator);
    const result = try wal.replay(std.testing.allocator, &seen, error{OutOfMemory}, Keys.apply);
    try std.testing.expect(result.torn);
    try std.testing.expectEqualSlices(u64, &.{ 7, 8 }, seen.keys.items);
    try std.testing.expectEqual(@as(u64, 2 * 44), wal.end);
}

//! The write path under failure: a call that fails changes nothing and logs nothing, and a
//! failed growth never leaves counters past the mapped storage (issue 9, items 1, 2 and 9).
//! Growth is made to fail for real: a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) turns
//! every extension of the index's files into EFBIG.
const std = @import("std");
const builtin = @import("builtin");
const posix = std.posix;
const abi = @import("../abi.zig");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const recovery = @import("recovery.zig");
const view_mod = @import("../hnsw/view.zig");
const t = @import("index_test.zig");
const os = @import("../storage/os.zig");
const swap = @import("../storage/swap.zig");
const hnsw_insert = @import("../hnsw/insert.zig");
const graph = @import("../hnsw/graph.zig");

const gpa = std.testing.allocator;
const dims = 8;

fn vectorOf(key: u64) [dims]f32 {
    var v: [dims]f32 = undefined;
    for (&v, 0..) |*x, i| x.* = @floatFromInt((key * 7 + i * 13) % 101);
    return v;
}

/// The largest of the index's files: a file-size limit at this size refuses any growth.
fn largestFile(path: []const u8) !u64 {
    var largest: u64 = 0;
    for (swap.suffixes) |suffix| {
        var buf: [std.fs.max_path_bytes]u8 = undefined;
        const name = try std.fmt.bufPrint(&buf, "{s}{s}", .{ path, suffix });
        const stat = std.fs.cwd().statFile(name) catch continue;
        largest = @max(largest, stat.size);
    }
    return largest;
}

/// RLIMIT_FSIZE (with SIGXFSZ ignored): a file-size limit is a real EFBIG from the kernel.
/// Windows has neither, so the tests that set one skip there (the fault hook's EFBIG still
/// runs there, in the other write tests).
const Limit = struct {
    saved: if (limits) posix.rlimit else void,

    const limits = builtin.os.tag != .windows;

    fn set(bytes: u64) !Limit {
        if (!limits) return error.SkipZigTest;
        const ignore = posix.Sigaction{
            .handler = .{ .handler = posix.SIG.IGN },
            .mask = posix.empty_sigset,
            .flags = 0,
        };
        posix.sigaction(posix.SIG.XFSZ, &ignore, null);
        const saved = try posix.getrlimit(.FSIZE);
        try posix.setrlimit(.FSIZE, .{ .cur = bytes, .max = saved.max });
        return .{ .saved = saved };
    }

    fn restore(self: Limit) void {
        if (!limits) return;
        posix.setrlimit(.FSIZE, self.saved) catch unreachable;
    }
};

fn isWriteFailure(err: anyerror) bool {
    return err == error.Io or std.mem.eql(u8, @errorName(err), "DiskFull");
}

test "write: an add whose growth fails is not logged, not applied, and leaves the index sound" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/grow", .{dir});
    var opts = t.options(dims, .l2sq);
    opts.capacity = 64;

    var acknowledged: u64 = 0;
    var failed_key: ?u64 = null;
    {
        const index = try Index.create(gpa, opts, path);
        defer index.destroy();
        while (acknowledged < 64) : (acknowledged += 1) {
            const v = vectorOf(acknowledged);
            try write.add(index, acknowledged, &v);
        }
        try index.checkpoint();
        const limit = try Limit.set(try largestFile(path));
        defer limit.restore();
        // Keep adding until a growth is refused; the log may grow (it is small) but no file
        // of the index may.
        var key: u64 = acknowledged;
        while (key < 100_000) : (key += 1) {
            const wal_end = index.wal.?.end;
            const v = vectorOf(key);
            write.add(index, key, &v) catch |err| {
                try std.testing.expect(isWriteFailure(err));
                failed_key = key;
                // Nothing was logged and nothing is visible.
                try std.testing.expectEqual(wal_end, index.wal.?.end);
                var out: [dims]f32 = undefined;
                try std.testing.expect(!read.get(index, key, view_mod.live_seq, &out));
                break;
            };
            acknowledged = key + 1;
        }
        try std.testing.expect(failed_key != null);
        // The counters never ran past the storage that exists.
        const generation = index.storage.pin();
        defer index.storage.unpin(generation);
        try std.testing.expect(index.slots_used.load(.acquire) <= generation.payload.capacity);
        try std.testing.expectEqual(acknowledged, index.live.load(.acquire));
        limit.restore();
        // A checkpoint (close does one too) hashes only mapped, written slots.
        try index.checkpoint();
    }
    const index = try recovery.open(gpa, path, opts, .full);
    defer index.destroy();
    try std.testing.expectEqual(acknowledged, index.live.load(.acquire));
    var out: [dims]f32 = undefined;
    for (0..acknowledged) |key| {
        try std.testing.expect(read.get(index, key, view_mod.live_seq, &out));
        try std.testing.expectEqualSlices(f32, &vectorOf(key), &out);
    }
    try std.testing.expect(!read.get(index, failed_key.?, view_mod.live_seq, &out));
    try t.expectVerified(index);
    // The index grows again once the disk has room.
    const v = vectorOf(failed_key.?);
    try write.add(index, failed_key.?, &v);
    try std.testing.expect(read.get(index, failed_key.?, view_mod.live_seq, &out));
}

test "write: an add whose append fails after linking leaves a routing tombstone, even as entry" {
    // The failed add's node is linked before the append (and a high level promotes it to the
    // entry point): it must become a valid, invisible node, or a reopen finds an entry point on
    // a level no published slot has and refuses the index as corrupt.
    defer os.faults.reset();
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/entry", .{dir});
    const opts = t.options(dims, .l2sq);
    var high: u64 = 1000;
    {
        const index = try Index.create(gpa, opts, path);
        defer index.destroy();
        for (0..50) |key| {
            const v = vectorOf(key);
            try write.add(index, key, &v);
        }
        const top = index.entry.load().?.level;
        while (hnsw_insert.levelFor(index.seed, high, index.params.m) <= top) high += 1;
        os.faults.arm(.write, 1, .nospc, true);
        const v = vectorOf(high);
        try std.testing.expectError(error.DiskFull, write.add(index, high, &v));
        os.faults.reset();
        // The failed node routes (it is the entry point now) but is never a result.
        const generation = index.storage.pin();
        defer index.storage.unpin(generation);
        const entry = index.entry.load().?;
        try std.testing.expectEqual(high, generation.payload.meta(entry.slot).key);
        var out: [dims]f32 = undefined;
        try std.testing.expect(!read.get(index, high, view_mod.live_seq, &out));
        try std.testing.expectEqual(@as(u64, 50), index.live.load(.acquire));
    }
    const index = try recovery.open(gpa, path, opts, .full);
    defer index.destroy();
    try std.testing.expectEqual(@as(u64, 50), index.live.load(.acquire));
    var out: [dims]f32 = undefined;
    try std.testing.expect(!read.get(index, high, view_mod.live_seq, &out));
    for (0..50) |key| try std.testing.expect(read.get(index, key, view_mod.live_seq, &out));
    try t.expectVerified(index);
}

test "write: a dirty open relinks a live node that no link reaches (power loss left old lists)" {
    // A power loss can leave the graph file older than the metadata: the log's replay restores
    // the vectors but not every list. Here every list that names one node is cut by hand (what
    // an older graph page would hold), the index is dropped as a killed process would, and the
    // reopen must leave that node reachable again. The old open left it unreachable.
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/relink", .{dir});
    const opts = t.options(dims, .l2sq);
    const victim: u32 = 17;
    {
        const index = try Index.create(gpa, opts, path);
        for (0..200) |key| {
            const v = vectorOf(key);
            try write.add(index, key, &v);
        }
        const generation = index.storage.pin();
        const regions = generation.payload;
        var cut: u32 = 0;
        for (0..200) |i| {
            const meta = regions.meta(@intCast(i));
            var level: u32 = 0;
            while (level <= meta.level) : (level += 1) {
                const words = regions.list(@intCast(i), level, meta.upper_offset);
                const count = graph.countOf(words);
                var kept: u32 = 0;
                for (words[1 .. 1 + count]) |id| {
                    if (id == victim) {
                        cut += 1;
                        continue;
                    }
                    words[1 + kept] = id;
                    kept += 1;
                }
                words[0] = kept;
            }
        }
        index.storage.unpin(generation);
        try std.testing.expect(cut > 0);
        try std.testing.expect(index.entry.load().?.slot != victim);
        index.storage.markDirty(&index.dirty, &index.counters.lock_contention);
        const storage = index.storage;
        index.destroyState();
        storage.destroy();
    }
    const index = try recovery.open(gpa, path, opts, .fast);
    defer index.destroy();
    try t.expectVerified(index);
    var out: [dims]f32 = undefined;
    try std.testing.expect(read.get(index, victim, view_mod.live_seq, &out));
}

test "write: a checkpoint failing at any fsync, then a remove and a kill, still reopens whole" {
    // A checkpoint whose last sync failed left the mapped header saying clean while `dirty`
    // told later mutations not to mark it: a remove, a kill, and the reopen refused the index.
    defer os.faults.reset();
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    const opts = t.options(dims, .l2sq);
    var nth: u64 = 1;
    var failures: u32 = 0;
    while (nth < 40) : (nth += 1) {
        var path_buf: [std.fs.max_path_bytes]u8 = undefined;
        const path = try std.fmt.bufPrint(&path_buf, "{s}/sweep{d}", .{ dir, nth });
        {
            const index = try Index.create(gpa, opts, path);
            for (0..40) |key| {
                const v = vectorOf(key);
                try write.add(index, key, &v);
            }
            os.faults.arm(.fsync, nth, .io, false);
            const result = index.checkpoint();
            const fired = os.faults.fired(.fsync);
            os.faults.reset();
            if (result) |_| {} else |_| failures += 1;
            try std.testing.expect(try write.remove(index, 3));
            const storage = index.storage;
            index.destroyState();
            storage.destroy();
            if (fired == 0) break;
        }
        const index = try recovery.open(gpa, path, opts, .fast);
        defer index.destroy();
        try std.testing.expectEqual(@as(u64, 39), index.live.load(.acquire));
        var out: [dims]f32 = undefined;
        try std.testing.expect(!read.get(index, 3, view_mod.live_seq, &out));
        try std.testing.expect(read.get(index, 39, view_mod.live_seq, &out));
    }
    try std.testing.expect(failures >= 3);
}

//! Records through the whole index (issue #11): filtered search against brute force at every
//! selectivity, exact counts, ids that must not collide, metadata updates beside snapshots,
//! and payloads that survive a reopen, a kill (no checkpoint), compaction and backup.
const std = @import("std");
const abi = @import("../abi.zig");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const records = @import("records.zig");
const recovery = @import("recovery.zig");
const compact = @import("compact.zig");
const backup = @import("backup.zig");
const os = @import("../storage/os.zig");
const index_test = @import("index_test.zig");
const live_seq = @import("../hnsw/view.zig").live_seq;
const payload = @import("../records/payload.zig");
const schema_mod = @import("../records/schema.zig");
const verify = @import("verify.zig").verify;
const Dir = @import("durability_test.zig").Dir;
const store_mod = @import("../records/store.zig");
const storage_mod = @import("../storage/storage.zig");

const gpa = index_test.gpa;
const dims = 8;
const n = 3000;

fn countOf(index: *Index, seq: u64, program_bytes: []const u8) !u64 {
    return records.count(index, seq, program_bytes);
}

fn expectCount(want: u64, index: *Index, program_bytes: []const u8) !void {
    try std.testing.expectEqual(want, try countOf(index, live_seq, program_bytes));
}

fn opts() abi.Options {
    return index_test.options(dims, .l2sq);
}

fn schemaBytes() ![]u8 {
    return schema_mod.encode(gpa, &.{
        .{ .kind = .keyword, .name = "cls" },
        .{ .kind = .number, .name = "num" },
    });
}

var class_names: [10][2]u8 = undefined;

/// Record i: class "c<i mod 10>" (10% each), num = i, metadata `{"i":<i>}`.
fn recordOf(i: usize, id: []const u8) ![]u8 {
    class_names[i % 10] = .{ 'c', @intCast('0' + i % 10) };
    var meta_buf: [32]u8 = undefined;
    const meta = try std.fmt.bufPrint(&meta_buf, "{{\"i\":{d}}}", .{i});
    return payload.encode(gpa, id, meta, &.{
        .{ .field = 0, .value = .{ .keyword = &class_names[i % 10] } },
        .{ .field = 1, .value = .{ .number = @floatFromInt(i) } },
    });
}

fn randomVectors(seed: u64) ![]f32 {
    var rng = std.Random.DefaultPrng.init(seed);
    const data = try gpa.alloc(f32, n * dims);
    for (data) |*x| x.* = rng.random().float(f32);
    return data;
}

/// Builds `n` records with numeric ids 0..n.
fn build(index: *Index, data: []const f32) !void {
    const schema = try schemaBytes();
    defer gpa.free(schema);
    try records.setSchema(index, schema);
    for (0..n) |i| {
        const record = try recordOf(i, "");
        defer gpa.free(record);
        try write.addRecord(index, i, data[i * dims ..][0..dims], record);
    }
}

/// Programs (docs/records.md) and a reference predicate over i.
const Case = struct { program: []const u8, matches: *const fn (usize) bool };

/// The op `num < bound` (NUM_CMP lt).
fn numLtOp(comptime bound: f64) [11]u8 {
    comptime {
        var bytes: [11]u8 = undefined;
        bytes[0] = 0x03;
        bytes[1] = 1;
        bytes[2] = 2; // lt
        std.mem.writeInt(u64, bytes[3..11], @bitCast(bound), .little);
        return bytes;
    }
}

/// The op `cls == "c<c>"` (KW_IN with one value).
fn classOp(comptime c: u8) [8]u8 {
    return .{ 0x02, 0, 1, 0, 2, 0, 'c', '0' + c };
}

/// A program of `ops` postfix ops.
fn program(comptime op_count: u16, comptime ops: anytype) []const u8 {
    return comptime &([_]u8{ 1, op_count, 0 } ++ ops);
}

fn numLt(comptime bound: f64) []const u8 {
    return program(1, numLtOp(bound));
}

fn classIs(comptime c: u8) []const u8 {
    return program(1, classOp(c));
}

/// (cls == c3 OR num < 40) AND NOT (num < 10)
fn compound() []const u8 {
    return program(6, classOp(3) ++ numLtOp(40) ++ [_]u8{ 0x07, 2, 0 } ++ numLtOp(10) ++
        [_]u8{0x08} ++ [_]u8{ 0x06, 2, 0 });
}

const cases = [_]Case{
    // 90%: above scanLimit at n = 3000 and ef 64 (sqrt(12 * 64 * 3000) = 1,518), so it walks.
    .{ .program = numLt(2700), .matches = struct {
        fn f(i: usize) bool {
            return i < 2700;
        }
    }.f },
    .{ .program = numLt(1500), .matches = struct {
        fn f(i: usize) bool {
            return i < 1500;
        }
    }.f },
    .{ .program = classIs(3), .matches = struct {
        fn f(i: usize) bool {
            return i % 10 == 3;
        }
    }.f },
    .{ .program = numLt(30), .matches = struct {
        fn f(i: usize) bool {
            return i < 30;
        }
    }.f },
    .{ .program = numLt(3), .matches = struct {
        fn f(i: usize) bool {
            return i < 3;
        }
    }.f },
    .{ .program = compound(), .matches = struct {
        fn f(i: usize) bool {
            return (i % 10 == 3 or i < 40) and !(i < 10);
        }
    }.f },
};

fn exactFiltered(
    data: []const f32,
    q: []const f32,
    k: usize,
    matches: *const fn (usize) bool,
    out: []u64,
) usize {
    const Pair = struct { d: f32, i: usize };
    var all = std.ArrayList(Pair).init(gpa);
    defer all.deinit();
    for (0..n) |i| {
        if (!matches(i)) continue;
        var d: f32 = 0;
        for (0..dims) |j| d += (data[i * dims + j] - q[j]) * (data[i * dims + j] - q[j]);
        all.append(.{ .d = d, .i = i }) catch unreachable;
    }
    std.mem.sort(Pair, all.items, {}, struct {
        fn less(_: void, a: Pair, b: Pair) bool {
            return a.d < b.d;
        }
    }.less);
    const m = @min(k, all.items.len);
    for (0..m) |i| out[i] = all.items[i].i;
    return m;
}

test "records: filtered search finds k matches near brute force at every selectivity" {
    try std.testing.expect(records.scanLimit(n, 64, 10) < 2700);
    try std.testing.expect(records.scanLimit(n, 64, 10) >= 1500);
    const data = try randomVectors(11);
    defer gpa.free(data);
    const index = try Index.create(gpa, opts(), null);
    defer index.destroy();
    try build(index, data);
    var rng = std.Random.DefaultPrng.init(5);
    for (cases) |case| {
        var expected_count: u64 = 0;
        for (0..n) |i| expected_count += @intFromBool(case.matches(i));
        try expectCount(expected_count, index, case.program);
        var hits: usize = 0;
        var total: usize = 0;
        for (0..20) |_| {
            var q: [dims]f32 = undefined;
            for (&q) |*x| x.* = rng.random().float(f32);
            var keys: [10]u64 = undefined;
            var distances: [10]f32 = undefined;
            const got = try records.search(index, &q, 10, 64, live_seq, .exact, case.program, .{
                .keys = &keys,
                .distances = &distances,
            });
            var truth: [10]u64 = undefined;
            const want = exactFiltered(data, &q, 10, case.matches, &truth);
            // k results whenever k match, and every result matches.
            try std.testing.expectEqual(want, got);
            for (keys[0..got]) |key| try std.testing.expect(case.matches(@intCast(key)));
            for (truth[0..want]) |t| {
                if (std.mem.indexOfScalar(u64, keys[0..got], t) != null) hits += 1;
            }
            total += want;
        }
        const recall = @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(total));
        if (recall < 0.95) std.debug.print("recall {d:.3} for a case\n", .{recall});
        try std.testing.expect(recall >= 0.95);
    }
}

test "records: one key, one id; updates keep the vector; snapshots keep the old metadata" {
    const data = try randomVectors(12);
    defer gpa.free(data);
    const index = try Index.create(gpa, opts(), null);
    defer index.destroy();
    try build(index, data);
    // A string id's key must be its hash.
    const alpha = try recordOf(7, "alpha");
    defer gpa.free(alpha);
    try std.testing.expectError(error.InvalidKey, write.addRecord(index, 1, data[0..dims], alpha));
    const alpha_key = payload.keyOfId("alpha");
    try write.addRecord(index, alpha_key, data[0..dims], alpha);
    // A numeric add over the string id's key, or another id, conflicts and changes nothing.
    try std.testing.expectError(
        error.IdConflict,
        write.add(index, alpha_key, data[dims..][0..dims]),
    );
    const numeric = try recordOf(7, "");
    defer gpa.free(numeric);
    try std.testing.expectError(
        error.IdConflict,
        write.addRecord(index, alpha_key, data[0..dims], numeric),
    );
    try std.testing.expectError(error.InvalidKey, write.addRecord(index, 5, data[0..dims], alpha));
    // A remove naming another id finds nothing.
    try std.testing.expect(!try write.removeId(index, alpha_key, "beta"));
    try std.testing.expect(!try write.remove(index, alpha_key));

    // Update record 3 (class c3, num 3) to class c4, num 5000; a snapshot keeps the old.
    const snapshot = try read.snapshotCreate(index);
    const old_seq = try read.readSeq(index, snapshot);
    const updated = try payload.encode(gpa, "", "{\"u\":1}", &.{
        .{ .field = 0, .value = .{ .keyword = "c4" } },
        .{ .field = 1, .value = .{ .number = 5000 } },
    });
    defer gpa.free(updated);
    try records.update(index, 3, updated);
    var before: [dims]f32 = undefined;
    try std.testing.expect(read.get(index, 3, live_seq, &before));
    try std.testing.expectEqualSlices(f32, data[3 * dims ..][0..dims], &before);
    // c3 lost one record live, kept it in the snapshot.
    try expectCount(@as(u64, n / 10 - 1), index, classIs(3));
    try std.testing.expectEqual(@as(u64, n / 10), try records.count(index, old_seq, classIs(3)));
    try expectCount(@as(u64, n / 10 + 1), index, classIs(4));
    var out: [256]u8 = undefined;
    var needed: u64 = 0;
    try records.readPayloads(index, old_seq, &.{3}, &out, &needed);
    const old_record = try recordOf(3, "");
    defer gpa.free(old_record);
    try std.testing.expectEqualSlices(u8, old_record, out[4..][0..old_record.len]);
    try records.readPayloads(index, live_seq, &.{ 3, 999_999 }, &out, &needed);
    try std.testing.expectEqualSlices(u8, updated, out[4..][0..updated.len]);
    const missing = std.mem.readInt(u32, out[4 + updated.len ..][0..4], .little);
    try std.testing.expectEqual(std.math.maxInt(u32), missing);
    try read.snapshotRelease(index, snapshot);
    // An update of an absent key, or naming another id, is NotFound.
    try std.testing.expectError(error.NotFound, records.update(index, 999_999, updated));
    // Bad metadata is refused and changes nothing.
    try std.testing.expectError(error.InvalidMetadata, records.update(index, 4, "garbage!!!!!!"));
    try expectCount(n / 10 + 1, index, classIs(4));
    const report = try verify(index);
    try std.testing.expectEqual(@as(u64, 0), report.record_mismatches);
    try std.testing.expectEqual(@as(u32, 1), report.ok);
    // deleteMany
    try std.testing.expectEqual(@as(u64, 30), try records.removeMatching(index, numLt(30)));
    try expectCount(@as(u64, 0), index, numLt(30));
}

/// Closes without a checkpoint, as a killed process leaves the files.
fn kill(index: *Index) void {
    const storage = index.storage;
    index.destroyState();
    storage.destroy();
}

fn expectRecords(index: *Index) !void {
    try expectCount(@as(u64, n / 10), index, classIs(3));
    try expectCount(@as(u64, 30), index, numLt(30));
    var out: [256]u8 = undefined;
    var needed: u64 = 0;
    try records.readPayloads(index, live_seq, &.{17}, &out, &needed);
    const want = try recordOf(17, "");
    defer gpa.free(want);
    try std.testing.expectEqualSlices(u8, want, out[4..][0..want.len]);
}

test "records: payloads survive reopen, a kill, compaction and backup" {
    const data = try randomVectors(13);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    {
        const index = try Index.create(gpa, opts(), path);
        try build(index, data);
        index.destroy();
    }
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try expectRecords(index);
        // Class c3 again, num 2003.
        const extra = try recordOf(2003, "late");
        defer gpa.free(extra);
        try write.addRecord(index, payload.keyOfId("late"), data[0..dims], extra);
    }
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        const updated = try recordOf(13, "");
        defer gpa.free(updated);
        // Record 3 becomes like record 13 (same class, num 13): counts stay.
        try records.update(index, 3, updated);
        try std.testing.expect(try write.remove(index, 500));
        kill(index);
    }
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try expectCount(@as(u64, n / 10 + 1), index, classIs(3));
        try expectCount(@as(u64, 30), index, numLt(30));
        compact.compact(index, 1) catch |err| return err;
        try expectCount(@as(u64, n / 10 + 1), index, classIs(3));
        var backup_buf: [std.fs.max_path_bytes]u8 = undefined;
        const backup_path = try dir.path(&backup_buf, "copy");
        try backup.save(index, 0, backup_path);
        const copy = try recovery.open(gpa, backup_path, opts(), .fast);
        defer copy.destroy();
        try expectCount(@as(u64, n / 10 + 1), copy, classIs(3));
        try expectCount(@as(u64, 30), copy, numLt(30));
    }
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try expectCount(@as(u64, n / 10 + 1), index, classIs(3));
    }
}

test "records: a damaged records file is Corrupt, a torn tail is cut" {
    const data = try randomVectors(14);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    {
        const index = try Index.create(gpa, opts(), path);
        try build(index, data);
        index.destroy();
    }
    var file_buf: [std.fs.max_path_bytes]u8 = undefined;
    const file_path = try std.fmt.bufPrint(&file_buf, "{s}.records", .{path});
    const file = try std.fs.openFileAbsolute(file_path, .{ .mode = .read_write });
    const size = try file.getEndPos();
    // One flipped byte in the middle.
    var byte: [1]u8 = undefined;
    _ = try file.preadAll(&byte, size / 2);
    byte[0] ^= 0x55;
    try file.pwriteAll(&byte, size / 2);
    file.close();
    try std.testing.expectError(error.Corrupt, recovery.open(gpa, path, opts(), .fast));
}

test "records: a full disk at any write or sync of a checkpoint loses no record" {
    const data = try randomVectors(15);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    {
        const index = try Index.create(gpa, opts(), path);
        defer index.destroy();
        try build(index, data);
    }
    // Each round: update one record, then fail the nth write or fsync of the checkpoint; the
    // update is acknowledged, so it must be there after a reopen whatever the checkpoint did.
    const ops = [_]os.Op{ .write, .fsync };
    for (ops) |op| {
        var nth: u64 = 1;
        while (nth <= 4) : (nth += 1) {
            const index = try recovery.open(gpa, path, opts(), .fast);
            const key: u64 = 100 + nth;
            const updated = try payload.encode(gpa, "", "{}", &.{
                .{ .field = 0, .value = .{ .keyword = "c9" } },
                .{ .field = 1, .value = .{ .number = 9000 + @as(f64, @floatFromInt(nth)) } },
            });
            defer gpa.free(updated);
            try records.update(index, key, updated);
            os.faults.arm(op, nth, .nospc, false);
            const result = index.checkpoint();
            // The first write and the first fsync of a checkpoint are the records file's.
            if (nth == 1) try std.testing.expectEqual(@as(u64, 1), os.faults.fired(op));
            os.faults.reset();
            if (result) |_| {} else |err| try std.testing.expect(err == error.DiskFull or
                err == error.Io);
            kill(index);
            const reopened = try recovery.open(gpa, path, opts(), .fast);
            defer reopened.destroy();
            var out: [256]u8 = undefined;
            var needed: u64 = 0;
            try records.readPayloads(reopened, live_seq, &.{key}, &out, &needed);
            try std.testing.expectEqualSlices(u8, updated, out[4..][0..updated.len]);
            const report = try verify(reopened);
            try std.testing.expectEqual(@as(u32, 1), report.ok);
        }
    }
}

test "records: a string id's add and update that only the log holds replay after a kill" {
    const data = try randomVectors(16);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    const key = payload.keyOfId("döc-1");
    const first = try recordOf(3, "döc-1");
    defer gpa.free(first);
    const second = try recordOf(13, "döc-1");
    defer gpa.free(second);
    {
        const index = try Index.create(gpa, opts(), path);
        const schema = try schemaBytes();
        defer gpa.free(schema);
        try records.setSchema(index, schema);
        try index.checkpoint();
        // The slot reaches the mapped files; its payload only the log (and memory).
        try write.addRecord(index, key, data[0..dims], first);
        try records.update(index, key, second);
        kill(index);
    }
    const index = try recovery.open(gpa, path, opts(), .fast);
    defer index.destroy();
    var out: [256]u8 = undefined;
    var needed: u64 = 0;
    try records.readPayloads(index, live_seq, &.{key}, &out, &needed);
    const length = std.mem.readInt(u32, out[0..4], .little);
    try std.testing.expectEqual(@as(u32, @intCast(second.len)), length);
    try std.testing.expectEqualSlices(u8, second, out[4..][0..second.len]);
    try expectCount(1, index, classIs(3));
    try std.testing.expectEqual(@as(u64, 1), index.size());
}

test "records: an update whose key a later remove already took from the mapped files replays" {
    const data = try randomVectors(17);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    const updated = try recordOf(13, "");
    defer gpa.free(updated);
    {
        const index = try Index.create(gpa, opts(), path);
        try build(index, data);
        try index.checkpoint();
        // The log holds set_record(3) then remove(3); the mapping already shows 3 removed.
        try records.update(index, 3, updated);
        try std.testing.expect(try write.remove(index, 3));
        kill(index);
    }
    const index = try recovery.open(gpa, path, opts(), .fast);
    defer index.destroy();
    try std.testing.expectEqual(@as(u64, n - 1), index.size());
    try expectCount(n / 10 - 1, index, classIs(3));
}

/// Record `i`'s payload for the rewrite tests: class c<i mod 10>, num i, and `pad` bytes of text.
fn paddedRecord(i: usize, pad: usize) ![]u8 {
    const text = try gpa.alloc(u8, pad + 8);
    defer gpa.free(text);
    @memcpy(text[0..6], "{\"t\":\"");
    @memset(text[6 .. 6 + pad], 'a' + @as(u8, @intCast(i % 26)));
    @memcpy(text[6 + pad ..][0..2], "\"}");
    class_names[i % 10] = .{ 'c', @intCast('0' + i % 10) };
    return payload.encode(gpa, "", text, &.{
        .{ .field = 0, .value = .{ .keyword = &class_names[i % 10] } },
        .{ .field = 1, .value = .{ .number = @floatFromInt(i) } },
    });
}

fn fileSize(dir: *const Dir, name: []const u8) !?u64 {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const full = try dir.path(&buffer, name);
    const stat = std.fs.cwd().statFile(full) catch |err| switch (err) {
        error.FileNotFound => return null,
        else => return err,
    };
    return stat.size;
}

const rewrite_records = 300;

/// An index at `name` whose records file holds 300 payloads of 4 KB, then their 300 updates to
/// small payloads, unchecked: the next checkpoint appends them and makes a rewrite due.
fn rewriteSetup(dir: *const Dir, name: []const u8) !*Index {
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, name);
    const index = try Index.create(gpa, opts(), path);
    errdefer index.destroy();
    const schema = try schemaBytes();
    defer gpa.free(schema);
    try records.setSchema(index, schema);
    var v: [dims]f32 = undefined;
    for (0..rewrite_records) |i| {
        for (&v, 0..) |*x, j| x.* = @floatFromInt((i * 7 + j * 3) % 17);
        const record = try paddedRecord(i, 4000);
        defer gpa.free(record);
        try write.addRecord(index, i, &v, record);
    }
    try index.checkpoint();
    for (0..rewrite_records) |i| {
        const record = try paddedRecord(i + 1, 10);
        defer gpa.free(record);
        try records.update(index, i, record);
    }
    return index;
}

fn expectSmallPayloads(index: *Index) !void {
    var out: [256]u8 = undefined;
    var needed: u64 = 0;
    for (0..rewrite_records) |i| {
        const want = try paddedRecord(i + 1, 10);
        defer gpa.free(want);
        try records.readPayloads(index, live_seq, &.{i}, &out, &needed);
        try std.testing.expectEqualSlices(u8, want, out[4..][0..want.len]);
    }
    try expectCount(rewrite_records / 10, index, classIs(4));
}

test "records: a checkpoint rewrites a file mostly of superseded payloads (old: kept growing)" {
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    const index = try rewriteSetup(&dir, "idx");
    const before = (try fileSize(&dir, "idx.records")).?;
    try std.testing.expect(before > 300 * 4000);
    try index.checkpoint();
    const after = (try fileSize(&dir, "idx.records")).?;
    // The schema and 300 small payloads: what a rewrite leaves (the old code appended 300 more
    // entries to the 1.2 MB).
    try std.testing.expect(after < 300 * 200);
    try std.testing.expectEqual(@as(?u64, null), try fileSize(&dir, "idx.records~rewrite"));
    try std.testing.expectEqual(@as(u64, 0), index.records.rewrite_failures.load(.monotonic));
    // The store appends to the new file: one more update, a kill, a reopen.
    const later = try paddedRecord(1000, 10);
    defer gpa.free(later);
    try records.update(index, 0, later);
    try index.checkpoint();
    kill(index);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    const reopened = try recovery.open(gpa, path, opts(), .fast);
    defer reopened.destroy();
    var out: [256]u8 = undefined;
    var needed: u64 = 0;
    try records.readPayloads(reopened, live_seq, &.{0}, &out, &needed);
    try std.testing.expectEqualSlices(u8, later, out[4..][0..later.len]);
    try records.readPayloads(reopened, live_seq, &.{299}, &out, &needed);
    const last = try paddedRecord(300, 10);
    defer gpa.free(last);
    try std.testing.expectEqualSlices(u8, last, out[4..][0..last.len]);
    try std.testing.expectEqual(@as(u32, 1), (try verify(reopened)).ok);
}

test "records: a rewrite that fails at its write, sync or rename keeps the appended file" {
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    // A checkpoint's fsyncs: the log's, the mapped files', the append's (its first write);
    // then the header's records_end is lowered and the mapped files synced again; then the
    // rewrite's write and fsync.
    const files: u64 = storage_mod.file_count;
    const faults = [_]struct { op: os.Op, nth: u64, name: []const u8 }{
        .{ .op = .write, .nth = 2, .name = "w" },
        .{ .op = .fsync, .nth = 3 + files, .name = "h" },
        .{ .op = .fsync, .nth = 3 + 2 * files, .name = "f" },
        .{ .op = .rename, .nth = 1, .name = "r" },
    };
    for (faults) |case| {
        const index = try rewriteSetup(&dir, case.name);
        os.faults.arm(case.op, case.nth, .nospc, false);
        const result = index.checkpoint();
        const fired = os.faults.fired(case.op);
        os.faults.reset();
        try result;
        try std.testing.expectEqual(@as(u64, 1), fired);
        try std.testing.expectEqual(@as(u64, 1), index.records.rewrite_failures.load(.monotonic));
        var name_buf: [32]u8 = undefined;
        const records_name = try std.fmt.bufPrint(&name_buf, "{s}.records", .{case.name});
        try std.testing.expect((try fileSize(&dir, records_name)).? > 300 * 4000);
        var temp_buf: [32]u8 = undefined;
        const temp_name = try std.fmt.bufPrint(&temp_buf, "{s}.records~rewrite", .{case.name});
        try std.testing.expectEqual(@as(?u64, null), try fileSize(&dir, temp_name));
        try expectSmallPayloads(index);
        kill(index);
        var path_buf: [std.fs.max_path_bytes]u8 = undefined;
        const path = try dir.path(&path_buf, case.name);
        const reopened = try recovery.open(gpa, path, opts(), .fast);
        defer reopened.destroy();
        try expectSmallPayloads(reopened);
        // The next checkpoint rewrites it.
        try reopened.checkpoint();
        try std.testing.expect((try fileSize(&dir, records_name)).? < 300 * 200);
    }
}

test "records: an open removes a rewrite's leftover, and only a records file of that name" {
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    {
        const index = try rewriteSetup(&dir, "idx");
        defer index.destroy();
        try index.checkpoint();
    }
    var from_buf: [std.fs.max_path_bytes]u8 = undefined;
    var to_buf: [std.fs.max_path_bytes]u8 = undefined;
    const from = try dir.path(&from_buf, "idx.records");
    const to = try dir.path(&to_buf, "idx.records~rewrite");
    // A rewrite that died before its rename: a whole copy at the temporary name.
    try std.fs.cwd().copyFile(from, std.fs.cwd(), to, .{});
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try expectSmallPayloads(index);
    }
    try std.testing.expectEqual(@as(?u64, null), try fileSize(&dir, "idx.records~rewrite"));
    // A file of the user's under that name (not a records file) is not touched.
    try std.fs.cwd().writeFile(.{ .sub_path = to, .data = "not a records file" });
    {
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try index.checkpoint();
    }
    try std.testing.expectEqual(@as(?u64, 18), try fileSize(&dir, "idx.records~rewrite"));
    comptime std.debug.assert(300 * 4000 >= store_mod.rewrite_bytes_min);
}

test "records: a file cut short of its checkpointed end, or removed, is Corrupt (old: opened)" {
    const data = try randomVectors(16);
    defer gpa.free(data);
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.path(&path_buf, "idx");
    {
        const index = try Index.create(gpa, opts(), path);
        defer index.destroy();
        try build(index, data);
    }
    var file_buf: [std.fs.max_path_bytes]u8 = undefined;
    const file_path = try std.fmt.bufPrint(&file_buf, "{s}.records", .{path});
    const whole = try std.fs.cwd().readFileAlloc(gpa, file_path, 1 << 26);
    defer gpa.free(whole);
    // The start of the last entry: a cut there leaves a file of whole entries.
    var last: usize = 0;
    var at: usize = 0;
    while (at < whole.len) {
        last = at;
        at += 24 + std.mem.readInt(u32, whole[at..][0..4], .little);
    }
    try std.testing.expectEqual(whole.len, at);
    const cuts = [_]usize{ 0, whole.len / 2, last };
    for (cuts) |cut| {
        try std.fs.cwd().writeFile(.{ .sub_path = file_path, .data = whole[0..cut] });
        try std.testing.expectError(error.Corrupt, recovery.open(gpa, path, opts(), .fast));
        var read_only = opts();
        read_only.flags |= abi.Options.flag_read_only;
        try std.testing.expectError(error.Corrupt, recovery.open(gpa, path, read_only, .fast));
    }
    try std.fs.cwd().deleteFile(file_path);
    try std.testing.expectError(error.Corrupt, recovery.open(gpa, path, opts(), .fast));
    // The evidence was left alone, and the whole file opens again with every record.
    try std.testing.expectEqual(@as(?u64, null), try fileSize(&dir, "idx.records"));
    try std.fs.cwd().writeFile(.{ .sub_path = file_path, .data = whole });
    const index = try recovery.open(gpa, path, opts(), .fast);
    defer index.destroy();
    try expectRecords(index);
}

test "records: no rewrite while a swap is unfinished; an empty leftover is removed" {
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    const index = try rewriteSetup(&dir, "idx");
    // A commit record without its renames done: the store's file may still have the build's
    // name, so a rewrite would replace the wrong file.
    var commit_buf: [std.fs.max_path_bytes]u8 = undefined;
    const commit = try dir.path(&commit_buf, "idx~compact.commit");
    try std.fs.cwd().writeFile(.{ .sub_path = commit, .data = "" });
    try index.checkpoint();
    try std.testing.expect((try fileSize(&dir, "idx.records")).? > 300 * 4000);
    try std.fs.cwd().deleteFile(commit);
    // A rewrite killed before its first write left an empty temporary file: it no longer
    // blocks the rewrite (the exclusive create failed on it for good).
    var temp_buf: [std.fs.max_path_bytes]u8 = undefined;
    const temp = try dir.path(&temp_buf, "idx.records~rewrite");
    try std.fs.cwd().writeFile(.{ .sub_path = temp, .data = "" });
    try index.checkpoint();
    try std.testing.expect((try fileSize(&dir, "idx.records")).? < 300 * 200);
    try std.testing.expectEqual(@as(u64, 0), index.records.rewrite_failures.load(.monotonic));
    try std.testing.expectEqual(@as(?u64, null), try fileSize(&dir, "idx.records~rewrite"));
    try expectSmallPayloads(index);
    index.destroy();
}

test "records: a file of only a torn schema entry is rewritten at open (old: Corrupt)" {
    var dir = try Dir.init();
    defer dir.tmp.cleanup();
    for ([_]usize{ 0, 10 }, [_][]const u8{ "a", "b" }) |cut, name| {
        var path_buf: [std.fs.max_path_bytes]u8 = undefined;
        const path = try dir.path(&path_buf, name);
        {
            const index = try Index.create(gpa, opts(), path);
            defer index.destroy();
        }
        // No payload was ever stored: a schema write that did not finish (empty, or torn).
        var file_buf: [std.fs.max_path_bytes]u8 = undefined;
        const file_path = try std.fmt.bufPrint(&file_buf, "{s}.records", .{path});
        const whole = try std.fs.cwd().readFileAlloc(gpa, file_path, 1 << 20);
        defer gpa.free(whole);
        try std.testing.expect(whole.len > cut);
        try std.fs.cwd().writeFile(.{ .sub_path = file_path, .data = whole[0..cut] });
        {
            const index = try recovery.open(gpa, path, opts(), .fast);
            defer index.destroy();
            const schema = try schemaBytes();
            defer gpa.free(schema);
            try records.setSchema(index, schema);
            const record = try recordOf(7, "");
            defer gpa.free(record);
            const v = [_]f32{ 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4 };
            try write.addRecord(index, 7, &v, record);
        }
        // The open after the next checkpoint used to meet payload entries without a schema.
        const index = try recovery.open(gpa, path, opts(), .fast);
        defer index.destroy();
        try expectCount(1, index, classIs(7));
    }
}

//! rabitq storage, natively: recall and exact distances for every metric, every edge re-derived
//! by verify (and a corrupted one caught), positions kept across list rewrites, the kernel of
//! every CPU level against the portable scan, backups, compaction and reopens keeping the edges.
const std = @import("std");
const abi = @import("../abi.zig");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const verify = @import("verify.zig").verify;
const view_mod = @import("../hnsw/view.zig");
const codes = @import("../hnsw/codes.zig");
const rabitq = @import("../kernels/rabitq.zig");
const distance = @import("../kernels/distance.zig");
const t = @import("index_test.zig");
const backup = @import("backup.zig");
const compact = @import("compact.zig");
const recovery = @import("recovery.zig");
const os = @import("../storage/os.zig");

const gpa = std.heap.c_allocator;

fn rabitqOptions(dims: u32, metric: abi.Metric) abi.Options {
    var opts = t.options(dims, metric);
    opts.storage = @intFromEnum(abi.StorageKind.rabitq);
    return opts;
}

fn keysUpTo(n: usize) ![]u64 {
    const keys = try gpa.alloc(u64, n);
    for (keys, 0..) |*k, i| k.* = i;
    return keys;
}

/// Recall@10 of `index` against brute force over `data`, for `queries` of the stored vectors
/// perturbed (not the vectors themselves: a vector finds itself too easily).
fn recall(index: *Index, metric: abi.Metric, data: []const f32, dims: usize, queries: usize) !f64 {
    const n = data.len / dims;
    var hits: usize = 0;
    var prng = std.Random.DefaultPrng.init(99);
    const random = prng.random();
    const q = try gpa.alloc(f32, dims);
    defer gpa.free(q);
    const scored = try gpa.alloc(struct { d: f32, key: u64 }, n);
    defer gpa.free(scored);
    for (0..queries) |i| {
        const base = data[(i * 7 % n) * dims ..][0..dims];
        for (q, base) |*x, b| x.* = b + 0.05 * random.floatNorm(f32);
        const unit = try gpa.dupe(f32, q);
        defer gpa.free(unit);
        if (metric == .cosine) _ = distance.normalize(unit);
        for (scored, 0..) |*s, j| {
            const v = try gpa.dupe(f32, data[j * dims ..][0..dims]);
            defer gpa.free(v);
            if (metric == .cosine) _ = distance.normalize(v);
            s.* = .{ .d = switch (metric) {
                .l2sq => distance.l2sq(unit, v),
                .ip, .cosine => 1 - distance.dot(unit, v),
            }, .key = j };
        }
        std.mem.sort(@TypeOf(scored[0]), scored, {}, struct {
            fn less(_: void, a: @TypeOf(scored[0]), b: @TypeOf(scored[0])) bool {
                return a.d < b.d;
            }
        }.less);
        var keys: [10]u64 = undefined;
        var dists: [10]f32 = undefined;
        const got = try read.searchOne(index, q, 10, 64, view_mod.live_seq, .{
            .keys = &keys,
            .distances = &dists,
        });
        for (keys[0..got], dists[0..got]) |key, d| {
            for (scored[0..10]) |s| {
                if (s.key == key) hits += 1;
            }
            // Reported distances are the exact f32 ones, bit for bit.
            const v = try gpa.dupe(f32, data[key * dims ..][0..dims]);
            defer gpa.free(v);
            if (metric == .cosine) _ = distance.normalize(v);
            const want = switch (metric) {
                .l2sq => distance.l2sq(unit, v),
                .ip, .cosine => 1 - distance.dot(unit, v),
            };
            try std.testing.expectApproxEqAbs(want, d, 1e-4 * @max(1, @abs(want)));
        }
    }
    return @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(queries * 10));
}

test "rabitq: recall and exact distances for every metric; verify re-derives every edge" {
    const n = 2000;
    const dims = 48;
    const data = try t.clustered(gpa, n, dims, 8);
    defer gpa.free(data);
    const keys = try keysUpTo(n);
    defer gpa.free(keys);
    inline for (.{ abi.Metric.l2sq, abi.Metric.ip, abi.Metric.cosine }) |metric| {
        const index = try Index.create(gpa, rabitqOptions(dims, metric), null);
        defer index.destroy();
        try write.addBatch(index, keys, data, 2);
        const report = try verify(index);
        try std.testing.expectEqual(@as(u64, 0), report.code_mismatches);
        try std.testing.expectEqual(@as(u64, 0), report.vector_mismatches);
        try t.expectVerified(index);
        const got = try recall(index, metric, data, dims, 100);
        if (got < 0.9) std.debug.print("rabitq {s}: recall {d:.3}\n", .{ @tagName(metric), got });
        try std.testing.expect(got >= 0.9);
    }
}

const Corruption = enum { factor, nibble };

test "rabitq: a part of a block (m 4: 8 edges) and several blocks (m 24: 48 edges) per record" {
    const n = 1500;
    const dims = 40;
    const data = try t.clustered(gpa, n, dims, 9);
    defer gpa.free(data);
    const keys = try keysUpTo(n);
    defer gpa.free(keys);
    inline for (.{ 4, 24 }) |m| {
        var opts = rabitqOptions(dims, .l2sq);
        opts.m = m;
        const index = try Index.create(gpa, opts, null);
        defer index.destroy();
        try std.testing.expectEqual(
            @as(u32, if (m == 4) 1 else 2),
            index.storage.layout.blocks,
        );
        try write.addBatch(index, keys, data, 2);
        try std.testing.expectEqual(@as(u64, 0), (try verify(index)).code_mismatches);
        try t.expectVerified(index);
        const got = try recall(index, .l2sq, data, dims, 60);
        if (got < 0.9) std.debug.print("rabitq m {d}: recall {d:.3}\n", .{ m, got });
        try std.testing.expect(got >= 0.9);
    }
}

test "rabitq: verify reports a corrupted edge code or factor" {
    const n = 600;
    const dims = 20;
    const data = try t.clustered(gpa, n, dims, 4);
    defer gpa.free(data);
    const keys = try keysUpTo(n);
    defer gpa.free(keys);
    inline for (.{ Corruption.factor, Corruption.nibble }) |what| {
        const index = try Index.create(gpa, rabitqOptions(dims, .l2sq), null);
        defer index.destroy();
        try write.addBatch(index, keys, data, 1);
        try std.testing.expectEqual(@as(u64, 0), (try verify(index)).code_mismatches);
        const generation = index.storage.pin();
        const regions = generation.payload;
        const words = regions.blocks(5);
        switch (what) {
            // Edge 0's `mul`.
            .factor => {
                const bytes = std.mem.sliceAsBytes(words);
                const at = rabitq.factorOffset(regions.layout.walk_dims, 1, 0);
                bytes[at] ^= 0x40;
            },
            // Edge 0's first nibble (group 0, code 0: the low half of byte 0).
            .nibble => words[0] ^= 0x1,
        }
        index.storage.unpin(generation);
        const report = try verify(index);
        try std.testing.expectEqual(@as(u64, 1), report.code_mismatches);
        try std.testing.expectEqual(@as(u32, 0), report.ok);
    }
}

test "rabitq: a rewritten list keeps the positions of the ids it keeps" {
    var next = [_]u32{ 9, 4, 7, 1, 3 };
    codes.stabilize(&[_]u32{ 1, 2, 3, 4, 5, 6 }, &next);
    // 1, 3 and 4 keep positions 0, 2 and 3; 9 and 7 fill 1 and 4 in their order.
    try std.testing.expectEqualSlices(u32, &[_]u32{ 1, 9, 3, 4, 7 }, &next);
    var shorter = [_]u32{ 6, 1 };
    codes.stabilize(&[_]u32{ 1, 2, 3, 4, 5, 6 }, &shorter);
    // 6 was at position 5, beyond the new length: it takes a free one.
    try std.testing.expectEqualSlices(u32, &[_]u32{ 1, 6 }, &shorter);
}

test "rabitq: every CPU level's scan adds what the portable scan adds" {
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    inline for (.{ 64, 128, 832, 4096 }) |dims| {
        var block: [rabitq.tableBytes(dims)]u8 align(64) = undefined;
        var tables: [rabitq.tableBytes(dims)]u8 align(64) = undefined;
        random.bytes(&block);
        for (&tables) |*x| x.* = random.uintAtMost(u8, 252);
        var want: [rabitq.block_codes]u32 = undefined;
        rabitq.scanPortable(&block, &tables, dims / 4, &want);
        for (std.enums.values(distance.Level)) |l| {
            if (!distance.supported(l)) continue;
            var got: [rabitq.block_codes]u32 = undefined;
            distance.scanOf(l)(&block, &tables, dims / 4, &got);
            try std.testing.expectEqualSlices(u32, &want, &got);
        }
    }
}

test "rabitq: more dimensions than its limit are refused; the rest of the storages take them" {
    var opts = rabitqOptions(abi.rabitq_dimensions_max + 1, .l2sq);
    try std.testing.expectError(error.InvalidDimensions, Index.create(gpa, opts, null));
    opts.storage = @intFromEnum(abi.StorageKind.i8);
    const index = try Index.create(gpa, opts, null);
    index.destroy();
}

test "rabitq: a backup, a compaction and a reopen keep every edge verifiable and the results" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/a", .{dir});
    var copy_buf: [std.fs.max_path_bytes]u8 = undefined;
    const copy_path = try std.fmt.bufPrint(&copy_buf, "{s}/b", .{dir});
    const n = 800;
    const dims = 24;
    const data = try t.clustered(gpa, n, dims, 6);
    defer gpa.free(data);
    const keys = try keysUpTo(n);
    defer gpa.free(keys);
    const opts = rabitqOptions(dims, .cosine);
    var before: [10]u64 = undefined;
    var dists: [10]f32 = undefined;
    const q = data[33 * dims ..][0..dims];
    {
        const index = try Index.create(gpa, opts, path);
        defer index.destroy();
        try write.addBatch(index, keys, data, 2);
        for (0..n / 4) |i| _ = try write.remove(index, keys[i * 4]);
        _ = try read.searchOne(index, q, 10, 64, view_mod.live_seq, .{
            .keys = &before,
            .distances = &dists,
        });
        try backup.save(index, 0, copy_path);
        try compact.compact(index, 2);
        try t.expectVerified(index);
        try index.checkpoint();
    }
    inline for (.{ true, false }) |original| {
        const index = try recovery.open(gpa, if (original) path else copy_path, opts, .full);
        defer index.destroy();
        try t.expectVerified(index);
        try std.testing.expectEqual(@as(u64, 0), (try verify(index)).code_mismatches);
        var after: [10]u64 = undefined;
        _ = try read.searchOne(index, q, 10, 64, view_mod.live_seq, .{
            .keys = &after,
            .distances = &dists,
        });
        // Compaction rebuilt the graph: the same results up to a miss or two.
        var same: usize = 0;
        for (after) |k| {
            if (std.mem.indexOfScalar(u64, &before, k) != null) same += 1;
        }
        try std.testing.expect(same >= 8);
    }
}

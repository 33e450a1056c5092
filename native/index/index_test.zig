//! Native tests of the whole index: recall against brute force, soft deletes, upserts, verify,
//! persistence, and the threaded families (parallel insert/search/delete, resize while reading).
const std = @import("std");
const abi = @import("../abi.zig");
const Index = @import("index.zig").Index;
const write = @import("write.zig");
const read = @import("read.zig");
const verify = @import("verify.zig").verify;
const distance = @import("../kernels/distance.zig");
const view_mod = @import("../hnsw/view.zig");
const quantize = @import("../kernels/quantize.zig");
const centre = @import("centre.zig");
const recovery = @import("recovery.zig");
const compact = @import("compact.zig");
const os = @import("../storage/os.zig");
const backup = @import("backup.zig");
const layout_mod = @import("../storage/layout.zig");
const hnsw_insert = @import("../hnsw/insert.zig");

pub const gpa = std.heap.c_allocator;

pub fn options(dimensions: u32, metric: abi.Metric) abi.Options {
    return .{
        .dimensions = dimensions,
        .metric = @intFromEnum(metric),
        .m = 16,
        .ef_construction = 128,
        .ef_search = 64,
        .flags = 0,
        .seed = 42,
        .capacity = 0,
        .storage = 0,
        .reserved = 0,
    };
}

/// Gaussian clusters: the shape of real embedding data, and hard enough to show bad recall.
pub fn clustered(allocator: std.mem.Allocator, n: usize, dimensions: usize, seed: u64) ![]f32 {
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    const clusters = 32;
    const centers = try allocator.alloc(f32, clusters * dimensions);
    defer allocator.free(centers);
    for (centers) |*c| c.* = random.floatNorm(f32) * 4;
    const data = try allocator.alloc(f32, n * dimensions);
    for (0..n) |i| {
        const c = random.uintLessThan(usize, clusters);
        for (0..dimensions) |j| data[i * dimensions + j] =
            centers[c * dimensions + j] + random.floatNorm(
                f32,
            );
    }
    return data;
}

fn bruteForce(
    metric: abi.Metric,
    data: []const f32,
    live: []const bool,
    dimensions: usize,
    query: []const f32,
    k: usize,
    out: []u64,
) void {
    const Pair = struct { d: f32, key: u64 };
    var best: [64]Pair = undefined;
    var n: usize = 0;
    const count = data.len / dimensions;
    var q_norm: [1024]f32 = undefined;
    @memcpy(q_norm[0..dimensions], query);
    if (metric == .cosine) _ = distance.normalize(q_norm[0..dimensions]);
    var v: [1024]f32 = undefined;
    for (0..count) |i| {
        if (!live[i]) continue;
        @memcpy(v[0..dimensions], data[i * dimensions ..][0..dimensions]);
        if (metric == .cosine) _ = distance.normalize(v[0..dimensions]);
        const d = distance.distance(
            @enumFromInt(@intFromEnum(metric)),
            q_norm[0..dimensions],
            v[0..dimensions],
        );
        if (n < k) {
            best[n] = .{ .d = d, .key = i };
            n += 1;
        } else if (d < best[k - 1].d) {
            best[k - 1] = .{ .d = d, .key = i };
        } else continue;
        var j = n - 1;
        while (j > 0 and best[j].d < best[j - 1].d) : (j -= 1) std.mem.swap(
            Pair,
            &best[j],
            &best[j - 1],
        );
    }
    for (0..k) |i| out[i] = best[i].key;
}

fn recallAt10(
    index: *Index,
    metric: abi.Metric,
    data: []const f32,
    live: []const bool,
    dimensions: usize,
    queries: usize,
) !f64 {
    var hits: usize = 0;
    var keys: [10]u64 = undefined;
    var dists: [10]f32 = undefined;
    var truth: [10]u64 = undefined;
    for (0..queries) |qi| {
        const query = data[(qi * 7919 % (data.len / dimensions)) * dimensions ..][0..dimensions];
        const n = try read.searchOne(
            index,
            query,
            10,
            64,
            view_mod.live_seq,
            .{ .keys = &keys, .distances = &dists },
        );
        try std.testing.expect(n == 10);
        for (1..n) |i| try std.testing.expect(dists[i - 1] <= dists[i]);
        for (keys[0..n]) |key| try std.testing.expect(live[key]);
        bruteForce(metric, data, live, dimensions, query, 10, &truth);
        for (keys[0..n]) |key| {
            if (std.mem.indexOfScalar(u64, &truth, key) != null) hits += 1;
        }
    }
    return @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(queries * 10));
}

pub fn expectVerified(index: *Index) !void {
    const report = try verify(index);
    if (report.ok != 1) std.debug.print("verify: {any}\n", .{report});
    try std.testing.expectEqual(@as(u32, 1), report.ok);
    // Under inner product small-norm vectors are nobody's near neighbour, so some nodes lose
    // every in-link: that is the nature of MIPS graphs, not a defect. Metric spaces must not.
    if (index.metric == .ip) return;
    if (report.unreachable_live * 100 > @max(report.live, 100)) std.debug.print(
        "{s} verify: {any}\n",
        .{ @tagName(index.metric), report },
    );
    try std.testing.expect(report.unreachable_live * 100 <= @max(report.live, 100));
}

test "index: recall@10 >= 0.95 on clustered data for every metric, also after removing 20%" {
    const n = 3000;
    const dims = 32;
    const data = try clustered(gpa, n, dims, 1);
    defer gpa.free(data);
    const live = try gpa.alloc(bool, n);
    defer gpa.free(live);
    inline for (.{ abi.Metric.l2sq, abi.Metric.ip, abi.Metric.cosine }) |metric| {
        @memset(live, true);
        const index = try Index.create(gpa, options(dims, metric), null);
        defer index.destroy();
        const keys = try gpa.alloc(u64, n);
        defer gpa.free(keys);
        for (keys, 0..) |*k, i| k.* = i;
        try write.addBatch(index, keys, data, 2);
        try std.testing.expectEqual(@as(u64, n), index.size());
        try expectVerified(index);
        const recall = try recallAt10(index, metric, data, live, dims, 200);
        if (recall < 0.95) std.debug.print("{s}: recall {d:.3}\n", .{ @tagName(metric), recall });
        try std.testing.expect(recall >= 0.95);

        var prng = std.Random.DefaultPrng.init(9);
        var removed: usize = 0;
        while (removed < n / 5) {
            const key = prng.random().uintLessThan(u64, n);
            if (try write.remove(index, key)) {
                live[key] = false;
                removed += 1;
            }
        }
        try std.testing.expectEqual(@as(u64, n - n / 5), index.size());
        try expectVerified(index);
        const after = try recallAt10(index, metric, data, live, dims, 200);
        try std.testing.expect(after >= 0.95);
    }
}

test "index: a batch inserts its highest nodes first, so the entry point takes slot 0" {
    const n = 2000;
    const dims = 16;
    const data = try clustered(gpa, n, dims, 3);
    defer gpa.free(data);
    const opts = options(dims, .l2sq);
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    var top: u32 = 0;
    for (keys, 0..) |*k, i| {
        k.* = i;
        top = @max(top, hnsw_insert.levelFor(opts.seed, k.*, opts.m));
    }
    // In batch order the first key is not among the highest, so slot 0 shows the order.
    try std.testing.expect(hnsw_insert.levelFor(opts.seed, keys[0], opts.m) < top);
    const index = try Index.create(gpa, opts, null);
    defer index.destroy();
    try write.addBatch(index, keys, data, 1);
    const entry = index.entry.load().?;
    try std.testing.expectEqual(top, entry.level);
    try std.testing.expectEqual(@as(u32, 0), entry.slot);
    try expectVerified(index);
    // Every slot after the first is at most as high as the one before it.
    {
        const generation = index.storage.pin();
        defer index.storage.unpin(generation);
        const regions = generation.payload;
        for (1..n) |slot| {
            const before = regions.meta(@intCast(slot - 1)).level;
            try std.testing.expect(regions.meta(@intCast(slot)).level <= before);
        }
    }
    // Every key holds its own vector, whatever the order it was inserted in.
    var out: [dims]f32 = undefined;
    for (keys) |key| {
        try std.testing.expect(read.get(index, key, view_mod.live_seq, &out));
        try std.testing.expectEqualSlices(f32, data[key * dims ..][0..dims], &out);
    }
}

test "index: a controlled compaction in chunks orders slots by level as one batch does" {
    // More live records than one chunk of a controlled rebuild (4096), so the chunks show.
    const n = 5000;
    const dims = 4;
    const data = try clustered(gpa, n, dims, 6);
    defer gpa.free(data);
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    for (keys, 0..) |*k, i| k.* = i;
    var opts = options(dims, .l2sq);
    opts.ef_construction = 16;
    const index = try Index.create(gpa, opts, null);
    defer index.destroy();
    // One key at a time: slots in key order, whatever the levels.
    for (keys, 0..) |key, i| try write.add(index, key, data[i * dims ..][0..dims]);
    var cancel: u32 = 0;
    var progress: [2]u64 = .{ 0, 0 };
    try std.testing.expect(try compact.compactControlled(index, 1, .{
        .cancel = &cancel,
        .progress = &progress,
    }));
    try std.testing.expectEqual(@as(u64, n), progress[0]);
    const generation = index.storage.pin();
    defer index.storage.unpin(generation);
    const regions = generation.payload;
    for (1..n) |slot| {
        const before = regions.meta(@intCast(slot - 1)).level;
        try std.testing.expect(regions.meta(@intCast(slot)).level <= before);
    }
}

test "index: a key given twice in one batch keeps its last vector, on any number of threads" {
    const n = 600;
    const dims = 16;
    const data = try clustered(gpa, n, dims, 4);
    defer gpa.free(data);
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    // Keys 0..299 twice: rows i and i + 300 share a key, so a level-ordered batch puts them
    // side by side, where two threads would take them at once.
    for (keys, 0..) |*k, i| k.* = i % (n / 2);
    for ([_]u32{ 1, 2 }) |threads| {
        const index = try Index.create(gpa, options(dims, .l2sq), null);
        defer index.destroy();
        try write.addBatch(index, keys, data, threads);
        try std.testing.expectEqual(@as(u64, n / 2), index.size());
        try expectVerified(index);
        var out: [dims]f32 = undefined;
        for (0..n / 2) |key| {
            try std.testing.expect(read.get(index, key, view_mod.live_seq, &out));
            const last = key + n / 2;
            try std.testing.expectEqualSlices(f32, data[last * dims ..][0..dims], &out);
        }
    }
}

test "index: f16 storage walks half-precision copies and reranks exactly (recall, distances)" {
    const n = 3000;
    const dims = 32;
    const data = try clustered(gpa, n, dims, 5);
    defer gpa.free(data);
    const live = try gpa.alloc(bool, n);
    defer gpa.free(live);
    @memset(live, true);
    inline for (.{ abi.Metric.l2sq, abi.Metric.cosine }) |metric| {
        var opts = options(dims, metric);
        opts.storage = @intFromEnum(abi.StorageKind.f16);
        const index = try Index.create(gpa, opts, null);
        defer index.destroy();
        const keys = try gpa.alloc(u64, n);
        defer gpa.free(keys);
        for (keys, 0..) |*k, i| k.* = i;
        try write.addBatch(index, keys, data, 2);
        try expectVerified(index);
        try std.testing.expect(try recallAt10(index, metric, data, live, dims, 200) >= 0.95);
        // Reported distances are exact f32 distances, not the f16 walk's.
        var got_keys: [1]u64 = undefined;
        var got: [1]f32 = undefined;
        const q = data[17 * dims ..][0..dims];
        _ = try read.searchOne(
            index,
            q,
            1,
            64,
            view_mod.live_seq,
            .{ .keys = &got_keys, .distances = &got },
        );
        try std.testing.expectEqual(@as(u64, 17), got_keys[0]);
        // The f16 walk distance of a vector to itself is not 0 after rounding; the exact one is.
        if (metric == .l2sq) try std.testing.expectEqual(@as(f32, 0), got[0]);
        try std.testing.expectApproxEqAbs(@as(f32, 0), got[0], 1e-6);
        var v: [dims]f32 = undefined;
        try std.testing.expect(read.get(index, 17, view_mod.live_seq, &v));
        if (metric == .l2sq) try std.testing.expectEqualSlices(f32, q, &v);
    }
}

test "index: i8 storage walks codes around a trained centre and reranks exactly, for every metric" {
    const n = 3000;
    const dims = 40;
    const plain = try clustered(gpa, n, dims, 8);
    defer gpa.free(plain);
    // An offset every vector shares: codes taken around zero would spend their bits on it.
    // (Not under inner product, where such an offset makes a few vectors everyone's nearest:
    // a degenerate test for any index, f32 included.)
    const shifted = try gpa.dupe(f32, plain);
    defer gpa.free(shifted);
    for (shifted) |*x| x.* += 250;
    const live = try gpa.alloc(bool, n);
    defer gpa.free(live);
    @memset(live, true);
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    for (keys, 0..) |*k, i| k.* = i;
    inline for (.{ abi.Metric.l2sq, abi.Metric.ip, abi.Metric.cosine }) |metric| {
        const data = if (metric == .ip) plain else shifted;
        var opts = options(dims, metric);
        opts.storage = @intFromEnum(abi.StorageKind.i8);
        const index = try Index.create(gpa, opts, null);
        defer index.destroy();
        try write.addBatch(index, keys, data, 2);
        try expectVerified(index);
        const recall = try recallAt10(index, metric, data, live, dims, 200);
        if (recall < 0.95) std.debug.print(
            "i8 {s}: recall {d:.3}\n",
            .{ @tagName(metric), recall },
        );
        try std.testing.expect(recall >= 0.95);
        // The trained centre is the mean of the first batch (of the unit vectors under cosine).
        var want: [dims]f32 = undefined;
        quantize.mean(data, n, &want, metric == .cosine);
        const generation = index.storage.pin();
        defer index.storage.unpin(generation);
        try std.testing.expectEqualSlices(f32, &want, generation.payload.centre());
        try std.testing.expect(want[0] > 100 or metric != .l2sq);
        // Reported distances are the exact ones.
        var got_keys: [1]u64 = undefined;
        var got: [1]f32 = undefined;
        const q = data[17 * dims ..][0..dims];
        _ = try read.searchOne(
            index,
            q,
            1,
            64,
            view_mod.live_seq,
            .{ .keys = &got_keys, .distances = &got },
        );
        if (metric != .ip) try std.testing.expectEqual(@as(u64, 17), got_keys[0]);
        if (metric == .l2sq) try std.testing.expectEqual(@as(f32, 0), got[0]);
        // Ranked by the walk alone: the codes' distances, close to the exact ones, not equal.
        _ = try read.searchOneWith(
            index,
            q,
            1,
            64,
            view_mod.live_seq,
            .walk,
            null,
            .{ .keys = &got_keys, .distances = &got },
        );
        if (metric != .ip) try std.testing.expectEqual(@as(u64, 17), got_keys[0]);
        if (metric == .l2sq) {
            var exact_neighbour: [2]u64 = undefined;
            var exact_d: [2]f32 = undefined;
            var walk_neighbour: [2]u64 = undefined;
            var walk_d: [2]f32 = undefined;
            _ = try read.searchOneWith(
                index,
                q,
                2,
                64,
                view_mod.live_seq,
                .exact,
                null,
                .{ .keys = &exact_neighbour, .distances = &exact_d },
            );
            _ = try read.searchOneWith(
                index,
                q,
                2,
                64,
                view_mod.live_seq,
                .walk,
                null,
                .{ .keys = &walk_neighbour, .distances = &walk_d },
            );
            try std.testing.expect(walk_d[1] != exact_d[1]);
            try std.testing.expectApproxEqRel(exact_d[1], walk_d[1], 0.05);
        }
        // The centre is final now: only the same one is accepted.
        try centre.set(index, generation.payload.centre());
        want[0] += 1;
        try std.testing.expectError(error.Busy, centre.set(index, &want));
    }
}

test "index: an i8 centre given before the first add is kept, persisted and checked on reopen" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/i8", .{dir});
    const dims = 16;
    const data = try clustered(gpa, 500, dims, 3);
    defer gpa.free(data);
    var given: [dims]f32 = undefined;
    for (&given, 0..) |*c, i| c.* = @floatFromInt(i);
    var opts = options(dims, .l2sq);
    opts.storage = @intFromEnum(abi.StorageKind.i8);
    {
        const index = try Index.create(gpa, opts, path);
        defer index.destroy();
        try std.testing.expectError(error.DimensionMismatch, centre.set(index, given[0..3]));
        try centre.set(index, &given);
        for (0..500) |i| try write.add(index, i, data[i * dims ..][0..dims]);
    }
    const index = try recovery.open(gpa, path, opts, .full);
    defer index.destroy();
    const generation = index.storage.pin();
    defer index.storage.unpin(generation);
    try std.testing.expectEqualSlices(f32, &given, generation.payload.centre());
    try std.testing.expect(centre.ready(index));
    try expectVerified(index);
    var got_keys: [1]u64 = undefined;
    var got: [1]f32 = undefined;
    _ = try read.searchOne(
        index,
        data[9 * dims ..][0..dims],
        1,
        64,
        view_mod.live_seq,
        .{ .keys = &got_keys, .distances = &got },
    );
    try std.testing.expectEqual(@as(u64, 9), got_keys[0]);
    given[0] = -1;
    try std.testing.expectError(error.Busy, centre.set(index, &given));
}

test "index: upsert replaces the vector, remove hides the key, get copies it" {
    const index = try Index.create(gpa, options(4, .l2sq), null);
    defer index.destroy();
    try write.add(index, 7, &.{ 1, 2, 3, 4 });
    try write.add(index, 7, &.{ 5, 6, 7, 8 });
    try std.testing.expectEqual(@as(u64, 1), index.size());
    var out: [4]f32 = undefined;
    try std.testing.expect(read.get(index, 7, view_mod.live_seq, &out));
    try std.testing.expectEqualSlices(f32, &.{ 5, 6, 7, 8 }, &out);
    try std.testing.expect(try write.remove(index, 7));
    try std.testing.expect(!try write.remove(index, 7));
    try std.testing.expect(!read.has(index, 7, view_mod.live_seq));
    try std.testing.expectEqual(@as(u64, 0), index.size());
    try std.testing.expectError(
        error.InvalidVector,
        write.add(index, 8, &.{ 1, std.math.nan(f32), 3, 4 }),
    );
    try std.testing.expectError(error.DimensionMismatch, write.add(index, 8, &.{ 1, 2, 3 }));
    try expectVerified(index);
}

test "index: compaction drops tombstones, keeps every live key and vector, and recall" {
    const n = 2000;
    const dims = 16;
    const data = try clustered(gpa, n, dims, 3);
    defer gpa.free(data);
    const live = try gpa.alloc(bool, n);
    defer gpa.free(live);
    @memset(live, true);
    const index = try Index.create(gpa, options(dims, .l2sq), null);
    defer index.destroy();
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    for (keys, 0..) |*k, i| k.* = i;
    try write.addBatch(index, keys, data, 2);
    for (0..n) |key| {
        if (key % 2 == 0) {
            try std.testing.expect(try write.remove(index, key));
            live[key] = false;
        }
    }
    // Upserts leave tombstones too: re-add odd keys with their own vectors.
    for (0..n) |key| {
        if (key % 10 == 1) try write.add(index, key, data[key * dims ..][0..dims]);
    }
    const epoch_before = index.storage.epochs.epoch.load(.acquire);
    try std.testing.expect(index.slots_used.load(.acquire) > n);

    // Views pin slot numbers: compaction refuses while one is alive.
    const guard = try read.guardAcquire(index, 1);
    try std.testing.expectError(error.Busy, compact.compact(index, 2));
    try read.guardRelease(index, guard.handle);
    try compact.compact(index, 2);

    try std.testing.expectEqual(@as(u64, n / 2), index.size());
    try std.testing.expectEqual(@as(u64, n / 2), index.slots_used.load(.acquire));
    try std.testing.expect(index.storage.epochs.epoch.load(.acquire) > epoch_before);
    var v: [dims]f32 = undefined;
    for (0..n) |key| {
        try std.testing.expectEqual(live[key], read.has(index, key, view_mod.live_seq));
        if (!live[key]) continue;
        try std.testing.expect(read.get(index, key, view_mod.live_seq, &v));
        try std.testing.expectEqualSlices(f32, data[key * dims ..][0..dims], &v);
    }
    try expectVerified(index);
    try std.testing.expect(try recallAt10(index, .l2sq, data, live, dims, 100) >= 0.95);
    // The index keeps working after the swap.
    try write.add(index, n + 1, data[0..dims]);
    try std.testing.expect(read.has(index, n + 1, view_mod.live_seq));
}

test "index: a reader on a mapping older than an upsert's new slot still finds the key" {
    // A remap between a reader's pin and its lookup: the key map already names the upsert's
    // new slot, past the reader's mapping. The old lookup stopped there and said "absent" (a
    // snapshot get of a key that always existed found nothing); now it asks for a fresh pin.
    var opts = options(4, .l2sq);
    opts.capacity = 64;
    const index = try Index.create(gpa, opts, null);
    defer index.destroy();
    try write.add(index, 1000, &.{ 1, 2, 3, 4 });
    const old = index.storage.pin();
    defer index.storage.unpin(old);
    var key: u64 = 0;
    while (index.slots_used.load(.acquire) < old.payload.capacity) : (key += 1) {
        try write.add(index, key, &.{ @floatFromInt(key), 0, 0, 1 });
    }
    try write.add(index, 1000, &.{ 5, 6, 7, 8 });
    try std.testing.expectError(
        error.StaleView,
        read.slotAt(index, old.payload, 1000, view_mod.live_seq),
    );
    var out: [4]f32 = undefined;
    try std.testing.expect(read.get(index, 1000, view_mod.live_seq, &out));
    try std.testing.expectEqualSlices(f32, &.{ 5, 6, 7, 8 }, &out);
}

test "index: aligned i8 codes (format 2) open, grow, verify; compaction and backup keep them" {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &dir_buf);
    var path_buf: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buf, "{s}/old", .{dir});
    var copy_buf: [std.fs.max_path_bytes]u8 = undefined;
    const copy_path = try std.fmt.bufPrint(&copy_buf, "{s}/copy", .{dir});
    // 100 dimensions: packed, terms and codes are two lines; aligned, three.
    const dims = 100;
    const n = 600;
    const data = try clustered(gpa, n, dims, 11);
    defer gpa.free(data);
    var opts = options(dims, .cosine);
    opts.storage = @intFromEnum(abi.StorageKind.i8);
    {
        const index = try Index.createWith(gpa, opts, path, .aligned);
        defer index.destroy();
        for (0..n / 2) |i| try write.add(index, i, data[i * dims ..][0..dims]);
    }
    const queries = [_]usize{ 3, 77, 150, 299, 420, 599 };
    var want: [queries.len][10]u64 = undefined;
    {
        const index = try recovery.open(gpa, path, opts, .full);
        defer index.destroy();
        try std.testing.expectEqual(layout_mod.I8Codes.aligned, index.layout.codes);
        try std.testing.expectEqual(@as(u32, 2), layout_mod.versionFor(index.layout));
        // Writes after the open go into the aligned records too.
        for (n / 2..n) |i| try write.add(index, i, data[i * dims ..][0..dims]);
        try expectVerified(index);
        for (queries, &want) |q, *keys| {
            var distances: [10]f32 = undefined;
            const query = data[q * dims ..][0..dims];
            const got = try read.searchOne(index, query, 10, 64, view_mod.live_seq, .{
                .keys = keys,
                .distances = &distances,
            });
            try std.testing.expectEqual(@as(usize, 10), got);
            try std.testing.expectEqual(@as(u64, q), keys[0]);
        }
        try backup.save(index, 0, copy_path);
        try compact.compact(index, 1);
        try expectVerified(index);
    }
    {
        // Compaction kept the layout on disk (the files it swapped in are format 2 too).
        const index = try recovery.open(gpa, path, opts, .full);
        defer index.destroy();
        try std.testing.expectEqual(layout_mod.I8Codes.aligned, index.layout.codes);
        try expectVerified(index);
    }
    // The backup is format 2 too (it opens wherever the index did): the same graph, the same
    // codes, so the same answers.
    const copy = try recovery.open(gpa, copy_path, opts, .full);
    defer copy.destroy();
    try std.testing.expectEqual(layout_mod.I8Codes.aligned, copy.layout.codes);
    try expectVerified(copy);
    for (queries, want) |q, keys| {
        var got_keys: [10]u64 = undefined;
        var distances: [10]f32 = undefined;
        _ = try read.searchOne(copy, data[q * dims ..][0..dims], 10, 64, view_mod.live_seq, .{
            .keys = &got_keys,
            .distances = &distances,
        });
        try std.testing.expectEqualSlices(u64, &keys, &got_keys);
    }
}

test "index: a dirty open's repair rewrites no correct walk copy, in either i8 layout" {
    inline for (.{ layout_mod.I8Codes.aligned, layout_mod.I8Codes.@"packed" }) |codes| {
        var tmp = std.testing.tmpDir(.{});
        defer tmp.cleanup();
        var dir_buf: [std.fs.max_path_bytes]u8 = undefined;
        const dir = try os.tmpDirPath(&tmp, &dir_buf);
        var path_buf: [std.fs.max_path_bytes]u8 = undefined;
        const path = try std.fmt.bufPrint(&path_buf, "{s}/dirty", .{dir});
        // 8 dimensions: an aligned record reserves 64 code bytes, encode writes 16.
        var opts = options(8, .l2sq);
        opts.storage = @intFromEnum(abi.StorageKind.i8);
        const data = try clustered(gpa, 200, 8, 5);
        defer gpa.free(data);
        {
            const index = try Index.createWith(gpa, opts, path, codes);
            for (0..200) |i| try write.add(index, i, data[i * 8 ..][0..8]);
            try index.checkpoint();
            try write.add(index, 500, data[0..8]); // the header is dirty from here
            // Dropped without a close: the next open is a dirty one.
            const mapped = index.storage;
            index.destroyState();
            mapped.destroy();
        }
        const index = try recovery.open(gpa, path, opts, .fast);
        defer index.destroy();
        try std.testing.expectEqual(codes, index.layout.codes);
        // The open's repair ran; run it again: every copy is correct, none is rewritten.
        try std.testing.expectEqual(@as(u64, 0), try recovery.repairWalkCopies(index));
        try expectVerified(index);
    }
}

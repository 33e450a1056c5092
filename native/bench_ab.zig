//! `zig build bench-ab -- LIB_A LIB_B DATA BASE QUERIES STORAGE METRIC EF,EF,... ROUNDS`: a
//! paired timing of two builds of libquiver in one process. Each library is loaded with dlopen
//! (its own copy of every global), builds the same index from a cached bench data set on one
//! thread (the same graph in both: a serial build is deterministic), then the two answer the
//! same one-query calls in alternating passes, A B A B ..., so that whatever else the machine is
//! doing lands on both. It prints the best pass of each and their ratio per ef, and whether the
//! two gave the same results (a change meant to keep the search identical must), with each one's
//! recall@10 against a brute-force ground truth and, at the end, their QPS at equal recall
//! (interpolated along each sweep: a change to the graph moves recall at every ef). Build times
//! go to stderr. A benchmark, not a test (BENCHMARKS.md records what it printed).
//!
//! DATA is the prefix of `.cache/bench/datasets/NAME.{base,query}.f32` (bench/data.ts writes
//! them); STORAGE f32|f16|i8; METRIC l2|ip|cosine; ROUNDS the A B pairs per ef.
const std = @import("std");
const abi = @import("abi.zig");

const k = 10;

const Create = *const fn (options: *const abi.Options, out_handle: *u32) callconv(.c) c_int;
const Reserve = *const fn (handle: u32, slots: u64) callconv(.c) c_int;
const AddBatch = *const fn (
    handle: u32,
    keys: [*]const u64,
    count: u32,
    vectors: [*]const f32,
    vectors_len: u64,
    threads: u32,
) callconv(.c) c_int;
const Search = *const fn (
    handle: u32,
    snapshot: u64,
    query: [*]const f32,
    len: u32,
    k: u32,
    ef: u32,
    flags: u32,
    out_keys: [*]u64,
    out_distances: [*]f32,
    out_count: *u32,
) callconv(.c) c_int;

const Library = struct {
    lib: std.DynLib,
    search: Search,
    handle: u32,
    keys: []u64,

    fn load(path: []const u8) !Library {
        var lib = try std.DynLib.open(path);
        return .{
            .search = lib.lookup(Search, "qv_index_search") orelse return error.Symbol,
            .lib = lib,
            .handle = 0,
            .keys = &.{},
        };
    }

    fn build(self: *Library, gpa: std.mem.Allocator, options: abi.Options, base: Matrix) !void {
        const create = self.lib.lookup(Create, "qv_index_create") orelse return error.Symbol;
        const reserve = self.lib.lookup(Reserve, "qv_index_reserve") orelse return error.Symbol;
        const add = self.lib.lookup(AddBatch, "qv_index_add_batch") orelse return error.Symbol;
        try check(create(&options, &self.handle));
        try check(reserve(self.handle, base.count));
        const ids = try gpa.alloc(u64, base.count);
        defer gpa.free(ids);
        for (ids, 0..) |*id, i| id.* = i;
        try check(add(self.handle, ids.ptr, base.count, base.data.ptr, base.data.len, 1));
    }

    /// One pass over every query; its wall time in nanoseconds. Results land in `self.keys`.
    fn pass(self: *Library, queries: Matrix, ef: u32) !u64 {
        var distances: [k]f32 = undefined;
        var timer = try std.time.Timer.start();
        const d = queries.dimensions;
        for (0..queries.count) |q| {
            var count: u32 = 0;
            const query = queries.data[q * d ..].ptr;
            const out = self.keys[q * k ..].ptr;
            try check(self.search(self.handle, 0, query, d, k, ef, 0, out, &distances, &count));
            // A short result's tail is marked, so `same` compares only what was returned.
            @memset(out[count..k], std.math.maxInt(u64));
        }
        return timer.read();
    }
};

const Matrix = struct { data: []f32, count: u32, dimensions: u32 };

fn readMatrix(gpa: std.mem.Allocator, path: []const u8, limit: u32) !Matrix {
    const file = try std.fs.cwd().openFile(path, .{});
    defer file.close();
    var header: [2]u32 = undefined;
    if (try file.readAll(std.mem.asBytes(&header)) != @sizeOf(@TypeOf(header))) {
        return error.Truncated;
    }
    const count = @min(header[0], limit);
    const data = try gpa.alignedAlloc(f32, 64, @as(usize, count) * header[1]);
    const bytes = std.mem.sliceAsBytes(data);
    if (try file.readAll(bytes) != bytes.len) return error.Truncated;
    return .{ .data = data, .count = count, .dimensions = header[1] };
}

/// The exact top k of every query by brute force (the metric as the index computes it).
fn groundTruth(gpa: std.mem.Allocator, base: Matrix, queries: Matrix, metric: abi.Metric) ![]u64 {
    const d = base.dimensions;
    const truth = try gpa.alloc(u64, @as(usize, queries.count) * k);
    const norms = try gpa.alloc(f32, base.count);
    defer gpa.free(norms);
    for (norms, 0..) |*n, i| {
        const row = base.data[i * d ..][0..d];
        n.* = @sqrt(dotOf(row, row));
    }
    for (0..queries.count) |q| {
        const query = queries.data[q * d ..][0..d];
        const qn = @sqrt(dotOf(query, query));
        var best_d: [k]f32 = @splat(std.math.inf(f32));
        var best_i: [k]u64 = @splat(0);
        for (0..base.count) |i| {
            const row = base.data[i * d ..][0..d];
            const dist = switch (metric) {
                .l2sq => blk: {
                    var sum: f32 = 0;
                    for (query, row) |a, b| sum += (a - b) * (a - b);
                    break :blk sum;
                },
                .cosine => 1 - dotOf(query, row) / (qn * norms[i]),
                else => -dotOf(query, row),
            };
            if (dist >= best_d[k - 1]) continue;
            var j: usize = k - 1;
            while (j > 0 and best_d[j - 1] > dist) : (j -= 1) {
                best_d[j] = best_d[j - 1];
                best_i[j] = best_i[j - 1];
            }
            best_d[j] = dist;
            best_i[j] = i;
        }
        @memcpy(truth[q * k ..][0..k], &best_i);
    }
    return truth;
}

fn dotOf(a: []const f32, b: []const f32) f32 {
    var sum: @Vector(8, f32) = @splat(0);
    var i: usize = 0;
    while (i + 8 <= a.len) : (i += 8) {
        const x: @Vector(8, f32) = a[i..][0..8].*;
        const y: @Vector(8, f32) = b[i..][0..8].*;
        sum += x * y;
    }
    var tail: f32 = @reduce(.Add, sum);
    while (i < a.len) : (i += 1) tail += a[i] * b[i];
    return tail;
}

fn recallOf(keys: []const u64, truth: []const u64) f64 {
    var hits: u64 = 0;
    var q: usize = 0;
    while (q < truth.len) : (q += k) {
        for (keys[q..][0..k]) |key| {
            if (std.mem.indexOfScalar(u64, truth[q..][0..k], key) != null) hits += 1;
        }
    }
    return @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(truth.len));
}

/// QPS at `target` recall, interpolated between the sweep's points (null if never reached).
fn qpsAt(points: []const [2]f64, target: f64) ?f64 {
    for (points, 0..) |p, i| {
        if (p[0] < target) continue;
        if (i == 0) return p[1];
        const lo = points[i - 1];
        const t = (target - lo[0]) / (p[0] - lo[0]);
        return lo[1] + t * (p[1] - lo[1]);
    }
    return null;
}

fn check(status: c_int) !void {
    if (status != 0) {
        std.debug.print("status {d}\n", .{status});
        return error.Status;
    }
}

fn parseEnum(comptime T: type, text: []const u8) !T {
    return std.meta.stringToEnum(T, text) orelse error.Usage;
}

pub fn main() !void {
    const gpa = std.heap.c_allocator;
    const args = try std.process.argsAlloc(gpa);
    if (args.len != 10) {
        const usage = "usage: bench-ab LIB_A LIB_B DATA BASE QUERIES STORAGE METRIC EFS ROUNDS\n";
        std.debug.print(usage, .{});
        return error.Usage;
    }
    const base_limit = try std.fmt.parseInt(u32, args[4], 10);
    const query_limit = try std.fmt.parseInt(u32, args[5], 10);
    const storage = try parseEnum(abi.StorageKind, args[6]);
    const metric: abi.Metric = if (std.mem.eql(u8, args[7], "l2"))
        .l2sq
    else
        try parseEnum(abi.Metric, args[7]);
    const rounds = try std.fmt.parseInt(u32, args[9], 10);
    const prefix = ".cache/bench/datasets/";
    const base_path = try std.fmt.allocPrint(gpa, prefix ++ "{s}.base.f32", .{args[3]});
    const query_path = try std.fmt.allocPrint(gpa, prefix ++ "{s}.query.f32", .{args[3]});
    const base = try readMatrix(gpa, base_path, base_limit);
    const queries = try readMatrix(gpa, query_path, query_limit);

    const options = std.mem.zeroInit(abi.Options, .{
        .dimensions = base.dimensions,
        .metric = @intFromEnum(metric),
        .m = 16,
        .ef_construction = 200,
        .ef_search = 64,
        .seed = 42,
        .storage = @intFromEnum(storage),
    });
    var libs = [2]Library{ try Library.load(args[1]), try Library.load(args[2]) };
    for (&libs, 0..) |*lib, i| {
        var timer = try std.time.Timer.start();
        try lib.build(gpa, options, base);
        const seconds = @as(f64, @floatFromInt(timer.read())) / 1e9;
        std.debug.print("{c}: built in {d:.2} s (one thread)\n", .{ "AB"[i], seconds });
        lib.keys = try gpa.alloc(u64, @as(usize, queries.count) * k);
    }
    const truth = try groundTruth(gpa, base, queries, metric);
    var curves = [2]std.ArrayListUnmanaged([2]f64){ .{}, .{} };
    const stdout = std.io.getStdOut().writer();
    const heading = .{ "ef", "A qps", "B qps", "B/A", "A recall", "B recall", "same" };
    try stdout.print("{s:>5} {s:>10} {s:>10} {s:>7} {s:>9} {s:>9} {s}\n", heading);
    var efs = std.mem.splitScalar(u8, args[8], ',');
    while (efs.next()) |ef_text| {
        const ef = @max(k, try std.fmt.parseInt(u32, ef_text, 10));
        var best = [2]u64{ std.math.maxInt(u64), std.math.maxInt(u64) };
        for (0..rounds) |_| {
            for (&libs, &best) |*lib, *b| b.* = @min(b.*, try lib.pass(queries, ef));
        }
        const n: f64 = @floatFromInt(queries.count);
        const qps_a = n * 1e9 / @as(f64, @floatFromInt(best[0]));
        const qps_b = n * 1e9 / @as(f64, @floatFromInt(best[1]));
        const same = std.mem.eql(u64, libs[0].keys, libs[1].keys);
        const recall = [2]f64{ recallOf(libs[0].keys, truth), recallOf(libs[1].keys, truth) };
        try curves[0].append(gpa, .{ recall[0], qps_a });
        try curves[1].append(gpa, .{ recall[1], qps_b });
        const line = "{d:>5} {d:>10.0} {d:>10.0} {d:>7.3} {d:>9.4} {d:>9.4} {s}\n";
        const same_text = if (same) "yes" else "no";
        const ratio = qps_b / qps_a;
        try stdout.print(line, .{ ef, qps_a, qps_b, ratio, recall[0], recall[1], same_text });
    }
    // At equal recall (a change to the graph moves recall at each ef).
    for ([_]f64{ 0.9, 0.95, 0.97, 0.99 }) |target| {
        const a = qpsAt(curves[0].items, target) orelse continue;
        const b = qpsAt(curves[1].items, target) orelse continue;
        try stdout.print("recall {d:.2}: A {d:.0} B {d:.0} B/A {d:.3}\n", .{ target, a, b, b / a });
    }
}

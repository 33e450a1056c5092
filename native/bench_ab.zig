//! `zig build bench-ab -- LIB_A LIB_B DATA BASE QUERIES STORAGE METRIC EF,EF,... ROUNDS`: a
//! paired timing of two builds of libquiver in one process. Each library is loaded with dlopen
//! (its own copy of every global), builds the same index from a cached bench data set on one
//! thread (the same graph in both: a serial build is deterministic), then the two answer the
//! same one-query calls in alternating passes, A B A B ..., so that whatever else the machine is
//! doing lands on both. It prints the best pass of each and their ratio per ef, and whether the
//! two gave the same results (a change meant to keep the search identical must). A benchmark,
//! not a test (BENCHMARKS.md records what it printed).
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
    for (&libs) |*lib| {
        try lib.build(gpa, options, base);
        lib.keys = try gpa.alloc(u64, @as(usize, queries.count) * k);
    }
    const stdout = std.io.getStdOut().writer();
    const heading = .{ "ef", "A qps", "B qps", "B/A", "same" };
    try stdout.print("{s:>5} {s:>10} {s:>10} {s:>7} {s}\n", heading);
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
        const line = "{d:>5} {d:>10.0} {d:>10.0} {d:>7.3} {s}\n";
        try stdout.print(line, .{ ef, qps_a, qps_b, qps_b / qps_a, if (same) "yes" else "no" });
    }
}

//! A native driver for profiling (BENCHMARKS.md, "Where the time goes"): builds an index from a
//! cached bench data set through the C ABI, then runs single-threaded one-query calls in a loop.
//! It links libquiver dynamically, so one binary times two builds of the library in turn
//! (`LD_LIBRARY_PATH` picks which), and `perf record` or `valgrind --tool=cachegrind` sees only
//! native frames. A benchmark, not a test.
//!
//!   zig build-exe bench/profile.zig -O ReleaseFast -lc -L zig-out/lib -lquiver \
//!     -femit-bin=.cache/bench/profile
//!   LD_LIBRARY_PATH=zig-out/lib .cache/bench/profile DATA BASE QUERIES STORAGE METRIC \
//!     THREADS EF,EF,... PASSES [GROUNDTRUTH]
//!
//! DATA is the prefix of `.cache/bench/datasets/NAME.{base,query}.f32` (bench/data.ts writes
//! them); STORAGE f32|f16|i8; METRIC l2|ip|cosine; THREADS the build's; PASSES query passes per
//! ef (best kept). GROUNDTRUTH is bench/groundtruth.ts's cache file for recall@10 by id. It
//! prints one line per ef: build wall and CPU seconds, best QPS by wall and by thread CPU time,
//! recall. QUIVER_PROFILE_WALK=1 ranks by the walk's distances (no exact rerank under f16/i8).
const std = @import("std");

const Options = extern struct {
    dimensions: u32,
    metric: u32,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
    flags: u32,
    seed: u64,
    capacity: u64,
    storage: u32,
    reserved: u32,
};

extern fn qv_index_create(options: *const Options, out_handle: *u32) c_int;
extern fn qv_index_reserve(handle: u32, slots: u64) c_int;
extern fn qv_index_add_batch(
    handle: u32,
    keys: [*]const u64,
    count: u32,
    vectors: [*]const f32,
    vectors_len: u64,
    threads: u32,
) c_int;
extern fn qv_index_search(
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
) c_int;
extern fn qv_index_close(handle: u32) c_int;

const k = 10;

/// CPU time of this thread (or the whole process), in nanoseconds: on a shared machine a pass
/// that lost the core for a while keeps its CPU time, so best-of-N on it is steadier than wall.
fn cpuNs(clock: std.posix.clockid_t) u64 {
    const ts = std.posix.clock_gettime(clock) catch unreachable;
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

const Matrix = struct { data: []f32, count: u32, dimensions: u32 };

fn readMatrix(gpa: std.mem.Allocator, path: []const u8, limit: u32) !Matrix {
    const file = try std.fs.cwd().openFile(path, .{});
    defer file.close();
    var header: [2]u32 = undefined;
    _ = try file.readAll(std.mem.asBytes(&header));
    const count = @min(header[0], limit);
    const data = try gpa.alignedAlloc(f32, 64, @as(usize, count) * header[1]);
    _ = try file.readAll(std.mem.sliceAsBytes(data));
    return .{ .data = data, .count = count, .dimensions = header[1] };
}

fn check(status: c_int) !void {
    if (status != 0) {
        std.debug.print("status {d}\n", .{status});
        return error.Status;
    }
}

pub fn main() !void {
    const gpa = std.heap.c_allocator;
    const args = try std.process.argsAlloc(gpa);
    if (args.len < 9) return error.Usage;
    const base_limit = try std.fmt.parseInt(u32, args[2], 10);
    const query_limit = try std.fmt.parseInt(u32, args[3], 10);
    const storage: u32 = if (std.mem.eql(u8, args[4], "f16")) 1 else if (std.mem.eql(
        u8,
        args[4],
        "i8",
    )) 2 else 0;
    const metric: u32 = if (std.mem.eql(u8, args[5], "ip")) 1 else if (std.mem.eql(
        u8,
        args[5],
        "cosine",
    )) 2 else 0;
    const threads = try std.fmt.parseInt(u32, args[6], 10);
    const passes = try std.fmt.parseInt(u32, args[8], 10);
    const base_path = try std.fmt.allocPrint(gpa, ".cache/bench/datasets/{s}.base.f32", .{args[1]});
    const query_path = try std.fmt.allocPrint(
        gpa,
        ".cache/bench/datasets/{s}.query.f32",
        .{args[1]},
    );
    const base = try readMatrix(gpa, base_path, base_limit);
    const queries = try readMatrix(gpa, query_path, query_limit);
    const d = base.dimensions;

    var truth: ?[]u32 = null;
    var truth_k: u32 = 0;
    if (args.len > 9) {
        const file = try std.fs.cwd().openFile(args[9], .{});
        defer file.close();
        var header: [4]u32 = undefined;
        _ = try file.readAll(std.mem.asBytes(&header));
        truth_k = header[1];
        const n = @as(usize, header[0]) * truth_k;
        try file.seekTo(16 + n * 8);
        const ids = try gpa.alloc(u32, n);
        _ = try file.readAll(std.mem.sliceAsBytes(ids));
        truth = ids;
    }

    const options = Options{
        .dimensions = d,
        .metric = metric,
        .m = 16,
        .ef_construction = 200,
        .ef_search = 64,
        .flags = 0,
        .seed = 42,
        .capacity = 0,
        .storage = storage,
        .reserved = 0,
    };
    var handle: u32 = 0;
    try check(qv_index_create(&options, &handle));
    defer _ = qv_index_close(handle);
    try check(qv_index_reserve(handle, base.count));
    const keys = try gpa.alloc(u64, base.count);
    for (keys, 0..) |*key, i| key.* = i;
    var timer = try std.time.Timer.start();
    const build_cpu_start = cpuNs(.PROCESS_CPUTIME_ID);
    const data = base.data;
    try check(qv_index_add_batch(handle, keys.ptr, base.count, data.ptr, data.len, threads));
    const build_s = @as(f64, @floatFromInt(timer.read())) / 1e9;
    const build_cpu_ns = cpuNs(.PROCESS_CPUTIME_ID) - build_cpu_start;
    const build_cpu_s = @as(f64, @floatFromInt(build_cpu_ns)) / 1e9;

    const walk_only = std.posix.getenv("QUIVER_PROFILE_WALK") != null;
    const flags: u32 = if (walk_only) 1 else 0;
    const out_keys = try gpa.alloc(u64, @as(usize, queries.count) * k);
    var distances: [k]f32 = undefined;
    var efs = std.mem.splitScalar(u8, args[7], ',');
    const stdout = std.io.getStdOut().writer();
    while (efs.next()) |ef_text| {
        const ef = try std.fmt.parseInt(u32, ef_text, 10);
        var best_ns: u64 = std.math.maxInt(u64);
        var best_cpu_ns: u64 = std.math.maxInt(u64);
        for (0..passes) |_| {
            timer.reset();
            const cpu_start = cpuNs(.THREAD_CPUTIME_ID);
            for (0..queries.count) |q| {
                var count: u32 = 0;
                const query = queries.data[q * d ..].ptr;
                const ids = out_keys[q * k ..].ptr;
                const beam = @max(ef, k);
                const out = &distances;
                try check(qv_index_search(handle, 0, query, d, k, beam, flags, ids, out, &count));
            }
            best_ns = @min(best_ns, timer.read());
            best_cpu_ns = @min(best_cpu_ns, cpuNs(.THREAD_CPUTIME_ID) - cpu_start);
        }
        var hits: u64 = 0;
        if (truth) |ids| {
            for (0..queries.count) |q| {
                const want = ids[q * truth_k ..][0..k];
                for (out_keys[q * k ..][0..k]) |got| {
                    if (std.mem.indexOfScalar(u32, want, @intCast(got)) != null) hits += 1;
                }
            }
        }
        const n: f64 = @floatFromInt(queries.count);
        const qps = n * 1e9 / @as(f64, @floatFromInt(best_ns));
        const qps_cpu = n * 1e9 / @as(f64, @floatFromInt(best_cpu_ns));
        const line =
            "build {d:.3}s cpu {d:.3}s ef {d} qps {d:.0} cpu-qps {d:.0} recall {d:.4}\n";
        try stdout.print(line, .{
            build_s,
            build_cpu_s,
            ef,
            qps,
            qps_cpu,
            @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(@as(u64, queries.count) * k)),
        });
    }
}

//! Issue 13's design experiment: a level-0 walk that reads its neighbours' compact codes inline
//! (RaBitQ codes, 1 or 4 bits per rotated dimension, as SymphonyQG / NGT-QG do), against today's f32 and i8
//! walks. A benchmark, not a test, and not product code.
//!
//! It builds a persistent Quiver f32 index through the C ABI (as bench/profile.zig does), reads
//! the index's own files back (header, metadata column, level-0 records, upper arena; the structs
//! below mirror native/storage/layout.zig and are checked against the header), and so walks the
//! very graph Quiver's own search walks. In the same process, interleaved per ef, it times:
//!
//!   quiver-f32   qv_index_search on that index (today's f32 walk)
//!   quiver-i8    qv_index_search on an i8 index built from the same data (its own graph)
//!   flat-f32     this file's copy of Quiver's walk over a heap copy of the same records
//!                (the control: same graph, same memory kind as the inline layouts)
//!   symphony1/4  SymphonyQG-style: record = [own f32 vector][ids][neighbours' codes]; popping u
//!                computes u's exact distance from its own record and pushes u's neighbours by
//!                estimate (unless their lower bound cannot beat the ef-th exact result);
//!                results hold exact distances only
//!   prune1/4     the estimate-prunes-fetch rule: expanding u estimates its neighbours from u's
//!                record, then fetches (randomly) the exact vector only of those whose lower
//!                bound beats the ef-th result, and pushes them with exact distances
//!   estimate1/4  HNSW's rule on estimates only (no vector read while walking), then an exact
//!                rerank of the k best by estimate and of every result whose lower bound is
//!                below the k-th exact distance
//!
//! 1 = RaBitQ 1-bit codes, 4 = 4-bit (extended-RaBitQ-style) codes; bench/results/inline_codes.md
//! has the estimators, the layouts and the measurements. Environment: INLINE_ONLY=a,b (methods
//! to run), INLINE_PF=N (lines prefetched per record), INLINE_SPEC=1 (also prefetch the runner-up
//! candidate), INLINE_HUGE=1 (madvise huge pages for the walked arrays).
//!
//!   zig build-exe bench/inline_codes.zig -O ReleaseFast -mcpu=native -lc -L zig-out/lib -lquiver \
//!     -femit-bin=.cache/bench/inline_codes
//!   LD_LIBRARY_PATH=zig-out/lib .cache/bench/inline_codes DATA BASE QUERIES METRIC EFS EPS PASSES
//!
//! DATA: prefix of .cache/bench/datasets/NAME.{base,query}.f32 (u32 count, u32 dims, then f32
//! rows); METRIC cosine|l2; EFS e.g. 10,16,24; EPS the error-bound multipliers swept for the
//! inline walks (e.g. 1.0,1.9; "inf" = never prune); PASSES per point, best kept. Ground truth
//! (exact top 10 by brute force) is cached in .cache/bench/inline-gt-NAME-nBASE-qQUERIES-METRIC.
//! QPS is by thread CPU time (steadier on a shared machine); wall QPS is printed too.
const std = @import("std");

// ---------------------------------------------------------------------------------------------
// The C ABI (native/ffi/exports.zig, native/abi.zig).

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
const flag_create: u32 = 1 << 1;

extern fn qv_index_create(options: *const Options, out_handle: *u32) c_int;
extern fn qv_index_open(
    path: [*]const u8,
    path_len: u32,
    options: *const Options,
    validation: u32,
    out_handle: *u32,
) c_int;
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
extern fn qv_index_checkpoint(handle: u32) c_int;
extern fn qv_index_close(handle: u32) c_int;

fn check(status: c_int) !void {
    if (status != 0) {
        std.debug.print("status {d}\n", .{status});
        return error.Status;
    }
}

// ---------------------------------------------------------------------------------------------
// The file layout, mirrored from native/storage/layout.zig (format_version 2).

const Header = extern struct {
    magic: [8]u8,
    version: u32,
    header_bytes: u32,
    dimensions: u32,
    metric: u32,
    m: u32,
    m0: u32,
    ef_construction: u32,
    record_bytes: u32,
    vector_offset: u32,
    upper_record_bytes: u32,
    seed: u64,
    capacity: u64,
    slots_used: u64,
    upper_capacity: u64,
    upper_used: u64,
    entry: u64,
    seq: u64,
    live: u64,
    storage: u32,
    flags: u32,
    data_hash: u64,
    graph_hash: u64,
    upper_hash: u64,
    exact_hash: u64,
    header_seq: u64,
    clean: u32,
    checksum: u32,
};
const Meta = extern struct {
    key: u64,
    created_seq: u64,
    deleted_seq: u64,
    prev_slot: u32,
    upper_offset: u32,
    level: u8,
    state: u8,
    reserved: [6]u8,
};
comptime {
    std.debug.assert(@sizeOf(Header) == 168);
    std.debug.assert(@sizeOf(Meta) == 40);
}
const header_bytes = 4096;
const header_slot_bytes = 2048;
const no_slot: u32 = std.math.maxInt(u32);
const line = 64;

const k = 10;

fn cpuNs() u64 {
    const ts = std.posix.clock_gettime(.THREAD_CPUTIME_ID) catch unreachable;
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

/// Anonymous memory for the walked arrays; INLINE_HUGE=1 asks for transparent huge pages
/// (the machine's THP mode is madvise), for every layout alike.
fn region(bytes: usize) ![]align(4096) u8 {
    const size = std.mem.alignForward(usize, @max(bytes, 1), 4096);
    const mem = try std.posix.mmap(null, size, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .PRIVATE, .ANONYMOUS = true }, -1, 0);
    if (std.posix.getenv("INLINE_HUGE") != null) std.posix.madvise(mem.ptr, size, std.posix.MADV.HUGEPAGE) catch {};
    return mem[0..bytes];
}

fn readFile(gpa: std.mem.Allocator, path: []const u8) ![]align(4096) u8 {
    _ = gpa;
    const file = try std.fs.cwd().openFile(path, .{});
    defer file.close();
    const size = (try file.stat()).size;
    const bytes = try region(size);
    _ = try file.readAll(bytes);
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// Kernels.

const F16 = @Vector(16, f32);

inline fn l2sq(a: [*]const f32, b: [*]const f32, d: usize) f32 {
    var acc0: F16 = @splat(0);
    var acc1: F16 = @splat(0);
    var i: usize = 0;
    while (i + 32 <= d) : (i += 32) {
        const t0 = @as(F16, a[i..][0..16].*) - @as(F16, b[i..][0..16].*);
        const t1 = @as(F16, a[i + 16 ..][0..16].*) - @as(F16, b[i + 16 ..][0..16].*);
        acc0 = @mulAdd(F16, t0, t0, acc0);
        acc1 = @mulAdd(F16, t1, t1, acc1);
    }
    while (i + 16 <= d) : (i += 16) {
        const t = @as(F16, a[i..][0..16].*) - @as(F16, b[i..][0..16].*);
        acc0 = @mulAdd(F16, t, t, acc0);
    }
    var s = @reduce(.Add, acc0 + acc1);
    while (i < d) : (i += 1) {
        const t = a[i] - b[i];
        s += t * t;
    }
    return s;
}

fn normalize(v: []f32) void {
    var s: f32 = 0;
    for (v) |x| s += x * x;
    const inv = 1.0 / @sqrt(s);
    for (v) |*x| x.* *= inv;
}

inline fn prefetch(p: [*]const u8, bytes: usize) void {
    var off: usize = 0;
    while (off < bytes) : (off += line) @prefetch(p + off, .{ .locality = 3 });
}

/// The RaBitQ rotation: a random orthogonal dp x dp matrix (Gram-Schmidt on a seeded Gaussian
/// one), dp = d rounded up to 16, applied to the vector zero-padded; stored as its first d
/// columns (column j at j * dp), so that rotating costs d vector FMAs per 16 outputs.
const Rotation = struct {
    dp: usize,
    d: usize,
    matrix: []align(64) f32,

    fn init(gpa: std.mem.Allocator, d: usize, seed: u64) !Rotation {
        const dp = std.mem.alignForward(usize, d, 16);
        var prng = std.Random.DefaultPrng.init(seed);
        // Rows of a dp x dp orthogonal matrix, by modified Gram-Schmidt in f64.
        const rows = try gpa.alloc(f64, dp * dp);
        defer gpa.free(rows);
        for (rows) |*x| x.* = prng.random().floatNorm(f64);
        for (0..dp) |i| {
            const ri = rows[i * dp ..][0..dp];
            for (0..i) |j| {
                const rj = rows[j * dp ..][0..dp];
                var dotp: f64 = 0;
                for (ri, rj) |a, b| dotp += a * b;
                for (ri, rj) |*a, b| a.* -= dotp * b;
            }
            var n: f64 = 0;
            for (ri) |a| n += a * a;
            n = @sqrt(n);
            for (ri) |*a| a.* /= n;
        }
        const matrix = try gpa.alignedAlloc(f32, 64, dp * d);
        for (0..d) |j| {
            for (0..dp) |i| matrix[j * dp + i] = @floatCast(rows[i * dp + j]);
        }
        return .{ .dp = dp, .d = d, .matrix = matrix };
    }

    /// dst (dp floats) = P src (d floats, not padded).
    fn applyDense(self: Rotation, src: [*]const f32, dst: []f32) void {
        var i: usize = 0;
        while (i < self.dp) : (i += 16) {
            var acc: F16 = @splat(0);
            for (0..self.d) |j| {
                const col: F16 = self.matrix[j * self.dp + i ..][0..16].*;
                acc = @mulAdd(F16, col, @splat(src[j]), acc);
            }
            dst[i..][0..16].* = acc;
        }
    }
};

// ---------------------------------------------------------------------------------------------
// The graph as Quiver wrote it.

const Graph = struct {
    d: u32,
    m0: u32,
    n: u32,
    record_bytes: u32,
    vector_offset: u32,
    upper_record_bytes: u32,
    entry_slot: u32,
    entry_level: u32,
    records: []align(4096) u8,
    upper: []align(4096) u8,
    metas: []Meta,

    fn list(self: *const Graph, slot: u32, level: u32) []const u32 {
        const words: [*]const u32 = if (level == 0)
            @ptrCast(@alignCast(self.records.ptr + @as(usize, slot) * self.record_bytes))
        else
            @ptrCast(@alignCast(self.upper.ptr +
                (@as(usize, self.metas[slot].upper_offset) + level - 1) * self.upper_record_bytes));
        return words[1 .. 1 + words[0]];
    }

    fn vector(self: *const Graph, slot: u32) [*]const f32 {
        return @ptrCast(@alignCast(self.records.ptr + @as(usize, slot) * self.record_bytes +
            self.vector_offset));
    }
};

fn loadGraph(gpa: std.mem.Allocator, path: []const u8) !Graph {
    const data = try readFile(gpa, path);
    const h0: *const Header = @ptrCast(@alignCast(data.ptr));
    const h1: *const Header = @ptrCast(@alignCast(data.ptr + header_slot_bytes));
    const h = if (h1.header_seq > h0.header_seq) h1 else h0;
    if (!std.mem.eql(u8, &h.magic, "QUIVERDB") or h.version != 2) return error.Format;
    if (h.storage != 0) return error.NotF32;
    const graph_path = try std.fmt.allocPrint(gpa, "{s}.graph", .{path});
    const upper_path = try std.fmt.allocPrint(gpa, "{s}.upper", .{path});
    const metas_ptr: [*]Meta = @ptrCast(@alignCast(data.ptr + header_bytes));
    const entry_level_plus_one: u32 = @truncate(h.entry >> 32);
    if (entry_level_plus_one == 0) return error.Empty;
    return .{
        .d = h.dimensions,
        .m0 = h.m0,
        .n = @intCast(h.slots_used),
        .record_bytes = h.record_bytes,
        .vector_offset = h.vector_offset,
        .upper_record_bytes = h.upper_record_bytes,
        .entry_slot = @truncate(h.entry),
        .entry_level = entry_level_plus_one - 1,
        .records = try readFile(gpa, graph_path),
        .upper = try readFile(gpa, upper_path),
        .metas = metas_ptr[0..h.slots_used],
    };
}

// ---------------------------------------------------------------------------------------------
// Heaps and the visited set (one walk at a time).

const Cand = struct { d: f32, slot: u32 };

/// Binary heap; `max` true keeps the largest on top.
fn Heap(comptime max: bool) type {
    return struct {
        items: []Cand,
        len: usize = 0,
        const Self = @This();
        inline fn before(a: Cand, b: Cand) bool {
            return if (max) a.d > b.d else a.d < b.d;
        }
        fn push(self: *Self, c: Cand) void {
            var i = self.len;
            self.len += 1;
            while (i > 0) {
                const p = (i - 1) / 2;
                if (!before(c, self.items[p])) break;
                self.items[i] = self.items[p];
                i = p;
            }
            self.items[i] = c;
        }
        fn siftDown(self: *Self, c: Cand) void {
            var i: usize = 0;
            const n = self.len;
            while (true) {
                var child = 2 * i + 1;
                if (child >= n) break;
                if (child + 1 < n and before(self.items[child + 1], self.items[child])) child += 1;
                if (!before(self.items[child], c)) break;
                self.items[i] = self.items[child];
                i = child;
            }
            self.items[i] = c;
        }
        fn pop(self: *Self) Cand {
            const top = self.items[0];
            self.len -= 1;
            if (self.len > 0) self.siftDown(self.items[self.len]);
            return top;
        }
        fn replaceTop(self: *Self, c: Cand) void {
            self.siftDown(c);
        }
    };
}

const Walker = struct {
    tags: []u16,
    epoch: u16 = 0,
    cands: Heap(false),
    results: Heap(true),
    fresh: []u32,
    fresh_cands: []Cand,
    /// Lower bounds by slot (walkEstimate; valid for the slots of this walk's results).
    lbs: []f32,
    /// Walk statistics, summed over a pass.
    expansions: u64 = 0,
    exact: u64 = 0,
    estimated: u64 = 0,

    fn init(gpa: std.mem.Allocator, n: u32) !Walker {
        const tags = try gpa.alloc(u16, n);
        @memset(tags, 0);
        return .{
            .tags = tags,
            .cands = .{ .items = try gpa.alloc(Cand, n + 1) },
            .results = .{ .items = try gpa.alloc(Cand, n + 1) },
            .fresh = try gpa.alloc(u32, n + 1),
            .fresh_cands = try gpa.alloc(Cand, 1024),
            .lbs = try gpa.alloc(f32, n),
        };
    }

    fn reset(self: *Walker) void {
        self.epoch +%= 1;
        if (self.epoch == 0) {
            @memset(self.tags, 0);
            self.epoch = 1;
        }
        self.cands.len = 0;
        self.results.len = 0;
    }

    inline fn testAndSet(self: *Walker, slot: u32) bool {
        if (self.tags[slot] == self.epoch) return true;
        self.tags[slot] = self.epoch;
        return false;
    }

    /// The k closest results, by slot, into `out`.
    fn emit(self: *Walker, out: []u32) void {
        const items = self.results.items[0..self.results.len];
        std.mem.sort(Cand, items, {}, struct {
            fn lt(_: void, a: Cand, b: Cand) bool {
                return a.d < b.d;
            }
        }.lt);
        for (out, 0..) |*o, i| o.* = if (i < items.len) items[i].slot else no_slot;
    }
};

noinline fn greedy(g: *const Graph, vec: anytype, q: [*]const f32) Cand {
    var best = Cand{ .d = l2sq(q, vec.at(g.entry_slot), g.d), .slot = g.entry_slot };
    var level = g.entry_level;
    while (level > 0) : (level -= 1) {
        while (true) {
            var moved = false;
            for (g.list(best.slot, level)) |s| {
                const d = l2sq(q, vec.at(s), g.d);
                if (d < best.d) {
                    best = .{ .d = d, .slot = s };
                    moved = true;
                }
            }
            if (!moved) break;
        }
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// The control: Quiver's level-0 walk (native/hnsw/search.zig) over a copy of its records.

const Flat = struct {
    g: *const Graph,
    fn at(self: Flat, slot: u32) [*]const f32 {
        return self.g.vector(slot);
    }
};

noinline fn walkFlat(g: *const Graph, w: *Walker, q: [*]const f32, ef: u32, out: []u32) void {
    const flat = Flat{ .g = g };
    const entry = greedy(g, flat, q);
    w.reset();
    _ = w.testAndSet(entry.slot);
    w.cands.push(entry);
    w.results.push(entry);
    var bound = entry.d;
    const vbytes = @min(8 * line, 4 * g.d);
    while (w.cands.len > 0) {
        const c = w.cands.items[0];
        if (c.d > bound and w.results.len >= ef) break;
        _ = w.cands.pop();
        if (w.cands.len > 0) {
            prefetch(g.records.ptr + @as(usize, w.cands.items[0].slot) * g.record_bytes, 4 + 4 * g.m0);
        }
        w.expansions += 1;
        var fresh: usize = 0;
        for (g.list(c.slot, 0)) |s| {
            if (w.testAndSet(s)) continue;
            prefetch(@ptrCast(g.vector(s)), vbytes);
            w.fresh[fresh] = s;
            fresh += 1;
        }
        w.exact += fresh;
        for (w.fresh[0..fresh]) |s| {
            const d = l2sq(q, g.vector(s), g.d);
            const full = w.results.len >= ef;
            if (full and !(d < bound)) continue;
            w.cands.push(.{ .d = d, .slot = s });
            if (full) w.results.replaceTop(.{ .d = d, .slot = s }) else w.results.push(.{ .d = d, .slot = s });
            bound = w.results.items[0].d;
        }
    }
    w.emit(out);
}

// ---------------------------------------------------------------------------------------------
// The inline layouts: per node, one contiguous record
//   [own f32 vector, padded to a line (only with_vector)][count u32, m0 neighbour ids]
//   [blocks of 8 neighbours: code words (word w of lane l at w * 8 + l, u64), then factors
//    A[8], B[8], BP[8], E[8] (f32)]
// Only the blocks a node's degree fills are read. A neighbour's code is the sign bits of its
// rotated, centred vector x = P(o - c) / |o - c|; its factors give the estimate of |o - q|^2
// from popcounts against the 4-bit query planes:
//   dist2 ~= A + |q - c|^2 + B * (2 delta S - sum(Y)) + 2 vl * BP,
//   A = |o - c|^2, B = -2 |o - c| / (<xbar, x> sqrt(Dp)), BP = B * popcount(code),
// with Y = P(q - c), Y ~= vl + delta * Ybar (Ybar 4-bit), S = sum_j 2^j popcount(code & plane_j);
// and its error bound: |dist2 - estimate| <= eps * |q - c| * E, E = 2 |o - c| sqrt(1 -
// <xbar, x>^2) / <xbar, x> / sqrt(Dp - 1) (RaBitQ's bound; eps 1.9 is its "high probability").

const lanes = 8;

const Inline = struct {
    kind: Kind,
    d: u32,
    m0: u32,
    words: u32,
    /// Bytes of one neighbour's code.
    code_bytes: usize,
    with_vector: bool,
    rec_bytes: usize,
    ids_off: usize,
    blocks_off: usize,
    block_bytes: usize,
    mem: []align(4096) u8,
    /// The exact vectors when the records do not hold them (dense, line-aligned rows).
    vectors: []align(64) f32,
    vec_stride: usize,
    rot: Rotation,
    centre: []f32,

    fn at(self: *const Inline, slot: u32) [*]const f32 {
        if (self.with_vector) return @ptrCast(@alignCast(self.rec(slot)));
        return self.vectors[@as(usize, slot) * self.vec_stride ..].ptr;
    }
    fn rec(self: *const Inline, slot: u32) [*]const u8 {
        return self.mem.ptr + @as(usize, slot) * self.rec_bytes;
    }
    fn ids(self: *const Inline, r: [*]const u8) []const u32 {
        const words_: [*]const u32 = @ptrCast(@alignCast(r + self.ids_off));
        return words_[1 .. 1 + words_[0]];
    }
    /// The bytes an expansion reads: the vector if inline, the ids and the blocks of `degree`.
    fn expandBytes(self: *const Inline, degree: usize) usize {
        const blocks = (degree + lanes - 1) / lanes;
        return self.blocks_off + blocks * self.block_bytes;
    }
};

const Kind = enum { bit1, bit4 };

const Codes = struct {
    rot: Rotation,
    centre: []f32,
    words: u32,
    codes: []u64,
    factors: [][4]f32,
    /// 4-bit codes: dp / 2 bytes per vector; byte b holds dim b (low nibble) and dim dp / 2 + b
    /// (high nibble). Factors A, F1, F2, E (see estimate4).
    codes4: []u8,
    factors4: [][4]f32,
};

fn encodeAll(gpa: std.mem.Allocator, g: *const Graph) !Codes {
    const d = g.d;
    const rot = try Rotation.init(gpa, d, 0x5EED);
    const dp = rot.dp;
    const words: u32 = @intCast((dp + 63) / 64);
    // The centre: the mean of the (normalized, under cosine) stored vectors.
    const centre = try gpa.alloc(f32, d);
    @memset(centre, 0);
    for (0..g.n) |s| {
        const v = g.vector(@intCast(s));
        for (centre, 0..) |*c, i| c.* += v[i];
    }
    for (centre) |*c| c.* /= @floatFromInt(g.n);
    const codes = try gpa.alloc(u64, @as(usize, g.n) * words);
    const factors = try gpa.alloc([4]f32, g.n);
    const codes4 = try gpa.alloc(u8, @as(usize, g.n) * dp / 2);
    const factors4 = try gpa.alloc([4]f32, g.n);
    const x = try gpa.alloc(f32, dp);
    const src = try gpa.alloc(f32, d);
    const sqrt_dp = @sqrt(@as(f32, @floatFromInt(dp)));
    for (0..g.n) |s| {
        const v = g.vector(@intCast(s));
        var norm2: f32 = 0;
        for (0..d) |i| {
            src[i] = v[i] - centre[i];
            norm2 += src[i] * src[i];
        }
        const norm = @sqrt(norm2);
        rot.applyDense(src.ptr, x);
        const code = codes[s * words ..][0..words];
        @memset(code, 0);
        var abs_sum: f32 = 0;
        for (x, 0..) |xi, i| {
            if (xi > 0) code[i / 64] |= @as(u64, 1) << @intCast(i % 64);
            abs_sum += @abs(xi);
        }
        var ones: u32 = 0;
        for (code) |cw| ones += @popCount(cw);
        // <xbar, x> with x the unit rotated vector.
        const ip = if (norm > 0) abs_sum / norm / sqrt_dp else 1;
        const b = -2 * norm / (ip * sqrt_dp);
        factors[s] = .{
            norm2,
            b,
            b * @as(f32, @floatFromInt(ones)),
            2 * norm * @sqrt(@max(0, 1 - ip * ip)) / ip / @sqrt(@as(f32, @floatFromInt(dp - 1))),
        };
        // 4 bits: x / |x| quantized uniformly between its own min and max.
        var lo: f32 = std.math.inf(f32);
        var hi: f32 = -std.math.inf(f32);
        for (x) |*xi| {
            xi.* = if (norm > 0) xi.* / norm else 0;
            lo = @min(lo, xi.*);
            hi = @max(hi, xi.*);
        }
        const step = if (hi > lo) (hi - lo) / 15.0 else 1;
        const c4 = codes4[s * (dp / 2) ..][0 .. dp / 2];
        @memset(c4, 0);
        var t: f32 = 0; // <xq, x>
        var xq2: f32 = 0; // |xq|^2
        for (x, 0..) |xi, i| {
            const level: u8 = @intFromFloat(@min(15.0, @round((xi - lo) / step)));
            const xq = lo + step * @as(f32, @floatFromInt(level));
            t += xq * xi;
            xq2 += xq * xq;
            if (i < dp / 2) c4[i] |= level else c4[i - dp / 2] |= level << 4;
        }
        const ipn = t / @sqrt(xq2); // <xbar, x>, xbar = xq / |xq|
        factors4[s] = .{
            norm2,
            -2 * norm * lo / t,
            -2 * norm * step / t,
            2 * norm * @sqrt(@max(0, 1 - ipn * ipn)) / ipn / @sqrt(@as(f32, @floatFromInt(dp - 1))),
        };
    }
    return .{ .rot = rot, .centre = centre, .words = words, .codes = codes, .factors = factors, .codes4 = codes4, .factors4 = factors4 };
}

fn buildInline(gpa: std.mem.Allocator, g: *const Graph, c: *const Codes, kind: Kind, with_vector: bool) !Inline {
    _ = gpa;
    const d = g.d;
    const m0 = g.m0;
    const words = c.words;
    const vec_stride = std.mem.alignForward(usize, d, 16);
    const ids_off: usize = if (with_vector) 4 * vec_stride else 0;
    const blocks_off = ids_off + std.mem.alignForward(usize, 4 + 4 * m0, line);
    const code_bytes: usize = if (kind == .bit1) 8 * @as(usize, words) else c.rot.dp / 2;
    const block_bytes = lanes * (code_bytes + 16);
    const rec_bytes = std.mem.alignForward(usize, blocks_off + (m0 / lanes) * block_bytes, line);
    const vectors: []align(64) f32 = @alignCast(std.mem.bytesAsSlice(f32, try region(4 * (if (with_vector) 1 else vec_stride * g.n))));
    if (!with_vector) for (0..g.n) |s| @memcpy(vectors[s * vec_stride ..][0..d], g.vector(@intCast(s))[0..d]);
    const mem = try region(rec_bytes * g.n);
    for (0..g.n) |si| {
        const s: u32 = @intCast(si);
        const r = mem.ptr + si * rec_bytes;
        if (with_vector) @memcpy(@as([*]f32, @ptrCast(@alignCast(r)))[0..d], g.vector(s)[0..d]);
        const ids: [*]u32 = @ptrCast(@alignCast(r + ids_off));
        const nbrs = g.list(s, 0);
        ids[0] = @intCast(nbrs.len);
        for (0..m0) |j| {
            const block = r + blocks_off + (j / lanes) * block_bytes;
            const cw: [*]u64 = @ptrCast(@alignCast(block));
            const fac: [*]f32 = @ptrCast(@alignCast(block + code_bytes * lanes));
            const l = j % lanes;
            if (j < nbrs.len) {
                const n = nbrs[j];
                ids[1 + j] = n;
                if (kind == .bit1) {
                    for (0..words) |w| cw[w * lanes + l] = c.codes[n * words + w];
                    for (0..4) |f| fac[f * lanes + l] = c.factors[n][f];
                } else {
                    @memcpy(block[l * code_bytes ..][0..code_bytes], c.codes4[n * code_bytes ..][0..code_bytes]);
                    for (0..4) |f| fac[f * lanes + l] = c.factors4[n][f];
                }
            } else {
                ids[1 + j] = no_slot;
                fac[l] = std.math.inf(f32);
            }
        }
    }
    return .{
        .kind = kind,
        .d = d,
        .m0 = m0,
        .words = words,
        .code_bytes = code_bytes,
        .with_vector = with_vector,
        .rec_bytes = rec_bytes,
        .ids_off = ids_off,
        .blocks_off = blocks_off,
        .block_bytes = block_bytes,
        .mem = mem,
        .vectors = vectors,
        .vec_stride = vec_stride,
        .rot = c.rot,
        .centre = c.centre,
    };
}

/// The query side of the estimators.
const QueryCodes = struct {
    planes: [4][]u64,
    nq: f32,
    nq2: f32,
    k1: f32,
    k2: f32,
    sum_y: f32,
    /// 4-bit codes' query: Y / dy rounded to i8 (stored as its bytes).
    ylow: []align(64) u8,
    yhigh: []align(64) u8,
    dy: f32,
    y: []align(64) f32,
    r: []align(64) f32,

    fn init(gpa: std.mem.Allocator, dp: usize) !QueryCodes {
        var qc: QueryCodes = undefined;
        const words = (dp + 63) / 64;
        for (&qc.planes) |*p| p.* = try gpa.alloc(u64, words);
        qc.y = try gpa.alignedAlloc(f32, 64, words * 64);
        @memset(qc.y, 0);
        qc.r = try gpa.alignedAlloc(f32, 64, dp);
        const half = std.mem.alignForward(usize, dp / 2, 64);
        qc.ylow = try gpa.alignedAlloc(u8, 64, half);
        qc.yhigh = try gpa.alignedAlloc(u8, 64, half);
        @memset(qc.ylow, 0);
        @memset(qc.yhigh, 0);
        return qc;
    }

    noinline fn prepare(self: *QueryCodes, ix: *const Inline, q: [*]const f32) void {
        const y = self.y;
        const r = self.r;
        var n2v: F16 = @splat(0);
        var i: usize = 0;
        while (i < ix.d) : (i += 16) {
            if (i + 16 <= ix.d) {
                const t = @as(F16, q[i..][0..16].*) - @as(F16, ix.centre[i..][0..16].*);
                r[i..][0..16].* = t;
                n2v = @mulAdd(F16, t, t, n2v);
            } else for (i..ix.d) |j| {
                r[j] = q[j] - ix.centre[j];
                n2v[0] += r[j] * r[j];
            }
        }
        const dp = ix.rot.dp;
        ix.rot.applyDense(r.ptr, y[0..dp]);
        var lo: F16 = @splat(std.math.inf(f32));
        var hi: F16 = @splat(-std.math.inf(f32));
        var sum: F16 = @splat(0);
        i = 0;
        while (i < dp) : (i += 16) {
            const v: F16 = y[i..][0..16].*;
            lo = @min(lo, v);
            hi = @max(hi, v);
            sum += v;
        }
        const l = @reduce(.Min, lo);
        const h = @reduce(.Max, hi);
        self.nq2 = @reduce(.Add, n2v);
        self.nq = @sqrt(self.nq2);
        self.sum_y = @reduce(.Add, sum);
        if (ix.kind == .bit1) {
            const delta = (h - l) / 15.0;
            const inv: F16 = @splat(if (delta > 0) 1.0 / delta else 0);
            i = 0;
            while (i < y.len) : (i += 64) {
                var levels: @Vector(64, u8) = undefined;
                inline for (0..4) |c| {
                    const v: F16 = y[i + 16 * c ..][0..16].*;
                    const f = @round((v - @as(F16, @splat(l))) * inv);
                    const u: @Vector(16, u8) = @intFromFloat(@min(f, @as(F16, @splat(15))));
                    inline for (0..16) |e| levels[16 * c + e] = u[e];
                }
                inline for (0..4) |j| {
                    const bit: @Vector(64, u8) = @splat(1 << j);
                    const mask = (levels & bit) != @as(@Vector(64, u8), @splat(0));
                    self.planes[j][i / 64] = @bitCast(mask);
                }
            }
            self.k1 = 2 * delta;
            self.k2 = 2 * l;
        } else {
            const m = @max(-l, h);
            self.dy = if (m > 0) m / 127.0 else 1;
            const inv: F16 = @splat(1.0 / self.dy);
            const half = dp / 2;
            i = 0;
            while (i < dp) : (i += 16) {
                const v: F16 = y[i..][0..16].*;
                const t: @Vector(16, i8) = @intFromFloat(@round(v * inv));
                const bytes: [16]u8 = @bitCast(t);
                for (0..16) |e| {
                    const dim = i + e;
                    if (dim < half) self.ylow[dim] = bytes[e] else self.yhigh[dim - half] = bytes[e];
                }
            }
        }
    }
};

const U8 = @Vector(lanes, u64);
const F8 = @Vector(lanes, f32);

/// Estimates (and lower bounds) of the first `degree` neighbours of one record, 8 at a time.
inline fn estimate(ix: *const Inline, qc: *const QueryCodes, r: [*]const u8, degree: usize, eps: f32, est: []f32, lb: []f32) void {
    if (ix.kind == .bit1) estimate1(ix, qc, r, degree, eps, est, lb) else estimate4(ix, qc, r, degree, eps, est, lb);
}

inline fn vpdpbusd(acc: @Vector(16, i32), unsigned: @Vector(64, u8), signed: @Vector(64, u8)) @Vector(16, i32) {
    return asm ("vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=v" (-> @Vector(16, i32)),
        : [unsigned] "v" (unsigned),
          [signed] "v" (signed),
          [_] "0" (acc),
    );
}

/// 4 bits: dist2 ~= A + |q - c|^2 + F1 * sum(Y) + F2 * dy * <code, Ybar>, with
/// A = |o - c|^2, F1 = -2 |o - c| lo / <xq, x>, F2 = -2 |o - c| step / <xq, x> (x the unit
/// rotated vector, xq = lo + step * code its reconstruction; the extended-RaBitQ estimator
/// <x, Y> ~= <xq, Y> / <xq, x>); the integer dot by VNNI, two nibble planes per 64-byte chunk.
inline fn estimate4(ix: *const Inline, qc: *const QueryCodes, r: [*]const u8, degree: usize, eps: f32, est: []f32, lb: []f32) void {
    const nq2: F8 = @splat(qc.nq2);
    const sy: F8 = @splat(qc.sum_y);
    const dy: F8 = @splat(qc.dy);
    const err: F8 = @splat(eps * qc.nq);
    const chunks = (ix.code_bytes + 63) / 64;
    const low: @Vector(64, u8) = @splat(0x0F);
    var g: usize = 0;
    var block = r + ix.blocks_off;
    while (g < degree) : (g += lanes) {
        var ip: [lanes]f32 = undefined;
        inline for (0..lanes) |l| {
            const code = block + l * ix.code_bytes;
            var acc: @Vector(16, i32) = @splat(0);
            for (0..chunks) |c| {
                const v: @Vector(64, u8) = code[c * 64 ..][0..64].*;
                // Bytes past this code (the next lane's, or the factors) meet zero query bytes.
                const qa: @Vector(64, u8) = qc.ylow[c * 64 ..][0..64].*;
                const qb: @Vector(64, u8) = qc.yhigh[c * 64 ..][0..64].*;
                acc = vpdpbusd(acc, v & low, qa);
                acc = vpdpbusd(acc, v >> @splat(4), qb);
            }
            ip[l] = @floatFromInt(@reduce(.Add, acc));
        }
        const fac: [*]const f32 = @ptrCast(@alignCast(block + ix.code_bytes * lanes));
        const a: F8 = fac[0..lanes].*;
        const f1: F8 = fac[lanes..][0..lanes].*;
        const f2: F8 = fac[2 * lanes ..][0..lanes].*;
        const e: F8 = fac[3 * lanes ..][0..lanes].*;
        const ipv: F8 = ip;
        const dist = a + nq2 + f1 * sy + f2 * dy * ipv;
        est[g..][0..lanes].* = dist;
        lb[g..][0..lanes].* = dist - err * e;
        block += ix.block_bytes;
    }
}

inline fn estimate1(ix: *const Inline, qc: *const QueryCodes, r: [*]const u8, degree: usize, eps: f32, est: []f32, lb: []f32) void {
    const k1: F8 = @splat(qc.k1);
    const k2: F8 = @splat(qc.k2);
    const sy: F8 = @splat(qc.sum_y);
    const nq2: F8 = @splat(qc.nq2);
    const err: F8 = @splat(eps * qc.nq);
    var g: usize = 0;
    var block = r + ix.blocks_off;
    while (g < degree) : (g += lanes) {
        const cw: [*]const u64 = @ptrCast(@alignCast(block));
        const fac: [*]const f32 = @ptrCast(@alignCast(block + ix.code_bytes * lanes));
        var acc: U8 = @splat(0);
        for (0..ix.words) |w| {
            const c: U8 = cw[w * lanes ..][0..lanes].*;
            inline for (0..4) |j| {
                const p: U8 = @splat(qc.planes[j][w]);
                acc += @as(U8, @popCount(c & p)) << @splat(j);
            }
        }
        const s: F8 = @floatFromInt(acc);
        const a: F8 = fac[0..lanes].*;
        const b: F8 = fac[lanes..][0..lanes].*;
        const bp: F8 = fac[2 * lanes ..][0..lanes].*;
        const e: F8 = fac[3 * lanes ..][0..lanes].*;
        const dist = a + nq2 + b * (k1 * s - sy) + k2 * bp;
        est[g..][0..lanes].* = dist;
        lb[g..][0..lanes].* = dist - err * e;
        block += ix.block_bytes;
    }
}

/// The next expansion's record: its ids line and the blocks of up to 16 neighbours (the mean
/// level-0 degree of these graphs is about 15), the vector first when inline.
inline fn prefetchRecord(ix: *const Inline, slot: u32) void {
    prefetch(ix.rec(slot), @min(ix.expandBytes(16), prefetch_lines * line));
}

/// Lines prefetched per record (INLINE_PF, default all the mean degree needs): a prefetch of
/// many lines stalls on full fill buffers, and the streamer follows a sequential record anyway.
var prefetch_lines: usize = 64;

/// After an expansion pushed its neighbours, the queue's top may be one of them: ask for its
/// record too, so the read overlaps the heap work and the next pop.
inline fn prefetchNewTop(ix: *const Inline, w: *const Walker, prefetched: u32) void {
    if (w.cands.len > 0 and w.cands.items[0].slot != prefetched) prefetchRecord(ix, w.cands.items[0].slot);
    // INLINE_SPEC=1: also the runner-up (the closer child of the heap's root), speculatively.
    if (speculate and w.cands.len > 2) {
        const a = w.cands.items[1];
        const b = w.cands.items[2];
        prefetchRecord(ix, if (a.d < b.d) a.slot else b.slot);
    }
}

var speculate = false;

/// SymphonyQG-style: exact distance of each expanded node from its own record, estimates for the
/// queue.
noinline fn walkInline(ix: *const Inline, g: *const Graph, w: *Walker, qc: *QueryCodes, q: [*]const f32, ef: u32, eps: f32, out: []u32) void {
    qc.prepare(ix, q);
    const entry = greedy(g, ix, q);
    w.reset();
    _ = w.testAndSet(entry.slot);
    w.cands.push(entry);
    var est: [256]f32 = undefined;
    var lb: [256]f32 = undefined;
    var bound: f32 = std.math.inf(f32);
    while (w.cands.len > 0) {
        const c = w.cands.items[0];
        if (w.results.len >= ef and c.d > bound) break;
        _ = w.cands.pop();
        const next = if (w.cands.len > 0) w.cands.items[0].slot else no_slot;
        if (next != no_slot) prefetchRecord(ix, next);
        w.expansions += 1;
        const r = ix.rec(c.slot);
        const d = l2sq(q, @ptrCast(@alignCast(r)), ix.d);
        w.exact += 1;
        if (w.results.len < ef) {
            w.results.push(.{ .d = d, .slot = c.slot });
            if (w.results.len == ef) bound = w.results.items[0].d;
        } else if (d < bound) {
            w.results.replaceTop(.{ .d = d, .slot = c.slot });
            bound = w.results.items[0].d;
        }
        const ids = ix.ids(r);
        estimate(ix, qc, r, ids.len, eps, &est, &lb);
        w.estimated += ids.len;
        for (ids, 0..) |s, j| {
            if (w.testAndSet(s)) continue;
            if (!(lb[j] < bound)) continue;
            w.cands.push(.{ .d = est[j], .slot = s });
        }
        prefetchNewTop(ix, w, next);
    }
    w.emit(out);
}

/// The brief's rule: estimates from u's record decide which neighbours' exact vectors are fetched.
noinline fn walkPrune(ix: *const Inline, g: *const Graph, w: *Walker, qc: *QueryCodes, q: [*]const f32, ef: u32, eps: f32, out: []u32) void {
    qc.prepare(ix, q);
    const entry = greedy(g, ix, q);
    w.reset();
    _ = w.testAndSet(entry.slot);
    w.cands.push(entry);
    w.results.push(entry);
    var bound: f32 = if (ef == 1) entry.d else std.math.inf(f32);
    var est: [256]f32 = undefined;
    var lb: [256]f32 = undefined;
    const vbytes = @min(8 * line, 4 * ix.d);
    while (w.cands.len > 0) {
        const c = w.cands.items[0];
        if (c.d > bound and w.results.len >= ef) break;
        _ = w.cands.pop();
        const next = if (w.cands.len > 0) w.cands.items[0].slot else no_slot;
        if (next != no_slot) prefetchRecord(ix, next);
        w.expansions += 1;
        const r = ix.rec(c.slot);
        const ids = ix.ids(r);
        estimate(ix, qc, r, ids.len, eps, &est, &lb);
        w.estimated += ids.len;
        var fresh: usize = 0;
        for (ids, 0..) |s, j| {
            if (w.testAndSet(s)) continue;
            if (!(lb[j] < bound)) continue;
            prefetch(@ptrCast(ix.at(s)), vbytes);
            w.fresh[fresh] = s;
            fresh += 1;
        }
        w.exact += fresh;
        for (w.fresh[0..fresh]) |s| {
            const d = l2sq(q, ix.at(s), ix.d);
            const full = w.results.len >= ef;
            if (full and !(d < bound)) continue;
            w.cands.push(.{ .d = d, .slot = s });
            if (full) w.results.replaceTop(.{ .d = d, .slot = s }) else w.results.push(.{ .d = d, .slot = s });
            if (w.results.len >= ef) bound = w.results.items[0].d;
        }
        prefetchNewTop(ix, w, next);
    }
    w.emit(out);
}

/// The walk on estimates only (HNSW's rule with estimated distances; no exact distance and no
/// vector fetched while walking: one sequential record read per expansion), then an exact
/// rerank that the error bound limits: the k best by estimate are computed exactly, then every
/// other result whose lower bound is below the k-th exact distance.
noinline fn walkEstimate(ix: *const Inline, g: *const Graph, w: *Walker, qc: *QueryCodes, q: [*]const f32, ef: u32, eps: f32, out: []u32) void {
    qc.prepare(ix, q);
    const entry = greedy(g, ix, q);
    w.reset();
    _ = w.testAndSet(entry.slot);
    w.cands.push(entry);
    w.results.push(entry);
    w.lbs[entry.slot] = entry.d;
    var bound: f32 = if (ef == 1) entry.d else std.math.inf(f32);
    var est: [256]f32 = undefined;
    var lb: [256]f32 = undefined;
    while (w.cands.len > 0) {
        const c = w.cands.items[0];
        if (c.d > bound and w.results.len >= ef) break;
        _ = w.cands.pop();
        const next = if (w.cands.len > 0) w.cands.items[0].slot else no_slot;
        if (next != no_slot) prefetchRecord(ix, next);
        w.expansions += 1;
        const r = ix.rec(c.slot);
        const ids = ix.ids(r);
        estimate(ix, qc, r, ids.len, eps, &est, &lb);
        w.estimated += ids.len;
        for (ids, 0..) |s, j| {
            if (w.testAndSet(s)) continue;
            const d = est[j];
            const full = w.results.len >= ef;
            if (full and !(d < bound)) continue;
            w.lbs[s] = lb[j];
            w.cands.push(.{ .d = d, .slot = s });
            if (full) w.results.replaceTop(.{ .d = d, .slot = s }) else w.results.push(.{ .d = d, .slot = s });
            if (w.results.len >= ef) bound = w.results.items[0].d;
        }
        prefetchNewTop(ix, w, next);
    }
    // Rerank: results by estimate, closest first.
    const items = w.results.items[0..w.results.len];
    std.mem.sort(Cand, items, {}, struct {
        fn lt(_: void, a: Cand, b: Cand) bool {
            return a.d < b.d;
        }
    }.lt);
    const vbytes = @min(8 * line, 4 * ix.d);
    const first = @min(items.len, k);
    for (items[0..first]) |c| prefetch(@ptrCast(ix.at(c.slot)), vbytes);
    var top = Heap(true){ .items = w.fresh_cands };
    for (items[0..first]) |c| top.push(.{ .d = l2sq(q, ix.at(c.slot), ix.d), .slot = c.slot });
    var kth = if (top.len >= k) top.items[0].d else std.math.inf(f32);
    var unsettled: usize = 0;
    for (items[first..]) |c| {
        if (!(w.lbs[c.slot] < kth)) continue;
        prefetch(@ptrCast(ix.at(c.slot)), vbytes);
        w.fresh[unsettled] = c.slot;
        unsettled += 1;
    }
    w.exact += first + unsettled;
    for (w.fresh[0..unsettled]) |s| {
        if (!(w.lbs[s] < kth)) continue;
        const d = l2sq(q, ix.at(s), ix.d);
        if (top.len < k) top.push(.{ .d = d, .slot = s }) else if (d < kth) top.replaceTop(.{ .d = d, .slot = s });
        if (top.len >= k) kth = top.items[0].d;
    }
    w.results.len = top.len;
    @memcpy(w.results.items[0..top.len], top.items[0..top.len]);
    w.emit(out);
}
// ---------------------------------------------------------------------------------------------
// Ground truth by brute force (cached).

fn groundTruth(gpa: std.mem.Allocator, base: []const f32, queries: []const f32, n: u32, nq: u32, d: u32, path: []const u8) ![]u32 {
    const truth = try gpa.alloc(u32, @as(usize, nq) * k);
    if (std.fs.cwd().openFile(path, .{})) |file| {
        defer file.close();
        if ((try file.readAll(std.mem.sliceAsBytes(truth))) == truth.len * 4) return truth;
    } else |_| {}
    std.debug.print("computing ground truth ({d} x {d})...\n", .{ nq, n });
    for (0..nq) |qi| {
        var best: [k]Cand = undefined;
        for (&best) |*b| b.* = .{ .d = std.math.inf(f32), .slot = no_slot };
        const q = queries[qi * d ..].ptr;
        for (0..n) |i| {
            const dist = l2sq(q, base[i * d ..].ptr, d);
            if (dist >= best[k - 1].d) continue;
            var j: usize = k - 1;
            while (j > 0 and best[j - 1].d > dist) : (j -= 1) best[j] = best[j - 1];
            best[j] = .{ .d = dist, .slot = @intCast(i) };
        }
        for (0..k) |j| truth[qi * k + j] = best[j].slot;
    }
    const file = try std.fs.cwd().createFile(path, .{});
    defer file.close();
    try file.writeAll(std.mem.sliceAsBytes(truth));
    return truth;
}

fn recall(truth: []const u32, got: []const u32, nq: u32) f64 {
    var hits: u64 = 0;
    for (0..nq) |qi| {
        const want = truth[qi * k ..][0..k];
        for (got[qi * k ..][0..k]) |g| {
            if (std.mem.indexOfScalar(u32, want, g) != null) hits += 1;
        }
    }
    return @as(f64, @floatFromInt(hits)) / @as(f64, @floatFromInt(@as(u64, nq) * k));
}

// ---------------------------------------------------------------------------------------------

const Method = enum { quiver_f32, quiver_i8, flat_f32, symphony1, prune1, estimate1, symphony4, prune4, estimate4 };

pub fn main() !void {
    const gpa = std.heap.c_allocator;
    const args = try std.process.argsAlloc(gpa);
    if (args.len < 8) return error.Usage;
    const name = args[1];
    const base_limit = try std.fmt.parseInt(u32, args[2], 10);
    const query_limit = try std.fmt.parseInt(u32, args[3], 10);
    const cosine = std.mem.eql(u8, args[4], "cosine");
    const passes = try std.fmt.parseInt(u32, args[7], 10);
    const only = std.posix.getenv("INLINE_ONLY");
    speculate = std.posix.getenv("INLINE_SPEC") != null;
    if (std.posix.getenv("INLINE_PF")) |t| prefetch_lines = try std.fmt.parseInt(usize, t, 10);

    const base = try readMatrix(gpa, try std.fmt.allocPrint(gpa, ".cache/bench/datasets/{s}.base.f32", .{name}), base_limit);
    const queries = try readMatrix(gpa, try std.fmt.allocPrint(gpa, ".cache/bench/datasets/{s}.query.f32", .{name}), query_limit);
    const d = base.dimensions;
    const nq = queries.count;
    // The walks get normalized queries under cosine, as Quiver's search does.
    const qn = try gpa.alignedAlloc(f32, 64, queries.data.len);
    @memcpy(qn, queries.data);
    const bn = try gpa.alignedAlloc(f32, 64, base.data.len);
    @memcpy(bn, base.data);
    if (cosine) {
        for (0..nq) |i| normalize(qn[i * d ..][0..d]);
        for (0..base.count) |i| normalize(bn[i * d ..][0..d]);
    }
    const gt_path = try std.fmt.allocPrint(gpa, ".cache/bench/inline-gt-{s}-n{d}-q{d}-{s}.u32", .{ name, base.count, nq, args[4] });
    const truth = try groundTruth(gpa, bn, qn, base.count, nq, d, gt_path);

    // Quiver f32, persisted so its files can be read back; and i8 in memory.
    var opts = Options{
        .dimensions = d,
        .metric = if (cosine) 2 else 0,
        .m = 16,
        .ef_construction = 200,
        .ef_search = 64,
        .flags = flag_create,
        .seed = 42,
        .capacity = 0,
        .storage = 0,
        .reserved = 0,
    };
    const dir = try std.fmt.allocPrint(gpa, "/tmp/inline-codes-{d}", .{std.os.linux.getpid()});
    try std.fs.cwd().makePath(dir);
    defer std.fs.cwd().deleteTree(dir) catch {};
    const path = try std.fmt.allocPrint(gpa, "{s}/f32", .{dir});
    const keys = try gpa.alloc(u64, base.count);
    for (keys, 0..) |*key, i| key.* = i;
    var h32: u32 = 0;
    try check(qv_index_open(path.ptr, @intCast(path.len), &opts, 0, &h32));
    defer _ = qv_index_close(h32);
    try check(qv_index_reserve(h32, base.count));
    var timer = try std.time.Timer.start();
    try check(qv_index_add_batch(h32, keys.ptr, base.count, base.data.ptr, base.data.len, 2));
    const build32 = @as(f64, @floatFromInt(timer.read())) / 1e9;
    try check(qv_index_checkpoint(h32));
    opts.flags = 0;
    opts.storage = 2;
    var h8: u32 = 0;
    try check(qv_index_create(&opts, &h8));
    defer _ = qv_index_close(h8);
    try check(qv_index_reserve(h8, base.count));
    timer.reset();
    try check(qv_index_add_batch(h8, keys.ptr, base.count, base.data.ptr, base.data.len, 2));
    const build8 = @as(f64, @floatFromInt(timer.read())) / 1e9;

    const g = try loadGraph(gpa, path);
    if (g.d != d or g.n != base.count) return error.Mismatch;
    // Slots are in insertion order, not row order, after a parallel build: walks map back by key.
    const slot_key = try gpa.alloc(u32, g.n);
    for (g.metas, slot_key) |m, *key| key.* = @intCast(m.key);
    timer.reset();
    const codes = try encodeAll(gpa, &g);
    const v1 = try buildInline(gpa, &g, &codes, .bit1, true);
    const c1 = try buildInline(gpa, &g, &codes, .bit1, false);
    const v4 = try buildInline(gpa, &g, &codes, .bit4, true);
    const c4 = try buildInline(gpa, &g, &codes, .bit4, false);
    const inline_build = @as(f64, @floatFromInt(timer.read())) / 1e9;
    var degree_sum: u64 = 0;
    for (0..g.n) |s| degree_sum += g.list(@intCast(s), 0).len;

    const stdout = std.io.getStdOut().writer();
    try stdout.print(
        "# {s} n {d} q {d} d {d} {s}; build f32 {d:.2}s i8 {d:.2}s (2 threads), inline layout {d:.2}s; entry level {d}; mean level-0 degree {d:.1}\n",
        .{ name, base.count, nq, d, args[4], build32, build8, inline_build, g.entry_level, @as(f64, @floatFromInt(degree_sum)) / @as(f64, @floatFromInt(g.n)) },
    );
    const mean_degree: usize = @intFromFloat(@round(@as(f64, @floatFromInt(degree_sum)) / @as(f64, @floatFromInt(g.n))));
    inline for (.{ c1, c4 }) |ix| try stdout.print(
        "# bytes {s}: quiver f32 record {d}; code {d} bytes ({d} rotated dims) + 16 factor bytes = {d} per neighbour; record with vector {d}, codes-only {d}; an expansion at the mean degree reads {d} (codes only) / {d} (with vector)\n",
        .{ @tagName(ix.kind), g.record_bytes, ix.code_bytes, codes.rot.dp, ix.code_bytes + 16, ix.rec_bytes + 4 * ix.vec_stride, ix.rec_bytes, ix.expandBytes(mean_degree), ix.expandBytes(mean_degree) + 4 * ix.vec_stride },
    );
    try stdout.print("method\tef\teps\tqps_cpu\tqps_wall\trecall\texpansions/q\texact/q\testimated/q\n", .{});

    var w = try Walker.init(gpa, g.n);
    var qc = try QueryCodes.init(gpa, codes.rot.dp);
    const got = try gpa.alloc(u32, @as(usize, nq) * k);
    const got_keys = try gpa.alloc(u64, k);
    var dist_out: [k]f32 = undefined;

    var eps_list = std.ArrayList(f32).init(gpa);
    var eps_it = std.mem.splitScalar(u8, args[6], ',');
    while (eps_it.next()) |t| try eps_list.append(if (std.mem.eql(u8, t, "inf")) std.math.inf(f32) else try std.fmt.parseFloat(f32, t));

    var efs = std.mem.splitScalar(u8, args[5], ',');
    while (efs.next()) |ef_text| {
        const ef = try std.fmt.parseInt(u32, ef_text, 10);
        const beam = @max(ef, k);
        inline for (std.meta.fields(Method)) |field| {
            const method: Method = @enumFromInt(field.value);
            const uses_eps = method != .quiver_f32 and method != .quiver_i8 and method != .flat_f32;
            const eps_values: []const f32 = if (uses_eps) eps_list.items else &[_]f32{0};
            const skip = if (only) |o| std.mem.indexOf(u8, o, field.name) == null else false;
            if (!skip) for (eps_values) |eps| {
                var best_cpu: u64 = std.math.maxInt(u64);
                var best_wall: u64 = std.math.maxInt(u64);
                var stats = [3]u64{ 0, 0, 0 };
                for (0..passes) |_| {
                    w.expansions = 0;
                    w.exact = 0;
                    w.estimated = 0;
                    timer.reset();
                    const c0 = cpuNs();
                    for (0..nq) |qi| {
                        const out = got[qi * k ..][0..k];
                        switch (method) {
                            .quiver_f32, .quiver_i8 => {
                                var count: u32 = 0;
                                const h = if (method == .quiver_f32) h32 else h8;
                                try check(qv_index_search(h, 0, queries.data[qi * d ..].ptr, d, k, beam, 0, got_keys.ptr, &dist_out, &count));
                                for (out, 0..) |*o, i| o.* = if (i < count) @intCast(got_keys[i]) else no_slot;
                            },
                            .flat_f32 => walkFlat(&g, &w, qn[qi * d ..].ptr, beam, out),
                            .symphony1 => walkInline(&v1, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                            .prune1 => walkPrune(&c1, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                            .estimate1 => walkEstimate(&c1, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                            .symphony4 => walkInline(&v4, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                            .prune4 => walkPrune(&c4, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                            .estimate4 => walkEstimate(&c4, &g, &w, &qc, qn[qi * d ..].ptr, beam, eps, out),
                        }
                        if (method != .quiver_f32 and method != .quiver_i8) {
                            for (out) |*o| o.* = if (o.* == no_slot) no_slot else slot_key[o.*];
                        }
                    }
                    best_cpu = @min(best_cpu, cpuNs() - c0);
                    best_wall = @min(best_wall, timer.read());
                    stats = .{ w.expansions, w.exact, w.estimated };
                }
                const nf: f64 = @floatFromInt(nq);
                try stdout.print("{s}\t{d}\t{d:.2}\t{d:.0}\t{d:.0}\t{d:.4}\t{d:.1}\t{d:.1}\t{d:.1}\n", .{
                    field.name,
                    ef,
                    eps,
                    nf * 1e9 / @as(f64, @floatFromInt(best_cpu)),
                    nf * 1e9 / @as(f64, @floatFromInt(best_wall)),
                    recall(truth, got, nq),
                    @as(f64, @floatFromInt(stats[0])) / nf,
                    @as(f64, @floatFromInt(stats[1])) / nf,
                    @as(f64, @floatFromInt(stats[2])) / nf,
                });
            };
        }
    }
}

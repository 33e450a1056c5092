//! Folder kernels/: arithmetic on vectors. distance.zig (dispatch and the portable kernels),
//! simd.zig (the SIMD kernels, compiled once per CPU level), i8.zig (integer kernels), cpu.zig
//! (CPU detection), quantize.zig (i8 coding). May import: sync/, abi.zig; never storage/ or
//! above. simd.zig and i8.zig import nothing from native/ (each is compiled as its own root).
//!
//! Vector distances and the run-time choice of kernel.
//!
//! The kernels live in native/kernels/simd.zig, which build.zig compiles once per CPU level into
//! separate objects (x86-64: AVX-512, AVX2+FMA, the x86-64-v2 baseline; aarch64: NEON; the AVX-512
//! and AVX2 objects also carry i8 kernels for CPUs with VNNI, levels `avx512_vnni` and
//! `avx2_vnni`). This file declares their symbols, asks native/kernels/cpu.zig what the running CPU
//! can execute, and picks the widest level once. Targets without kernel objects use the portable
//! kernels below.
//!
//! Thread safety: every function here may be called from any thread at any time. The chosen
//! level is one atomic word; the kernel table is constant.
const std = @import("std");
const builtin = @import("builtin");
const build_options = @import("build_options");
const cpu = @import("cpu.zig");
const i8k = @import("i8.zig");
const many = @import("many.zig");
const rabitq = @import("rabitq.zig");
const abi = @import("../abi.zig");
const assert = std.debug.assert;

/// Above this squared norm a distance could overflow f32: such vectors are refused.
pub const norm_squared_max: f64 = 1e37;

/// The squared norm of a vector whose components are finite and whose distances cannot
/// overflow f32 (squared norm at most `norm_squared_max`); `InvalidVector` otherwise.
pub fn boundedNorm(vector: []const f32) error{InvalidVector}!f64 {
    var norm: f64 = 0;
    for (vector) |x| {
        if (!std.math.isFinite(x)) return error.InvalidVector;
        norm += @as(f64, x) * x;
    }
    if (norm > norm_squared_max) return error.InvalidVector;
    return norm;
}

/// The metric of the FFI (one enum for the whole tree).
pub const Metric = abi.Metric;

/// A kernel level. The values are stable: benchmarks and bindings may report them.
pub const Level = abi.KernelLevel;

/// A raw kernel: `(a, b, n)` reads `a[0..n]` and `b[0..n]`, which may be unaligned.
pub const KernelFn = *const fn ([*]const f32, [*]const f32, usize) callconv(.c) f32;

/// A raw kernel over half-precision vectors (f16 storage), accumulating in f32.
pub const KernelF16Fn = *const fn ([*]const f16, [*]const f16, usize) callconv(.c) f32;

/// A raw kernel over two coded vectors (i8 storage; see kernels/i8.zig for the format).
pub const KernelI8Fn = *const fn ([*]const u8, [*]const u8, usize) callconv(.c) f32;

/// A kernel's batch form (kernels/many.zig): one call per expansion of a walk.
pub const ManyFn = many.ManyFn;

/// The kernels of one level. `dot` serves both `ip` and `cosine`.
pub const Kernels = struct {
    l2sq: KernelFn,
    dot: KernelFn,
    l2sq_f16: KernelF16Fn,
    dot_f16: KernelF16Fn,
    l2sq_i8: KernelI8Fn,
    dot_i8: KernelI8Fn,
    /// The batch forms, by walked element (f32, f16, i8: `walkForms`) and formula.
    many: [3]struct { l2sq: ManyFn, dot: ManyFn },
    /// The rabitq storage's FastScan kernel (kernels/rabitq.zig).
    scan: rabitq.ScanFn,
};

const level_count = @typeInfo(Level).@"enum".fields.len;

/// Levels from widest to narrowest: detection takes the first one the CPU supports.
const preference = [_]Level{
    .avx512_vnni,
    .avx512,
    .avx2_vnni,
    .avx2,
    .neon,
    .baseline,
    .portable,
};

comptime {
    assert(preference.len == level_count);
}

/// The symbols of the kernel objects. Declared in a namespace that is referenced only when
/// build.zig compiled those objects for this target, so other targets never link against them.
const x86_kernels = struct {
    extern fn qv_kernel_avx512_l2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx512_dot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx512_l2sq_f16(
        a: [*]const f16,
        b: [*]const f16,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_avx512_dot_f16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx512_l2sq_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx512_dot_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx512_l2sq_i8_vnni(
        a: [*]const u8,
        b: [*]const u8,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_avx512_dot_i8_vnni(
        a: [*]const u8,
        b: [*]const u8,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_avx2_l2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_dot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_l2sq_f16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_dot_f16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_l2sq_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_dot_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_avx2_l2sq_i8_vnni(
        a: [*]const u8,
        b: [*]const u8,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_avx2_dot_i8_vnni(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_baseline_l2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_baseline_dot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_baseline_l2sq_f16(
        a: [*]const f16,
        b: [*]const f16,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_baseline_dot_f16(
        a: [*]const f16,
        b: [*]const f16,
        n: usize,
    ) callconv(.c) f32;
    extern fn qv_kernel_baseline_l2sq_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_baseline_dot_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
};

const aarch64_kernels = struct {
    extern fn qv_kernel_neon_l2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_neon_dot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32;
    extern fn qv_kernel_neon_l2sq_f16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32;
    extern fn qv_kernel_neon_dot_f16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32;
    extern fn qv_kernel_neon_l2sq_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
    extern fn qv_kernel_neon_dot_i8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32;
};

/// Indexed by `@intFromEnum(Level)`; null where this build has no such kernels.
const kernel_table: [level_count]?Kernels = table: {
    var table: [level_count]?Kernels = @splat(null);
    table[@intFromEnum(Level.portable)] = .{
        .l2sq = &portableL2sq,
        .dot = &portableDot,
        .l2sq_f16 = &portableL2sqF16,
        .dot_f16 = &portableDotF16,
        .l2sq_i8 = &portableL2sqI8,
        .dot_i8 = &portableDotI8,
        .many = .{
            .{
                .l2sq = &many.Many(f32, portableL2sq).run,
                .dot = &many.Many(f32, portableDot).run,
            },
            .{
                .l2sq = &many.Many(f16, portableL2sqF16).run,
                .dot = &many.Many(f16, portableDotF16).run,
            },
            .{
                .l2sq = &many.Many(u8, portableL2sqI8).run,
                .dot = &many.Many(u8, portableDotI8).run,
            },
        },
        .scan = &portableScan,
    };
    if (build_options.kernels_x86_64) {
        table[@intFromEnum(Level.avx512)] = objectKernels(x86_kernels, "avx512", "");
        table[@intFromEnum(Level.avx512_vnni)] = objectKernels(x86_kernels, "avx512", "_vnni");
        table[@intFromEnum(Level.avx2)] = objectKernels(x86_kernels, "avx2", "");
        table[@intFromEnum(Level.avx2_vnni)] = objectKernels(x86_kernels, "avx2", "_vnni");
        table[@intFromEnum(Level.baseline)] = objectKernels(x86_kernels, "baseline", "");
    }
    if (build_options.kernels_aarch64) {
        table[@intFromEnum(Level.neon)] = objectKernels(aarch64_kernels, "neon", "");
    }
    break :table table;
};

/// The kernels of one object: `qv_kernel_<object>_<kernel>`, the i8 ones with `i8_suffix`.
fn objectKernels(
    comptime k: type,
    comptime object: []const u8,
    comptime i8_suffix: []const u8,
) Kernels {
    const prefix = "qv_kernel_" ++ object;
    return .{
        .l2sq = &@field(k, prefix ++ "_l2sq"),
        .dot = &@field(k, prefix ++ "_dot"),
        .l2sq_f16 = &@field(k, prefix ++ "_l2sq_f16"),
        .dot_f16 = &@field(k, prefix ++ "_dot_f16"),
        .l2sq_i8 = &@field(k, prefix ++ "_l2sq_i8" ++ i8_suffix),
        .dot_i8 = &@field(k, prefix ++ "_dot_i8" ++ i8_suffix),
        // simd.zig `exportPair` names each batch form after its kernel.
        .many = .{
            .{ .l2sq = manyExtern(prefix ++ "_l2sq"), .dot = manyExtern(prefix ++ "_dot") },
            .{
                .l2sq = manyExtern(prefix ++ "_l2sq_f16"),
                .dot = manyExtern(prefix ++ "_dot_f16"),
            },
            .{
                .l2sq = manyExtern(prefix ++ "_l2sq_i8" ++ i8_suffix),
                .dot = manyExtern(prefix ++ "_dot_i8" ++ i8_suffix),
            },
        },
        .scan = @extern(rabitq.ScanFn, .{ .name = prefix ++ "_rq_scan" }),
    };
}

fn manyExtern(comptime kernel_name: []const u8) ManyFn {
    return @extern(ManyFn, .{ .name = kernel_name ++ "_many" });
}

/// The chosen level, or `level_unset` before the first call. Racing first calls all compute
/// the same answer and a compare-and-swap keeps one, so no lock is needed. Monotonic order is
/// enough: the word is the only thing published (the table it indexes is constant).
var level_chosen = std.atomic.Value(u32).init(level_unset);
const level_unset = std.math.maxInt(u32);

/// The level in use. The first call detects the CPU (a few CPUID instructions); later calls
/// are one atomic load.
pub fn level() Level {
    const raw = level_chosen.load(.monotonic);
    if (raw != level_unset) return @enumFromInt(raw);
    const chosen = defaultLevel();
    const previous = level_chosen.cmpxchgStrong(
        level_unset,
        @intFromEnum(chosen),
        .monotonic,
        .monotonic,
    );
    // A `forceLevel` that raced ahead of the first detection wins.
    if (previous) |raw_previous| return @enumFromInt(raw_previous);
    return chosen;
}

/// The level `level()` settles on unless forced: the detected one, except under
/// ThreadSanitizer. The kernel objects are not instrumented, so TSan would not see the vector
/// reads of a search that ran through them; the portable kernels are compiled into this module
/// and are, which lets test-tsan check those reads against concurrent inserts.
pub fn defaultLevel() Level {
    if (builtin.sanitize_thread) return .portable;
    return detect();
}

/// The widest level this build has kernels for and the running CPU can execute. Reads the
/// CPU on every call; `level()` caches it.
pub fn detect() Level {
    for (preference) |candidate| {
        if (supported(candidate)) return candidate;
    }
    unreachable; // The portable level is always supported.
}

/// Whether this build has the level's kernels and the running CPU and OS can execute them.
pub fn supported(l: Level) bool {
    if (kernel_table[@intFromEnum(l)] == null) return false;
    if (l == .portable) return true;
    // The comptime branch keeps the x86 CPUID code out of builds for other targets.
    if (build_options.kernels_x86_64) {
        const x86 = cpu.x86Levels();
        return switch (l) {
            .baseline => x86.v2,
            .avx2 => x86.v3,
            .avx512 => x86.v4,
            .avx512_vnni => x86.v4_vnni,
            .avx2_vnni => x86.v3_vnni,
            .neon, .portable => unreachable,
        };
    } else {
        // NEON is part of the aarch64 baseline.
        assert(l == .neon);
        return true;
    }
}

/// For tests and benchmarks: use `l` from now on, in every thread. The CPU must support it.
pub fn forceLevel(l: Level) void {
    assert(supported(l));
    level_chosen.store(@intFromEnum(l), .monotonic);
}

/// The kernels of a supported level, for tests and benchmarks that compare levels side by side.
pub fn kernelsOf(l: Level) Kernels {
    assert(supported(l));
    return kernel_table[@intFromEnum(l)].?;
}

/// The raw kernel of the chosen level, for the hot path: load it once per search and call it
/// per candidate. For `l2sq` it returns the squared distance. For `ip` and `cosine` it returns
/// the dot kernel, and the caller computes the distance as `1 - dot` (cosine vectors are
/// normalized on insert, so cosine is the inner product on unit vectors).
pub fn kernel(metric: Metric) KernelFn {
    const kernels = kernel_table[@intFromEnum(level())].?;
    return switch (metric) {
        .l2sq => kernels.l2sq,
        .ip, .cosine => kernels.dot,
    };
}

/// The f16 counterpart of `kernel` (f16 storage walks the graph on half-precision copies).
pub fn kernelF16(metric: Metric) KernelF16Fn {
    const kernels = kernel_table[@intFromEnum(level())].?;
    return switch (metric) {
        .l2sq => kernels.l2sq_f16,
        .ip, .cosine => kernels.dot_f16,
    };
}

/// The batch form of the walk's kernel for `storage` and `metric` (`dot` for ip and cosine).
pub fn kernelMany(metric: Metric, storage: abi.StorageKind) ManyFn {
    const forms = kernel_table[@intFromEnum(level())].?.many[walkForms(storage)];
    return if (metric == .l2sq) forms.l2sq else forms.dot;
}

/// The batch forms at a forced level, for the tests.
pub fn manyOf(l: Level, storage: abi.StorageKind, metric: Metric) ManyFn {
    const forms = kernelsOf(l).many[walkForms(storage)];
    return if (metric == .l2sq) forms.l2sq else forms.dot;
}

/// Which batch forms walk `storage`: rabitq walks its i8 codes.
fn walkForms(storage: abi.StorageKind) usize {
    return switch (storage) {
        .f32 => 0,
        .f16 => 1,
        .i8, .rabitq => 2,
    };
}

/// The rabitq scan kernel of the chosen level.
pub fn kernelScan() rabitq.ScanFn {
    return kernel_table[@intFromEnum(level())].?.scan;
}

/// The scan kernel of a forced level, for the tests.
pub fn scanOf(l: Level) rabitq.ScanFn {
    return kernelsOf(l).scan;
}

fn portableScan(
    block: [*]const u8,
    tables: [*]const u8,
    groups: usize,
    out: *[rabitq.block_codes]u32,
) callconv(.c) void {
    rabitq.scanPortable(block, tables, groups, out);
}

/// The i8 counterpart (i8 storage walks the graph on coded vectors, kernels/i8.zig).
pub fn kernelI8(metric: Metric) KernelI8Fn {
    const kernels = kernel_table[@intFromEnum(level())].?;
    return switch (metric) {
        .l2sq => kernels.l2sq_i8,
        .ip, .cosine => kernels.dot_i8,
    };
}

/// The squared euclidean distance. Cost: one pass over both vectors.
pub fn l2sq(a: []const f32, b: []const f32) f32 {
    assert(a.len == b.len);
    return kernel(.l2sq)(a.ptr, b.ptr, a.len);
}

/// The inner product. Cost: one pass over both vectors.
pub fn dot(a: []const f32, b: []const f32) f32 {
    assert(a.len == b.len);
    return kernel(.ip)(a.ptr, b.ptr, a.len);
}

/// The distance under `metric`, smaller meaning nearer: `l2sq`, or `1 - dot` for `ip` and
/// `cosine` (whose vectors were normalized on insert).
pub fn distance(metric: Metric, a: []const f32, b: []const f32) f32 {
    return switch (metric) {
        .l2sq => l2sq(a, b),
        .ip, .cosine => 1 - dot(a, b),
    };
}

/// Scales `v` in place to unit length. Returns false, leaving `v` untouched, for a zero vector.
/// Every component must be finite (the FFI layer rejects other vectors as `invalid_vector`).
/// The norm is accumulated in f64: in f32 a vector of large components would overflow to an
/// infinite norm (and be scaled to zeros), and one of subnormal components would underflow
/// to a zero norm. This runs once per insert, so the scalar f64 pass is cheap next to the graph.
pub fn normalize(v: []f32) bool {
    var norm_squared: f64 = 0;
    for (v) |x| {
        assert(std.math.isFinite(x));
        norm_squared += @as(f64, x) * @as(f64, x);
    }
    if (norm_squared == 0) return false;
    const scale = 1.0 / @sqrt(norm_squared);
    for (v) |*x| x.* = @floatCast(@as(f64, x.*) * scale);
    return true;
}

const Op = enum { l2sq, dot };

fn portableL2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return portableSum(f32, .l2sq, a, b, n);
}

fn portableDot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return portableSum(f32, .dot, a, b, n);
}

fn portableL2sqF16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32 {
    return portableSum(f16, .l2sq, a, b, n);
}

fn portableDotF16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32 {
    return portableSum(f16, .dot, a, b, n);
}

fn portableL2sqI8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.l2sq, a, b, i8k.dotWidened(16, a, b, n));
}

fn portableDotI8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.dot, a, b, i8k.dotWidened(16, a, b, n));
}

/// The fallback for targets without kernel objects: one vector accumulator of the target's
/// suggested width and no fused multiply-add, since the target may lack one in hardware.
/// f16 elements are widened to f32 as they are loaded.
fn portableSum(comptime E: type, comptime op: Op, a: [*]const E, b: [*]const E, n: usize) f32 {
    const lanes = std.simd.suggestVectorLength(f32) orelse 1;
    const V = @Vector(lanes, f32);
    var acc: V = @splat(0);
    var i: usize = 0;
    while (n - i >= lanes) : (i += lanes) {
        const xe: @Vector(lanes, E) = a[i..][0..lanes].*;
        const ye: @Vector(lanes, E) = b[i..][0..lanes].*;
        const x: V = if (E == f32) xe else @floatCast(xe);
        const y: V = if (E == f32) ye else @floatCast(ye);
        acc += switch (op) {
            .l2sq => (x - y) * (x - y),
            .dot => x * y,
        };
    }
    var sum = @reduce(.Add, acc);
    while (i < n) : (i += 1) {
        const x: f32 = a[i];
        const y: f32 = b[i];
        sum += switch (op) {
            .l2sq => (x - y) * (x - y),
            .dot => x * y,
        };
    }
    return sum;
}

test "f16 kernels agree with the f32 kernels on the widened values at every level" {
    var prng = std.Random.DefaultPrng.init(0xf16);
    const random = prng.random();
    var a16: [test_dimensions_max + 3]f16 = undefined;
    var b16: [test_dimensions_max + 3]f16 = undefined;
    var a32: [test_dimensions_max + 3]f32 = undefined;
    var b32: [test_dimensions_max + 3]f32 = undefined;
    for (&a16, &b16, &a32, &b32) |*x16, *y16, *x32, *y32| {
        x16.* = @floatCast(random.floatNorm(f32));
        y16.* = @floatCast(random.floatNorm(f32));
        x32.* = x16.*;
        y32.* = y16.*;
    }
    for (preference) |l| {
        if (!supported(l)) continue;
        const k = kernelsOf(l);
        for (test_dimensions) |n| {
            // Offset by one element: the f16 loads must not assume alignment either.
            const want_l2 = k.l2sq(a32[1..].ptr, b32[1..].ptr, n);
            const want_dot = k.dot(a32[1..].ptr, b32[1..].ptr, n);
            const tolerance = 1e-4 * @as(f32, @floatFromInt(n)) + 1e-4;
            try testing.expectApproxEqAbs(
                want_l2,
                k.l2sq_f16(a16[1..].ptr, b16[1..].ptr, n),
                tolerance * @max(1, want_l2),
            );
            try testing.expectApproxEqAbs(
                want_dot,
                k.dot_f16(a16[1..].ptr, b16[1..].ptr, n),
                tolerance * @max(1, @abs(want_dot)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests: every supported level against an f64 reference.

const testing = std.testing;

const test_dimensions = [_]usize{
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    17,
    31,
    64,
    100,
    128,
    384,
    768,
    784,
    1536,
};
const test_dimensions_max = 1536;
/// Room to start a slice at any offset within a 64-byte line.
const test_offset_max = 15;

/// The exact value in f64 (products of f32 are exact in f64 and the f64 sum is far more precise
/// than any f32 kernel) and the sum of the absolute values of the terms, which scales the
/// rounding error any summation order can make.
const Reference = struct { value: f64, magnitude: f64 };

fn reference(op: Op, a: []const f32, b: []const f32) Reference {
    assert(a.len == b.len);
    var result: Reference = .{ .value = 0, .magnitude = 0 };
    for (a, b) |x, y| {
        const term: f64 = switch (op) {
            .l2sq => (@as(f64, x) - y) * (@as(f64, x) - y),
            .dot => @as(f64, x) * y,
        };
        result.value += term;
        result.magnitude += @abs(term);
    }
    return result;
}

const Mismatch = struct { got: f32, want: f64, tolerance: f64 };

/// Checks a kernel result against the reference. The bound is the classical one for recursive
/// or blocked summation in any order (Higham, "Accuracy and Stability of Numerical Algorithms",
/// section 3.1): |got - exact| <= gamma(k) * sum(|term|), gamma(k) = k*u / (1 - k*u), u = 2^-24.
/// Each term passes through at most n - 1 additions, plus one rounding for the product, one
/// for the difference (l2sq) and one spare, hence k = n + 3. Relative tolerance alone fails
/// where products underflow: each subnormal rounding adds at most 2^-150 absolutely, so the
/// absolute floor is n * 2^-149. A dropped element, by contrast, errs by about 1/n of the
/// magnitude, far above gamma(n + 3) ~ n * 6e-8 for every n tested here.
fn checkResult(op: Op, got: f32, a: []const f32, b: []const f32) ?Mismatch {
    const want = reference(op, a, b);
    const n: f64 = @floatFromInt(a.len);
    const u = std.math.pow(f64, 2, -24);
    const k = n + 3;
    const tolerance = k * u / (1 - k * u) * want.magnitude + n * std.math.pow(f64, 2, -149);
    const mismatch: Mismatch = .{ .got = got, .want = want.value, .tolerance = tolerance };
    if (std.math.isNan(got)) return mismatch;
    // An infinity is right only when the rounding error allowed could carry the sum past the
    // largest f32, and then only with the sign of the exact value.
    const max: f64 = std.math.floatMax(f32);
    if (std.math.isInf(got)) {
        const may_overflow = @abs(want.value) + tolerance > max;
        const same_sign = (got > 0) == (want.value > 0);
        return if (may_overflow and same_sign) null else mismatch;
    }
    // Far beyond the f32 range no finite answer is within any tolerance worth the name.
    if (@abs(want.value) > 2 * max) return mismatch;
    return if (@abs(got - want.value) <= tolerance) null else mismatch;
}

/// How the survey fills its vectors: ordinary data and the adversarial cases.
const Fill = enum {
    uniform,
    wide_range,
    zeros,
    huge,
    overflow,
    denormal,
    alternating,
    near_copy,
    identical,
};

fn fillVectors(fill: Fill, random: std.Random, a: []f32, b: []f32) void {
    assert(a.len == b.len);
    for (a, b) |*x, *y| {
        x.*, y.* = fillPair(fill, random, a.len);
    }
    if (fill == .identical) @memcpy(b, a);
    if (fill == .alternating) {
        // Pairs that cancel exactly (up to a small perturbation), against b near one: the dot
        // product is a small difference of large sums.
        var i: usize = 1;
        while (i < a.len) : (i += 2) a[i] = -a[i - 1] + randomSigned(random);
    }
}

fn fillPair(fill: Fill, random: std.Random, n: usize) struct { f32, f32 } {
    const n_float: f32 = @floatFromInt(n);
    return switch (fill) {
        .uniform => .{ randomSigned(random), randomSigned(random) },
        .wide_range, .identical => .{ randomWide(random), randomWide(random) },
        .zeros => .{ 0, 0 },
        .huge => huge: {
            // About 1e18, shrunk for large n so that the sum of squared differences (each at
            // most (2m)^2) stays within a quarter of the f32 range and the result is finite.
            const m = @min(1e18, 0.25 * @sqrt(std.math.floatMax(f32) / n_float));
            break :huge .{ m * randomSigned(random), m * randomSigned(random) };
        },
        // Each difference is at least 4e19, whose square (1.6e39) is beyond the f32 range.
        .overflow => .{ 2e19 + 1e19 * random.float(f32), -2e19 - 1e19 * random.float(f32) },
        .denormal => .{ subnormal(random), subnormal(random) },
        .alternating => .{ 1e6 * randomSigned(random), 1 + 1e-3 * randomSigned(random) },
        .near_copy => near: {
            // Differences lose most of their digits to cancellation.
            const x = 1e4 * randomSigned(random);
            break :near .{ x, x * (1 + 1e-5 * randomSigned(random)) };
        },
    };
}

fn randomSigned(random: std.Random) f32 {
    return random.float(f32) * 2 - 1;
}

/// Magnitudes from 2^-30 to 2^30, so that small terms meet large ones.
fn randomWide(random: std.Random) f32 {
    const exponent = random.intRangeAtMost(i32, -30, 30);
    return std.math.ldexp(randomSigned(random), exponent);
}

fn subnormal(random: std.Random) f32 {
    return std.math.floatMin(f32) * randomSigned(random);
}

const Survey = struct { cases: u32 = 0, mismatches: u32 = 0 };

/// Runs both kernels on every test dimension and fill, from slices at random offsets, and
/// counts the results that `checkResult` rejects. With `log` set each mismatch is printed.
fn survey(kernels: Kernels, seed: u64, log: bool) Survey {
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    var a_buffer: [test_dimensions_max + test_offset_max]f32 align(64) = undefined;
    var b_buffer: [test_dimensions_max + test_offset_max]f32 align(64) = undefined;
    var result: Survey = .{};
    for (test_dimensions) |n| {
        for (std.enums.values(Fill)) |fill| {
            const a_offset = random.uintAtMost(usize, test_offset_max);
            const b_offset = random.uintAtMost(usize, test_offset_max);
            const a = a_buffer[a_offset..][0..n];
            const b = b_buffer[b_offset..][0..n];
            fillVectors(fill, random, a, b);
            for ([_]Op{ .l2sq, .dot }) |op| {
                // The dot product of overflowing vectors has no defined answer (inf - inf).
                if (fill == .overflow and op == .dot) continue;
                const got = switch (op) {
                    .l2sq => kernels.l2sq(a.ptr, b.ptr, n),
                    .dot => kernels.dot(a.ptr, b.ptr, n),
                };
                result.cases += 1;
                const exact_zero_missed = fill == .identical and op == .l2sq and got != 0;
                const mismatch = checkResult(op, got, a, b);
                if (mismatch == null and !exact_zero_missed) continue;
                result.mismatches += 1;
                // The first few say enough; the count and the seed follow from the caller.
                if (log and result.mismatches <= 8) logMismatch(
                    op,
                    fill,
                    n,
                    got,
                    reference(op, a, b).value,
                );
            }
        }
    }
    return result;
}

fn logMismatch(op: Op, fill: Fill, n: usize, got: f32, want: f64) void {
    std.debug.print(
        "mismatch: {s} fill={s} n={d}: got {e}, want {e}\n",
        .{ @tagName(op), @tagName(fill), n, got, want },
    );
}

/// The seed for seeded tests: QUIVER_SEED if set (to replay a failure), else a fresh one.
fn testSeed() u64 {
    const text = std.mem.span(std.c.getenv("QUIVER_SEED") orelse return std.crypto.random.int(u64));
    return std.fmt.parseInt(u64, text, 0) catch |err| {
        std.debug.panic("QUIVER_SEED={s} is not a u64: {s}", .{ text, @errorName(err) });
    };
}

test "distance: every supported level matches the f64 reference on every dimension and fill" {
    const seed = testSeed();
    var levels_tested: u32 = 0;
    for (std.enums.values(Level)) |l| {
        if (!supported(l)) continue;
        const outcome = survey(kernelsOf(l), seed, true);
        levels_tested += 1;
        testing.expect(outcome.cases > 0 and outcome.mismatches == 0) catch |err| {
            std.debug.print(
                "level {s}: {d} of {d} cases wrong; replay with QUIVER_SEED={d}\n",
                .{ @tagName(l), outcome.mismatches, outcome.cases, seed },
            );
            return err;
        };
    }
    try testing.expect(levels_tested >= 1);
}

/// A deliberately broken kernel for the canary: it ignores the last n % 16 elements.
fn tailDroppingDot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return kernel(.ip)(a, b, n - n % 16);
}

fn tailDroppingL2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return kernel(.l2sq)(a, b, n - n % 16);
}

test "distance: canary: the survey catches a kernel that drops its tail" {
    const seed = testSeed();
    const real = kernelsOf(level());
    var broken = real;
    broken.l2sq = &tailDroppingL2sq;
    broken.dot = &tailDroppingDot;
    const outcome = survey(broken, seed, false);
    testing.expect(outcome.mismatches > 0) catch |err| {
        std.debug.print(
            "the checker missed a broken kernel; replay with QUIVER_SEED={d}\n",
            .{seed},
        );
        return err;
    };
}

test "distance: canary: checkResult rejects each kind of wrong answer" {
    var a = [_]f32{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 };
    const b = [_]f32{0.5} ** a.len;
    const want: f32 = @floatCast(reference(.dot, &a, &b).value);
    try testing.expect(checkResult(.dot, want, &a, &b) == null);
    // The tail dropped: the last element is missing.
    try testing.expect(checkResult(.dot, want - 17 * 0.5, &a, &b) != null);
    try testing.expect(checkResult(.dot, std.math.nan(f32), &a, &b) != null);
    try testing.expect(checkResult(.dot, std.math.inf(f32), &a, &b) != null);
    // Overflow: only +inf is right, and NaN (what inf - inf would give) is wrong.
    a[0] = 3e38;
    try testing.expect(checkResult(.l2sq, std.math.inf(f32), &a, &b) == null);
    try testing.expect(checkResult(.l2sq, std.math.nan(f32), &a, &b) != null);
    try testing.expect(checkResult(.l2sq, std.math.floatMax(f32), &a, &b) != null);
}

test "distance: results do not depend on alignment" {
    // Kernels must give bit-identical results for the same data wherever it starts: a
    // difference would mean a misaligned load read the wrong elements.
    const seed = testSeed();
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    var aligned: [2][test_dimensions_max]f32 align(64) = undefined;
    var shifted: [2][test_dimensions_max + test_offset_max]f32 align(64) = undefined;
    for (std.enums.values(Level)) |l| {
        if (!supported(l)) continue;
        const kernels = kernelsOf(l);
        for (test_dimensions) |n| {
            fillVectors(.wide_range, random, aligned[0][0..n], aligned[1][0..n]);
            for ([_]usize{ 1, 2, 3, 5, 7, 15 }) |offset| {
                const a = shifted[0][offset..][0..n];
                const b = shifted[1][test_offset_max - offset ..][0..n];
                @memcpy(a, aligned[0][0..n]);
                @memcpy(b, aligned[1][0..n]);
                const expected_l2sq = kernels.l2sq(&aligned[0], &aligned[1], n);
                const expected_dot = kernels.dot(&aligned[0], &aligned[1], n);
                try testing.expectEqual(expected_l2sq, kernels.l2sq(a.ptr, b.ptr, n));
                try testing.expectEqual(expected_dot, kernels.dot(a.ptr, b.ptr, n));
            }
        }
    }
}

test "distance: the public functions dispatch to the forced level's kernels" {
    const initial = level();
    defer forceLevel(initial);
    const a = [_]f32{ 1, -2, 3, 0.5, 7, 8, 9, 10, 11 };
    const b = [_]f32{ 0.25, 2, -1, 4, 1, 2, 3, 4, 5 };
    for (std.enums.values(Level)) |l| {
        if (!supported(l)) continue;
        forceLevel(l);
        try testing.expectEqual(l, level());
        try testing.expectEqual(kernelsOf(l).l2sq, kernel(.l2sq));
        try testing.expectEqual(kernelsOf(l).dot, kernel(.ip));
        try testing.expectEqual(kernelsOf(l).dot, kernel(.cosine));
        const d = dot(&a, &b);
        try testing.expectEqual(kernelsOf(l).dot(&a, &b, a.len), d);
        try testing.expectEqual(l2sq(&a, &b), distance(.l2sq, &a, &b));
        try testing.expectEqual(1 - d, distance(.ip, &a, &b));
        try testing.expectEqual(1 - d, distance(.cosine, &a, &b));
        try testing.expectEqual(@as(f32, 0), l2sq(&a, &a));
        try testing.expectEqual(@as(f32, 0), l2sq(&.{}, &.{}));
    }
}

test "distance: the dispatcher picks the widest level the CPU reports in /proc/cpuinfo" {
    try testing.expect(supported(detect()));
    for (preference) |candidate| {
        if (candidate == detect()) break;
        try testing.expect(!supported(candidate));
    }
    try testing.expectEqual(defaultLevel(), level());
    if (!builtin.sanitize_thread) try testing.expectEqual(detect(), level());
    // An independent witness: Linux lists a feature only when the OS also enabled its state.
    if (comptime !(builtin.os.tag == .linux and
        build_options.kernels_x86_64)) return error.SkipZigTest;
    const text = std.fs.cwd().readFileAlloc(
        testing.allocator,
        "/proc/cpuinfo",
        1 << 24,
    ) catch |err| {
        std.debug.print(
            "cannot read /proc/cpuinfo ({s}): skipping the cross-check\n",
            .{@errorName(err)},
        );
        return error.SkipZigTest;
    };
    defer testing.allocator.free(text);
    try testing.expectEqual(levelFromCpuinfo(text), detect());
    // Each VNNI level below the top one too: CPUID's answer is Linux's.
    const flags = firstFlagsLine(text);
    const v3 = supported(.avx2);
    try testing.expectEqual(v3 and hasFlags(flags, &.{"avx_vnni"}), supported(.avx2_vnni));
    try testing.expectEqual(
        supported(.avx512) and hasFlags(flags, &.{"avx512_vnni"}),
        supported(.avx512_vnni),
    );
}

fn firstFlagsLine(text: []const u8) []const u8 {
    var lines = std.mem.tokenizeScalar(u8, text, '\n');
    while (lines.next()) |line| {
        if (std.mem.startsWith(u8, line, "flags")) return line;
    }
    return "";
}

/// The x86-64 level that the first "flags" line of /proc/cpuinfo implies. Linux calls LZCNT
/// "abm".
fn levelFromCpuinfo(text: []const u8) Level {
    var lines = std.mem.tokenizeScalar(u8, text, '\n');
    const flags = while (lines.next()) |line| {
        if (std.mem.startsWith(u8, line, "flags")) break line;
    } else return .baseline;
    const v3 = hasFlags(flags, &.{ "avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm" });
    const v4 = hasFlags(flags, &.{ "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl" });
    if (v3 and v4) return if (hasFlags(flags, &.{"avx512_vnni"})) .avx512_vnni else .avx512;
    if (v3 and hasFlags(flags, &.{"avx_vnni"})) return .avx2_vnni;
    if (v3) return .avx2;
    return .baseline;
}

fn hasFlags(line: []const u8, names: []const []const u8) bool {
    for (names) |name| {
        var words = std.mem.tokenizeAny(u8, line, " \t:");
        const found = while (words.next()) |word| {
            if (std.mem.eql(u8, word, name)) break true;
        } else false;
        if (!found) return false;
    }
    return true;
}

test "distance: canary: levelFromCpuinfo reads the flags it needs" {
    const v4 = "flags\t\t: fpu avx avx2 fma bmi1 bmi2 f16c movbe abm " ++
        "avx512f avx512dq avx512cd avx512bw avx512vl\n";
    try testing.expectEqual(Level.avx512, levelFromCpuinfo("processor\t: 0\n" ++ v4));
    try testing.expectEqual(
        Level.avx2,
        levelFromCpuinfo("flags : avx avx2 fma bmi1 bmi2 f16c movbe abm avx512f\n"),
    );
    try testing.expectEqual(
        Level.baseline,
        levelFromCpuinfo("flags : avx avx2 bmi1 bmi2 f16c movbe abm\n"),
    );
}

fn firstCall(out: *Level) void {
    out.* = level();
}

/// Resets the choice and lets every thread make the first call at once.
fn raceFirstCalls(seen: []Level) !void {
    var threads: [8]std.Thread = undefined;
    assert(seen.len <= threads.len);
    level_chosen.store(level_unset, .monotonic);
    var spawned: usize = 0;
    errdefer for (threads[0..spawned]) |thread| thread.join();
    for (threads[0..seen.len], seen) |*thread, *out| {
        thread.* = try std.Thread.spawn(.{}, firstCall, .{out});
        spawned += 1;
    }
    for (threads[0..spawned]) |thread| thread.join();
}

test "distance: concurrent first calls agree on one level without a data race" {
    // ThreadSanitizer (zig build test-tsan) reports a race here if the lazy choice is not atomic.
    const initial = level();
    defer forceLevel(initial);
    for (0..8) |_| {
        var seen: [4]Level = undefined;
        try raceFirstCalls(&seen);
        for (seen) |chosen| try testing.expectEqual(defaultLevel(), chosen);
    }
}

test "distance: normalize scales to unit length and keeps the direction" {
    const seed = testSeed();
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    var original: [test_dimensions_max]f32 = undefined;
    var v: [test_dimensions_max]f32 = undefined;
    // Each output component is the exact scaled value rounded once to f32 (relative error u),
    // so the squared norm is within (1 + u)^2 - 1 < 3u of one.
    const u = std.math.pow(f64, 2, -24);
    for (test_dimensions) |n| {
        for ([_]Fill{ .uniform, .wide_range, .huge, .overflow, .denormal }) |fill| {
            fillVectors(fill, random, original[0..n], v[0..n]);
            @memcpy(v[0..n], original[0..n]);
            try testing.expect(normalize(v[0..n]));
            const norm_squared = reference(.dot, v[0..n], v[0..n]).value;
            testing.expect(@abs(norm_squared - 1) <= 3 * u) catch |err| {
                std.debug.print(
                    "n={d} fill={s}: |v|^2 = {d}; replay with QUIVER_SEED={d}\n",
                    .{ n, @tagName(fill), norm_squared, seed },
                );
                return err;
            };
            // Same direction: the largest component stays the largest, with its sign.
            const i = std.mem.indexOfMax(f32, original[0..n]);
            try testing.expectEqual(i, std.mem.indexOfMax(f32, v[0..n]));
            try testing.expectEqual(std.math.signbit(original[i]), std.math.signbit(v[i]));
        }
    }
    var simple = [_]f32{ 3, -4 };
    try testing.expect(normalize(&simple));
    try testing.expectApproxEqRel(@as(f32, 0.6), simple[0], 1e-7);
    try testing.expectApproxEqRel(@as(f32, -0.8), simple[1], 1e-7);
}

test "distance: normalize reports a zero vector and leaves it unchanged" {
    var v = [_]f32{0} ** 17;
    v[3] = -0.0;
    try testing.expect(!normalize(&v));
    for (v, 0..) |x, i| {
        try testing.expectEqual(@as(u32, if (i == 3) 0x8000_0000 else 0), @as(u32, @bitCast(x)));
    }
    try testing.expect(!normalize(&.{}));
}

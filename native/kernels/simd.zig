//! The distance kernels for one CPU level: f32 and f16 here, i8 in kernels/i8.zig. build.zig
//! compiles this file once per level (x86-64-v4 "avx512", x86-64-v3 "avx2", x86-64-v2 "baseline",
//! aarch64 "neon"), each into its own object, and the suffix in `kernel_options` keeps the symbols
//! of those objects apart. native/kernels/distance.zig declares the symbols and picks one level at
//! run time.
//!
//! This is a leaf (with kernels/i8.zig): it imports nothing else from native/, because each copy
//! is compiled for a different CPU and must not drag in code that the running CPU might not
//! support.
const std = @import("std");
const builtin = @import("builtin");
const kernel_options = @import("kernel_options");
const i8k = @import("i8.zig");
const many = @import("many.zig");
const rabitq = @import("rabitq.zig");

/// Lanes per vector. `std.simd.suggestVectorLength` answers 8 for x86-64-v4, because that
/// model carries `prefer_256_bit` (a hint for the auto-vectorizer, which would otherwise widen
/// short loops to 512 bits and pay a clock penalty on older Intel parts). This kernel is a long,
/// explicit FMA stream, where 512-bit vectors halve the instruction count, so it asks for 16
/// whenever AVX-512 with 512-bit registers is enabled. Without a `min-legal-vector-width`
/// attribute LLVM keeps explicit 512-bit vectors in zmm registers despite the preference
/// (checked with objdump). On the AMD EPYC dev machine 16 lanes ran about 1.8 times as fast
/// as 8 lanes of the same object at d = 784 with the data in L1.
const lanes: comptime_int = lanes: {
    const cpu = builtin.cpu;
    if (cpu.arch == .x86_64 and std.Target.x86.featureSetHasAll(
        cpu.features,
        .{ .avx512f, .evex512 },
    )) {
        break :lanes 16;
    }
    break :lanes std.simd.suggestVectorLength(f32) orelse 1;
};

/// Independent accumulators: a fused multiply-add has a latency of about four cycles and two
/// can issue per cycle, so four chains in flight keep the FMA units busy instead of waiting.
const accumulators = 4;

/// Fused multiply-add only where the hardware has it: on x86-64-v2 `@mulAdd` would become a
/// call into a software fmaf, many times slower than a separate multiply and add.
const has_fma: bool = switch (builtin.cpu.arch) {
    .x86_64 => std.Target.x86.featureSetHas(builtin.cpu.features, .fma),
    .aarch64 => true,
    else => false,
};

const V = @Vector(lanes, f32);

/// Each kernel object is its own compilation, so the default panic handler (stack traces,
/// DWARF parsing) would be linked in once per level. The only checks that can fire here are
/// ReleaseSafe's overflow checks and the asserts, which need no more than a message and a trap.
pub const panic = std.debug.simple_panic;

comptime {
    std.debug.assert(lanes >= 1);
    std.debug.assert(std.math.isPowerOfTwo(lanes));
    std.debug.assert(accumulators == 4); // accumulate() adds the four chains by hand.
    // Hidden: the objects are linked into libquiver, whose export table is ffi/exports.zig alone.
    const prefix = "qv_kernel_" ++ kernel_options.suffix;
    exportPair(f32, l2sq, prefix ++ "_l2sq");
    exportPair(f32, dot, prefix ++ "_dot");
    exportPair(f16, l2sqF16, prefix ++ "_l2sq_f16");
    exportPair(f16, dotF16, prefix ++ "_dot_f16");
    exportPair(u8, l2sqI8, prefix ++ "_l2sq_i8");
    exportPair(u8, dotI8, prefix ++ "_dot_i8");
    @export(&scanCodes, .{ .name = prefix ++ "_rq_scan", .visibility = .hidden });
    // The 64-byte VNNI kernel's tails take i8.zig's EVEX forms, and only the avx512 object
    // may: the avx2 object's kernels run on AVX-VNNI CPUs without AVX-512 (Alder Lake).
    if (vnni_width > 0) std.debug.assert(i8k.evex == (vnni_width == 64));
    // VNNI is in neither x86-64-v4 nor v3: these run only where kernels/distance.zig saw
    // AVX512_VNNI (the avx512 object) or AVX-VNNI (the avx2 object).
    if (vnni_width > 0) {
        exportPair(u8, l2sqI8Vnni, prefix ++ "_l2sq_i8_vnni");
        exportPair(u8, dotI8Vnni, prefix ++ "_dot_i8_vnni");
    }
}

/// Exports `single` as `name` and its batch form (kernels/many.zig) as `name_many`.
fn exportPair(
    comptime E: type,
    comptime single: many.Single(E),
    comptime name: []const u8,
) void {
    @export(&single, .{ .name = name, .visibility = .hidden });
    @export(&many.Many(E, single).run, .{ .name = name ++ "_many", .visibility = .hidden });
}

/// Bytes per `vpdpbusd` in this object: 0 where it has no VNNI kernels.
const vnni_width: comptime_int = if (std.mem.eql(u8, kernel_options.suffix, "avx512"))
    64
else if (std.mem.eql(u8, kernel_options.suffix, "avx2")) 32 else 0;

/// The i8 kernels (i8 storage): arguments point at the codes of two coded vectors, see
/// kernels/i8.zig. The widened kernels take 4 lanes' worth of bytes per step.
fn l2sqI8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.l2sq, a, b, dotCodes(a, b, n));
}

fn dotI8(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.dot, a, b, dotCodes(a, b, n));
}

/// The integer dot product of this object's non-VNNI i8 kernels: `pmaddubsw` on one register
/// (4 bytes per f32 lane) on x86, the portable widening elsewhere.
inline fn dotCodes(a: [*]const u8, b: [*]const u8, n: usize) i64 {
    if (builtin.cpu.arch == .x86_64) return i8k.dotSigned(4 * lanes, a, b, n);
    return i8k.dotWidened(4 * lanes, a, b, n);
}

fn l2sqI8Vnni(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.l2sq, a, b, i8k.dotVnni(vnni_width, a, b, n));
}

fn dotI8Vnni(a: [*]const u8, b: [*]const u8, n: usize) callconv(.c) f32 {
    return i8k.combine(.dot, a, b, i8k.dotVnni(vnni_width, a, b, n));
}

/// Squared euclidean distance of `a[0..n]` and `b[0..n]`. Either may be unaligned.
fn l2sq(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return accumulate(f32, .l2sq, a, b, n);
}

/// Inner product of `a[0..n]` and `b[0..n]`. Either may be unaligned.
fn dot(a: [*]const f32, b: [*]const f32, n: usize) callconv(.c) f32 {
    return accumulate(f32, .dot, a, b, n);
}

/// The same on half-precision vectors (f16 storage): each lane is widened to f32 as it is
/// loaded (one vcvtph2ps per vector where the CPU has F16C) and accumulated in f32.
fn l2sqF16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32 {
    return accumulate(f16, .l2sq, a, b, n);
}

fn dotF16(a: [*]const f16, b: [*]const f16, n: usize) callconv(.c) f32 {
    return accumulate(f16, .dot, a, b, n);
}

const Op = enum { l2sq, dot };

fn accumulate(comptime E: type, comptime op: Op, a: [*]const E, b: [*]const E, n: usize) f32 {
    const block = lanes * accumulators;
    var acc: [accumulators]V = @splat(@splat(0));
    var i: usize = 0;
    while (n - i >= block) : (i += block) {
        inline for (&acc, 0..) |*chain, k| {
            chain.* = term(
                op,
                lanes,
                chain.*,
                load(E, lanes, a, i + k * lanes),
                load(E, lanes, b, i + k * lanes),
            );
        }
    }
    // Fewer than `block` elements remain: up to three more whole vectors, one per chain so
    // that they stay independent.
    inline for (acc[0 .. accumulators - 1]) |*chain| {
        if (n - i >= lanes) {
            chain.* = term(op, lanes, chain.*, load(E, lanes, a, i), load(E, lanes, b, i));
            i += lanes;
        }
    }
    const sum = sumLanes(lanes, (acc[0] + acc[1]) + (acc[2] + acc[3]));
    return sum + tail(E, op, a, b, i, n);
}

/// The last `n - start < lanes` elements: halving vector widths down to four lanes (one step each
/// at most), then at most three scalar steps, so a dimension like 127 costs no long serial
/// chain of scalar FMAs.
fn tail(
    comptime E: type,
    comptime op: Op,
    a: [*]const E,
    b: [*]const E,
    start: usize,
    n: usize,
) f32 {
    std.debug.assert(n - start < lanes);
    var i = start;
    var sum: f32 = 0;
    comptime var width = lanes / 2;
    inline while (width >= 4) : (width /= 2) {
        if (n - i >= width) {
            sum += sumLanes(
                width,
                term(op, width, @splat(0), load(E, width, a, i), load(E, width, b, i)),
            );
            i += width;
        }
    }
    while (i < n) : (i += 1) {
        sum = term(op, 1, @splat(sum), @splat(@as(f32, a[i])), @splat(@as(f32, b[i])))[0];
    }
    return sum;
}

/// One accumulation step on `width`-lane vectors: `acc + x * y` or `acc + (x - y)^2`.
inline fn term(
    comptime op: Op,
    comptime width: comptime_int,
    acc: @Vector(width, f32),
    x: @Vector(width, f32),
    y: @Vector(width, f32),
) @Vector(width, f32) {
    const T = @Vector(width, f32);
    // A square that overflows is +inf and adding +inf to a non-negative sum stays +inf, so
    // l2sq never makes a NaN out of finite inputs; dot can (inf - inf), as in any order.
    const p: T, const q: T = switch (op) {
        .dot => .{ x, y },
        .l2sq => .{ x - y, x - y },
    };
    if (has_fma) return @mulAdd(T, p, q, acc);
    return acc + p * q;
}

inline fn load(
    comptime E: type,
    comptime width: comptime_int,
    p: [*]const E,
    i: usize,
) @Vector(width, f32) {
    // Through an array of E, so the load carries the element's alignment and compiles to an
    // unaligned vector load: callers may pass slices that start anywhere.
    const v: @Vector(width, E) = p[i..][0..width].*;
    if (E == f32) return v;
    return @floatCast(v);
}

/// A pairwise horizontal sum. `@reduce(.Add, ...)` in strict float mode is an ordered,
/// lane-by-lane chain; this tree is log2(width) shuffles and adds and is no less accurate.
/// The recursion is unrolled at compile time.
inline fn sumLanes(comptime width: comptime_int, v: @Vector(width, f32)) f32 {
    if (width == 1) return v[0];
    const half = width / 2;
    const low = @shuffle(f32, v, undefined, std.simd.iota(i32, half));
    const high = @shuffle(
        f32,
        v,
        undefined,
        std.simd.iota(i32, half) + @as(@Vector(half, i32), @splat(half)),
    );
    return sumLanes(half, low + high);
}

/// Bytes per step of the rabitq scan: 64 with AVX-512BW, 32 with AVX2, else 16 (SSSE3 is in
/// x86-64-v2; NEON's `tbl` on aarch64).
const scan_width: comptime_int = switch (builtin.cpu.arch) {
    .x86_64 => if (std.Target.x86.featureSetHasAll(builtin.cpu.features, .{ .avx512bw, .evex512 }))
        64
    else if (std.Target.x86.featureSetHas(builtin.cpu.features, .avx2)) 32 else 16,
    else => 16,
};

const has_avx = builtin.cpu.arch == .x86_64 and
    std.Target.x86.featureSetHas(builtin.cpu.features, .avx);

/// The rabitq storage's FastScan kernel (kernels/rabitq.zig `scanWith`) on this level's byte
/// shuffle.
fn scanCodes(
    block: [*]const u8,
    tables: [*]const u8,
    groups: usize,
    out: *[rabitq.block_codes]u32,
) callconv(.c) void {
    rabitq.scanWith(scan_width, lookup, block, tables, groups, out);
}

/// One 16-entry table lookup per byte, per 16-byte lane (every index is below 16).
const ScanBytes = @Vector(scan_width, u8);

inline fn lookup(table: ScanBytes, index: ScanBytes) ScanBytes {
    const B = ScanBytes;
    if (builtin.cpu.arch == .aarch64) return asm ("tbl %[out].16b, {%[t].16b}, %[i].16b"
        : [out] "=w" (-> B),
        : [t] "w" (table),
          [i] "w" (index),
    );
    if (builtin.cpu.arch != .x86_64) return rabitq.lookupPortable(scan_width, table, index);
    return switch (scan_width) {
        16 => if (has_avx) asm ("vpshufb %[i], %[t], %[out]"
            : [out] "=x" (-> B),
            : [t] "x" (table),
              [i] "x" (index),
        ) else asm ("pshufb %[i], %[out]"
            : [out] "=x" (-> B),
            : [_] "0" (table),
              [i] "x" (index),
        ),
        32 => asm ("vpshufb %[i], %[t], %[out]"
            : [out] "=x" (-> B),
            : [t] "x" (table),
              [i] "x" (index),
        ),
        else => asm ("vpshufb %[i], %[t], %[out]"
            : [out] "=v" (-> B),
            : [t] "v" (table),
              [i] "v" (index),
        ),
    };
}

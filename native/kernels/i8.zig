//! The i8 distance kernels (i8 storage), compiled into each CPU level's kernel object through
//! kernels/simd.zig. A leaf like kernels/simd.zig: it imports nothing from other native files.
//!
//! A coded vector (native/kernels/quantize.zig writes them) is `codes[0..padded(n)]`, i8 values in
//! [-127, 127] zero-padded to a multiple of 64, preceded by 16 bytes of terms:
//!
//!   codes - 16: f32 scale    the vector's own step: x_d = centre_d + scale * code_d (rounded)
//!   codes - 12: f32 term     l2: |x - centre|^2; ip: centre . (x - centre) + |centre|^2 / 2
//!   codes -  8: i32 sum      sum of the codes (the VNNI kernel's bias correction)
//!   codes -  4: u32 unused
//!
//! With c = sum_d a_d b_d over the codes (an exact integer):
//!   l2:  |x - y|^2 = term_x + term_y - 2 scale_x scale_y c
//!   ip:  x . y     = term_x + term_y + scale_x scale_y c
//!
//! The integer dot product is where the time goes. With AVX-512 VNNI, `vpdpbusd` does 64
//! byte multiply-adds per instruction, but multiplies unsigned by signed bytes: the kernel
//! flips the sign bit of one side (a XOR 0x80 = a + 128 as an unsigned byte) and subtracts
//! 128 * sum(b) afterwards; AVX-VNNI has the same instruction on 256-bit registers. Without
//! VNNI, x86 multiplies bytes with `pmaddubsw` (unsigned by signed bytes, pairs added into i16):
//! |a| times b with a's sign moved onto b is the same product, and |a| <= 127 keeps every pair
//! sum (at most 2 * 127 * 127) clear of i16 saturation; `pmaddwd` by ones then widens to i32
//! (`dotSigned`). Other targets widen bytes to i16 and multiply (`dotWidened`).
const std = @import("std");

pub const terms_bytes = 16;
pub const block = 64;

/// Codes are padded to whole 64-byte blocks: no kernel has a tail loop.
pub fn padded(n: usize) usize {
    return std.mem.alignForward(usize, n, block);
}

pub const Formula = enum { l2sq, dot };

/// The distance (l2) or the inner product (dot) of two coded vectors, from their integer dot.
pub inline fn combine(comptime metric: Formula, a: [*]const u8, b: [*]const u8, c: i64) f32 {
    const ta = termsOf(a);
    const tb = termsOf(b);
    const cross = ta.scale * tb.scale * @as(f32, @floatFromInt(c));
    return switch (metric) {
        // Exact norms with a quantized cross term can dip below zero for near-equal vectors.
        .l2sq => @max(0, ta.term + tb.term - 2 * cross),
        .dot => ta.term + tb.term + cross,
    };
}

pub const Terms = struct { scale: f32, term: f32, sum: i32 };

pub inline fn termsOf(codes: [*]const u8) Terms {
    const at = codes - terms_bytes;
    return .{
        .scale = @bitCast(std.mem.readInt(u32, at[0..4], .little)),
        .term = @bitCast(std.mem.readInt(u32, at[4..8], .little)),
        .sum = std.mem.readInt(i32, at[8..12], .little),
    };
}

/// sum_d a_d b_d with VNNI `vpdpbusd`: `width` 64 on 512-bit registers (AVX512_VNNI), 32 on
/// 256-bit ones (AVX-VNNI, VEX-encoded: Alder Lake and later without AVX-512). Only for CPUs
/// that have it.
pub fn dotVnni(comptime width: comptime_int, a: [*]const u8, b: [*]const u8, n: usize) i64 {
    comptime std.debug.assert(width == 32 or width == 64);
    const V = @Vector(width, u8);
    const A = @Vector(width / 4, i32);
    const bias: V = @splat(0x80);
    // Two accumulators: vpdpbusd has a latency of about 4-5 cycles.
    var acc0: A = @splat(0);
    var acc1: A = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    while (end - i >= 2 * width) : (i += 2 * width) {
        acc0 = vpdpbusd(width, acc0, @as(V, a[i..][0..width].*) ^ bias, b[i..][0..width].*);
        acc1 = vpdpbusd(
            width,
            acc1,
            @as(V, a[i + width ..][0..width].*) ^ bias,
            b[i + width ..][0..width].*,
        );
    }
    if (i < end) acc0 = vpdpbusd(
        width,
        acc0,
        @as(V, a[i..][0..width].*) ^ bias,
        b[i..][0..width].*,
    );
    // Every byte pair adds at most 255 * 127 to whichever lane takes it, so any partial sum of
    // 65,536 dimensions (abi.dimensions_max) stays below 2.2e9 < 2^31: the accumulators add
    // and reduce in i32. One i32 reduction instead of two i64 ones (measured: the reductions
    // were a third of this kernel's time at 96 dimensions).
    comptime std.debug.assert(@as(u64, 65536) * 255 * 127 < std.math.maxInt(i32));
    const biased: i64 = @reduce(.Add, acc0 + acc1);
    return biased - 128 * @as(i64, termsOf(b).sum);
}

inline fn vpdpbusd(
    comptime width: comptime_int,
    acc: @Vector(width / 4, i32),
    unsigned: @Vector(width, u8),
    signed: @Vector(width, u8),
) @Vector(width / 4, i32) {
    if (width == 64) return asm ("vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=v" (-> @Vector(16, i32)),
        : [unsigned] "v" (unsigned),
          [signed] "v" (signed),
          [_] "0" (acc),
    );
    // {vex}: the AVX-VNNI encoding, which a CPU without AVX-512 decodes; "x" keeps the operands
    // in ymm0-15, the registers VEX can name.
    return asm ("{vex} vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=x" (-> @Vector(8, i32)),
        : [unsigned] "x" (unsigned),
          [signed] "x" (signed),
          [_] "0" (acc),
    );
}

/// sum_d a_d b_d on x86 without VNNI, `reg` bytes per instruction: 16 (SSSE3, legacy
/// encoding), 32 (AVX2) or 64 (AVX-512BW).
pub fn dotSigned(comptime reg: comptime_int, a: [*]const u8, b: [*]const u8, n: usize) i64 {
    comptime std.debug.assert(reg == 16 or reg == 32 or reg == 64);
    const I = @Vector(reg, i8);
    const A = @Vector(reg / 4, i32);
    const zero: I = @splat(0);
    var acc0: A = @splat(0);
    var acc1: A = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    // A lane gains at most 4 * 127 * 127 per step: i32 holds far more steps than 65,536 bytes make.
    while (i < end) : (i += 2 * reg) {
        inline for (.{ &acc0, &acc1 }, 0..) |acc, half| {
            const x: I = @bitCast(a[i + half * reg ..][0..reg].*);
            const y: I = @bitCast(b[i + half * reg ..][0..reg].*);
            const signed: I = @select(i8, x < zero, zero -% y, y);
            acc.* += widenPairs(reg, maddubs(reg, @abs(x), @bitCast(signed)));
        }
    }
    const W = @Vector(reg / 4, i64);
    return @reduce(.Add, @as(W, acc0)) + @reduce(.Add, @as(W, acc1));
}

/// `pmaddubsw`: u[2j] * s[2j] + u[2j+1] * s[2j+1] for each j, into i16 (saturating).
inline fn maddubs(
    comptime reg: comptime_int,
    u: @Vector(reg, u8),
    s: @Vector(reg, u8),
) @Vector(reg / 2, i16) {
    const Out = @Vector(reg / 2, i16);
    return switch (reg) {
        16 => asm ("pmaddubsw %[s], %[out]"
            : [out] "=x" (-> Out),
            : [_] "0" (u),
              [s] "x" (s),
        ),
        32 => asm ("vpmaddubsw %[s], %[u], %[out]"
            : [out] "=x" (-> Out),
            : [u] "x" (u),
              [s] "x" (s),
        ),
        else => asm ("vpmaddubsw %[s], %[u], %[out]"
            : [out] "=v" (-> Out),
            : [u] "v" (u),
              [s] "v" (s),
        ),
    };
}

/// `pmaddwd` by ones: adjacent i16 pairs added into i32.
inline fn widenPairs(comptime reg: comptime_int, x: @Vector(reg / 2, i16)) @Vector(reg / 4, i32) {
    const Out = @Vector(reg / 4, i32);
    const ones: @Vector(reg / 2, i16) = @splat(1);
    return switch (reg) {
        16 => asm ("pmaddwd %[ones], %[out]"
            : [out] "=x" (-> Out),
            : [_] "0" (x),
              [ones] "x" (ones),
        ),
        32 => asm ("vpmaddwd %[ones], %[x], %[out]"
            : [out] "=x" (-> Out),
            : [x] "x" (x),
              [ones] "x" (ones),
        ),
        else => asm ("vpmaddwd %[ones], %[x], %[out]"
            : [out] "=v" (-> Out),
            : [x] "v" (x),
              [ones] "v" (ones),
        ),
    };
}

/// sum_d a_d b_d on any CPU: `width` bytes at a time widened to i16, multiplied and added in
/// adjacent pairs, accumulated in i32 lanes (the portable and NEON kernels).
pub fn dotWidened(comptime width: comptime_int, a: [*]const u8, b: [*]const u8, n: usize) i64 {
    // Steps must tile the 64-byte padding exactly.
    comptime std.debug.assert(width >= 2 and block % width == 0);
    const half = width / 2;
    var acc: @Vector(half, i32) = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    // Per block pass a lane gains at most 2 * 127^2; i32 lanes hold 2^31 / 32258 > 66,000 passes,
    // more than any dimension allows (65,536 / width).
    while (i < end) : (i += width) {
        const x: @Vector(width, i32) = @as(
            @Vector(width, i16),
            @as(@Vector(width, i8), @bitCast(a[i..][0..width].*)),
        );
        const y: @Vector(width, i32) = @as(
            @Vector(width, i16),
            @as(@Vector(width, i8), @bitCast(b[i..][0..width].*)),
        );
        const p = x * y;
        const even = @shuffle(
            i32,
            p,
            undefined,
            std.simd.iota(i32, half) * @as(@Vector(half, i32), @splat(2)),
        );
        const odd = @shuffle(
            i32,
            p,
            undefined,
            std.simd.iota(i32, half) * @as(@Vector(half, i32), @splat(2)) + @as(
                @Vector(half, i32),
                @splat(1),
            ),
        );
        acc += even + odd;
    }
    return @reduce(.Add, @as(@Vector(half, i64), acc));
}

//! The i8 distance kernels (i8 storage), compiled into each CPU level's kernel object through
//! kernels/simd.zig. A leaf like kernels/simd.zig: it imports nothing from other native files.
//!
//! A coded vector (native/kernels/quantize.zig writes them) is `codes[0..padded(n)]`, i8 values in
//! [-127, 127] zero-padded to a multiple of 16 (a granule), preceded by 16 bytes of terms:
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
const builtin = @import("builtin");

pub const terms_bytes = 16;
pub const granule = 16;

/// Codes are padded with zeros to whole 16-byte granules, and every kernel reads exactly
/// `padded(n)` bytes of each side, never more: a register wider than the rest is not loaded, a
/// narrower step finishes (the bytes after a record's codes may be the next record's).
pub fn padded(n: usize) usize {
    return std.mem.alignForward(usize, n, granule);
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
    // Two accumulators: vpdpbusd has a latency of about 4-5 cycles.
    var acc0: @Vector(width / 4, i32) = @splat(0);
    var acc1: @Vector(width / 4, i32) = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    while (end - i >= 2 * width) : (i += 2 * width) {
        acc0 = vpdpbusd(width, acc0, biased(width, a + i), b[i..][0..width].*);
        acc1 = vpdpbusd(width, acc1, biased(width, a + i + width), b[i + width ..][0..width].*);
    }
    if (end - i >= width) {
        acc0 = vpdpbusd(width, acc0, biased(width, a + i), b[i..][0..width].*);
        i += width;
    }
    // Every byte pair adds at most 255 * 127 to whichever lane takes it, so any partial sum of
    // 65,536 dimensions (abi.dimensions_max) stays below 2.2e9 < 2^31: the accumulators add
    // and reduce in i32. One i32 reduction instead of two i64 ones (measured: the reductions
    // were a third of this kernel's time at 96 dimensions).
    comptime std.debug.assert(@as(u64, 65536) * 255 * 127 < std.math.maxInt(i32));
    // The granules left (fewer than a register's) go on narrower registers of the same ISA,
    // into accumulators of their own (no wait on the main one), added in at the reduction's
    // halving steps.
    var tail8: @Vector(8, i32) = @splat(0);
    if (width == 64 and end - i >= 32) {
        tail8 = vpdpbusd(32, tail8, biased(32, a + i), b[i..][0..32].*);
        i += 32;
    }
    var tail4: @Vector(4, i32) = @splat(0);
    if (end - i >= 16) {
        tail4 = vpdpbusd(16, tail4, biased(16, a + i), b[i..][0..16].*);
        i += 16;
    }
    const lanes8 = if (width == 64) halves(16, acc0 + acc1) + tail8 else acc0 + acc1;
    const sum: i32 = @reduce(.Add, halves(8, lanes8) + tail4);
    std.debug.assert(i == end);
    return @as(i64, sum) - 128 * @as(i64, termsOf(b).sum);
}

/// The low and the high half of `v` added: `n / 2` lanes.
inline fn halves(comptime n: comptime_int, v: @Vector(n, i32)) @Vector(n / 2, i32) {
    const low = std.simd.iota(i32, n / 2);
    const high = low + @as(@Vector(n / 2, i32), @splat(n / 2));
    return @shuffle(i32, v, undefined, low) + @shuffle(i32, v, undefined, high);
}

/// `width` bytes of `a` as unsigned: the sign bit flipped (a + 128).
inline fn biased(comptime width: comptime_int, a: [*]const u8) @Vector(width, u8) {
    const bias: @Vector(width, u8) = @splat(0x80);
    return @as(@Vector(width, u8), a[0..width].*) ^ bias;
}

/// `vpdpbusd` on `width` bytes. 64: AVX512_VNNI on zmm. 32 and 16 come in two encodings: in the
/// AVX-512 object (a 64-byte kernel's tails) the EVEX one of AVX512_VNNI + VL, which every
/// AVX512_VNNI CPU decodes (Ice Lake has no AVX-VNNI); in the AVX2 object the VEX one of
/// AVX-VNNI, which a CPU without AVX-512 decodes ("x" keeps the operands in xmm/ymm0-15, the
/// registers VEX can name). The AVX2 kernel's width is 32, so its 16-byte tail is VEX too.
inline fn vpdpbusd(
    comptime width: comptime_int,
    acc: @Vector(width / 4, i32),
    unsigned: @Vector(width, u8),
    signed: @Vector(width, u8),
) @Vector(width / 4, i32) {
    const Acc = @Vector(width / 4, i32);
    if (width == 64) return asm ("vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=v" (-> Acc),
        : [unsigned] "v" (unsigned),
          [signed] "v" (signed),
          [_] "0" (acc),
    );
    if (evex) return asm ("vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=v" (-> Acc),
        : [unsigned] "v" (unsigned),
          [signed] "v" (signed),
          [_] "0" (acc),
    );
    return asm ("{vex} vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=x" (-> Acc),
        : [unsigned] "x" (unsigned),
          [signed] "x" (signed),
          [_] "0" (acc),
    );
}

/// Whether this copy of the file is compiled for AVX-512 (the avx512 kernel object): its
/// narrower VNNI steps then take the EVEX encoding (its byte multiplies stay VEX, which every
/// AVX-512 CPU decodes).
pub const evex = builtin.cpu.arch == .x86_64 and
    std.Target.x86.featureSetHas(builtin.cpu.features, .avx512vl);

/// Whether this copy may use VEX encodings (AVX): a 16-byte step then takes the VEX form, with no
/// switch between SSE and AVX code inside an AVX kernel.
const vex = builtin.cpu.arch == .x86_64 and
    std.Target.x86.featureSetHas(builtin.cpu.features, .avx);

/// sum_d a_d b_d on x86 without VNNI, `reg` bytes per instruction: 16 (SSSE3, legacy
/// encoding), 32 (AVX2) or 64 (AVX-512BW).
pub fn dotSigned(comptime reg: comptime_int, a: [*]const u8, b: [*]const u8, n: usize) i64 {
    comptime std.debug.assert(reg == 16 or reg == 32 or reg == 64);
    const A = @Vector(reg / 4, i32);
    var acc0: A = @splat(0);
    var acc1: A = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    // A lane gains at most 4 * 127 * 127 per step: i32 holds far more steps than 65,536 bytes make.
    while (end - i >= 2 * reg) : (i += 2 * reg) {
        acc0 += signedStep(reg, a + i, b + i);
        acc1 += signedStep(reg, a + i + reg, b + i + reg);
    }
    if (end - i >= reg) {
        acc0 += signedStep(reg, a + i, b + i);
        i += reg;
    }
    // The granules left go into accumulators of their own, added in at the reduction's halving
    // steps, as in `dotVnni`; the lanes' sums stay within i32 (65,536 * 127 * 127 < 2^31).
    var tail8: @Vector(8, i32) = @splat(0);
    if (reg == 64 and end - i >= 32) {
        tail8 = signedStep(32, a + i, b + i);
        i += 32;
    }
    var tail4: @Vector(4, i32) = @splat(0);
    if (reg > 16 and end - i >= 16) {
        tail4 = signedStep(16, a + i, b + i);
        i += 16;
    }
    const lanes8 = if (reg == 64) halves(16, acc0 + acc1) + tail8 else acc0 + acc1;
    const lanes4 = if (reg == 16) lanes8 else halves(8, lanes8) + tail4;
    std.debug.assert(i == end);
    return @reduce(.Add, lanes4);
}

/// sum a_j b_j over `reg` bytes, in i32 lanes of 4 bytes each.
inline fn signedStep(
    comptime reg: comptime_int,
    a: [*]const u8,
    b: [*]const u8,
) @Vector(reg / 4, i32) {
    const I = @Vector(reg, i8);
    const zero: I = @splat(0);
    const x: I = @bitCast(a[0..reg].*);
    const y: I = @bitCast(b[0..reg].*);
    // AVX-512 has no `vpsignb`: there the sign moves by a compare and a select.
    const signed: I = if (reg == 64) @select(i8, x < zero, zero -% y, y) else signBy(reg, y, x);
    return widenPairs(reg, maddubs(reg, @abs(x), @bitCast(signed)));
}

/// `y` with the sign of `x`: negated where x < 0, zero where x = 0 (`psignb`, one instruction
/// for the compare, flip and subtract it replaces; the zeros cost nothing, as |x| is 0 there).
inline fn signBy(
    comptime reg: comptime_int,
    y: @Vector(reg, i8),
    x: @Vector(reg, i8),
) @Vector(reg, i8) {
    comptime std.debug.assert(reg == 16 or reg == 32);
    const Out = @Vector(reg, i8);
    if (reg == 32 or vex) return asm ("vpsignb %[x], %[y], %[out]"
        : [out] "=x" (-> Out),
        : [y] "x" (y),
          [x] "x" (x),
    );
    return asm ("psignb %[x], %[out]"
        : [out] "=x" (-> Out),
        : [_] "0" (y),
          [x] "x" (x),
    );
}

/// `pmaddubsw`: u[2j] * s[2j] + u[2j+1] * s[2j+1] for each j, into i16 (saturating).
inline fn maddubs(
    comptime reg: comptime_int,
    u: @Vector(reg, u8),
    s: @Vector(reg, u8),
) @Vector(reg / 2, i16) {
    const Out = @Vector(reg / 2, i16);
    if (reg == 16 and vex) return asm ("vpmaddubsw %[s], %[u], %[out]"
        : [out] "=x" (-> Out),
        : [u] "x" (u),
          [s] "x" (s),
    );
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
    if (reg == 16 and vex) return asm ("vpmaddwd %[ones], %[x], %[out]"
        : [out] "=x" (-> Out),
        : [x] "x" (x),
          [ones] "x" (ones),
    );
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
    // Its tails are one step of 32 and one of 16: wider steps would leave more than they take.
    comptime std.debug.assert(width >= 2 and width <= 64 and std.math.isPowerOfTwo(width));
    const end = padded(n);
    var i: usize = 0;
    // Per step a lane gains at most 2 * 127^2; i32 lanes hold 2^31 / 32258 > 66,000 steps, more
    // than any dimension allows (65,536 / width).
    var acc: @Vector(width / 2, i32) = @splat(0);
    while (end - i >= width) : (i += width) acc += widenedStep(width, a + i, b + i);
    var sum: i64 = @reduce(.Add, @as(@Vector(width / 2, i64), acc));
    // Granules are 16 bytes: a wider step leaves at most one 32- and one 16-byte step.
    inline for (.{ 32, 16 }) |w| {
        if (w < width and end - i >= w) {
            sum += @reduce(.Add, @as(@Vector(w / 2, i64), widenedStep(w, a + i, b + i)));
            i += w;
        }
    }
    std.debug.assert(i == end);
    return sum;
}

/// sum a_j b_j over `width` bytes widened to i16, multiplied, adjacent pairs added into i32.
inline fn widenedStep(
    comptime width: comptime_int,
    a: [*]const u8,
    b: [*]const u8,
) @Vector(width / 2, i32) {
    const half = width / 2;
    const x: @Vector(width, i32) = @as(
        @Vector(width, i16),
        @as(@Vector(width, i8), @bitCast(a[0..width].*)),
    );
    const y: @Vector(width, i32) = @as(
        @Vector(width, i16),
        @as(@Vector(width, i8), @bitCast(b[0..width].*)),
    );
    const p = x * y;
    const evens = std.simd.iota(i32, half) * @as(@Vector(half, i32), @splat(2));
    const even = @shuffle(i32, p, undefined, evens);
    const odd = @shuffle(i32, p, undefined, evens + @as(@Vector(half, i32), @splat(1)));
    return even + odd;
}

//! The i8 distance kernels (i8 storage), compiled into each CPU level's kernel object through
//! kernels.zig. A leaf like kernels.zig: it imports nothing from other native files.
//!
//! A coded vector (native/quantize.zig writes them) is `codes[0..padded(n)]`, i8 values in
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
//! 128 * sum(b) afterwards. Without VNNI, bytes are widened to i16 and `vpmaddwd` multiplies and
//! adds pairs (LLVM selects it from the pairwise pattern in `dotWidened`).
const std = @import("std");

pub const terms_bytes = 16;
pub const block = 64;

/// Codes are padded to whole 64-byte blocks: no kernel has a tail loop.
pub fn padded(n: usize) usize {
    return std.mem.alignForward(usize, n, block);
}

pub const Metric = enum { l2sq, dot };

/// The distance (l2) or the inner product (dot) of two coded vectors, from their integer dot.
pub inline fn combine(comptime metric: Metric, a: [*]const u8, b: [*]const u8, c: i64) f32 {
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

/// sum_d a_d b_d with VNNI: `vpdpbusd` on 512-bit registers. Only for CPUs with AVX512_VNNI.
pub fn dotVnni(a: [*]const u8, b: [*]const u8, n: usize) i64 {
    const V = @Vector(64, u8);
    const bias: V = @splat(0x80);
    // Two accumulators: vpdpbusd has a latency of about 4-5 cycles.
    var acc0: @Vector(16, i32) = @splat(0);
    var acc1: @Vector(16, i32) = @splat(0);
    const end = padded(n);
    var i: usize = 0;
    while (end - i >= 2 * block) : (i += 2 * block) {
        acc0 = vpdpbusd(acc0, @as(V, a[i..][0..block].*) ^ bias, b[i..][0..block].*);
        acc1 = vpdpbusd(acc1, @as(V, a[i + block ..][0..block].*) ^ bias, b[i + block ..][0..block].*);
    }
    if (i < end) acc0 = vpdpbusd(acc0, @as(V, a[i..][0..block].*) ^ bias, b[i..][0..block].*);
    // Lanes hold at most 16 products of 255 * 127 per block pass; summed in i64 at the end.
    const biased = @reduce(.Add, @as(@Vector(16, i64), acc0)) + @reduce(.Add, @as(@Vector(16, i64), acc1));
    return biased - 128 * @as(i64, termsOf(b).sum);
}

inline fn vpdpbusd(acc: @Vector(16, i32), unsigned: @Vector(64, u8), signed: @Vector(64, u8)) @Vector(16, i32) {
    return asm ("vpdpbusd %[signed], %[unsigned], %[acc]"
        : [acc] "=v" (-> @Vector(16, i32)),
        : [unsigned] "v" (unsigned),
          [signed] "v" (signed),
          [_] "0" (acc),
    );
}

/// sum_d a_d b_d on any CPU: `width` bytes at a time widened to i16, multiplied and added in
/// adjacent pairs (one `pmaddwd`), accumulated in i32 lanes.
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
        const x: @Vector(width, i32) = @as(@Vector(width, i16), @as(@Vector(width, i8), @bitCast(a[i..][0..width].*)));
        const y: @Vector(width, i32) = @as(@Vector(width, i16), @as(@Vector(width, i8), @bitCast(b[i..][0..width].*)));
        const p = x * y;
        const even = @shuffle(i32, p, undefined, std.simd.iota(i32, half) * @as(@Vector(half, i32), @splat(2)));
        const odd = @shuffle(i32, p, undefined, std.simd.iota(i32, half) * @as(@Vector(half, i32), @splat(2)) + @as(@Vector(half, i32), @splat(1)));
        acc += even + odd;
    }
    return @reduce(.Add, @as(@Vector(half, i64), acc));
}

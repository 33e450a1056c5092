//! Scalar quantization for i8 storage: a vector x becomes 8-bit codes around a per-dimension
//! centre, with its own scale, so that the graph walk reads a quarter of the bytes and runs on
//! integer SIMD (kernels/i8.zig has the coded format and the distance formulas).
//!
//!   r = x - centre,  scale = max_d |r_d| / 127,  code_d = round(r_d / scale)
//!
//! Each vector's scale is its own, so no value is ever clipped and no range has to be guessed
//! before the data is seen: an outlier costs precision in its own codes only. The centre is the
//! part trained on the data (the mean of the first vectors added, or given by the caller); it
//! makes the codes spend their bits on what distinguishes vectors rather than on an offset they
//! share. Codes only steer the walk: results are reranked on the exact f32 vectors.
const std = @import("std");
const assert = std.debug.assert;
const i8k = @import("i8.zig");
const distance = @import("distance.zig");
const abi = @import("../abi.zig");

pub const Formula = i8k.Formula;

/// Writes the coded form of `x` to `codes` (terms at `codes - 16`, codes padded with zeros to a
/// multiple of 16, kernels/i8.zig `padded`). `x` is the stored vector (already normalized under
/// cosine).
pub fn encode(metric: Formula, x: []const f32, centre: []const f32, codes: [*]u8) void {
    assert(x.len == centre.len);
    const max = maxDeviation(x, centre);
    // A vector equal to the centre has all-zero codes; any scale then serves. So does one within
    // a subnormal step of it, whose inverse scale would overflow (0 * inf is NaN).
    const scale: f32 = if (max / 127.0 >= std.math.floatMin(f32)) max / 127.0 else 1.0;
    const inverse = 1.0 / scale;
    var sum: i32 = 0;
    var norm: f64 = 0; // |x - centre|^2
    var along: f64 = 0; // centre . (x - centre)
    var centre_norm: f64 = 0; // |centre|^2
    for (x, centre, 0..) |v, c, d| {
        const r = v - c;
        const code: i8 = @intFromFloat(std.math.clamp(@round(r * inverse), -127, 127));
        codes[d] = @bitCast(code);
        sum += code;
        norm += @as(f64, r) * r;
        along += @as(f64, c) * r;
        centre_norm += @as(f64, c) * c;
    }
    @memset(codes[x.len..i8k.padded(x.len)], 0);
    const term: f64 = switch (metric) {
        .l2sq => norm,
        .dot => along + centre_norm / 2,
    };
    const terms = codes - i8k.terms_bytes;
    std.mem.writeInt(u32, terms[0..4], @bitCast(scale), .little);
    std.mem.writeInt(u32, terms[4..8], @bitCast(@as(f32, @floatCast(term))), .little);
    std.mem.writeInt(i32, terms[8..12], sum, .little);
    std.mem.writeInt(u32, terms[12..16], 0, .little);
}

/// max_d |x_d - centre_d| (0 for no dimensions), 16 lanes at a time. A maximum is exact in any
/// order, so this equals the scalar loop bit for bit; the scalar loop's NaN-aware `@max` kept
/// LLVM from vectorizing it, and it was half the time of coding a query (measured at 784
/// dimensions). Inputs are finite (validated on the way in).
fn maxDeviation(x: []const f32, centre: []const f32) f32 {
    assert(x.len == centre.len);
    const lanes = 16;
    const V = @Vector(lanes, f32);
    var acc: V = @splat(0);
    var i: usize = 0;
    while (i + lanes <= x.len) : (i += lanes) {
        const v: V = x[i..][0..lanes].*;
        const c: V = centre[i..][0..lanes].*;
        acc = @max(acc, @abs(v - c));
    }
    var max: f32 = @reduce(.Max, acc);
    while (i < x.len) : (i += 1) max = @max(max, @abs(x[i] - centre[i]));
    assert(max >= 0);
    return max;
}

/// The mean of `count` vectors of `centre.len` dimensions: the trained centre. With `unit`,
/// of the vectors scaled to unit length (cosine stores them so).
pub fn mean(vectors: []const f32, count: usize, centre: []f32, unit: bool) void {
    assert(count > 0 and vectors.len == count * centre.len);
    const d = centre.len;
    @memset(centre, 0);
    const weight = 1.0 / @as(f64, @floatFromInt(count));
    for (0..count) |i| {
        const v = vectors[i * d ..][0..d];
        var scale = weight;
        if (unit) {
            var norm: f64 = 0;
            for (v) |x| norm += @as(f64, x) * x;
            if (norm > 0) scale /= @sqrt(norm);
        }
        for (centre, v) |*c, x| c.* += @floatCast(x * scale);
    }
}

/// A coded vector in its own buffer, aligned like a record's, for tests and queries.
pub const Coded = struct {
    buffer: []align(64) u8,

    /// The buffer's size for `dimensions`: a line for the terms (at its end), then the codes.
    pub fn bytes(dimensions: usize) usize {
        return 64 + i8k.padded(dimensions);
    }

    pub fn init(gpa: std.mem.Allocator, dimensions: usize) !Coded {
        const buffer = try gpa.alignedAlloc(u8, 64, bytes(dimensions));
        return .{ .buffer = buffer };
    }

    pub fn deinit(self: Coded, gpa: std.mem.Allocator) void {
        gpa.free(self.buffer);
    }

    /// The codes (the terms sit in the 16 bytes before, inside the buffer).
    pub fn codes(self: Coded) [*]u8 {
        return self.buffer.ptr + 64;
    }
};

test "quantize: i8 kernels at every level agree with each other and track the exact distance" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(0x18);
    const random = prng.random();
    const dimensions = [_]usize{
        1,
        2,
        3,
        7,
        8,
        15,
        16,
        17,
        31,
        33,
        48,
        63,
        64,
        65,
        80,
        96,
        100,
        112,
        144,
        128,
        384,
        768,
        784,
        1536,
    };
    for (dimensions) |d| {
        const x = try gpa.alloc(f32, d);
        defer gpa.free(x);
        const y = try gpa.alloc(f32, d);
        defer gpa.free(y);
        const centre = try gpa.alloc(f32, d);
        defer gpa.free(centre);
        // A line past the codes, filled with junk after each encode: the kernels must read
        // exactly padded(d) bytes (a record's codes can end where the next record begins).
        const a = Coded{ .buffer = try gpa.alignedAlloc(u8, 64, Coded.bytes(d) + 64) };
        defer a.deinit(gpa);
        const b = Coded{ .buffer = try gpa.alignedAlloc(u8, 64, Coded.bytes(d) + 64) };
        defer b.deinit(gpa);
        for (0..20) |round| {
            for (x, y, centre) |*u, *v, *c| {
                c.* = if (round % 2 == 0) 0 else random.float(f32) * 4 - 2;
                u.* = c.* + random.floatNorm(f32);
                v.* = c.* + random.floatNorm(f32);
            }
            if (round == 3) @memcpy(y, x); // identical vectors: distance near 0
            if (round == 5) @memcpy(x, centre); // a vector at the centre: all-zero codes
            inline for (.{ .l2sq, .ip }) |metric| {
                const m: Formula = if (metric == .l2sq) .l2sq else .dot;
                encode(m, x, centre, a.codes());
                encode(m, y, centre, b.codes());
                for ([_][*]u8{ a.codes(), b.codes() }, [_]u8{ 0x5a, 0xa7 }) |codes, junk| {
                    @memset(codes[i8k.padded(d)..][0..64], junk);
                }
                var integer: i64 = 0;
                for (0..d) |j| {
                    const u: i8 = @bitCast(a.codes()[j]);
                    const v: i8 = @bitCast(b.codes()[j]);
                    integer += @as(i64, u) * v;
                }
                const want = i8k.combine(m, a.codes(), b.codes(), integer);
                var exact: f64 = 0;
                var norms: f64 = 0;
                for (x, y) |u, v| {
                    exact += if (metric == .l2sq) (@as(f64, u) - v) * (@as(
                        f64,
                        u,
                    ) - v) else @as(f64, u) * v;
                    norms += @as(f64, u) * u + @as(f64, v) * v;
                }
                var reference: ?f32 = null;
                for (std.enums.values(distance.Level)) |level| {
                    if (!distance.supported(level)) continue;
                    const kernels = distance.kernelsOf(level);
                    const k = if (metric == .l2sq) kernels.l2sq_i8 else kernels.dot_i8;
                    const got = k(a.codes(), b.codes(), d);
                    // Every level computes the same integer dot product: bit-identical results.
                    try std.testing.expectEqual(want, got);
                    if (reference) |r| try std.testing.expectEqual(r, got) else reference = got;
                    // The quantization error: each code is off by at most half a step, so the
                    // error is bounded by the steps times the norms (a loose, sound bound).
                    const ta = i8k.termsOf(a.codes());
                    const tb = i8k.termsOf(b.codes());
                    const bound = (ta.scale + tb.scale) * @sqrt(
                        @as(f32, @floatFromInt(d)),
                    ) * @as(f32, @floatCast(@sqrt(norms) + 1)) + 1e-3;
                    try std.testing.expect(@abs(got - @as(f32, @floatCast(exact))) <= bound);
                }
            }
        }
    }
}

test "quantize: the kernels read the codes, not only the terms (canary)" {
    // Two vectors with the same terms but different codes must get different distances.
    const gpa = std.testing.allocator;
    const a = try Coded.init(gpa, 64);
    defer a.deinit(gpa);
    const b = try Coded.init(gpa, 64);
    defer b.deinit(gpa);
    var x: [64]f32 = undefined;
    var y: [64]f32 = undefined;
    const centre: [64]f32 = @splat(0);
    for (&x, &y, 0..) |*u, *v, i| {
        u.* = if (i % 2 == 0) 1 else -1;
        v.* = if (i % 2 == 0) -1 else 1;
    }
    encode(.l2sq, &x, &centre, a.codes());
    encode(.l2sq, &y, &centre, b.codes());
    for (std.enums.values(distance.Level)) |level| {
        if (!distance.supported(level)) continue;
        const kernels = distance.kernelsOf(level);
        // |x - y|^2 = 64 * 4 exactly: codes are +-127 at scale 1/127.
        try std.testing.expectApproxEqAbs(
            @as(f32, 256),
            kernels.l2sq_i8(a.codes(), b.codes(), 64),
            1e-3,
        );
        try std.testing.expectApproxEqAbs(
            @as(f32, 0),
            kernels.l2sq_i8(a.codes(), a.codes(), 64),
            1e-3,
        );
    }
    encode(.dot, &x, &centre, a.codes());
    encode(.dot, &y, &centre, b.codes());
    for (std.enums.values(distance.Level)) |level| {
        if (!distance.supported(level)) continue;
        try std.testing.expectApproxEqAbs(
            @as(f32, -64),
            distance.kernelsOf(level).dot_i8(a.codes(), b.codes(), 64),
            1e-3,
        );
    }
}

test "quantize: the centre is the mean, and encoding around it round-trips within half a step" {
    const vectors = [_]f32{ 1, 10, 3, 20, 5, 30 };
    var centre: [2]f32 = undefined;
    mean(&vectors, 3, &centre, false);
    try std.testing.expectApproxEqAbs(@as(f32, 3), centre[0], 1e-5);
    try std.testing.expectApproxEqAbs(@as(f32, 20), centre[1], 1e-5);
    centre = .{ 3, 20 };
    const gpa = std.testing.allocator;
    const coded = try Coded.init(gpa, 2);
    defer coded.deinit(gpa);
    const x = [_]f32{ 4, 12.5 };
    encode(.l2sq, &x, &centre, coded.codes());
    const terms = i8k.termsOf(coded.codes());
    try std.testing.expectApproxEqAbs(@as(f32, 7.5 / 127.0), terms.scale, 1e-7);
    const c0: i8 = @bitCast(coded.codes()[0]);
    const c1: i8 = @bitCast(coded.codes()[1]);
    try std.testing.expectEqual(@as(i8, -127), c1);
    try std.testing.expect(
        @abs(3 + terms.scale * @as(f32, @floatFromInt(c0)) - 4) <= terms.scale / 2,
    );
    try std.testing.expectEqual(@as(i32, c0) + c1, terms.sum);
    // Within a subnormal step of the centre: zero codes, not the NaN of 0 * inf clamped to 127.
    const subnormal = [_]f32{ 1e-45, -1e-45 };
    encode(.l2sq, &subnormal, &.{ 0, 0 }, coded.codes());
    try std.testing.expectEqualSlices(u8, &.{ 0, 0 }, coded.codes()[0..2]);
    try std.testing.expectApproxEqAbs(@as(f32, 1 + 7.5 * 7.5), terms.term, 1e-4);
    for (coded.codes()[2..i8k.padded(2)]) |byte| try std.testing.expectEqual(@as(u8, 0), byte);
}

test "quantize: maxDeviation equals the scalar maximum at every length" {
    var prng = std.Random.DefaultPrng.init(0x9d);
    const random = prng.random();
    var x: [70]f32 = undefined;
    var c: [70]f32 = undefined;
    for (0..x.len + 1) |n| {
        for (x[0..n], c[0..n]) |*v, *w| {
            v.* = random.floatNorm(f32);
            w.* = random.floatNorm(f32);
        }
        var want: f32 = 0;
        for (x[0..n], c[0..n]) |v, w| want = @max(want, @abs(v - w));
        try std.testing.expectEqual(want, maxDeviation(x[0..n], c[0..n]));
    }
}

test "quantize: every batch kernel equals its kernel, neighbour by neighbour, at every level" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(0x3a1);
    const random = prng.random();
    const count = 37;
    inline for (.{ 1, 15, 96, 100, 784 }) |d| {
        // Records of a stride that is not a multiple of the vector, vectors at an offset into
        // them (as a level-0 record holds its walked vector), i8 codes with their terms before.
        const offset = 80;
        const stride = 64 + std.mem.alignForward(usize, offset + 4 * d, 64);
        const base = try gpa.alignedAlloc(u8, 64, stride * count);
        defer gpa.free(base);
        const query = try gpa.alignedAlloc(u8, 64, 64 + 4 * std.mem.alignForward(usize, d, 64));
        defer gpa.free(query);
        const x = try gpa.alloc(f32, d);
        defer gpa.free(x);
        const centre = try gpa.alloc(f32, d);
        defer gpa.free(centre);
        @memset(centre, 0.25);
        var slots: [24]u32 = undefined;
        for (&slots) |*s| s.* = random.uintLessThan(u32, count); // repeats allowed
        var got: [slots.len]f32 = undefined;
        inline for (.{ abi.StorageKind.f32, abi.StorageKind.f16, abi.StorageKind.i8 }) |kind| {
            inline for (.{ abi.Metric.l2sq, abi.Metric.ip }) |metric| {
                const formula: Formula = if (metric == .l2sq) .l2sq else .dot;
                for (0..count + 1) |r| {
                    for (x) |*v| v.* = random.floatNorm(f32);
                    const at: [*]u8 = if (r == count) query.ptr + 64 else base.ptr + r * stride +
                        offset;
                    switch (kind) {
                        .f32 => @memcpy(@as([*]f32, @ptrCast(@alignCast(at)))[0..d], x),
                        .f16 => for (@as([*]f16, @ptrCast(@alignCast(at)))[0..d], x) |*h, v| {
                            h.* = @floatCast(v);
                        },
                        .i8 => encode(formula, x, centre, at),
                        // rabitq walks i8 codes: its batch forms are i8's, tested above.
                        .rabitq => comptime unreachable,
                    }
                }
                for (std.enums.values(distance.Level)) |level| {
                    if (!distance.supported(level)) continue;
                    const kernels = distance.kernelsOf(level);
                    const many = distance.manyOf(level, kind, metric);
                    @memset(&got, std.math.nan(f32)); // a distance not written stays NaN
                    many(query.ptr + 64, base.ptr + offset, stride, &slots, slots.len, d, &got);
                    for (slots, got) |slot, g| {
                        const b = base.ptr + slot * stride + offset;
                        const q = query.ptr + 64;
                        const want = switch (kind) {
                            .f32 => (if (metric == .l2sq) kernels.l2sq else kernels.dot)(
                                @ptrCast(@alignCast(q)),
                                @ptrCast(@alignCast(b)),
                                d,
                            ),
                            .f16 => (if (metric == .l2sq) kernels.l2sq_f16 else kernels.dot_f16)(
                                @ptrCast(@alignCast(q)),
                                @ptrCast(@alignCast(b)),
                                d,
                            ),
                            .i8 => (if (metric == .l2sq) kernels.l2sq_i8 else kernels.dot_i8)(
                                q,
                                b,
                                d,
                            ),
                            .rabitq => comptime unreachable,
                        };
                        try std.testing.expectEqual(want, g);
                    }
                }
            }
        }
    }
}

//! RaBitQ 1-bit codes (Gao and Long, SIGMOD 2024) of graph edges, the neighbour codes that
//! rabitq storage keeps inline in every level-0 record (storage/layout.zig, hnsw/codes.zig), and
//! their FastScan kernel.
//!
//! rabitq storage keeps every vector as i8 codes of P x, where P is a seeded random orthogonal
//! map (`rotate`: sign flips and normalized Walsh-Hadamard transforms, O(D log D), over the
//! vector zero-padded to D = `padded(d)` dimensions); distances are those of the unrotated
//! vectors, as P keeps norms and inner products. Node u's record codes each neighbour j by the
//! edge r = x̃_j - x̃_u (x̃: the dequantized i8 vector), as SymphonyQG does: the sign bit of
//! each component of r, and four factors (`Factors`). Coding the edge rather than the vector
//! keeps |r| (a neighbour distance) small, and with it the estimate's error. With x̄ the bits as
//! a unit vector ((2b - 1) / sqrt(D)) and o = r / |r|, for the query residual z = P q - x̃_u:
//!
//!   <r, z> ≈ |r| <x̄, z> / <x̄, o>, within |r| |z| sqrt(1 - <x̄, o>^2) / (<x̄, o> sqrt(D - 1))
//!   times a small constant, with high probability (RaBitQ's bound);
//!   l2:  |q - x_j|^2 = d(q, u) + |r|^2 - 2 <r, z>
//!   dot: 1 - <q, x_j> = d(q, u) - <r, x_u> - <r, z>, where -<r, x_u> = (|x_u|^2 - |x_j|^2 +
//!        |r|^2) / 2 from the exact norms: the terms are local to the edge, never the size of
//!        the vectors themselves (unit vectors sharing a direction differ by far less than
//!        their quantization error times their length)
//!
//! A search quantizes w = P q - P c to 6 bits per component once and turns it into a table per
//! group of 4 dimensions (`prepareQuery`): the sum of w's quantized components under each
//! 4-bit nibble of code bits; <2b - 1, z> = <2b - 1, w> - k, with k an edge factor. `scan` adds
//! the table entries of 32 codes at once: with a block's codes transposed by nibble, a 16-entry
//! lookup is one byte shuffle, as in FAISS's PQ fast-scan and RaBitQ's FastScan.
//!
//! storage/layout.zig sizes records from its own copy of the format's constants (storage/ may
//! not import kernels/); hnsw/codes.zig checks at compile time that the two agree.
//!
//! This is a leaf like kernels/i8.zig: kernels/simd.zig imports it into every CPU level's object.
const std = @import("std");
const assert = std.debug.assert;

/// Codes are padded to a multiple of this many dimensions (whole u64 words of bits).
pub const dims_granule: u32 = 64;
/// Rounds of the rotation: each flips signs and transforms the leading and the trailing
/// power-of-two span, so that every dimension mixes with every other (twice when D is a power
/// of two).
pub const rounds: u32 = 3;
/// Codes scored per `scan` call: one FastScan block.
pub const block_codes: u32 = 32;
/// Query components are quantized to this many bits, so that a table entry (4 of them) fits a
/// byte: 4 * 63 = 252 (and signed, 4 * 31 either side of 124).
pub const query_bits: u32 = 6;
const query_levels: f32 = (1 << query_bits) - 1;
/// Groups `scan` adds in u16 lanes before it widens (256 * 252 < 65536).
pub const groups_per_flush: u32 = 256;
/// RaBitQ's epsilon_0: the bound `bound_scale` * err * |z| holds with probability about
/// 1 - 2 exp(-c * 1.9^2). A walk subtracts a smaller multiple (hnsw/search.zig): it wants the
/// likely distance, not a certain bound, and the exact rerank catches what it misranks.
pub const bound_scale: f32 = 1.9;

pub fn padded(dimensions: u32) u32 {
    return std.mem.alignForward(u32, dimensions, dims_granule);
}

/// The span each Walsh-Hadamard transform of `rotate` covers.
pub fn spanOf(padded_dims: u32) u32 {
    return std.math.floorPowerOfTwo(u32, padded_dims);
}

/// Bytes of the sign masks `rotate` reads (two per round, a bit per padded dimension).
pub fn signBytes(padded_dims: u32) u32 {
    return rounds * 2 * padded_dims / 8;
}

/// Bytes of a query's tables: 16 per group of 4 dimensions.
pub fn tableBytes(padded_dims: u32) u32 {
    return padded_dims / 4 * 16;
}

/// Bytes of one block of `block_codes` neighbour codes: the transposed nibbles (16 bytes per
/// group), then each factor for the 32 codes in turn.
pub fn blockBytes(padded_dims: u32) u32 {
    return tableBytes(padded_dims) + block_codes * @sizeOf(Factors);
}

/// The terms of an edge's estimate: distance ≈ d(q, u) + `add` + `mul` * <2b - 1, z>, within
/// `err` * |z| * `bound_scale` (l2sq: |r|^2 and -2 |r| / (sqrt(D) <x̄, o>); dot: -<r, x_u> and
/// half that).
pub const Factors = extern struct {
    add: f32,
    mul: f32,
    err: f32,
};

/// A neighbour whose code is unknown (its id lay beyond the writer's mapping): an estimate of
/// minus infinity, so the walk always computes its distance; rewritten by the next write of
/// the list.
pub const unknown = Factors{ .add = -std.math.inf(f32), .mul = 0, .err = 0 };

pub const Formula = enum { l2sq, dot };

/// SplitMix64: the sign masks are a pure function of the seed, written once into the index
/// file (so a later change of Zig's PRNGs cannot change a stored rotation).
pub fn fillSigns(seed: u64, out: []u8) void {
    var state = seed ^ 0x5241_4249_5451_0001;
    var i: usize = 0;
    while (i < out.len) : (i += 8) {
        state +%= 0x9E37_79B9_7F4A_7C15;
        var z = state;
        z = (z ^ (z >> 30)) *% 0xBF58_476D_1CE4_E5B9;
        z = (z ^ (z >> 27)) *% 0x94D0_49BB_1331_11EB;
        z ^= z >> 31;
        const bytes = std.mem.toBytes(std.mem.nativeToLittle(u64, z));
        const n = @min(8, out.len - i);
        @memcpy(out[i .. i + n], bytes[0..n]);
    }
}

/// Negates the components whose bit is set in `mask`, 16 at a time without a branch (a
/// data-dependent branch per component mispredicted half the time).
fn flip(x: []f32, mask: []const u8) void {
    assert(x.len % 16 == 0);
    const V = @Vector(16, f32);
    var i: usize = 0;
    while (i < x.len) : (i += 16) {
        const word = std.mem.readInt(u16, mask[i / 8 ..][0..2], .little);
        const bits: @Vector(16, bool) = @bitCast(word);
        const v: V = x[i..][0..16].*;
        x[i..][0..16].* = @select(f32, bits, -v, v);
    }
}

/// The normalized Walsh-Hadamard transform of `x` (a power-of-two length), in place.
fn hadamard(x: []f32) void {
    const n = x.len;
    assert(std.math.isPowerOfTwo(n));
    assert(n >= 8);
    // The first three stages (spans 1, 2, 4) inside each run of 8, by lane shuffles.
    {
        const W = @Vector(8, f32);
        var i: usize = 0;
        while (i < n) : (i += 8) {
            var v: W = x[i..][0..8].*;
            inline for (.{ 1, 2, 4 }) |span| {
                const order = comptime blk: {
                    var o: [8]i32 = undefined;
                    for (0..8) |lane| o[lane] = lane ^ span;
                    break :blk o;
                };
                const low = comptime blk: {
                    var m: [8]bool = undefined;
                    for (0..8) |lane| m[lane] = lane & span == 0;
                    break :blk m;
                };
                const partner = @shuffle(f32, v, undefined, order);
                v = @select(f32, low, v + partner, partner - v);
            }
            x[i..][0..8].* = v;
        }
    }
    var h: usize = 8;
    const V = @Vector(8, f32);
    while (h < n) : (h *= 2) {
        var i: usize = 0;
        while (i < n) : (i += 2 * h) {
            var j = i;
            while (j < i + h) : (j += 8) {
                const a: V = x[j..][0..8].*;
                const b: V = x[j + h ..][0..8].*;
                x[j..][0..8].* = a + b;
                x[j + h ..][0..8].* = a - b;
            }
        }
    }
    const scale: f32 = 1.0 / @sqrt(@as(f32, @floatFromInt(n)));
    for (x) |*v| v.* *= scale;
}

/// Applies the index's rotation to `x` (`padded(d)` long) in place: orthogonal, so norms and
/// inner products are kept.
pub fn rotate(x: []f32, signs: []const u8) void {
    const dims: u32 = @intCast(x.len);
    assert(dims % dims_granule == 0);
    assert(signs.len >= signBytes(dims));
    const span = spanOf(dims);
    const mask_bytes = dims / 8;
    for (0..rounds) |r| {
        flip(x, signs[(2 * r) * mask_bytes ..][0..mask_bytes]);
        hadamard(x[0..span]);
        flip(x, signs[(2 * r + 1) * mask_bytes ..][0..mask_bytes]);
        hadamard(x[dims - span .. dims]);
    }
}

/// `vector` zero-padded to `out.len` (= `padded(vector.len)`) and rotated.
pub fn rotateVector(vector: []const f32, signs: []const u8, out: []f32) void {
    assert(out.len == padded(@intCast(vector.len)));
    @memcpy(out[0..vector.len], vector);
    @memset(out[vector.len..], 0);
    rotate(out, signs);
}

/// Codes the edge from u to j: the sign bits of r = scale_j code_j - scale_u code_u (D i8
/// components each, D = `bits.len * 8`) into `bits`, and its factors. `norms` (|x_u|^2 and
/// |x_j|^2 of the exact vectors) are read under the dot formula.
///
/// The walk scores every edge against the whole query w = P q - centre (one table per query),
/// not against the residual z = w - scale_u code_u: <2b - 1, z> = <2b - 1, w> - k with
/// k = scale_u <2b - 1, code_u>, a property of the edge, which `add` absorbs (as - mul k).
/// Deterministic (lane sums in a fixed order), so verify re-derives every stored edge bit for bit.
pub fn encodeEdge(
    formula: Formula,
    u: []const i8,
    scale_u: f32,
    j: []const i8,
    scale_j: f32,
    norms: [2]f32,
    bits: []u8,
) Factors {
    const dims = u.len;
    assert(j.len == dims and dims == bits.len * 8);
    assert(dims % dims_granule == 0);
    const lanes = 16;
    const V = @Vector(lanes, f32);
    var norm2: V = @splat(0);
    var l1: V = @splat(0);
    var fold: V = @splat(0); // <2b - 1, code_u>
    var i: usize = 0;
    while (i < dims) : (i += lanes) {
        const cu: V = @floatFromInt(@as(@Vector(lanes, i8), u[i..][0..lanes].*));
        const cj: V = @floatFromInt(@as(@Vector(lanes, i8), j[i..][0..lanes].*));
        const xu = cu * @as(V, @splat(scale_u));
        const r = cj * @as(V, @splat(scale_j)) - xu;
        norm2 += r * r;
        l1 += @abs(r);
        const positive = r > @as(V, @splat(0));
        fold += @select(f32, positive, cu, -cu);
        const mask: u16 = @bitCast(positive);
        std.mem.writeInt(u16, bits[i / 8 ..][0..2], mask, .little);
    }
    const norm = @sqrt(@as(f64, sumLanes(norm2)));
    const root: f64 = @sqrt(@as(f64, @floatFromInt(dims)));
    const scale: f64 = if (formula == .l2sq) 2 else 1;
    // <x̄, o>: in (0, 1] for any nonzero r (the bits agree with every component's sign).
    const agreement: f64 = if (norm > 0) sumLanes(l1) / (root * norm) else 1;
    const spread = @sqrt(@max(0, 1 - agreement * agreement)) /
        (agreement * @sqrt(@max(1, @as(f64, @floatFromInt(dims)) - 1)));
    const mul: f64 = if (norm > 0) -scale * norm / (root * agreement) else 0;
    const add: f64 = switch (formula) {
        .l2sq => norm * norm,
        .dot => (@as(f64, norms[0]) - norms[1] + norm * norm) / 2,
    };
    const k: f64 = scale_u * sumLanes(fold);
    return .{
        .add = @floatCast(add - mul * k),
        .mul = @floatCast(mul),
        .err = @floatCast(scale * norm * spread),
    };
}

/// The lanes of `v` added in index order (a fixed order: the sum is the same on every target).
fn sumLanes(v: @Vector(16, f32)) f32 {
    const a: [16]f32 = v;
    var total: f32 = 0;
    for (a) |x| total += x;
    return total;
}

/// What a query contributes to every estimate (`estimate`).
pub const QueryTerms = struct {
    /// The quantized query's step: w ≈ delta * level, levels in [-31, 31].
    delta: f32,
    /// What every code's table sum carries besides <2b - 1, level>: 124 per group.
    bias: f32,
};

/// Levels either side of zero: a symmetric quantization, so that a table sum is
/// <2b - 1, level> plus a constant, with no term per code (its popcount).
const query_half_levels: f32 = (query_levels - 1) / 2;
/// What a table entry adds to keep it unsigned: 4 components of at most 31 either way.
const entry_bias: u32 = 4 * 31;

/// The tables of a query w (P q less the rotated centre, D long) quantized to `query_bits` per
/// component, into `tables` (`tableBytes`), 16 bytes per group of 4 dimensions: entry n of
/// group g is sum_b (2 bit_b(n) - 1) level_{4g+b} + 124 (bit b of a nibble is component b).
pub fn prepareQuery(query: []const f32, tables: []u8) QueryTerms {
    const dims = query.len;
    assert(dims % dims_granule == 0);
    assert(tables.len >= tableBytes(@intCast(dims)));
    var largest: f32 = 0;
    for (query) |w| largest = @max(largest, @abs(w));
    const delta = largest / query_half_levels;
    const inverse: f32 = if (delta > 0) 1 / delta else 0;
    var i: usize = 0;
    while (i < dims) : (i += 4) {
        var levels: [4]i32 = undefined;
        for (&levels, query[i..][0..4]) |*level, w| {
            const limit = query_half_levels;
            const scaled = std.math.clamp(@round(w * inverse), -limit, limit);
            level.* = @intFromFloat(scaled);
        }
        const table = tables[4 * i ..][0..16];
        for (table, 0..) |*entry, n| {
            var t: i32 = entry_bias;
            for (levels, 0..) |level, b| {
                t += if (n & (@as(usize, 1) << @intCast(b)) != 0) level else -level;
            }
            entry.* = @intCast(t);
        }
    }
    return .{ .delta = delta, .bias = @floatFromInt(entry_bias * (dims / 4)) };
}

/// The estimate of an edge's distance and its lower end, for one edge (`T` f32) or a vector of
/// them: from the expanded node's distance `parent`, the edge's factors (`add`, `mul`, `err`)
/// and its table sum `s`. The lower end is less `bound` times `err` (`bound`: a multiple of |z|,
/// the query's distance from the expanded node) and less `rounding` times |mul|, the query's own
/// rounding (each of w's D components is off by up to half a step, so <2b - 1, w> by about
/// delta sqrt(D / 12)).
pub inline fn estimate(
    comptime T: type,
    q: QueryTerms,
    f: struct { add: T, mul: T, err: T },
    s: T,
    parent: f32,
    bound: f32,
    rounding: f32,
) struct { value: T, low: T } {
    const splat = struct {
        inline fn of(x: f32) T {
            return if (T == f32) x else @splat(x);
        }
    }.of;
    const value = splat(parent) + f.add + f.mul * splat(q.delta) * (s - splat(q.bias));
    return .{ .value = value, .low = value - splat(bound) * f.err - splat(rounding) * @abs(f.mul) };
}

/// Where a block keeps code `j`'s factors, for writers: `Factors` field `field`, entry j.
pub fn factorOffset(dims: u32, field: usize, j: usize) usize {
    return tableBytes(dims) + (field * block_codes + j) * 4;
}

/// Where code `j` (< 32) of a block keeps group `g`'s nibble: the byte (from the block's
/// start) and the shift within it (code j's nibble low, code j + 16's high).
pub fn nibbleAt(g: usize, j: usize) struct { byte: usize, shift: u3 } {
    return .{ .byte = 16 * g + j % 16, .shift = if (j < 16) 0 else 4 };
}

/// Group `g`'s nibble of code bits `bits`.
pub fn nibble(bits: []const u8, g: usize) u8 {
    return (bits[g / 2] >> @intCast(4 * (g % 2))) & 0x0F;
}

/// The portable `scan`: for each of the 32 codes of `block`, the sum over `groups` groups of
/// its nibble's table entry, into `out`. It reads the block (shared with writers, under a
/// seqlock) in atomic words: the portable level is what ThreadSanitizer builds run.
pub fn scanPortable(
    block: [*]const u8,
    tables: [*]const u8,
    groups: usize,
    out: *[block_codes]u32,
) void {
    out.* = @splat(0);
    const words: [*]const u64 = @ptrCast(@alignCast(block));
    for (0..groups) |g| {
        const table = tables[16 * g ..][0..16];
        var bytes: [16]u8 = undefined;
        inline for (0..2) |half| {
            const word = @atomicLoad(u64, &words[2 * g + half], .monotonic);
            bytes[8 * half ..][0..8].* = std.mem.toBytes(std.mem.nativeToLittle(u64, word));
        }
        for (0..16) |j| {
            out[j] += table[bytes[j] & 0x0F];
            out[j + 16] += table[bytes[j] >> 4];
        }
    }
}

/// The SIMD `scan` for registers of `width` bytes (16, 32 or 64: that many / 16 groups per step)
/// over `shuffle`, a per-16-byte-lane table lookup (pshufb, vpshufb, tbl). `groups` is a
/// multiple of width / 16 (padded dimensions are a multiple of 64, so of 16 groups).
pub fn scanWith(
    comptime width: comptime_int,
    comptime shuffle: fn (
        @Vector(width, u8),
        @Vector(width, u8),
    ) callconv(.@"inline") @Vector(width, u8),
    block: [*]const u8,
    tables: [*]const u8,
    groups: usize,
    out: *[block_codes]u32,
) void {
    const per_step = width / 16;
    assert(groups % per_step == 0);
    const B = @Vector(width, u8);
    const H = @Vector(width / 2, u16);
    out.* = @splat(0);
    var g: usize = 0;
    while (g < groups) {
        const end = @min(groups, g + groups_per_flush);
        // Each u16 lane holds an even code's sum in its low byte's carry chain and an odd
        // code's in the high byte: `whole` adds the lane as one u16, `high` adds the high byte
        // alone, and whole - 256 * high is the even code's sum (mod 2^16, and it is below).
        var low_whole: H = @splat(0);
        var low_high: H = @splat(0);
        var high_whole: H = @splat(0);
        var high_high: H = @splat(0);
        while (g < end) : (g += per_step) {
            const codes: B = block[16 * g ..][0..width].*;
            const table: B = tables[16 * g ..][0..width].*;
            const low_nibbles = codes & @as(B, @splat(0x0F));
            const high_nibbles = codes >> @splat(4);
            const a: H = @bitCast(shuffle(table, low_nibbles));
            const b: H = @bitCast(shuffle(table, high_nibbles));
            low_whole +%= a;
            low_high +%= a >> @splat(8);
            high_whole +%= b;
            high_high +%= b >> @splat(8);
        }
        const low_even = low_whole -% (low_high << @splat(8));
        const high_even = high_whole -% (high_high << @splat(8));
        const low_even_a: [width / 2]u16 = low_even;
        const low_odd_a: [width / 2]u16 = low_high;
        const high_even_a: [width / 2]u16 = high_even;
        const high_odd_a: [width / 2]u16 = high_high;
        // Lane `step` of each 16-byte lane holds a different group of the same 16 codes.
        for (0..per_step) |lane| {
            for (0..8) |m| {
                const at = 8 * lane + m;
                out[2 * m] += low_even_a[at];
                out[2 * m + 1] += low_odd_a[at];
                out[16 + 2 * m] += high_even_a[at];
                out[16 + 2 * m + 1] += high_odd_a[at];
            }
        }
    }
}

/// A scan kernel as the kernel objects export it.
pub const ScanFn = *const fn (
    block: [*]const u8,
    tables: [*]const u8,
    groups: usize,
    out: *[block_codes]u32,
) callconv(.c) void;

test "rabitq: the rotation is orthogonal and an edge's estimate bounds its distance" {
    const d = 100;
    const dims = comptime padded(d);
    var signs: [signBytes(dims)]u8 = undefined;
    fillSigns(7, &signs);
    var prng = std.Random.DefaultPrng.init(3);
    const random = prng.random();
    var x: [dims]f32 = undefined;
    for (&x) |*v| v.* = random.floatNorm(f32);
    var y = x;
    rotate(&y, &signs);
    var before: f32 = 0;
    var after: f32 = 0;
    for (x, y) |a, b| {
        before += a * a;
        after += b * b;
    }
    try std.testing.expectApproxEqRel(before, after, 1e-4);

    // Quantized vectors as rabitq stores them: u and its neighbour j near it, a query near both.
    var within: u32 = 0;
    var tight: u32 = 0;
    const trials = 300;
    for (0..trials) |_| {
        var u: [dims]i8 = @splat(0);
        var j: [dims]i8 = @splat(0);
        var query: [dims]f32 = @splat(0);
        for (0..d) |i| {
            const base = random.floatNorm(f32) * 40;
            u[i] = @intFromFloat(std.math.clamp(@round(base), -127, 127));
            const near = base + 10 * random.floatNorm(f32);
            j[i] = @intFromFloat(std.math.clamp(@round(near), -127, 127));
            query[i] = base + 10 * random.floatNorm(f32);
        }
        var bits: [dims / 8]u8 = undefined;
        const f = encodeEdge(.l2sq, &u, 1, &j, 1, .{ 0, 0 }, &bits);
        var tables: [tableBytes(dims)]u8 = undefined;
        const q = prepareQuery(&query, &tables);
        var s: u32 = 0;
        for (0..dims / 4) |g| s += tables[16 * g + nibble(&bits, g)];
        var parent: f32 = 0;
        var exact: f32 = 0;
        for (0..dims) |i| {
            const zu = query[i] - @as(f32, @floatFromInt(u[i]));
            const zj = query[i] - @as(f32, @floatFromInt(j[i]));
            parent += zu * zu;
            exact += zj * zj;
        }
        const e = estimate(
            f32,
            q,
            .{ .add = f.add, .mul = f.mul, .err = f.err },
            @floatFromInt(s),
            parent,
            bound_scale * @sqrt(parent),
            0,
        );
        if (e.low <= exact) within += 1;
        // The edge codes are what makes the bound useful: well inside the distance itself.
        if (e.value - e.low < 0.5 * exact) tight += 1;
    }
    try std.testing.expect(within >= trials * 95 / 100);
    try std.testing.expect(tight >= trials * 95 / 100);
}

test "rabitq: the SIMD scan adds what the portable scan adds" {
    const dims = 320;
    const groups = dims / 4;
    var prng = std.Random.DefaultPrng.init(5);
    const random = prng.random();
    var block: [tableBytes(dims)]u8 align(8) = undefined;
    var tables: [tableBytes(dims)]u8 = undefined;
    random.bytes(&block);
    for (&tables) |*t| t.* = random.uintAtMost(u8, 252);
    var want: [block_codes]u32 = @splat(0);
    for (0..groups) |g| {
        for (0..block_codes) |j| {
            const at = nibbleAt(g, j);
            want[j] += tables[16 * g + ((block[at.byte] >> at.shift) & 0x0F)];
        }
    }
    var got: [block_codes]u32 = undefined;
    scanPortable(&block, &tables, groups, &got);
    try std.testing.expectEqualSlices(u32, &want, &got);
    scanWith(16, lookupPortable16, &block, &tables, groups, &got);
    try std.testing.expectEqualSlices(u32, &want, &got);
    scanWith(32, lookupPortable32, &block, &tables, groups, &got);
    try std.testing.expectEqualSlices(u32, &want, &got);
}

/// A byte shuffle per 16-byte lane in plain Zig (tests; the objects use the instruction).
pub fn lookupPortable(
    comptime width: comptime_int,
    table: @Vector(width, u8),
    index: @Vector(width, u8),
) @Vector(width, u8) {
    const t: [width]u8 = table;
    const i: [width]u8 = index;
    var out: [width]u8 = undefined;
    for (0..width) |k| out[k] = t[(k / 16) * 16 + (i[k] & 0x0F)];
    return out;
}

inline fn lookupPortable16(table: @Vector(16, u8), index: @Vector(16, u8)) @Vector(16, u8) {
    return lookupPortable(16, table, index);
}

inline fn lookupPortable32(table: @Vector(32, u8), index: @Vector(32, u8)) @Vector(32, u8) {
    return lookupPortable(32, table, index);
}

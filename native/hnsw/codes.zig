//! rabitq storage's inline neighbour codes (kernels/rabitq.zig has the coding). Every level-0
//! record carries, beside its list, the RaBitQ code and factors of the edge to each neighbour
//! it names, in FastScan blocks of 32: the walk (search.zig `searchCodes`) scores all of a
//! node's neighbours from the node's own record and reads a neighbour's record only when its
//! estimate could enter the results.
//!
//! Position i of the blocks codes the edge to the list's id i, a function of the two nodes' i8
//! codes, which are written before any list names a node and never change. Whoever writes a
//! level-0 list writes the edges in the same locked section (graph.zig `NodeLocks.update`):
//! the list's ids keep their positions where they can (`stabilize`), so a list that gains or
//! swaps one neighbour rewrites one edge, not all of them. Readers scan them under the node's
//! seqlock (`NodeLocks.readWith`); the stores and Zig-side loads are atomic words, so search
//! beside insert stays data-race free (the SIMD scan reads the same words and is discarded on
//! a retry). verify re-derives every edge (`blocksMatch`); a dirty open rewrites them all
//! (`rebuild`), as a kill can land between a list and its edges.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;
const layout = @import("../storage/layout.zig");
const rabitq = @import("../kernels/rabitq.zig");
const i8k = @import("../kernels/i8.zig");
const abi = @import("../abi.zig");

/// What writes a rabitq level-0 list's edges: the regions the list lives in and the formula.
pub const Writer = struct {
    regions: layout.Regions,
    formula: rabitq.Formula,
    /// Ids at or above this are coded `unknown` (`rebuild`: slots never written).
    limit: u64 = std.math.maxInt(u64),

    /// The writer of an index of `metric` over `regions`.
    pub fn of(regions: layout.Regions, metric: abi.Metric) Writer {
        return .{ .regions = regions, .formula = if (metric == .l2sq) .l2sq else .dot };
    }

    /// Writes the edges of `slot`'s list `ids`, where `previous` (the list it replaces; null:
    /// unknown) does not already hold them at the same position. The caller holds the lock.
    pub fn write(self: Writer, slot: u32, previous: ?[]const u32, ids: []const u32) void {
        const l = self.regions.layout;
        assert(l.storage == .rabitq and ids.len <= l.m0);
        const words = self.regions.blocks(slot);
        for (ids, 0..) |id, i| {
            if (previous) |p| {
                if (i < p.len and p[i] == id and
                    factorAt(words, l, 0, i) != rabitq.unknown.add) continue;
            }
            writeEdge(self, slot, words, i, id);
        }
    }
};

/// Reorders `next` (the list replacing `previous`) so that every id `previous` held at a
/// position below `next.len` keeps that position; the others fill the rest in order. Lists are
/// sets to every reader, so only the edges that moved need writing.
pub fn stabilize(previous: []const u32, next: []u32) void {
    var result: [abi.m_max * 2]u32 = undefined;
    var filled: [abi.m_max * 2]bool = undefined;
    var rest: [abi.m_max * 2]u32 = undefined;
    const n = next.len;
    assert(n <= result.len);
    @memset(filled[0..n], false);
    var rest_len: usize = 0;
    const kept = previous[0..@min(previous.len, n)];
    for (next) |id| {
        if (std.mem.indexOfScalar(u32, kept, id)) |p| {
            if (!filled[p]) {
                result[p] = id;
                filled[p] = true;
                continue;
            }
        }
        rest[rest_len] = id;
        rest_len += 1;
    }
    var k: usize = 0;
    for (0..n) |p| {
        if (filled[p]) continue;
        result[p] = rest[k];
        k += 1;
    }
    assert(k == rest_len);
    @memcpy(next, result[0..n]);
}

/// The bits and factors of the edge from `slot` to `id` (`rabitq.unknown` for an id beyond the
/// mapping: a node newer than the writer's pin).
fn edge(w: Writer, slot: u32, id: u32, bits: []u8) rabitq.Factors {
    const regions = w.regions;
    @memset(bits, 0);
    if (id >= regions.capacity or id >= w.limit) return rabitq.unknown;
    const dims = regions.layout.walk_dims;
    const u = regions.walkI8(slot);
    const j = regions.walkI8(id);
    const u_codes: [*]const i8 = @ptrCast(u);
    const j_codes: [*]const i8 = @ptrCast(j);
    return rabitq.encodeEdge(
        w.formula,
        u_codes[0..dims],
        i8k.termsOf(u).scale,
        j_codes[0..dims],
        i8k.termsOf(j).scale,
        .{ normOf(u), normOf(j) },
        bits,
    );
}

/// |x|^2 of a rabitq vector, from its terms' last word (index/write.zig `encodeWalk`).
pub fn normOf(codes: [*]const u8) f32 {
    const terms = codes - i8k.terms_bytes;
    return @bitCast(std.mem.readInt(u32, terms[12..16], .little));
}

fn writeEdge(w: Writer, slot: u32, words: []u64, position: usize, id: u32) void {
    const l = w.regions.layout;
    var buffer: [abi.rabitq_dimensions_max / 8]u8 = undefined;
    const bits = buffer[0 .. l.walk_dims / 8];
    const factors = edge(w, slot, id, bits);
    const block = words[position / rabitq.block_codes * (l.block_bytes / 8) ..];
    const j = position % rabitq.block_codes;
    for (0..l.walk_dims / 4) |g| {
        const at = rabitq.nibbleAt(g, j);
        const shift: u6 = @intCast((at.byte % 8) * 8 + at.shift);
        const word = &block[at.byte / 8];
        const old = @atomicLoad(u64, word, .monotonic);
        const nibble: u64 = rabitq.nibble(bits, g);
        const new = (old & ~(@as(u64, 0x0F) << shift)) | (nibble << shift);
        @atomicStore(u64, word, new, .release);
    }
    const values = [3]f32{ factors.add, factors.mul, factors.err };
    for (values, 0..) |v, field| {
        @atomicStore(u32, factorWord(block, l, field, j), @bitCast(v), .release);
    }
}

fn factorWord(block: []u64, l: layout.Layout, field: usize, j: usize) *u32 {
    const at = rabitq.factorOffset(l.walk_dims, field, j);
    const bytes: [*]u8 = @ptrCast(block.ptr);
    return @ptrCast(@alignCast(bytes + at));
}

/// Orders every load before it (the edge words a walk scanned, in Zig or in a kernel object)
/// before every load after it (the seqlock's second read of the version): relaxed loads alone,
/// and the kernel's plain ones, could be satisfied after it, and a torn edge pass the check.
/// `dmb ishld` on aarch64; x86 keeps loads in order, so there only the compiler is held.
pub inline fn loadBarrier() void {
    switch (builtin.cpu.arch) {
        .aarch64 => asm volatile ("dmb ishld" ::: "memory"),
        else => asm volatile ("" ::: "memory"),
    }
}

/// Factor `field` of edge `position` in a record's blocks (an atomic load: the blocks are
/// shared with writers).
pub fn factorAt(words: []u64, l: layout.Layout, field: usize, position: usize) f32 {
    const block = words[position / rabitq.block_codes * (l.block_bytes / 8) ..];
    const word = factorWord(block, l, field, position % rabitq.block_codes);
    return @bitCast(@atomicLoad(u32, word, .monotonic));
}

/// All three factors of edge `position`.
pub inline fn factorsAt(words: []u64, l: layout.Layout, position: usize) rabitq.Factors {
    return .{
        .add = factorAt(words, l, 0, position),
        .mul = factorAt(words, l, 1, position),
        .err = factorAt(words, l, 2, position),
    };
}

/// Whether `slot`'s stored edges are what `Writer.write` writes for `ids` (verify; the caller
/// excludes writers). An edge stored as `unknown` is accepted: a writer whose pin predated the
/// neighbour's slot wrote it so.
pub fn blocksMatch(w: Writer, slot: u32, ids: []const u32) bool {
    const l = w.regions.layout;
    const words = w.regions.blocks(slot);
    var buffer: [abi.rabitq_dimensions_max / 8]u8 = undefined;
    const bits = buffer[0 .. l.walk_dims / 8];
    for (ids, 0..) |id, i| {
        const stored = factorsAt(words, l, i);
        if (stored.add == rabitq.unknown.add) continue;
        const want = edge(w, slot, id, bits);
        if (!std.meta.eql(want, stored)) return false;
        const block = words[i / rabitq.block_codes * (l.block_bytes / 8) ..];
        const j = i % rabitq.block_codes;
        for (0..l.walk_dims / 4) |g| {
            const at = rabitq.nibbleAt(g, j);
            const bytes: [*]const u8 = @ptrCast(block.ptr);
            if ((bytes[at.byte] >> at.shift) & 0x0F != rabitq.nibble(bits, g)) return false;
        }
    }
    return true;
}

/// Rewrites every level-0 record's edges from its list (a dirty open, alone with the index; a
/// backup's copy). An id at or beyond `used` (a list a power loss left newer than the metadata)
/// is coded `unknown`: its slot holds no codes yet.
pub fn rebuild(writer: Writer, used: u32) void {
    var w = writer;
    w.limit = used;
    for (0..used) |i| {
        const slot: u32 = @intCast(i);
        const words = w.regions.list(slot, 0, 0);
        const count = @min(words[0], w.regions.layout.m0);
        w.write(slot, null, words[1 .. 1 + count]);
    }
}

comptime {
    // storage/layout.zig sizes records from its own copy of the format's constants.
    const format = layout.rabitq;
    assert(format.dims_granule == rabitq.dims_granule);
    assert(format.rounds == rabitq.rounds);
    assert(format.block_codes == rabitq.block_codes);
    assert(format.factor_bytes == @sizeOf(rabitq.Factors));
    for ([_]u32{ 1, 63, 64, 100, 784, abi.rabitq_dimensions_max }) |d| {
        const dims = rabitq.padded(d);
        assert(format.padded(d) == dims);
        assert(format.signBytes(dims) == rabitq.signBytes(dims));
        assert(format.blockBytes(dims) == rabitq.blockBytes(dims));
    }
}

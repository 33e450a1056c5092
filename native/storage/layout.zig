//! The on-disk (and in-memory) layout: the file header, the per-slot metadata column, the
//! level-0 records (neighbour list + vector) and the upper-level arena. A `Regions` value is one
//! generation of mappings; every accessor bounds-checks against that generation's capacity.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");

pub const page_bytes: u64 = std.heap.page_size_min;
pub const magic = [8]u8{ 'Q', 'U', 'I', 'V', 'E', 'R', 'D', 'B' };
/// The newest format. 3 adds packed i8 codes (`I8Codes`), 4 rabitq storage (inline neighbour
/// codes); a file is written in the oldest version that describes it (`versionFor`), so that an
/// older library still opens any index it can read, and refuses the others as a newer version
/// instead of as corrupt.
pub const format_version: u32 = 4;
pub const format_version_oldest: u32 = 2;
pub const header_bytes: u64 = 4096;
pub const header_slot_bytes: u64 = 2048;
/// A cache line: records and vectors are aligned to it.
pub const line_bytes: u64 = 64;
pub const no_slot: u32 = std.math.maxInt(u32);
pub const max_level: u32 = 31;
/// Slots are u32 ids and `no_slot` is reserved.
pub const capacity_max: u64 = std.math.maxInt(u32) - 1;

/// The file header. The data file holds two copies (slots at offsets 0 and `header_slot_bytes`),
/// written alternately, each with its own checksum and a sequence number: an update writes the
/// older slot whole and only then becomes the newest, so a process killed mid-update leaves the
/// previous header intact. Counters are exact at the last checkpoint; between checkpoints the
/// authoritative counters live in memory and `clean` is 0.
pub const Header = extern struct {
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
    /// `abi.StorageKind`.
    storage: u32,
    /// `flag_centre_set`: i8 storage's centre is final (given, or trained by the first add).
    flags: u32,
    /// Checksums of the data (after the header), graph and upper regions' used bytes at the last
    /// clean checkpoint; only meaningful while `clean` is 1.
    data_hash: u64,
    graph_hash: u64,
    upper_hash: u64,
    exact_hash: u64,
    /// Which update this copy is; open uses the valid copy with the highest.
    header_seq: u64,
    clean: u32,
    /// XxHash of every byte before this field, truncated.
    checksum: u32,
    /// The fields past `checksum` extend the format without a new version: files written before
    /// them hold zeros here (no `ext_magic`), and code from before them never reads them.
    /// `records_end`: the length of `path.records` at the last complete checkpoint, which no
    /// later state of that file falls short of (a rewrite sets it to 0 first); 0 when unknown. A
    /// shorter file lost payloads the log no longer holds (a cut at an entry boundary looks
    /// whole), so open reports it `Corrupt`.
    records_end: u64,
    /// XxHash of `checksum` and `records_end`, truncated; with `ext_magic`, says they are valid.
    ext_check: u32,
    ext_magic: u32,

    pub fn computeChecksum(self: *const Header) u32 {
        const bytes = std.mem.asBytes(self)[0..@offsetOf(Header, "checksum")];
        return @truncate(std.hash.XxHash64.hash(0x51_56_52, bytes));
    }

    pub fn computeExtCheck(self: *const Header) u32 {
        const bytes = std.mem.asBytes(self)[@offsetOf(Header, "checksum")..@offsetOf(
            Header,
            "ext_check",
        )];
        return @truncate(std.hash.XxHash64.hash(0x52_45_43, bytes));
    }

    /// Seals the extension fields (after `checksum` is set).
    pub fn sealExt(self: *Header) void {
        self.ext_magic = ext_magic;
        self.ext_check = self.computeExtCheck();
    }

    /// `records_end` if the extension is intact, else 0 (a file from before it: nothing known).
    pub fn recordsEnd(self: *const Header) u64 {
        if (self.ext_magic != ext_magic or self.ext_check != self.computeExtCheck()) return 0;
        return self.records_end;
    }
};

pub const ext_magic: u32 = 0x31_54_58_45; // "EXT1"

/// Per-slot metadata, a dense column so that open scans 40 bytes per slot, never the vectors.
pub const Meta = extern struct {
    key: u64,
    /// Sequence number at which the slot became visible; `unpublished` until then (atomic).
    created_seq: u64,
    /// Sequence number at which it was removed or replaced; 0 while live (atomic).
    deleted_seq: u64,
    /// The slot that held this key before (an upsert chain for snapshots), or `no_slot`.
    prev_slot: u32,
    /// First record of this node's upper levels in the upper arena (levels 1..level).
    upper_offset: u32,
    level: u8,
    /// `SlotState` (atomic).
    state: u8,
    /// `vectorCheck` of the key and the exact vector (little-endian), or zero in slots written
    /// before the field existed (unchecked). The metadata and the vector live in different files,
    /// each written back on its own: a power loss can keep a slot's publication without its
    /// vector, and a dirty open finds such a slot by this check (index/recovery.zig).
    vector_check: [4]u8,
    reserved: [2]u8,

    /// Whether `vector` is the one this slot was written with (true when no check is recorded).
    pub fn vectorMatches(self: *const Meta, vector: []const f32) bool {
        const recorded = std.mem.readInt(u32, &self.vector_check, .little);
        return recorded == 0 or recorded == vectorCheck(self.key, vector);
    }

    pub fn setVectorCheck(self: *Meta, vector: []const f32) void {
        std.mem.writeInt(u32, &self.vector_check, vectorCheck(self.key, vector), .little);
        assert(self.vectorMatches(vector));
    }
};

/// A slot's check of its key and exact vector: never zero, which means "not recorded".
pub fn vectorCheck(key: u64, vector: []const f32) u32 {
    assert(vector.len > 0);
    const hash: u32 = @truncate(std.hash.XxHash3.hash(key, std.mem.sliceAsBytes(vector)));
    return if (hash == 0) 1 else hash;
}

pub const unpublished: u64 = std.math.maxInt(u64);

pub const flag_centre_set: u32 = 1 << 0;

/// rabitq storage's format (kernels/rabitq.zig owns it; hnsw/codes.zig checks that these sizes
/// agree with its own): codes of vectors zero-padded to a multiple of 64 dimensions, the
/// rotation's rounds, neighbours per block and the bytes of an edge's factors.
pub const rabitq = struct {
    pub const dims_granule: u32 = 64;
    pub const rounds: u32 = 3;
    pub const block_codes: u32 = 32;
    pub const factor_bytes: u32 = 12;

    pub fn padded(dimensions: u32) u32 {
        return std.mem.alignForward(u32, dimensions, dims_granule);
    }

    /// Two sign masks per round, a bit per padded dimension.
    pub fn signBytes(dims: u32) u32 {
        return rounds * 2 * dims / 8;
    }

    /// 16 bytes of nibbles per group of 4 dimensions, then each code's factors.
    pub fn blockBytes(dims: u32) u32 {
        return dims / 4 * 16 + block_codes * factor_bytes;
    }
};

/// The 16 bytes of per-vector terms in front of i8 codes (kernels/i8.zig has the format).
pub const i8_terms_bytes: u32 = 16;
/// i8 codes are zero-padded to a multiple of this (kernels/i8.zig `granule`), and a kernel reads
/// exactly that many bytes.
pub const i8_granule: u32 = 16;

/// Bytes of the codes of a `dimensions`-long vector: zero-padded to whole granules.
pub fn i8CodeBytes(dimensions: u32) u32 {
    return std.mem.alignForward(u32, dimensions, i8_granule);
}

/// Where an i8 record keeps its terms and codes. `packed` (format 3, every i8 index created by
/// this version): the terms start a line and the codes follow them at once, so a 96- or
/// 100-dimension vector's terms and codes are two lines, which a walk reads per neighbour.
/// `aligned` (format 2, i8 indexes created before): the codes start a line and are padded to 64
/// bytes, the terms sit at the end of the line before, three lines at 96 dimensions. The
/// header's `vector_offset` tells them apart (packed: 16 past a line; aligned: on a line), so an
/// older file opens as it was, and compaction and backups keep an index's layout.
pub const I8Codes = enum { @"packed", aligned };

/// The format version a file of this layout is written in.
pub fn versionFor(l: Layout) u32 {
    if (l.storage == .rabitq) return 4;
    return if (l.storage == .i8 and l.codes == .@"packed") 3 else 2;
}

/// The layout a header describes: its parameters, and for i8 where its `vector_offset` puts the
/// codes (the caller checks the header's other lengths against it).
pub fn layoutOf(header: *const Header) Layout {
    const storage: abi.StorageKind = @enumFromInt(header.storage);
    const codes: I8Codes = if (header.vector_offset % line_bytes == 0) .aligned else .@"packed";
    return Layout.initWith(header.dimensions, header.m, storage, codes);
}

pub const SlotState = enum(u8) { empty = 0, inserting = 1, ready = 2 };

comptime {
    assert(@sizeOf(Header) == 184);
    assert(@offsetOf(Header, "records_end") == 168);
    assert(@sizeOf(Header) <= header_slot_bytes);
    assert(2 * header_slot_bytes <= header_bytes);
    assert(@sizeOf(Meta) == 40);
    assert(@offsetOf(Meta, "vector_check") == 34);
}

/// Sizes derived from the parameters; identical for every generation of one index.
pub const Layout = struct {
    dimensions: u32,
    m: u32,
    m0: u32,
    storage: abi.StorageKind,
    /// Bytes of one level-0 record: count, m0 neighbour ids, padding, then the walked vector
    /// (f32; f16 under f16 storage; under i8 storage 16 bytes of terms, then the codes, placed
    /// as `I8Codes` says).
    record_bytes: u32,
    vector_offset: u32,
    /// Bytes the record reserves for the walked vector: 4d (f32), 2d (f16), the padded codes
    /// (i8: to 16 bytes packed, to 64 aligned; a kernel reads `walkSpan`, the 16-byte granules
    /// and the terms in front of them).
    walk_bytes: u32,
    /// Bytes per slot of the exact-vector file: 0 under f32 storage (the record holds them).
    exact_bytes: u32,
    /// Bytes in front of the exact vectors: i8 storage keeps its centre there (one page-aligned
    /// f32 vector); 0 otherwise.
    exact_prefix: u32,
    /// Bytes of one upper-level list: count then m neighbour ids.
    upper_record_bytes: u32,
    /// Where i8 codes sit in a record (`packed` under the other storages, where it means nothing).
    codes: I8Codes,
    /// The components of a walked vector: `dimensions`, but the padded dimensions of the rotated
    /// space under rabitq storage (kernels/rabitq.zig), where its i8 codes live.
    walk_dims: u32,
    /// rabitq storage (else all 0): where a record's neighbour codes start (`blocks` blocks of
    /// `block_bytes`, 32 codes each, on a line), and where the exact file's prefix keeps the
    /// rotation's signs and the rotated centre (after the centre).
    block_offset: u32 = 0,
    block_bytes: u32 = 0,
    blocks: u32 = 0,
    signs_offset: u32 = 0,
    rotated_centre_offset: u32 = 0,

    /// The layout of a new index (i8 codes packed).
    pub fn init(dimensions: u32, m: u32, storage: abi.StorageKind) Layout {
        return initWith(dimensions, m, storage, .@"packed");
    }

    pub fn initWith(dimensions: u32, m: u32, storage: abi.StorageKind, codes: I8Codes) Layout {
        assert(dimensions >= 1 and dimensions <= abi.dimensions_max);
        assert(m >= 2 and m <= abi.m_max);
        const m0 = 2 * m;
        const d: u64 = dimensions;
        const list_bytes: u64 = 4 + 4 * @as(u64, m0);
        // Vectors start on a cache line: a 64-byte vector load that straddles two lines costs
        // about 1.8x (measured on the dev machine's AVX-512 kernels), so records and the vector
        // inside them are line-aligned, at up to 60 bytes of padding each. Packed i8 codes are
        // the exception: a line less per visited neighbour is worth the loads that straddle.
        const walk_bytes: u64, const vector_offset: u64 = switch (storage) {
            .rabitq => .{
                i8CodeBytes(rabitq.padded(dimensions)),
                std.mem.alignForward(u64, list_bytes, line_bytes) + i8_terms_bytes,
            },
            .f32 => .{ 4 * d, std.mem.alignForward(u64, list_bytes, line_bytes) },
            .f16 => .{ 2 * d, std.mem.alignForward(u64, list_bytes, line_bytes) },
            .i8 => switch (codes) {
                .@"packed" => .{
                    i8CodeBytes(dimensions),
                    std.mem.alignForward(u64, list_bytes, line_bytes) + i8_terms_bytes,
                },
                .aligned => .{
                    std.mem.alignForward(u64, d, line_bytes),
                    std.mem.alignForward(u64, list_bytes + i8_terms_bytes, line_bytes),
                },
            },
        };
        var record_bytes: u32 = @intCast(
            std.mem.alignForward(u64, vector_offset + walk_bytes, line_bytes),
        );
        var exact_prefix: u32 = if (storage == .i8) @intCast(
            std.mem.alignForward(u64, 4 * d, page_bytes),
        ) else 0;
        var codes_part: struct { block: u32, bytes: u32, blocks: u32, signs: u32, rotated: u32 } =
            .{ .block = 0, .bytes = 0, .blocks = 0, .signs = 0, .rotated = 0 };
        if (storage == .rabitq) {
            // The blocks on a line after the i8 codes: a walk reads the list, the node's codes
            // and its neighbours' codes, one sequential run.
            const dims = rabitq.padded(dimensions);
            const block: u32 = @intCast(
                std.mem.alignForward(u64, vector_offset + walk_bytes, line_bytes),
            );
            const blocks = std.math.divCeil(u32, m0, rabitq.block_codes) catch unreachable;
            const bytes = rabitq.blockBytes(dims);
            record_bytes = @intCast(std.mem.alignForward(
                u64,
                block + @as(u64, blocks) * bytes,
                line_bytes,
            ));
            const signs: u32 = @intCast(std.mem.alignForward(u64, 4 * d, line_bytes));
            const rotated: u32 = @intCast(
                std.mem.alignForward(u64, signs + rabitq.signBytes(dims), line_bytes),
            );
            exact_prefix = @intCast(
                std.mem.alignForward(u64, rotated + 4 * @as(u64, dims), page_bytes),
            );
            codes_part = .{
                .block = block,
                .bytes = bytes,
                .blocks = blocks,
                .signs = signs,
                .rotated = rotated,
            };
        }
        return .{
            .dimensions = dimensions,
            .m = m,
            .m0 = m0,
            .storage = storage,
            .record_bytes = record_bytes,
            .vector_offset = @intCast(vector_offset),
            .walk_bytes = @intCast(walk_bytes),
            .exact_bytes = if (storage == .f32) 0 else @intCast(
                std.mem.alignForward(u64, 4 * d, line_bytes),
            ),
            .exact_prefix = exact_prefix,
            .upper_record_bytes = 4 + 4 * m,
            .codes = if (storage == .i8) codes else .@"packed",
            .walk_dims = if (storage == .rabitq) rabitq.padded(dimensions) else dimensions,
            .block_offset = codes_part.block,
            .block_bytes = codes_part.bytes,
            .blocks = codes_part.blocks,
            .signs_offset = codes_part.signs,
            .rotated_centre_offset = codes_part.rotated,
        };
    }

    /// The bytes of a walked vector's record that a distance reads, from the first: the terms
    /// and codes under i8 storage, else the vector.
    /// (Aligned i8 codes reserve 64-byte padding, but only the 16-byte granules are read.)
    pub fn walkSpan(self: Layout) struct { offset: u32, bytes: u32 } {
        if (!self.codedI8()) return .{ .offset = self.vector_offset, .bytes = self.walk_bytes };
        return .{
            .offset = self.vector_offset - i8_terms_bytes,
            .bytes = i8_terms_bytes + i8CodeBytes(self.walk_dims),
        };
    }

    /// Whether the walk reads i8 codes (i8 and rabitq storage).
    pub fn codedI8(self: Layout) bool {
        return self.storage == .i8 or self.storage == .rabitq;
    }

    pub fn dataBytes(self: Layout, capacity: u64) u64 {
        _ = self;
        return std.mem.alignForward(u64, header_bytes + capacity * @sizeOf(Meta), page_bytes);
    }

    pub fn graphBytes(self: Layout, capacity: u64) u64 {
        return std.mem.alignForward(u64, @max(1, capacity * self.record_bytes), page_bytes);
    }

    pub fn upperBytes(self: Layout, upper_capacity: u64) u64 {
        return std.mem.alignForward(
            u64,
            @max(1, upper_capacity * self.upper_record_bytes),
            page_bytes,
        );
    }

    /// One page (unused) under f32 storage.
    pub fn exactBytes(self: Layout, capacity: u64) u64 {
        return std.mem.alignForward(
            u64,
            @max(1, self.exact_prefix + capacity * self.exact_bytes),
            page_bytes,
        );
    }

    pub fn maxDegree(self: Layout, level: u32) u32 {
        return if (level == 0) self.m0 else self.m;
    }
};

/// One generation of mappings. Accessors assert bounds: callers validate ids read from the
/// files first (a corrupt id is an operating error, not a bug).
pub const Regions = struct {
    layout: Layout,
    data: []align(page_bytes) u8,
    graph: []align(page_bytes) u8,
    upper: []align(page_bytes) u8,
    exact: []align(page_bytes) u8,
    capacity: u64,
    upper_capacity: u64,

    /// One of the two header copies (see `Header`); storage/storage.zig decides which is current.
    pub fn headerSlot(self: Regions, slot: u1) *Header {
        return @ptrCast(@alignCast(self.data.ptr + @as(usize, slot) * header_slot_bytes));
    }

    pub fn meta(self: Regions, slot: u32) *Meta {
        assert(slot < self.capacity);
        const metas: [*]Meta = @ptrCast(@alignCast(self.data.ptr + header_bytes));
        return &metas[slot];
    }

    fn record(self: Regions, slot: u32) [*]align(4) u8 {
        assert(slot < self.capacity);
        return @alignCast(self.graph.ptr + @as(usize, slot) * self.layout.record_bytes);
    }

    /// The exact (f32) vector of `slot`: in its record under f32 storage, else in the exact file.
    pub fn vector(self: Regions, slot: u32) []f32 {
        if (self.layout.storage == .f32) {
            const base: [*]f32 = @ptrCast(
                @alignCast(self.record(slot) + self.layout.vector_offset),
            );
            return base[0..self.layout.dimensions];
        }
        assert(slot < self.capacity);
        const at = self.layout.exact_prefix + @as(usize, slot) * self.layout.exact_bytes;
        const base: [*]f32 = @ptrCast(@alignCast(self.exact.ptr + at));
        return base[0..self.layout.dimensions];
    }

    /// The centre i8 codes are taken around (i8 storage only).
    pub fn centre(self: Regions) []f32 {
        assert(self.layout.codedI8());
        const base: [*]f32 = @ptrCast(@alignCast(self.exact.ptr));
        return base[0..self.layout.dimensions];
    }

    /// The codes of `slot` (i8 storage only), terms in the 16 bytes before; for writing.
    pub fn walkI8(self: Regions, slot: u32) [*]u8 {
        assert(self.layout.codedI8());
        return self.record(slot) + self.layout.vector_offset;
    }

    /// The rotation's sign masks (rabitq storage only), after the centre in the exact file.
    pub fn signs(self: Regions) []u8 {
        assert(self.layout.storage == .rabitq);
        const dims = self.layout.walk_dims;
        return self.exact[self.layout.signs_offset..][0..rabitq.signBytes(dims)];
    }

    /// The rotated centre, zero-padded (rabitq storage only): what its i8 codes are taken around.
    pub fn rotatedCentre(self: Regions) []f32 {
        assert(self.layout.storage == .rabitq);
        const at = self.layout.rotated_centre_offset;
        const base: [*]f32 = @ptrCast(@alignCast(self.exact.ptr + at));
        return base[0..self.layout.walk_dims];
    }

    /// The blocks of the codes of `slot`'s level-0 neighbours (rabitq storage only), as u64
    /// words: the walk reads them beside the list, under the node's seqlock.
    pub fn blocks(self: Regions, slot: u32) []u64 {
        assert(self.layout.storage == .rabitq);
        const l = self.layout;
        const base: [*]u64 = @ptrCast(@alignCast(self.record(slot) + l.block_offset));
        return base[0 .. @as(usize, l.blocks) * l.block_bytes / 8];
    }

    /// The vector the graph walk reads (f32 or f16 elements, per the storage kind).
    pub fn walk(self: Regions, slot: u32) [*]const u8 {
        return self.record(slot) + self.layout.vector_offset;
    }

    /// The f16 walk copy of `slot` (f16 storage only), for writing.
    pub fn walkF16(self: Regions, slot: u32) []f16 {
        assert(self.layout.storage == .f16);
        const base: [*]f16 = @ptrCast(@alignCast(self.record(slot) + self.layout.vector_offset));
        return base[0..self.layout.dimensions];
    }

    /// The neighbour list of `slot` at `level`: word 0 is the count, then the ids.
    pub fn list(self: Regions, slot: u32, level: u32, upper_offset: u32) [*]u32 {
        if (level == 0) return @ptrCast(self.record(slot));
        const index = @as(u64, upper_offset) + level - 1;
        assert(index < self.upper_capacity);
        return @ptrCast(@alignCast(self.upper.ptr + index * self.layout.upper_record_bytes));
    }

    pub fn mappedBytes(self: Regions) u64 {
        return self.data.len + self.graph.len + self.upper.len + self.exact.len;
    }
};

test "layout: records and their vectors are cache-line aligned, the vector after the links" {
    const layout = Layout.init(784, 16, .f32);
    try std.testing.expectEqual(@as(u32, 32), layout.m0);
    try std.testing.expectEqual(@as(u32, 192), layout.vector_offset);
    try std.testing.expectEqual(@as(u32, 192 + 784 * 4), layout.record_bytes);
    try std.testing.expectEqual(@as(u32, 68), layout.upper_record_bytes);
    const odd = Layout.init(3, 2, .f32);
    try std.testing.expectEqual(@as(u32, 0), odd.record_bytes % 64);
    try std.testing.expectEqual(@as(u32, 0), odd.vector_offset % 64);
    try std.testing.expect(odd.vector_offset >= 4 + 4 * odd.m0);
    const half = Layout.init(784, 16, .f16);
    try std.testing.expectEqual(
        @as(u32, 1792),
        half.record_bytes,
    ); // 192 + 784 * 2, rounded up to a line
    try std.testing.expectEqual(@as(u32, 784 * 4), half.exact_bytes);
    // i8, packed: the terms start the line after the list, the codes follow, padded to 16.
    const byte = Layout.init(784, 16, .i8);
    try std.testing.expectEqual(@as(u32, 192 + 16), byte.vector_offset);
    try std.testing.expectEqual(@as(u32, 1024), byte.record_bytes); // 208 + 784, to a line
    try std.testing.expectEqual(@as(u32, 784 * 4), byte.exact_bytes);
    try std.testing.expect(byte.exact_prefix >= 784 * 4 and byte.exact_prefix % page_bytes == 0);
    // 96 and 100 dimensions: terms and codes in two lines (aligned: three).
    inline for (.{ 96, 100 }) |d| {
        const span = Layout.init(d, 16, .i8).walkSpan();
        try std.testing.expectEqual(@as(u32, 0), span.offset % 64);
        try std.testing.expect(span.bytes <= 128);
        const old = Layout.initWith(d, 16, .i8, .aligned).walkSpan();
        try std.testing.expectEqual(@as(u32, 48), old.offset % 64);
        try std.testing.expectEqual(span.bytes, old.bytes); // the same bytes, placed otherwise
    }
    // i8, aligned (files from before packing): codes on a line, padded to 64, terms before.
    const aligned = Layout.initWith(784, 16, .i8, .aligned);
    try std.testing.expectEqual(@as(u32, 192), aligned.vector_offset);
    try std.testing.expectEqual(@as(u32, 192 + 832), aligned.record_bytes);
    const tight = Layout.initWith(5, 15, .i8, .aligned); // 4 + 4 * 30 = 124: 4 bytes to the line
    try std.testing.expect(tight.vector_offset >= 4 + 4 * tight.m0 + i8_terms_bytes);
    try std.testing.expectEqual(@as(u32, 0), tight.vector_offset % 64);
    const tight_packed = Layout.init(5, 15, .i8);
    try std.testing.expect(tight_packed.vector_offset - i8_terms_bytes >= 4 + 4 * tight.m0);
    try std.testing.expectEqual(@as(u32, 16), tight_packed.vector_offset % 64);
}

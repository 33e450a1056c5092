//! Every type that crosses the FFI boundary: the status codes and the extern structs.
//! The TypeScript bindings (src/ffi.gen.ts) are generated from this file and ffi/exports.zig by
//! native/gen_ffi.zig, so there is exactly one table of codes, names and layouts.
const std = @import("std");

/// The result of every fallible export. Codes are stable: they are persisted in client code.
pub const Status = enum(c_int) {
    ok = 0,
    invalid_argument = 1,
    dimension_mismatch = 2,
    invalid_vector = 3,
    invalid_key = 4,
    invalid_k = 5,
    invalid_ef = 6,
    closed = 7,
    invalid_handle = 8,
    not_found = 9,
    out_of_memory = 10,
    capacity_exceeded = 11,
    io = 12,
    corrupt_index = 13,
    unsupported_version = 14,
    locked = 15,
    stale_guard = 16,
    too_many_handles = 17,
    busy = 18,
    read_only = 19,
    unknown_metric = 20,
    invalid_dimensions = 21,
    internal = 22,
    disk_full = 23,
    no_index = 24,
    already_exists = 25,
    unverifiable = 26,
    invalid_metadata = 27,
    invalid_filter = 28,
    id_conflict = 29,
    buffer_too_small = 30,
};

/// One sentence per status, shown by the TS error classes.
pub fn statusMessage(status: Status) [:0]const u8 {
    return switch (status) {
        .ok => "ok",
        .invalid_argument => "an argument is out of its allowed range",
        .dimension_mismatch => "the vector length does not match the index dimensions",
        .invalid_vector => "the vector has a NaN or infinite component (or is zero under cosine)",
        .invalid_key => "keys must be integers in [0, 2^64 - 1]",
        .invalid_k => "k must be a positive integer",
        .invalid_ef => "ef must be an integer >= k",
        .closed => "the index is closed",
        .invalid_handle => "the handle does not name an open index, guard or snapshot",
        .not_found => "no such key",
        .out_of_memory => "out of memory",
        .capacity_exceeded => "the index cannot grow any further",
        .io => "an operating-system I/O call failed",
        .corrupt_index => "the index files are corrupt or truncated",
        .unsupported_version => "the index files were written by an unsupported format version",
        .locked => "another writer holds this index open",
        .stale_guard => "the view was made before the storage was remapped; take a new one",
        .too_many_handles => "too many open handles (indexes, views or snapshots)",
        .busy => "the operation conflicts with the index's state: live snapshots or views " ++
            "(release them first), an i8 centre that is already fixed, or a file in the way " ++
            "(compact() needs path~compact free)",
        .read_only => "the index was opened read-only",
        .unknown_metric => "unknown metric",
        .invalid_dimensions => "dimensions must be between 1 and 65536",
        .internal => "internal error (a bug): please report it",
        .disk_full => "the disk is full (or a quota or file-size limit was reached): nothing " ++
            "of this call was written; every acknowledged write is kept. Free space and retry",
        .no_index => "no index exists at this path (open it with create: true to make one)",
        .already_exists => "a file is already at the target path or one of its companions " ++
            "(path.graph, path.upper, path.vectors, path.wal): remove it or choose another path",
        .unverifiable => "validate: 'full' cannot checksum this index: it was not " ++
            "closed cleanly (its log holds writes, or its newest header copy is damaged), so " ++
            "no checksum describes its files. Open it with validate: 'fast' (it recovers " ++
            "from the log), call checkpoint(), then reopen with 'full'",
        .invalid_metadata => "the record's metadata is invalid (see docs/records.md): a field " ++
            "of the wrong type, a value out of range, or a record over its size limits",
        .invalid_filter => "the filter is invalid: an unknown operator or field, a value of " ++
            "the wrong type, or a field that is not indexed",
        .id_conflict => "another id holds this key (two string ids with one 64-bit hash, or " ++
            "a numeric id and a string id): nothing was written",
        .buffer_too_small => "the output buffer is too small (the bindings retry with the " ++
            "size the call reported)",
    };
}

pub const Metric = enum(u32) { l2sq = 0, ip = 1, cosine = 2 };

/// How the graph walk reads vectors. `f32` walks the stored vectors; `f16` walks half-precision
/// copies (half the bytes per visited node) and reranks the candidates against the f32 vectors,
/// which are kept in their own file.
/// `i8` walks 8-bit scalar-quantized codes (a quarter of the bytes; integer SIMD kernels) and
/// reranks the same way.
/// `rabitq` is i8 storage whose level-0 records also carry each neighbour's RaBitQ 1-bit code
/// (kernels/rabitq.zig): a search scores a node's neighbours from the node's own record, one
/// sequential read, and reads a neighbour's record only when its estimate can enter the results.
pub const StorageKind = enum(u32) { f32 = 0, f16 = 1, i8 = 2, rabitq = 3 };

/// Dimensions rabitq storage takes at most: every level-0 record holds 2m codes of this many
/// bits and their factors (larger vectors are better served by i8).
pub const rabitq_dimensions_max: u32 = 4096;

/// The distance kernels in use (`qv_kernel_level`), chosen once from the running CPU. The values
/// are stable: benchmarks and bindings report them.
pub const KernelLevel = enum(u32) {
    baseline = 0,
    avx2 = 1,
    avx512 = 2,
    neon = 3,
    portable = 4,
    avx512_vnni = 5,
    avx2_vnni = 6,
};

/// Search flag: under f16/i8 storage, rank by the walk's quantized distances instead of
/// reranking on the exact f32 vectors (no read of the `.vectors` file; approximate distances).
pub const search_flag_walk_ranking: u32 = 1 << 0;

pub const dimensions_max: u32 = 65536;

comptime {
    // The message names the limit: the two must not drift apart.
    const limit = std.fmt.comptimePrint(" {d}", .{dimensions_max});
    std.debug.assert(std.mem.endsWith(u8, statusMessage(.invalid_dimensions), limit));
}
pub const m_max: u32 = 128;
/// The largest beam (`ef_construction`, the index's default `ef_search`).
pub const ef_max: u32 = 65536;
/// The largest beam one search may ask for.
pub const ef_query_max: u32 = 1 << 20;
/// Records (docs/records.md; native/records/payload.zig asserts it keeps to these).
pub const id_bytes_max: u32 = 1024;
pub const meta_bytes_max: u32 = 65536;
pub const terms_max: u32 = 256;
pub const keyword_bytes_max: u32 = 256;
pub const fields_max: u32 = 32;
pub const field_name_bytes_max: u32 = 64;
pub const default_m: u32 = 16;
pub const default_ef_construction: u32 = 128;
pub const default_ef_search: u32 = 64;

/// Creation parameters; `dimensions` and `metric` are checked against the file on open.
pub const Options = extern struct {
    dimensions: u32,
    metric: u32,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
    flags: u32,
    seed: u64,
    capacity: u64,
    /// `StorageKind`.
    storage: u32,
    reserved: u32,

    pub const flag_read_only: u32 = 1 << 0;
    pub const flag_create: u32 = 1 << 1;
    /// `metric` was given by the caller and must match the file's on open.
    pub const flag_metric_given: u32 = 1 << 2;
    /// `storage` was given by the caller and must match the file's on open.
    pub const flag_storage_given: u32 = 1 << 3;
};

/// Counters and sizes for `stats()`. Every safety counter is incremented on a real code path.
pub const Stats = extern struct {
    size: u64,
    slots_used: u64,
    capacity: u64,
    tombstones: u64,
    dimensions: u32,
    metric: u32,
    m: u32,
    max_level: u32,
    epoch: u64,
    remaps: u64,
    mapped_bytes: u64,
    mappings_live: u64,
    guards_live: u64,
    snapshots_live: u64,
    lock_contention: u64,
    read_retries: u64,
    invariant_violations: u64,
    corruption_detected: u64,
    lock_order_violations: u64,
    wal_bytes: u64,
    seq: u64,
    /// `StorageKind`.
    storage: u32,
    /// i8 storage: 1 once the centre is final (given or trained); else 0.
    centre_set: u32,
    /// Checkpoints due after a mutation that failed (the mutation itself succeeded and is in
    /// the log; the next mutation or `checkpoint()` tries again).
    checkpoint_failures: u64,
    /// Records with a payload (string id or metadata), and the bytes of their newest payloads.
    records: u64,
    record_bytes: u64,
};

/// The result of the integrity walk `verify()`.
pub const VerifyReport = extern struct {
    nodes: u64,
    live: u64,
    tombstones: u64,
    unreachable_live: u64,
    out_of_range_links: u64,
    self_links: u64,
    duplicate_links: u64,
    over_degree: u64,
    level_mismatches: u64,
    vector_mismatches: u64,
    /// Record payloads that do not parse or do not belong to their slot's key.
    record_mismatches: u64,
    /// Slots whose live bit (what a live search tests, hnsw/graph.zig `NodeLocks.isLive`)
    /// disagrees with their metadata's visibility.
    live_bit_mismatches: u64,
    /// rabitq storage: level-0 records whose neighbour codes are not those of the nodes their
    /// list names (hnsw/codes.zig).
    code_mismatches: u64,
    max_level: u32,
    ok: u32,
};

comptime {
    // Layouts are fixed: the TS side reads these by offset (generated), so no padding may hide.
    std.debug.assert(@sizeOf(Options) == 48);
    std.debug.assert(@sizeOf(Stats) == 184);
    std.debug.assert(@sizeOf(VerifyReport) == 112);
}

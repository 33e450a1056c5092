//! Folder ffi/: the C ABI. exports.zig is the table of every exported symbol; registry.zig the
//! handle table of open indexes. Wrappers here only translate arguments, results and errors;
//! locking and logic live in index/. May import: index/ (and below), abi.zig.
//!
//! THE FFI TABLE: every symbol the library exports, in one struct. lib.zig exports each public
//! function of `exports`; native/gen_ffi.zig reads the same struct (and abi.zig) to generate
//! src/ffi.gen.ts, from which the Bun and Deno symbol tables are derived. Nothing is listed twice.
//!
//! Conventions: every fallible call returns `Status`; results go through out-pointers; handles
//! are u32 (indexes) or u64 (guards, snapshots; 0 names the live view); buffers are
//! pointer + length pairs, and a null pointer is accepted only with a zero length.
const std = @import("std");
const abi = @import("../abi.zig");
const Status = abi.Status;
const registry = @import("registry.zig");
const index_mod = @import("../index/index.zig");
const Index = index_mod.Index;
const write = @import("../index/write.zig");
const read = @import("../index/read.zig");
const recovery = @import("../index/recovery.zig");
const verify_mod = @import("../index/verify.zig");
const distance = @import("../kernels/distance.zig");
const backup = @import("../index/backup.zig");
const compact = @import("../index/compact.zig");
const centre = @import("../index/centre.zig");
const quantize = @import("../kernels/quantize.zig");
const parallel = @import("../sync/pool.zig");
const records = @import("../index/records.zig");
const payload = @import("../records/payload.zig");

/// 3: `VerifyReport` gained `code_mismatches` (rabitq storage), and `StorageKind` `rabitq`.
pub const abi_version: u32 = 3;

fn slice(comptime T: type, ptr: ?[*]const T, len: u64) ?[]const T {
    if (len == 0) return &.{};
    const p = ptr orelse return null;
    return p[0..@intCast(len)];
}

/// The codes inside a `quantize.Coded` buffer of `bytes` bytes for `n` dimensions.
fn coded(ptr: ?[*]const u8, bytes: u64, n: u32) ?[*]const u8 {
    const p = ptr orelse return null;
    if (n == 0 or bytes < quantize.Coded.bytes(n)) return null;
    return p + 64;
}

fn rankingOf(flags: u32) ?read.Ranking {
    if (flags & ~abi.search_flag_walk_ranking != 0) return null;
    return if (flags & abi.search_flag_walk_ranking != 0) .walk else .exact;
}

/// An index path from the caller: non-empty, no NUL, and short enough that every companion file
/// name (the longest, `~compact.building`, adds 17 bytes, and a NUL ends it) fits a path buffer.
fn pathOf(ptr: ?[*]const u8, len: u32) ?[]const u8 {
    const p = slice(u8, ptr, len) orelse return null;
    if (p.len == 0 or p.len > std.fs.max_path_bytes - path_suffix_room) return null;
    if (std.mem.indexOfScalar(u8, p, 0) != null) return null;
    return p;
}

const path_suffix_room = 32;

fn sliceMut(comptime T: type, ptr: ?[*]T, len: u64) ?[]T {
    if (len == 0) return &.{};
    const p = ptr orelse return null;
    return p[0..@intCast(len)];
}

/// Every error a call can return. `statusOf` switches over it exhaustively, so an error added
/// anywhere below fails to compile here until it has a status of its own.
pub const CallError = index_mod.Error || registry.Error || error{InvalidK};

pub fn statusOf(err: CallError) Status {
    return switch (err) {
        error.InvalidArgument => .invalid_argument,
        error.DimensionMismatch => .dimension_mismatch,
        error.InvalidVector => .invalid_vector,
        error.NotFound => .not_found,
        error.OutOfMemory => .out_of_memory,
        error.CapacityExceeded => .capacity_exceeded,
        error.Io => .io,
        error.DiskFull => .disk_full,
        error.NoIndex => .no_index,
        error.Exists => .already_exists,
        error.Unverifiable => .unverifiable,
        error.Corrupt => .corrupt_index,
        error.UnsupportedVersion => .unsupported_version,
        error.Locked => .locked,
        error.StaleGuard => .stale_guard,
        error.TooManyHandles => .too_many_handles,
        error.Busy => .busy,
        error.ReadOnly => .read_only,
        error.UnknownMetric => .unknown_metric,
        error.InvalidDimensions => .invalid_dimensions,
        error.InvalidEf => .invalid_ef,
        error.InvalidHandle => .invalid_handle,
        error.Closed => .closed,
        error.InvalidK => .invalid_k,
        error.InvalidKey => .invalid_key,
        error.InvalidMetadata => .invalid_metadata,
        error.InvalidFilter => .invalid_filter,
        error.IdConflict => .id_conflict,
        error.BufferTooSmall => .buffer_too_small,
        error.Internal => .internal,
    };
}

/// One call on an index: a registry user (so close cannot free it underneath) holding the
/// structure lock shared (so compaction cannot swap the storage underneath).
const Op = struct {
    handle: u32,
    index: *Index,

    fn end(op: Op) void {
        op.index.structure.unlockShared();
        registry.leave(op.handle);
    }
};

/// The newest generation each slot has issued, so that a call through the handle of an index
/// that was closed and freed says `closed`, not `invalid_handle` (wrappers attached in Workers
/// hold no reference: the owner's close frees the index once running calls and pins end).
var issued_generations: [registry.indexes_max]std.atomic.Value(u32) =
    @splat(std.atomic.Value(u32).init(0));

/// `registry.enter`, with `Closed` for the handle of an index that existed and is gone.
fn enter(handle: u32) registry.Error!*Index {
    return registry.enter(handle) catch |err| {
        const slot = handle & (registry.indexes_max - 1);
        const generation = handle >> registry.slot_bits;
        const issued = issued_generations[slot].load(.acquire);
        const gone = generation != 0 and generation <= issued;
        return if (err == error.InvalidHandle and gone) error.Closed else err;
    };
}

fn begin(handle: u32) registry.Error!Op {
    const index = try enter(handle);
    index.structure.lockShared(&index.counters.lock_contention);
    return .{ .handle = handle, .index = index };
}

const BatchArgs = struct {
    queries: ?[*]const f32,
    queries_len: u64,
    count: u32,
    k: u32,
    ef: u32,
    flags: u32,
    threads: u32,
};
const BatchFilter = struct { ptr: ?[*]const u8, len: u32 };
const BatchOut = struct { keys: ?[*]u64, distances: ?[*]f32, counts: ?[*]u32 };

/// The batch searches, checked once for both exports: `count` queries of `dimensions` floats,
/// each validated, results at [i*k, i*k + counts[i]); with `filter`, one program for them all.
fn searchBatch(
    handle: u32,
    snapshot: u64,
    args: BatchArgs,
    filter: ?BatchFilter,
    out: BatchOut,
) Status {
    const op = begin(handle) catch |err| return statusOf(err);
    defer op.end();
    const index = op.index;
    const d = index.layout.dimensions;
    if (args.queries_len != @as(u64, args.count) * d) return .dimension_mismatch;
    const q = slice(f32, args.queries, args.queries_len) orelse return .invalid_argument;
    var program: ?[]const u8 = null;
    if (filter) |f| program = slice(u8, f.ptr, f.len) orelse return .invalid_argument;
    for (0..args.count) |i| write.validateVector(
        index,
        q[i * d ..][0..d],
    ) catch |err| return statusOf(err);
    const beam = checkSearch(index, args.k, args.ef) catch |err| return statusOf(err);
    const total = @as(u64, args.count) * args.k;
    const keys = sliceMut(u64, out.keys, total) orelse return .invalid_argument;
    const distances = sliceMut(f32, out.distances, total) orelse return .invalid_argument;
    const counts = sliceMut(u32, out.counts, args.count) orelse return .invalid_argument;
    const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
    const ranking = rankingOf(args.flags) orelse return .invalid_argument;
    const bytes = program orelse {
        read.searchBatch(
            index,
            q,
            args.k,
            beam,
            seq,
            ranking,
            args.threads,
            keys,
            distances,
            counts,
        ) catch |err| return statusOf(err);
        return .ok;
    };
    // The caller's buffer is read once, here: a copy, as qv_index_search_filtered does.
    const copy = std.heap.c_allocator.dupe(u8, bytes) catch return .out_of_memory;
    defer std.heap.c_allocator.free(copy);
    records.searchBatch(
        index,
        q,
        args.k,
        beam,
        seq,
        ranking,
        copy,
        args.threads,
        keys,
        distances,
        counts,
    ) catch |err| return statusOf(err);
    return .ok;
}

fn checkSearch(index: *Index, k: u32, ef: u32) error{ InvalidK, InvalidEf }!u32 {
    if (k == 0) return error.InvalidK;
    const beam = if (ef == 0) @max(index.ef_search, k) else ef;
    if (beam < k or beam > abi.ef_query_max) return error.InvalidEf;
    return beam;
}

fn register(index: *Index, out_handle: ?*u32) Status {
    const out = out_handle orelse {
        index.destroy();
        return .invalid_argument;
    };
    const handle = registry.register(index) catch |err| {
        index.destroy();
        return statusOf(err);
    };
    const slot = handle & (registry.indexes_max - 1);
    issued_generations[slot].store(handle >> registry.slot_bits, .release);
    out.* = handle;
    return .ok;
}

/// A view buffer's hold on its memory: one registry user (the index is not destroyed) and one
/// guard (its mapping is not unmapped). The TS side names a pin by a u64 id, never a pointer,
/// so a forged or repeated id is refused (ids are never reused). Bun's deallocator and the TS
/// side may both release one pin; the first wins, the second finds nothing.
const Pin = struct {
    handle: u32,
    index: *Index,
    guard: u64,
};

const pins = struct {
    /// A leaf lock: nothing else is acquired while it is held.
    var mutex: std.Thread.Mutex = .{};
    var table: std.AutoHashMapUnmanaged(u64, Pin) = .{};
    var id_next: u64 = 1;

    fn add(pin: Pin) error{OutOfMemory}!u64 {
        mutex.lock();
        defer mutex.unlock();
        const id = id_next;
        try table.put(std.heap.c_allocator, id, pin);
        id_next += 1;
        std.debug.assert(id_next > id);
        return id;
    }

    fn take(id: u64) ?Pin {
        mutex.lock();
        defer mutex.unlock();
        const entry = table.fetchRemove(id) orelse return null;
        return entry.value;
    }

    /// Gives back the pin's guard and registry user; the last user of a closed index frees it.
    fn release(pin: Pin) void {
        const index = pin.index;
        index.structure.lockShared(&index.counters.lock_contention);
        // The pin owns its guard, whose handle it never gave out, and compaction refuses to run
        // while it lives. Only a caller forging guard handles through qv_guard_release could
        // have released it first; that is refused there or lands here as nothing to release.
        read.guardRelease(index, pin.guard) catch {};
        index.structure.unlockShared();
        registry.leave(pin.handle);
    }
};

pub const exports = struct {
    pub fn qv_abi_version() callconv(.C) u32 {
        return abi_version;
    }

    /// The SIMD level the distance kernels run at (distance.Level).
    pub fn qv_kernel_level() callconv(.C) u32 {
        return @intFromEnum(distance.level());
    }

    pub fn qv_kernel_l2sq(a: ?[*]const f32, b: ?[*]const f32, len: u32) callconv(.C) f32 {
        const x = slice(f32, a, len) orelse return std.math.nan(f32);
        const y = slice(f32, b, len) orelse return std.math.nan(f32);
        return distance.l2sq(x, y);
    }

    pub fn qv_kernel_dot(a: ?[*]const f32, b: ?[*]const f32, len: u32) callconv(.C) f32 {
        const x = slice(f32, a, len) orelse return std.math.nan(f32);
        const y = slice(f32, b, len) orelse return std.math.nan(f32);
        return distance.dot(x, y);
    }

    /// Codes `vector` around `centre` (i8 storage's format, for benchmarks and tools) into
    /// `out`, which must hold `quantize.Coded` bytes: 64 + `len` rounded up to 16, the codes at
    /// offset 64 and their terms in the 16 bytes before. `metric` is an `abi.Metric`.
    pub fn qv_kernel_encode_i8(
        vector: ?[*]const f32,
        centre_ptr: ?[*]const f32,
        len: u32,
        metric: u32,
        out: ?[*]u8,
        out_len: u64,
    ) callconv(.C) Status {
        const x = slice(f32, vector, len) orelse return .invalid_argument;
        const c = slice(f32, centre_ptr, len) orelse return .invalid_argument;
        if (metric > @intFromEnum(abi.Metric.cosine)) return .unknown_metric;
        const o = sliceMut(u8, out, out_len) orelse return .invalid_argument;
        if (o.len < quantize.Coded.bytes(len)) return .invalid_argument;
        // The index's bounds on stored vectors keep the codes' arithmetic finite.
        for ([_][]const f32{ x, c }) |v| {
            _ = distance.boundedNorm(v) catch |err| return statusOf(err);
        }
        quantize.encode(
            if (metric == @intFromEnum(abi.Metric.l2sq)) .l2sq else .dot,
            x,
            c,
            o.ptr + 64,
        );
        return .ok;
    }

    /// The i8 kernels on two buffers written by `qv_kernel_encode_i8` (NaN on bad lengths).
    pub fn qv_kernel_l2sq_i8(
        a: ?[*]const u8,
        a_len: u64,
        b: ?[*]const u8,
        b_len: u64,
        len: u32,
    ) callconv(.C) f32 {
        const x = coded(a, a_len, len) orelse return std.math.nan(f32);
        const y = coded(b, b_len, len) orelse return std.math.nan(f32);
        return distance.kernelI8(.l2sq)(x, y, len);
    }

    pub fn qv_kernel_dot_i8(
        a: ?[*]const u8,
        a_len: u64,
        b: ?[*]const u8,
        b_len: u64,
        len: u32,
    ) callconv(.C) f32 {
        const x = coded(a, a_len, len) orelse return std.math.nan(f32);
        const y = coded(b, b_len, len) orelse return std.math.nan(f32);
        return distance.kernelI8(.ip)(x, y, len);
    }

    /// Creates an in-memory index.
    pub fn qv_index_create(options: ?*const abi.Options, out_handle: ?*u32) callconv(.C) Status {
        const opts = options orelse return .invalid_argument;
        const index = Index.create(
            std.heap.c_allocator,
            opts.*,
            null,
        ) catch |err| return statusOf(err);
        return register(index, out_handle);
    }

    /// Opens (or, with flag_create, creates) a persistent index at `path`. `validation` 1 checks
    /// the checksums of every region (reads the whole index); 0 checks headers and metadata.
    pub fn qv_index_open(
        path: ?[*]const u8,
        path_len: u32,
        options: ?*const abi.Options,
        validation: u32,
        out_handle: ?*u32,
    ) callconv(.C) Status {
        const opts = options orelse return .invalid_argument;
        const p = pathOf(path, path_len) orelse return .invalid_argument;
        const mode: recovery.Validation = if (validation == 1) .full else .fast;
        const index = recovery.open(std.heap.c_allocator, p, opts.*, mode) catch |err| blk: {
            if (err != error.NoIndex or
                opts.flags & abi.Options.flag_create == 0) return statusOf(err);
            break :blk Index.create(std.heap.c_allocator, opts.*, p) catch |e| return statusOf(e);
        };
        return register(index, out_handle);
    }

    /// Closes the index for every user; running calls finish first, later ones get `closed`.
    pub fn qv_index_close(handle: u32) callconv(.C) Status {
        registry.close(handle) catch |err| return statusOf(err);
        return .ok;
    }

    /// Adds a reference for another wrapper (e.g. in a Worker). Pair with qv_index_release.
    pub fn qv_index_retain(handle: u32) callconv(.C) Status {
        _ = enter(handle) catch |err| return statusOf(err);
        return .ok;
    }

    /// Drops a reference; the last one of a closed index frees it.
    pub fn qv_index_release(handle: u32) callconv(.C) Status {
        registry.release(handle) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_index_add(
        handle: u32,
        key: u64,
        vector: ?[*]const f32,
        len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const v = slice(f32, vector, len) orelse return .invalid_argument;
        // The caller's memory may be shared (a SharedArrayBuffer another Worker writes): it is
        // read exactly once, into a copy that is validated, logged and stored.
        const copy = std.heap.c_allocator.dupe(f32, v) catch return .out_of_memory;
        defer std.heap.c_allocator.free(copy);
        write.add(index, key, copy) catch |err| return statusOf(err);
        write.checkpointIfDue(index);
        return .ok;
    }

    pub fn qv_index_add_batch(
        handle: u32,
        keys: ?[*]const u64,
        count: u32,
        vectors: ?[*]const f32,
        vectors_len: u64,
        threads: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const k_shared = slice(u64, keys, count) orelse return .invalid_argument;
        const v_shared = slice(f32, vectors, vectors_len) orelse return .invalid_argument;
        // Read once into copies (see qv_index_add): validation and storage see the same bytes.
        const k = std.heap.c_allocator.dupe(u64, k_shared) catch return .out_of_memory;
        defer std.heap.c_allocator.free(k);
        const v = std.heap.c_allocator.dupe(f32, v_shared) catch return .out_of_memory;
        defer std.heap.c_allocator.free(v);
        write.addBatch(index, k, v, threads) catch |err| return statusOf(err);
        write.checkpointIfDue(index);
        return .ok;
    }

    /// i8 storage: sets the centre its codes are taken around (`dimensions` floats). Allowed
    /// until the first add trains one; afterwards only the same centre is accepted (`busy`).
    pub fn qv_index_set_centre(
        handle: u32,
        centre_ptr: ?[*]const f32,
        len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const c_shared = slice(f32, centre_ptr, len) orelse return .invalid_argument;
        const c = std.heap.c_allocator.dupe(f32, c_shared) catch return .out_of_memory;
        defer std.heap.c_allocator.free(c);
        centre.set(op.index, c) catch |err| return statusOf(err);
        return .ok;
    }

    /// i8 storage: copies the centre (`dimensions` floats; zeros until it is set or trained).
    pub fn qv_index_get_centre(handle: u32, out: ?[*]f32, len: u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const o = sliceMut(f32, out, len) orelse return .invalid_argument;
        centre.copy(op.index, o) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_index_remove(handle: u32, key: u64, out_removed: ?*u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_removed orelse return .invalid_argument;
        out.* = @intFromBool(write.remove(index, key) catch |err| return statusOf(err));
        write.checkpointIfDue(index);
        return .ok;
    }

    /// Keys of string ids (docs/records.md): id i is `bytes[offsets[i]..offsets[i + 1]]`.
    /// `invalid_key` if an id is empty, longer than `abi.id_bytes_max` or not UTF-8.
    pub fn qv_hash_ids(
        bytes: ?[*]const u8,
        bytes_len: u64,
        offsets: ?[*]const u32,
        count: u32,
        out_keys: ?[*]u64,
    ) callconv(.C) Status {
        const b = slice(u8, bytes, bytes_len) orelse return .invalid_argument;
        const o = slice(u32, offsets, @as(u64, count) + 1) orelse return .invalid_argument;
        const keys = sliceMut(u64, out_keys, count) orelse return .invalid_argument;
        for (keys, 0..) |*key, i| {
            if (o[i] > o[i + 1] or o[i + 1] > b.len) return .invalid_argument;
            const id = b[o[i]..o[i + 1]];
            if (!payload.validId(id)) return .invalid_key;
            key.* = payload.keyOfId(id);
        }
        return .ok;
    }

    /// Sets the schema (the indexed fields, docs/records.md) of an index without records; the
    /// same schema again is accepted. `busy` once records exist, `invalid_argument` if malformed.
    pub fn qv_index_set_schema(handle: u32, schema: ?[*]const u8, len: u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const bytes = slice(u8, schema, len) orelse return .invalid_argument;
        const copy = std.heap.c_allocator.dupe(u8, bytes) catch return .out_of_memory;
        defer std.heap.c_allocator.free(copy);
        records.setSchema(op.index, copy) catch |err| return statusOf(err);
        return .ok;
    }

    /// Copies the schema into `out`; `*out_len` is its length (`buffer_too_small` if larger
    /// than `cap`).
    pub fn qv_index_schema(
        handle: u32,
        out: ?[*]u8,
        cap: u32,
        out_len: ?*u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const o = sliceMut(u8, out, cap) orelse return .invalid_argument;
        const needed = out_len orelse return .invalid_argument;
        records.schema(op.index, o, needed) catch |err| return statusOf(err);
        return .ok;
    }

    /// `qv_index_add` with a record payload (string id, metadata: docs/records.md).
    pub fn qv_index_add_record(
        handle: u32,
        key: u64,
        vector: ?[*]const f32,
        len: u32,
        record: ?[*]const u8,
        record_len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const v = slice(f32, vector, len) orelse return .invalid_argument;
        const r = slice(u8, record, record_len) orelse return .invalid_argument;
        // Read once (see qv_index_add).
        const vc = std.heap.c_allocator.dupe(f32, v) catch return .out_of_memory;
        defer std.heap.c_allocator.free(vc);
        const rc = std.heap.c_allocator.dupe(u8, r) catch return .out_of_memory;
        defer std.heap.c_allocator.free(rc);
        write.addRecord(op.index, key, vc, rc) catch |err| return statusOf(err);
        write.checkpointIfDue(op.index);
        return .ok;
    }

    /// `qv_index_add_batch` with one payload per vector: payload i is
    /// `records[offsets[i]..offsets[i + 1]]` (empty: none).
    pub fn qv_index_add_records(
        handle: u32,
        keys: ?[*]const u64,
        count: u32,
        vectors: ?[*]const f32,
        vectors_len: u64,
        records_ptr: ?[*]const u8,
        records_len: u64,
        offsets: ?[*]const u32,
        threads: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const gpa = std.heap.c_allocator;
        const k = slice(u64, keys, count) orelse return .invalid_argument;
        const v = slice(f32, vectors, vectors_len) orelse return .invalid_argument;
        const r = slice(u8, records_ptr, records_len) orelse return .invalid_argument;
        const o = slice(u32, offsets, @as(u64, count) + 1) orelse return .invalid_argument;
        // Read once into copies (see qv_index_add).
        const kc = gpa.dupe(u64, k) catch return .out_of_memory;
        defer gpa.free(kc);
        const vc = gpa.dupe(f32, v) catch return .out_of_memory;
        defer gpa.free(vc);
        const rc = gpa.dupe(u8, r) catch return .out_of_memory;
        defer gpa.free(rc);
        const oc = gpa.dupe(u32, o) catch return .out_of_memory;
        defer gpa.free(oc);
        const parts = gpa.alloc([]const u8, count) catch return .out_of_memory;
        defer gpa.free(parts);
        for (parts, 0..) |*part, i| {
            if (oc[i] > oc[i + 1] or oc[i + 1] > rc.len) return .invalid_argument;
            part.* = rc[oc[i]..oc[i + 1]];
        }
        write.addBatchRecords(op.index, kc, vc, parts, threads) catch |err| return statusOf(err);
        write.checkpointIfDue(op.index);
        return .ok;
    }

    /// Replaces the payload of the live record `key` (its id must be the payload's id, else
    /// `not_found`); the vector stays.
    pub fn qv_index_update_record(
        handle: u32,
        key: u64,
        record: ?[*]const u8,
        record_len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const r = slice(u8, record, record_len) orelse return .invalid_argument;
        const rc = std.heap.c_allocator.dupe(u8, r) catch return .out_of_memory;
        defer std.heap.c_allocator.free(rc);
        records.update(op.index, key, rc) catch |err| return statusOf(err);
        write.checkpointIfDue(op.index);
        return .ok;
    }

    /// `qv_index_remove` of the record whose id is `id` (empty: a numeric id).
    pub fn qv_index_remove_record(
        handle: u32,
        key: u64,
        id: ?[*]const u8,
        id_len: u32,
        out_removed: ?*u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const i = slice(u8, id, id_len) orelse return .invalid_argument;
        const ic = std.heap.c_allocator.dupe(u8, i) catch return .out_of_memory;
        defer std.heap.c_allocator.free(ic);
        const out = out_removed orelse return .invalid_argument;
        out.* = @intFromBool(write.removeId(op.index, key, ic) catch |err| return statusOf(err));
        write.checkpointIfDue(op.index);
        return .ok;
    }

    /// For each key: `u32 length` and the payload a read at the snapshot sees (0xFFFFFFFF: no
    /// such record; 0: a record without payload). `buffer_too_small` sets `*out_len` to the
    /// bytes needed.
    pub fn qv_index_read_records(
        handle: u32,
        snapshot: u64,
        keys: ?[*]const u64,
        count: u32,
        out: ?[*]u8,
        cap: u64,
        out_len: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const k = slice(u64, keys, count) orelse return .invalid_argument;
        const o = sliceMut(u8, out, cap) orelse return .invalid_argument;
        const needed = out_len orelse return .invalid_argument;
        const seq = read.readSeq(op.index, snapshot) catch |err| return statusOf(err);
        records.readPayloads(op.index, seq, k, o, needed) catch |err| return statusOf(err);
        return .ok;
    }

    /// `qv_index_search` of the records that `filter` (a program, docs/records.md) matches.
    pub fn qv_index_search_filtered(
        handle: u32,
        snapshot: u64,
        query: ?[*]const f32,
        len: u32,
        k: u32,
        ef: u32,
        flags: u32,
        filter: ?[*]const u8,
        filter_len: u32,
        out_keys: ?[*]u64,
        out_distances: ?[*]f32,
        out_count: ?*u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const q = slice(f32, query, len) orelse return .invalid_argument;
        const f = slice(u8, filter, filter_len) orelse return .invalid_argument;
        write.validateVector(index, q) catch |err| return statusOf(err);
        const beam = checkSearch(index, k, ef) catch |err| return statusOf(err);
        const keys = sliceMut(u64, out_keys, k) orelse return .invalid_argument;
        const distances = sliceMut(f32, out_distances, k) orelse return .invalid_argument;
        const count = out_count orelse return .invalid_argument;
        const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
        const ranking = rankingOf(flags) orelse return .invalid_argument;
        const fc = std.heap.c_allocator.dupe(u8, f) catch return .out_of_memory;
        defer std.heap.c_allocator.free(fc);
        count.* = records.search(
            index,
            q,
            k,
            beam,
            seq,
            ranking,
            fc,
            .{ .keys = keys, .distances = distances },
        ) catch |err| return statusOf(err);
        return .ok;
    }

    /// How many records visible at the snapshot `filter` matches.
    pub fn qv_index_count_matching(
        handle: u32,
        snapshot: u64,
        filter: ?[*]const u8,
        filter_len: u32,
        out: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const f = slice(u8, filter, filter_len) orelse return .invalid_argument;
        const o = out orelse return .invalid_argument;
        const seq = read.readSeq(op.index, snapshot) catch |err| return statusOf(err);
        const fc = std.heap.c_allocator.dupe(u8, f) catch return .out_of_memory;
        defer std.heap.c_allocator.free(fc);
        o.* = records.count(op.index, seq, fc) catch |err| return statusOf(err);
        return .ok;
    }

    /// Removes every live record `filter` matches; `*out` is how many.
    pub fn qv_index_remove_matching(
        handle: u32,
        filter: ?[*]const u8,
        filter_len: u32,
        out: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const f = slice(u8, filter, filter_len) orelse return .invalid_argument;
        const o = out orelse return .invalid_argument;
        const fc = std.heap.c_allocator.dupe(u8, f) catch return .out_of_memory;
        defer std.heap.c_allocator.free(fc);
        o.* = records.removeMatching(op.index, fc) catch |err| return statusOf(err);
        write.checkpointIfDue(op.index);
        return .ok;
    }

    pub fn qv_index_has(handle: u32, snapshot: u64, key: u64, out_has: ?*u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_has orelse return .invalid_argument;
        const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
        out.* = @intFromBool(read.has(index, key, seq));
        return .ok;
    }

    /// Copies the vector of `key` into `out` (dimensions floats); `not_found` if absent.
    pub fn qv_index_get(
        handle: u32,
        snapshot: u64,
        key: u64,
        out: ?[*]f32,
        len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        if (len != index.layout.dimensions) return .dimension_mismatch;
        const o = sliceMut(f32, out, len) orelse return .invalid_argument;
        const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
        if (!read.get(index, key, seq, o)) return .not_found;
        return .ok;
    }

    /// k nearest neighbours of one query, closest first; `ef` 0 means the index default.
    /// `flags`: `abi.search_flag_walk_ranking` or 0.
    pub fn qv_index_search(
        handle: u32,
        snapshot: u64,
        query: ?[*]const f32,
        len: u32,
        k: u32,
        ef: u32,
        flags: u32,
        out_keys: ?[*]u64,
        out_distances: ?[*]f32,
        out_count: ?*u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const q = slice(f32, query, len) orelse return .invalid_argument;
        write.validateVector(index, q) catch |err| return statusOf(err);
        const beam = checkSearch(index, k, ef) catch |err| return statusOf(err);
        const keys = sliceMut(u64, out_keys, k) orelse return .invalid_argument;
        const distances = sliceMut(f32, out_distances, k) orelse return .invalid_argument;
        const count = out_count orelse return .invalid_argument;
        const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
        const ranking = rankingOf(flags) orelse return .invalid_argument;
        count.* = read.searchOneWith(
            index,
            q,
            k,
            beam,
            seq,
            ranking,
            null,
            .{ .keys = keys, .distances = distances },
        ) catch |err| return statusOf(err);
        return .ok;
    }

    /// `count` queries from one flat array; results at [i*k, i*k + counts[i]).
    pub fn qv_index_search_batch(
        handle: u32,
        snapshot: u64,
        queries: ?[*]const f32,
        queries_len: u64,
        count: u32,
        k: u32,
        ef: u32,
        flags: u32,
        threads: u32,
        out_keys: ?[*]u64,
        out_distances: ?[*]f32,
        out_counts: ?[*]u32,
    ) callconv(.C) Status {
        return searchBatch(handle, snapshot, .{
            .queries = queries,
            .queries_len = queries_len,
            .count = count,
            .k = k,
            .ef = ef,
            .flags = flags,
            .threads = threads,
        }, null, .{ .keys = out_keys, .distances = out_distances, .counts = out_counts });
    }

    /// `qv_index_search_batch` with one filter for every query (compiled and matched once).
    pub fn qv_index_search_batch_filtered(
        handle: u32,
        snapshot: u64,
        queries: ?[*]const f32,
        queries_len: u64,
        count: u32,
        k: u32,
        ef: u32,
        flags: u32,
        threads: u32,
        filter: ?[*]const u8,
        filter_len: u32,
        out_keys: ?[*]u64,
        out_distances: ?[*]f32,
        out_counts: ?[*]u32,
    ) callconv(.C) Status {
        return searchBatch(handle, snapshot, .{
            .queries = queries,
            .queries_len = queries_len,
            .count = count,
            .k = k,
            .ef = ef,
            .flags = flags,
            .threads = threads,
        }, .{ .ptr = filter, .len = filter_len }, .{
            .keys = out_keys,
            .distances = out_distances,
            .counts = out_counts,
        });
    }

    pub fn qv_index_size(handle: u32, snapshot: u64, out_size: ?*u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_size orelse return .invalid_argument;
        out.* = read.snapshotSize(index, snapshot) catch |err| return statusOf(err);
        return .ok;
    }

    /// Writes up to `capacity` visible keys; `out_total` receives how many are visible in all.
    pub fn qv_index_keys(
        handle: u32,
        snapshot: u64,
        out_keys: ?[*]u64,
        capacity: u64,
        out_total: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const keys = sliceMut(u64, out_keys, capacity) orelse return .invalid_argument;
        const total = out_total orelse return .invalid_argument;
        const seq = read.readSeq(index, snapshot) catch |err| return statusOf(err);
        total.* = read.keys(index, seq, keys);
        return .ok;
    }

    pub fn qv_index_reserve(handle: u32, slots: u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        write.reserve(index, slots) catch |err| return statusOf(err);
        return .ok;
    }

    /// Maps the storage again at its current size: a real remap (new addresses, epoch + 1)
    /// without growth. For tests of the remap path and for forcing stale guards.
    pub fn qv_index_remap(handle: u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        write.remap(index) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_index_stats(handle: u32, out_stats: ?*abi.Stats) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_stats orelse return .invalid_argument;
        out.* = index.stats();
        return .ok;
    }

    pub fn qv_index_verify(handle: u32, out_report: ?*abi.VerifyReport) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_report orelse return .invalid_argument;
        out.* = verify_mod.verify(index) catch |err| return statusOf(err);
        return .ok;
    }

    /// Makes every acknowledged write durable against power loss (fsync of the WAL).
    pub fn qv_index_sync(handle: u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        write.sync(index) catch |err| return statusOf(err);
        return .ok;
    }

    /// Writes a consistent image into the mapped files and empties the WAL.
    pub fn qv_index_checkpoint(handle: u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        index.checkpoint() catch |err| return statusOf(err);
        return .ok;
    }

    /// The address of the index's epoch counter (u64), valid while the caller holds a reference.
    pub fn qv_index_epoch_address(handle: u32, out_address: ?*usize) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_address orelse return .invalid_argument;
        out.* = @intFromPtr(&index.storage.epochs.epoch.raw);
        return .ok;
    }

    /// Reclaims tombstones: rebuilds the graph from the live vectors into fresh storage and swaps
    /// it in. Takes the exclusive path (every other call on the index waits); `busy` while views
    /// or snapshots are alive.
    pub fn qv_index_compact(handle: u32, threads: u32) callconv(.C) Status {
        const index = enter(handle) catch |err| return statusOf(err);
        defer registry.leave(handle);
        index.structure.lock(&index.counters.lock_contention);
        defer index.structure.unlock();
        compact.compact(index, threads) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_snapshot_create(handle: u32, out_snapshot: ?*u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const out = out_snapshot orelse return .invalid_argument;
        out.* = read.snapshotCreate(index) catch |err| return statusOf(err);
        return .ok;
    }

    /// Writes the snapshot (0: the live view) as a new persistent index at `path`, while
    /// writers go on. Opening it gives exactly the snapshot's contents.
    pub fn qv_snapshot_save(
        handle: u32,
        snapshot: u64,
        path: ?[*]const u8,
        path_len: u32,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const p = pathOf(path, path_len) orelse return .invalid_argument;
        backup.save(index, snapshot, p) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_snapshot_release(handle: u32, snapshot: u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        read.snapshotRelease(index, snapshot) catch |err| return statusOf(err);
        return .ok;
    }

    /// Pins the current mapping and returns a zero-copy pointer to `key`'s vector. The guard
    /// holds the mapping, not the index: once the last reference goes (an owner's close while
    /// only attached wrappers, which hold none, remain), the index and the mapping are freed.
    /// A reader that may outlive the caller's reference takes qv_pin_acquire instead.
    pub fn qv_guard_acquire(
        handle: u32,
        key: u64,
        out_guard: ?*u64,
        out_address: ?*usize,
        out_epoch: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const guard_out = out_guard orelse return .invalid_argument;
        const address_out = out_address orelse return .invalid_argument;
        const epoch_out = out_epoch orelse return .invalid_argument;
        const info = read.guardAcquire(index, key) catch |err| return statusOf(err);
        guard_out.* = info.handle;
        address_out.* = @intFromPtr(info.ptr);
        epoch_out.* = info.epoch;
        return .ok;
    }

    /// `ok` while the guard's mapping is current, `stale_guard` after a remap.
    pub fn qv_guard_check(handle: u32, guard: u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        read.guardCheck(index, guard) catch |err| return statusOf(err);
        return .ok;
    }

    pub fn qv_guard_release(handle: u32, guard: u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        read.guardRelease(index, guard) catch |err| return statusOf(err);
        return .ok;
    }

    /// Pins the current mapping for `key`'s vector, for a view buffer whose memory must outlive
    /// the wrapper, and returns the pin, the vector's address and the mapping's epoch. The pin
    /// holds a guard and a registry user, taken in this one call (no moment passes with a guard
    /// that holds no user): the index is not destroyed, nor the mapping unmapped, until
    /// qv_pin_release or qv_pin_free, whoever closes the index meanwhile. The guard's handle is
    /// never given out, so only the pin releases it. `closed` if the index is.
    pub fn qv_pin_acquire(
        handle: u32,
        key: u64,
        out_pin: ?*u64,
        out_address: ?*usize,
        out_epoch: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const pin_out = out_pin orelse return .invalid_argument;
        const address_out = out_address orelse return .invalid_argument;
        const epoch_out = out_epoch orelse return .invalid_argument;
        // The pin's own registry user; `op` holds one, so the index cannot close under us.
        const index = enter(handle) catch |err| return statusOf(err);
        const info = read.guardAcquire(index, key) catch |err| {
            registry.leave(handle);
            return statusOf(err);
        };
        const id = pins.add(.{ .handle = handle, .index = index, .guard = info.handle }) catch {
            read.guardRelease(index, info.handle) catch unreachable;
            registry.leave(handle);
            return .out_of_memory;
        };
        std.debug.assert(id != 0);
        pin_out.* = id;
        address_out.* = @intFromPtr(info.ptr);
        epoch_out.* = info.epoch;
        return .ok;
    }

    /// Copies `key`'s stored vector into `out` (`len` = the dimensions) and returns the epoch of
    /// the mapping it was read from, all under this call's own hold: the copy view of a
    /// read-only index or of a Deno Worker. Nothing is held once it returns, so a caller stopped
    /// right after it (a Worker terminated mid-`view()`) leaks nothing, and JS reads no native
    /// memory at all.
    pub fn qv_view_copy(
        handle: u32,
        key: u64,
        out: ?[*]f32,
        len: u32,
        out_epoch: ?*u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        const vector = out orelse return .invalid_argument;
        const epoch_out = out_epoch orelse return .invalid_argument;
        if (len != index.layout.dimensions) return .invalid_dimensions;
        const info = read.guardAcquire(index, key) catch |err| return statusOf(err);
        defer read.guardRelease(index, info.handle) catch unreachable;
        @memcpy(vector[0..len], info.ptr[0..len]);
        epoch_out.* = info.epoch;
        return .ok;
    }

    /// Releases a pin: its guard, then its registry user. `invalid_argument` if the pin is
    /// unknown (forged, or already released).
    pub fn qv_pin_release(pin: u64) callconv(.C) Status {
        const taken = pins.take(pin) orelse return .invalid_argument;
        pins.release(taken);
        return .ok;
    }

    /// Bun's ArrayBuffer deallocator, `void (*)(void *bytes, void *context)` with the pin id as
    /// the context: called once the buffer's memory is unreachable from JS (moved buffers
    /// included). Releases the pin unless the TS side already did.
    pub fn qv_pin_free(bytes: usize, pin: usize) callconv(.C) void {
        _ = bytes;
        const taken = pins.take(pin) orelse return;
        pins.release(taken);
    }
    /// 1 if the index takes writes, 0 if it was opened read-only (its mappings are then
    /// read-only memory: the TS side gives copies, not views, of such an index).
    pub fn qv_index_writable(handle: u32, out_writable: ?*u32) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const out = out_writable orelse return .invalid_argument;
        out.* = @intFromBool(op.index.writable);
        return .ok;
    }

    /// The current mapping epoch. For wrappers that hold no reference on the index (attached in
    /// a Worker), which must not keep reading the epoch word at its address.
    pub fn qv_index_epoch(handle: u32, out_epoch: ?*u64) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const out = out_epoch orelse return .invalid_argument;
        out.* = op.index.storage.epochs.epoch.load(.acquire);
        return .ok;
    }

    /// Prepares a batch that the caller then adds in chunks (the async API, src/async/): checks
    /// every vector as `qv_index_add_batch` would, trains the i8 centre on the whole batch and
    /// reserves its slots, so the chunks write exactly what one call would and a bad batch
    /// writes nothing. Writes no vector.
    pub fn qv_index_prepare_batch(
        handle: u32,
        count: u32,
        vectors: ?[*]const f32,
        vectors_len: u64,
    ) callconv(.C) Status {
        const op = begin(handle) catch |err| return statusOf(err);
        defer op.end();
        const index = op.index;
        if (!index.writable) return .read_only;
        const dims = index.layout.dimensions;
        const v_shared = slice(f32, vectors, vectors_len) orelse return .invalid_argument;
        if (v_shared.len != @as(u64, count) * dims) return .dimension_mismatch;
        // Read once into a copy (see qv_index_add): validation and training see the same bytes.
        const v = std.heap.c_allocator.dupe(f32, v_shared) catch return .out_of_memory;
        defer std.heap.c_allocator.free(v);
        for (0..count) |i| {
            write.validateVector(index, v[i * dims ..][0..dims]) catch |err| return statusOf(err);
        }
        if (count == 0) return .ok;
        centre.ensure(index, v, count) catch |err| return statusOf(err);
        write.reserve(index, index.slots_used.load(.acquire) + count) catch |err|
            return statusOf(err);
        return .ok;
    }

    /// `qv_index_compact` that writes its progress to `progress` ([0] rebuilt, [1] to rebuild)
    /// and stops before the swap once `cancel` is nonzero: then `out_cancelled` is 1 and the
    /// index is unchanged. Both may be shared memory another thread reads and writes.
    pub fn qv_index_compact_controlled(
        handle: u32,
        threads: u32,
        cancel: ?*const u32,
        progress: ?[*]u64,
        out_cancelled: ?*u32,
    ) callconv(.C) Status {
        const index = registry.enter(handle) catch |err| return statusOf(err);
        defer registry.leave(handle);
        const control = compact.Control{
            .cancel = cancel orelse return .invalid_argument,
            .progress = (progress orelse return .invalid_argument)[0..2],
        };
        const out = out_cancelled orelse return .invalid_argument;
        index.structure.lock(&index.counters.lock_contention);
        defer index.structure.unlock();
        const finished = compact.compactControlled(index, threads, control) catch |err|
            return statusOf(err);
        out.* = @intFromBool(!finished);
        return .ok;
    }

    /// The registry's open indexes and the references held on them (wrappers and running
    /// calls), for leak checks.
    pub fn qv_registry_counts(out_open: ?*u32, out_users: ?*u64) callconv(.C) Status {
        const open = out_open orelse return .invalid_argument;
        const users = out_users orelse return .invalid_argument;
        const counts = registry.counts();
        open.* = counts.open;
        users.* = counts.users;
        return .ok;
    }
};

comptime {
    // Batches run on at most this many native threads.
    std.debug.assert(parallel.threads_max >= 2);
}

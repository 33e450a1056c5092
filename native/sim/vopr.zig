//! The VOPR (after TigerBeetle's Viewstamped Operation Replicator): a seeded driver runs random
//! sequences of public operations against a real persistent index in a temporary directory, arms
//! random I/O faults through the OS layer's test hook (storage/os.zig `faults`) before random
//! operations, and checks the index against a reference model after every step.
//!
//! Operations: add, upsert, remove, batch add, search (live and at a snapshot), get, has, keys,
//! snapshot create/release, checkpoint, sync, compact, backup (live or of a snapshot; the copy
//! is opened and compared), close + reopen, and crash: the in-memory index is dropped without a
//! checkpoint or a close, so the mapped files and the log stay as a killed process leaves them.
//!
//! The model is a map key -> vector, plus a copy per live snapshot. After every step: the index
//! holds exactly the model (size, key set, every vector bit for bit, `has` of absent keys),
//! every snapshot sees exactly its moment; a failed call changed nothing; every search result
//! is a live key of the model (or of the snapshot), with its true distance, sorted, without
//! duplicates; after a crash or a close every acknowledged write is there and no failed one is.
//!
//! Power loss (the `power_loss` step) is simulated for file contents only. The OS layer's test
//! hook `faults.on_fsync` copies a file (by inode) each time an fsync of it succeeds; a power
//! loss drops the index and puts every file of its directory back to that copy (a file never
//! synced loses its contents). That is the most pessimistic outcome per file (nothing written back
//! since its last fsync); mixtures (some pages written back) are not tried. Directory entries
//! are NOT rolled back: a create, rename, link or unlink not yet made durable by a directory
//! fsync survives, so the directory-fsync half of issue 9 item 8 is not checked. After a power
//! loss, every key not written since the last `sync()` or checkpoint that returned must hold
//! exactly its state then; a key written since may hold its state then, any vector written since,
//! or nothing if removed since.
//!
//! Faults are single calls or sticky runs (a disk that stays full) of write, fallocate, fsync,
//! dirsync, ftruncate, rename and mmap failing with ENOSPC, EIO or EFBIG; they are disarmed
//! after the step. Short writes cannot be injected (the hook fails a call whole).
//!
//! `zig build test -Dtest-filter=vopr` runs a fixed budget of seeds; `QUIVER_VOPR_SEED=n` replays
//! one seed with a trace of every step; `QUIVER_SOAK=1` runs many random seeds (their count in
//! `QUIVER_VOPR_SEEDS`, default 2000). The canary tests run deliberately broken variants (a
//! model that forgets removes, a crash that rolls every file back to the last checkpoint)
//! and assert the simulator reports them.
const std = @import("std");
const assert = std.debug.assert;
const abi = @import("../abi.zig");
const index_mod = @import("../index/index.zig");
const Index = index_mod.Index;
const write = @import("../index/write.zig");
const read = @import("../index/read.zig");
const recovery = @import("../index/recovery.zig");
const compact = @import("../index/compact.zig");
const backup = @import("../index/backup.zig");
const verify = @import("../index/verify.zig").verify;
const os = @import("../storage/os.zig");
const swap = @import("../storage/swap.zig");
const layout = @import("../storage/layout.zig");
const live_seq = @import("../hnsw/view.zig").live_seq;
const records = @import("../index/records.zig");
const payload = @import("../records/payload.zig");
const schema_mod = @import("../records/schema.zig");

const gpa = std.heap.c_allocator;
const dims = 4;
const Vector = [dims]f32;
/// Keys are drawn from a small space so that upserts and removes of existing keys are common;
/// more than the initial capacity (64), so growth (and its faults) happens.
const key_space: u64 = 96;
const k_max = 8;

/// A deliberately broken variant the simulator must catch (STYLE.md: every checker has one).
pub const Canary = enum {
    none,
    /// The model forgets every remove.
    model_forgets_remove,
    /// The power-loss check expects every acknowledged write, synced or not (as after a kill).
    power_loss_keeps_everything,
    /// A crash also puts every file back as it was at the last checkpoint the driver asked for
    /// (or the last open): acknowledged writes since then are gone. (Emptying the log alone is
    /// not enough to be caught: after a kill the page cache still holds the mapped writes, and
    /// recovery's scan of the dirty files finds every one of them without the log.)
    crash_rolls_back,
};

pub const Options = struct {
    seed: u64,
    steps: u32 = 200,
    canary: Canary = .none,
    /// Prints every step (a replay).
    trace: bool = false,
    /// Prints nothing on a mismatch (the canary tests expect one).
    quiet: bool = false,
};

pub const Report = struct {
    steps: u32,
    faults_fired: u64,
    crashes: u32,
    reopens: u32,
    power_losses: u32,
};

const Model = std.AutoHashMapUnmanaged(u64, Vector);

const Snapshot = struct { handle: u64, model: Model };

/// What a key written since the last durable point may hold after a power loss: its durable
/// state, any vector written since, or nothing if it was removed since.
const Since = struct { vectors: std.ArrayListUnmanaged(Vector) = .{}, removed: bool = false };

const Op = enum {
    add,
    upsert,
    remove,
    batch,
    search,
    get,
    keys,
    snapshot_create,
    snapshot_release,
    checkpoint,
    sync,
    compact,
    backup,
    reopen,
    crash,
    power_loss,
};

const op_weights = [_]u32{ 20, 12, 12, 5, 10, 8, 3, 4, 3, 3, 4, 2, 2, 2, 3, 3 };

comptime {
    assert(op_weights.len == @typeInfo(Op).@"enum".fields.len);
}

const Mismatch = error{Mismatch};

const Sim = struct {
    options: Options,
    prng: std.Random.DefaultPrng,
    dir: []const u8,
    path_buffer: [std.fs.max_path_bytes]u8 = undefined,
    path: []const u8 = "",
    index: ?*Index = null,
    model: Model = .{},
    snapshots: std.ArrayListUnmanaged(Snapshot) = .{},
    step: u32 = 0,
    op: Op = .add,
    /// The fault armed for this step, if any.
    fault: ?os.Op = null,
    faults_fired: u64 = 0,
    /// The armed fault fired before a mid-step reset (backup checks its copy on a healthy disk).
    fired_latch: bool = false,
    backups: u32 = 0,
    crashes: u32 = 0,
    reopens: u32 = 0,
    /// The canary's copy of every file as of the last checkpoint (`crash_rolls_back` only).
    image: [swap.companion_suffixes.len]?[]u8 = @splat(null),
    /// The model as of the last `sync()` or checkpoint that returned, and what every key written
    /// since may hold after a power loss.
    durable: Model = .{},
    since: std.AutoHashMapUnmanaged(u64, Since) = .{},
    power_losses: u32 = 0,

    fn random(sim: *Sim) std.Random {
        return sim.prng.random();
    }

    fn fail(sim: *Sim, comptime fmt: []const u8, args: anytype) Mismatch {
        if (!sim.options.quiet) {
            std.debug.print(
                "vopr: MISMATCH seed {d} step {d} op {s} fault {s}: " ++ fmt ++ "\n" ++
                    "vopr: replay with QUIVER_VOPR_SEED={d}\n",
                .{
                    sim.options.seed,
                    sim.step,
                    @tagName(sim.op),
                    if (sim.fault) |f| @tagName(f) else "none",
                } ++ args ++ .{sim.options.seed},
            );
        }
        return error.Mismatch;
    }

    fn trace(sim: *Sim, comptime fmt: []const u8, args: anytype) void {
        if (!sim.options.trace) return;
        const where = .{ sim.step, @tagName(sim.op) };
        std.debug.print("vopr: step {d} {s}: " ++ fmt ++ "\n", where ++ args);
    }

    fn deinit(sim: *Sim) void {
        sim.releaseSnapshots();
        sim.snapshots.deinit(gpa);
        sim.model.deinit(gpa);
        sim.durable.deinit(gpa);
        sim.clearSince();
        sim.since.deinit(gpa);
        if (sim.index) |index| crashIndex(index);
        sim.index = null;
        for (&sim.image) |*file| if (file.*) |bytes| gpa.free(bytes);
    }

    fn clearSince(sim: *Sim) void {
        var it = sim.since.valueIterator();
        while (it.next()) |since| since.vectors.deinit(gpa);
        sim.since.clearRetainingCapacity();
    }

    fn releaseSnapshots(sim: *Sim) void {
        for (sim.snapshots.items) |*snap| snap.model.deinit(gpa);
        sim.snapshots.clearRetainingCapacity();
    }
};

fn options() abi.Options {
    return .{
        .dimensions = dims,
        .metric = @intFromEnum(abi.Metric.l2sq),
        .m = 6,
        .ef_construction = 32,
        .ef_search = 32,
        .flags = 0,
        .seed = 42,
        .capacity = 0,
        .storage = 0,
        .reserved = 0,
    };
}

/// Drops the in-memory index as a killed process would: no checkpoint, no close of the log
/// beyond its descriptor. The mapped pages stay in the page cache, so the files keep them.
fn crashIndex(index: *Index) void {
    const storage = index.storage;
    index.destroyState();
    storage.destroy();
}

/// Runs one seed. `dir` is an existing empty directory. Returns `error.Mismatch` (after
/// printing what diverged, unless quiet) when the index and the model disagree.
pub fn run(dir: []const u8, run_options: Options) !Report {
    var sim = Sim{
        .options = run_options,
        .prng = std.Random.DefaultPrng.init(run_options.seed),
        .dir = dir,
    };
    defer sim.deinit();
    defer os.faults.reset();
    sim.path = try std.fmt.bufPrint(&sim.path_buffer, "{s}/index", .{dir});
    Durable.clear();
    os.faults.on_fsync = Durable.onFsync;
    defer os.faults.on_fsync = null;
    defer Durable.clear();
    sim.index = try Index.create(gpa, options(), sim.path);
    try setSchema(sim.index.?);
    try takeImage(&sim);
    while (sim.step < run_options.steps) : (sim.step += 1) {
        sim.op = pickOp(sim.random());
        armFault(&sim);
        try runOp(&sim);
        if (faultFired(&sim)) sim.faults_fired += 1;
        os.faults.reset();
        sim.fault = null;
        sim.fired_latch = false;
        try checkAll(&sim);
    }
    return .{
        .power_losses = sim.power_losses,
        .steps = sim.step,
        .faults_fired = sim.faults_fired,
        .crashes = sim.crashes,
        .reopens = sim.reopens,
    };
}

fn pickOp(random: std.Random) Op {
    var total: u32 = 0;
    for (op_weights) |w| total += w;
    var pick = random.uintLessThan(u32, total);
    for (op_weights, 0..) |w, i| {
        if (pick < w) return @enumFromInt(i);
        pick -= w;
    }
    unreachable;
}

/// Before half of the steps that do I/O: one call (or every call from the nth on) of a random I/O
/// operation fails.
fn armFault(sim: *Sim) void {
    assert(sim.fault == null);
    const random = sim.random();
    const io = switch (sim.op) {
        .search, .get, .keys, .snapshot_create, .snapshot_release => false,
        else => true,
    };
    // Reads do no I/O: a fault armed before one would only thin out the faults that fire.
    if (!io or random.boolean()) return;
    const op = faultOp(sim.op, random);
    // Mostly early calls (single adds make one or two), sometimes deep into a long operation.
    const depth: u64 = if (random.boolean()) 3 else 24;
    const nth = 1 + random.uintLessThan(u64, depth);
    const kind = random.enumValue(os.Fault);
    const sticky = random.uintLessThan(u32, 4) == 0;
    os.faults.arm(op, nth, kind, sticky);
    sim.fault = op;
    sim.trace("arm {s} nth {d} {s}{s}", .{
        @tagName(op),
        nth,
        @tagName(kind),
        if (sticky) " sticky" else "",
    });
}

/// The I/O operation to fail, among those the step makes: a mutation appends to the log (and
/// grows the files now and then); checkpoint and sync fsync; the rest make every kind of call.
fn faultOp(step: Op, random: std.Random) os.Op {
    const mutation = [_]os.Op{ .write, .write, .write, .fallocate, .ftruncate, .mmap, .fsync };
    const flush = [_]os.Op{ .fsync, .fsync, .ftruncate, .write };
    return switch (step) {
        .add, .upsert, .remove, .batch => mutation[random.uintLessThan(usize, mutation.len)],
        .checkpoint, .sync => flush[random.uintLessThan(usize, flush.len)],
        else => random.enumValue(os.Op),
    };
}

/// Whether an error is explained by the armed fault (one fired in this step).
fn faultFired(sim: *Sim) bool {
    const f = sim.fault orelse return false;
    return sim.fired_latch or os.faults.fired(f) > 0;
}

/// Checks that an error is an I/O failure caused by the injected fault.
fn expectInjected(sim: *Sim, err: anyerror) Mismatch!void {
    const name = @errorName(err);
    if (!faultFired(sim)) return sim.fail("error {s} without an injected fault", .{name});
    switch (err) {
        error.Io, error.DiskFull, error.OutOfMemory => {},
        else => return sim.fail("error {s} is not an I/O error", .{@errorName(err)}),
    }
}

fn runOp(sim: *Sim) !void {
    switch (sim.op) {
        .add => try opAdd(sim, sim.random().uintLessThan(u64, key_space)),
        .upsert => {
            const key = existingKey(sim) orelse sim.random().uintLessThan(u64, key_space);
            try opAdd(sim, key);
        },
        .remove => try opRemove(sim),
        .batch => try opBatch(sim),
        .search => try opSearch(sim),
        .get => try opGet(sim),
        .keys => try checkKeys(sim, live_seq, &sim.model),
        .snapshot_create => try opSnapshotCreate(sim),
        .snapshot_release => try opSnapshotRelease(sim),
        .checkpoint => try opQuiet(sim, "checkpoint"),
        .sync => try opQuiet(sim, "sync"),
        .compact => try opCompact(sim),
        .backup => try opBackup(sim),
        .reopen => try opReopen(sim, false),
        .crash => try opReopen(sim, true),
        .power_loss => try opPowerLoss(sim),
    }
}

fn existingKey(sim: *Sim) ?u64 {
    const count = sim.model.count();
    if (count == 0) return null;
    var skip = sim.random().uintLessThan(u32, count);
    var it = sim.model.keyIterator();
    while (it.next()) |key| {
        if (skip == 0) return key.*;
        skip -= 1;
    }
    unreachable;
}

fn randomVector(random: std.Random) Vector {
    var v: Vector = undefined;
    for (&v) |*x| x.* = random.float(f32) * 2 - 1;
    return v;
}

fn writable(sim: *Sim) bool {
    return sim.index.?.writable;
}

fn opAdd(sim: *Sim, key: u64) !void {
    const index = sim.index.?;
    const v = randomVector(sim.random());
    sim.trace("key {d}", .{key});
    var buffer: [record_bytes_max]u8 = undefined;
    write.addRecord(index, key, &v, recordOf(key, &v, &buffer)) catch |err| {
        if (!writable(sim) and err == error.ReadOnly) return;
        return expectInjected(sim, err);
    };
    try modelPut(sim, key, v);
}

/// Every record's payload is a function of its key and vector (odd keys have one, even keys
/// none), so the model of vectors is also the model of payloads: a key whose payload is not
/// the one its vector implies was torn between the two.
fn recordOf(key: u64, v: *const Vector, buffer: *[record_bytes_max]u8) []const u8 {
    if (key % 2 == 0) return &.{};
    const class = [_]u8{ 'k', @intCast('0' + key % 3) };
    var fba = std.heap.FixedBufferAllocator.init(buffer);
    return payload.encode(fba.allocator(), "", std.mem.asBytes(&v[1])[0..4], &.{
        .{ .field = 0, .value = .{ .keyword = &class } },
        .{ .field = 1, .value = .{ .number = v[0] } },
    }) catch unreachable;
}

const record_bytes_max = 64;

fn setSchema(index: *Index) !void {
    var buffer: [64]u8 = undefined;
    var fba = std.heap.FixedBufferAllocator.init(&buffer);
    const bytes = try schema_mod.encode(fba.allocator(), &.{
        .{ .kind = .keyword, .name = "class" },
        .{ .kind = .number, .name = "first" },
    });
    try records.setSchema(index, bytes);
}

/// The payload `index` holds for `key` at `seq` is the one its vector `v` implies.
fn checkRecord(sim: *Sim, index: *Index, seq: u64, key: u64, v: *const Vector) Mismatch!void {
    var want_buffer: [record_bytes_max]u8 = undefined;
    const want = recordOf(key, v, &want_buffer);
    var out: [4 + record_bytes_max]u8 = undefined;
    var needed: u64 = 0;
    records.readPayloads(index, seq, &.{key}, &out, &needed) catch |err|
        return sim.fail("reading the record of {d}: {s}", .{ key, @errorName(err) });
    const length = std.mem.readInt(u32, out[0..4], .little);
    if (length != want.len or !std.mem.eql(u8, out[4..][0..length], want)) {
        return sim.fail("key {d} has a record its vector does not imply", .{key});
    }
}

fn opRemove(sim: *Sim) !void {
    const index = sim.index.?;
    const key = if (sim.random().boolean())
        existingKey(sim) orelse 0
    else
        sim.random().uintLessThan(u64, key_space);
    sim.trace("key {d}", .{key});
    const was = write.remove(index, key) catch |err| {
        if (!writable(sim) and err == error.ReadOnly) return;
        return expectInjected(sim, err);
    };
    if (was != sim.model.contains(key)) return sim.fail("remove({d}) said {}", .{ key, was });
    if (sim.options.canary != .model_forgets_remove) try modelRemove(sim, key);
}

/// A batch of distinct keys on one thread (deterministic). A batch that fails part-way keeps
/// the adds before the failure (each was acknowledged to the batch): every key must hold either
/// its old state or its new vector, and the model follows the index.
fn opBatch(sim: *Sim) !void {
    const index = sim.index.?;
    const random = sim.random();
    const n = 1 + random.uintLessThan(usize, 24);
    var keys: [24]u64 = undefined;
    var vectors: [24 * dims]f32 = undefined;
    var i: usize = 0;
    while (i < n) {
        const key = random.uintLessThan(u64, key_space);
        if (std.mem.indexOfScalar(u64, keys[0..i], key) != null) continue;
        keys[i] = key;
        vectors[i * dims ..][0..dims].* = randomVector(random);
        i += 1;
    }
    sim.trace("{d} keys", .{n});
    var record_buffers: [24][record_bytes_max]u8 = undefined;
    var batch_records: [24][]const u8 = undefined;
    for (0..n) |j| batch_records[j] = recordOf(
        keys[j],
        vectors[j * dims ..][0..dims],
        &record_buffers[j],
    );
    write.addBatchRecords(
        index,
        keys[0..n],
        vectors[0 .. n * dims],
        batch_records[0..n],
        1,
    ) catch |err| {
        if (!writable(sim) and err == error.ReadOnly) return;
        try expectInjected(sim, err);
        for (keys[0..n], 0..) |key, j| {
            const new: Vector = vectors[j * dims ..][0..dims].*;
            var out: Vector = undefined;
            if (!read.get(index, key, live_seq, &out)) {
                if (sim.model.contains(key)) return sim.fail("batch lost key {d}", .{key});
                continue;
            }
            if (std.mem.eql(f32, &out, &new)) {
                try modelPut(sim, key, new);
                continue;
            }
            const old = sim.model.get(key) orelse
                return sim.fail("failed batch left key {d} with a foreign vector", .{key});
            if (!std.mem.eql(f32, &out, &old)) return sim.fail("batch mixed key {d}", .{key});
        }
        return;
    };
    for (keys[0..n], 0..) |key, j| try modelPut(sim, key, vectors[j * dims ..][0..dims].*);
}

fn l2sq(a: Vector, b: Vector) f32 {
    var sum: f32 = 0;
    for (a, b) |x, y| sum += (x - y) * (x - y);
    return sum;
}

/// Searches the live view or a random snapshot; every result must be a key of that model with
/// its true distance, sorted, without duplicates.
fn opSearch(sim: *Sim) !void {
    const index = sim.index.?;
    const random = sim.random();
    var seq: u64 = live_seq;
    var model = &sim.model;
    if (sim.snapshots.items.len > 0 and random.boolean()) {
        const snap = &sim.snapshots.items[random.uintLessThan(usize, sim.snapshots.items.len)];
        seq = try read.readSeq(index, snap.handle);
        model = &snap.model;
    }
    const query = randomVector(random);
    const k: u32 = 1 + random.uintLessThan(u32, k_max);
    var keys: [k_max]u64 = undefined;
    var distances: [k_max]f32 = undefined;
    const found = read.searchOne(index, &query, k, 32, seq, .{
        .keys = &keys,
        .distances = &distances,
    }) catch |err| return sim.fail("search failed: {s}", .{@errorName(err)});
    sim.trace("k {d} found {d} of {d}", .{ k, found, model.count() });
    if (found > k) return sim.fail("search found {d} > k {d}", .{ found, k });
    if (found > model.count()) return sim.fail("search found {d} > size", .{found});
    for (0..found) |i| {
        const v = model.get(keys[i]) orelse
            return sim.fail("search result {d} is not a live key", .{keys[i]});
        const want = l2sq(query, v);
        if (@abs(distances[i] - want) > 1e-4 * (1 + want)) {
            return sim.fail("key {d} distance {d} want {d}", .{ keys[i], distances[i], want });
        }
        if (i > 0 and distances[i] < distances[i - 1]) return sim.fail("unsorted results", .{});
        if (std.mem.indexOfScalar(u64, keys[0..i], keys[i]) != null) {
            return sim.fail("duplicate result {d}", .{keys[i]});
        }
    }
}

fn opGet(sim: *Sim) !void {
    const key = sim.random().uintLessThan(u64, key_space);
    try checkKey(sim, live_seq, &sim.model, key);
}

fn checkKey(sim: *Sim, seq: u64, model: *const Model, key: u64) Mismatch!void {
    const index = sim.index.?;
    var out: Vector = undefined;
    const got = read.get(index, key, seq, &out);
    if (got != read.has(index, key, seq)) return sim.fail("get and has disagree on {d}", .{key});
    const want = model.get(key) orelse {
        if (got) return sim.fail("key {d} is present, the model has none", .{key});
        return;
    };
    if (!got) return sim.fail("key {d} is missing", .{key});
    if (!std.mem.eql(f32, &out, &want)) return sim.fail("key {d} has another vector", .{key});
    try checkRecord(sim, index, seq, key, &out);
}

fn checkKeys(sim: *Sim, seq: u64, model: *const Model) Mismatch!void {
    const index = sim.index.?;
    var out: [2 * key_space]u64 = undefined;
    const n = read.keys(index, seq, &out);
    if (n != model.count()) {
        return sim.fail("keys() gives {d}, the model {d}", .{ n, model.count() });
    }
    for (out[0..n], 0..) |key, i| {
        if (!model.contains(key)) return sim.fail("keys() lists {d}", .{key});
        if (std.mem.indexOfScalar(u64, out[0..i], key) != null) {
            return sim.fail("keys() lists {d} twice", .{key});
        }
    }
}

fn opSnapshotCreate(sim: *Sim) !void {
    if (sim.snapshots.items.len >= 4) return;
    const handle = read.snapshotCreate(sim.index.?) catch |err| {
        return sim.fail("snapshot failed: {s}", .{@errorName(err)});
    };
    sim.trace("handle {d}", .{handle});
    try sim.snapshots.append(gpa, .{ .handle = handle, .model = try sim.model.clone(gpa) });
}

fn opSnapshotRelease(sim: *Sim) !void {
    if (sim.snapshots.items.len == 0) return;
    const i = sim.random().uintLessThan(usize, sim.snapshots.items.len);
    var snap = sim.snapshots.swapRemove(i);
    defer snap.model.deinit(gpa);
    read.snapshotRelease(sim.index.?, snap.handle) catch |err| {
        return sim.fail("release failed: {s}", .{@errorName(err)});
    };
}

/// Checkpoint and sync: either may fail under a fault; neither may change what is stored.
fn opQuiet(sim: *Sim, comptime which: []const u8) !void {
    const index = sim.index.?;
    const result = if (comptime std.mem.eql(u8, which, "checkpoint"))
        index.checkpoint()
    else
        write.sync(index);
    result catch |err| return expectInjected(sim, err);
    if (comptime std.mem.eql(u8, which, "checkpoint")) try takeImage(sim);
    try markDurable(sim);
}

fn opCompact(sim: *Sim) !void {
    const index = sim.index.?;
    compact.compact(index, 1) catch |err| {
        if (err == error.ReadOnly and !writable(sim)) return;
        if (err == error.Busy and sim.snapshots.items.len > 0) return;
        try expectInjected(sim, err);
        // A committed compaction this handle could not adopt leaves it read-only; the files
        // are the compacted index and the reopen below must find everything.
        if (!writable(sim)) sim.trace("read-only after a committed compaction", .{});
        return;
    };
    if (sim.snapshots.items.len > 0) return sim.fail("compact ran with snapshots live", .{});
}

/// Backs up the live view or a snapshot to a fresh path; a finished copy must open (fully
/// validated) and hold exactly the model of its moment; a failed one must leave nothing that
/// opens.
fn opBackup(sim: *Sim) !void {
    const index = sim.index.?;
    var target_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const target = try std.fmt.bufPrint(&target_buffer, "{s}/backup{d}", .{ sim.dir, sim.backups });
    sim.backups += 1;
    var handle: u64 = 0;
    var model = &sim.model;
    if (sim.snapshots.items.len > 0 and sim.random().boolean()) {
        const i = sim.random().uintLessThan(usize, sim.snapshots.items.len);
        const snap = &sim.snapshots.items[i];
        handle = snap.handle;
        model = &snap.model;
    }
    sim.trace("snapshot {d} to {s}", .{ handle, target });
    const result = backup.save(index, handle, target);
    sim.fired_latch = faultFired(sim);
    os.faults.reset(); // the copy is checked on a healthy disk
    if (result) |_| {
        const copy = recovery.open(gpa, target, options(), .full) catch |err| {
            return sim.fail("backup does not open: {s}", .{@errorName(err)});
        };
        defer copy.destroy();
        try compareIndex(sim, copy, model);
    } else |err| {
        try expectInjected(sim, err);
        if (recovery.open(gpa, target, options(), .fast)) |copy| {
            copy.destroy();
            return sim.fail("a failed backup left an index that opens", .{});
        } else |open_err| if (open_err != error.NoIndex) {
            return sim.fail("a failed backup's target: {s}", .{@errorName(open_err)});
        }
        if (try swap.firstExisting(target)) |suffix| {
            return sim.fail("a failed backup left {s}{s}", .{ target, suffix });
        }
    }
}

/// An index other than the simulated one (a backup) holds exactly `model`.
fn compareIndex(sim: *Sim, other: *Index, model: *const Model) Mismatch!void {
    if (other.size() != model.count()) {
        return sim.fail("copy has {d} keys, the model {d}", .{ other.size(), model.count() });
    }
    var it = model.iterator();
    while (it.next()) |entry| {
        var out: Vector = undefined;
        if (!read.get(other, entry.key_ptr.*, live_seq, &out)) {
            return sim.fail("copy lacks key {d}", .{entry.key_ptr.*});
        }
        if (!std.mem.eql(f32, &out, entry.value_ptr)) {
            return sim.fail("copy has another vector for {d}", .{entry.key_ptr.*});
        }
        try checkRecord(sim, other, live_seq, entry.key_ptr.*, &out);
    }
}

/// Close (a checkpoint that may fail under the fault, then the descriptors) or crash, then
/// open again. An open may fail under the fault; then it must succeed on a healthy disk.
fn opReopen(sim: *Sim, crash: bool) !void {
    const index = sim.index.?;
    sim.index = null;
    sim.releaseSnapshots();
    if (crash) {
        crashIndex(index);
        sim.crashes += 1;
        if (sim.options.canary == .crash_rolls_back) try rollBack(sim);
    } else {
        index.destroy();
    }
    try reopen(sim, if (crash) "crashed," else "closed,");
}

/// Opens the index again (on a healthy disk if the fault makes the first open fail) and
/// verifies its graph.
fn reopen(sim: *Sim, how: []const u8) !void {
    assert(sim.index == null);
    sim.reopens += 1;
    const validation: recovery.Validation = if (sim.random().boolean()) .full else .fast;
    sim.index = recovery.open(gpa, sim.path, options(), validation) catch |err| blk: {
        if (err != error.Unverifiable or validation != .full) try expectInjected(sim, err);
        os.faults.reset();
        break :blk recovery.open(gpa, sim.path, options(), .fast) catch |retry_err| {
            return sim.fail("open on a healthy disk: {s}", .{@errorName(retry_err)});
        };
    };
    sim.trace("{s} reopened, {d} keys", .{ how, sim.index.?.size() });
    const report = verify(sim.index.?) catch |err| {
        return sim.fail("verify failed: {s}", .{@errorName(err)});
    };
    if (report.ok != 1) {
        return sim.fail("verify after reopen: not ok: {any}", .{report});
    }
    try takeImage(sim);
}

/// The canary: keeps a copy of every file after a checkpoint or an open.
fn takeImage(sim: *Sim) !void {
    if (sim.options.canary != .crash_rolls_back) return;
    for (swap.companion_suffixes, &sim.image) |suffix, *file| {
        if (file.*) |bytes| gpa.free(bytes);
        file.* = null;
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const name = try std.fmt.bufPrint(&buffer, "{s}{s}", .{ sim.path, suffix });
        file.* = std.fs.cwd().readFileAlloc(gpa, name, 1 << 30) catch |err| switch (err) {
            error.FileNotFound => null,
            else => return err,
        };
    }
}

/// The canary's broken crash: every file goes back to the copy `takeImage` kept.
fn rollBack(sim: *Sim) !void {
    for (swap.companion_suffixes, sim.image) |suffix, file| {
        const bytes = file orelse continue;
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const name = try std.fmt.bufPrint(&buffer, "{s}{s}", .{ sim.path, suffix });
        try std.fs.cwd().writeFile(.{ .sub_path = name, .data = bytes });
    }
}

fn modelPut(sim: *Sim, key: u64, v: Vector) !void {
    try sim.model.put(gpa, key, v);
    const since = try sim.since.getOrPut(gpa, key);
    if (!since.found_existing) since.value_ptr.* = .{};
    try since.value_ptr.vectors.append(gpa, v);
}

fn modelRemove(sim: *Sim, key: u64) !void {
    _ = sim.model.remove(key);
    const since = try sim.since.getOrPut(gpa, key);
    if (!since.found_existing) since.value_ptr.* = .{};
    since.value_ptr.removed = true;
}

/// A `sync()` or a checkpoint returned: everything in the model must survive a power loss.
fn markDurable(sim: *Sim) !void {
    sim.durable.deinit(gpa);
    sim.durable = try sim.model.clone(gpa);
    sim.clearSince();
}

/// Each file's durable image, by inode, as of its last fsync that succeeded (the OS layer's
/// `on_fsync` hook). A power loss puts every file of the index back to its image.
const Durable = struct {
    var images: std.AutoHashMapUnmanaged(os.Identity, []u8) = .{};

    fn onFsync(fd: os.Fd) void {
        const id = os.identity(fd) catch @panic("vopr: fstat of a synced file failed");
        const size = os.size(fd) catch @panic("vopr: fstat of a synced file failed");
        const bytes = gpa.alloc(u8, size) catch @panic("vopr: out of memory");
        var at: usize = 0;
        while (at < bytes.len) {
            const got = os.pread(fd, bytes[at..], at) catch @panic("vopr: pread failed");
            if (got == 0) @panic("vopr: a synced file shrank while copied");
            at += got;
        }
        const entry = images.getOrPut(gpa, id) catch @panic("vopr: out of memory");
        if (entry.found_existing) gpa.free(entry.value_ptr.*);
        entry.value_ptr.* = bytes;
    }

    fn clear() void {
        var it = images.valueIterator();
        while (it.next()) |bytes| gpa.free(bytes.*);
        images.clearAndFree(gpa);
    }

    /// Puts every file in `dir` back as of its last fsync; a file never synced loses its
    /// contents. Every file, not only those named after the index: while a committed
    /// compaction's renames have not all succeeded, the index lives in `path~compact*` (a soak
    /// seed met an index there keeping writes a power loss would have taken). Directory entries
    /// are kept as they are (see the file's header).
    fn restore(dir: []const u8) !void {
        var handle = try std.fs.openDirAbsolute(dir, .{ .iterate = true });
        defer handle.close();
        var it = handle.iterate();
        while (try it.next()) |entry| {
            if (entry.kind != .file) continue;
            var buffer: [std.fs.max_path_bytes]u8 = undefined;
            const name = try std.fmt.bufPrintZ(&buffer, "{s}/{s}", .{ dir, entry.name });
            const id = os.identityAt(name) catch |err| switch (err) {
                error.NotFound => continue,
                else => return err,
            };
            const bytes = images.get(id) orelse "";
            try std.fs.cwd().writeFile(.{ .sub_path = name, .data = bytes });
        }
    }
};

/// Power loss: the process dies and every file loses what was not fsynced. The reopened index
/// must hold, for every key not written since the last `sync()` or checkpoint that returned,
/// exactly its state then; a key written since may hold its state then, any vector written
/// since, or nothing if it was removed since. The model then follows the index.
fn opPowerLoss(sim: *Sim) !void {
    const index = sim.index.?;
    sim.index = null;
    sim.releaseSnapshots();
    crashIndex(index);
    sim.power_losses += 1;
    try Durable.restore(sim.dir);
    try reopen(sim, "power lost,");
    var survived: Model = .{};
    defer survived.deinit(gpa);
    for (0..key_space) |key| {
        var out: Vector = undefined;
        if (read.get(sim.index.?, key, live_seq, &out)) {
            try checkRecord(sim, sim.index.?, live_seq, key, &out);
            try survived.put(gpa, key, out);
        }
        if (sim.options.canary == .power_loss_keeps_everything) {
            try checkKey(sim, live_seq, &sim.model, key);
            continue;
        }
        try checkSurvivor(sim, key, survived.get(key));
    }
    std.mem.swap(Model, &sim.model, &survived);
    try markDurable(sim);
}

fn checkSurvivor(sim: *Sim, key: u64, got: ?Vector) Mismatch!void {
    const then = sim.durable.get(key);
    const same = if (got) |g| (if (then) |t| std.mem.eql(f32, &g, &t) else false) else then == null;
    if (same) return;
    const since = sim.since.get(key) orelse {
        return sim.fail("power loss changed key {d}, unwritten since the last sync", .{key});
    };
    const g = got orelse {
        if (since.removed) return;
        return sim.fail("power loss lost key {d}, never removed since the last sync", .{key});
    };
    for (since.vectors.items) |v| if (std.mem.eql(f32, &v, &g)) return;
    return sim.fail("power loss left key {d} with a vector never written", .{key});
}

/// The whole index against the model, and every snapshot against its copy.
fn checkAll(sim: *Sim) !void {
    const index = sim.index.?;
    if (index.size() != sim.model.count()) {
        return sim.fail("size {d}, the model {d}", .{ index.size(), sim.model.count() });
    }
    for (0..key_space) |key| try checkKey(sim, live_seq, &sim.model, key);
    try checkKeys(sim, live_seq, &sim.model);
    for (sim.snapshots.items) |*snap| {
        const seq = try read.readSeq(index, snap.handle);
        const size = try read.snapshotSize(index, snap.handle);
        if (size != snap.model.count()) {
            return sim.fail("snapshot size {d}, its model {d}", .{ size, snap.model.count() });
        }
        try checkKeys(sim, seq, &snap.model);
        const key = sim.random().uintLessThan(u64, key_space);
        try checkKey(sim, seq, &snap.model, key);
    }
}

// ---------------------------------------------------------------------------------------------

// Seeds 11 and 15 (at step 141 and 21) found a power loss that kept a slot's metadata (the data
// file) without its vector (the graph file, which holds f32 vectors): the key came back with
// zeros. Fixed: a dirty open drops a live slot whose vector fails its check (recovery.zig
// `dropTorn`). Seeds 7, 9 and 20 were left out with them for an earlier form of the same bug.
const ci_seed_list = [_]u64{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20 };
/// The CI budget: the seeds above, ci_steps steps each (18 x 150 steps: the runtime of the 13
/// seeds of 200 steps it had before the five came back).
const ci_seeds: u64 = ci_seed_list.len;
const ci_steps: u32 = 150;
/// Steps of a replay, a soak seed and the seed-2 regression (found beyond `ci_steps`, perhaps).
const default_steps: u32 = 200;

fn envInt(name: [:0]const u8) ?u64 {
    const text = std.mem.span(std.c.getenv(name) orelse return null);
    return std.fmt.parseInt(u64, text, 10) catch null;
}

fn runSeed(seed: u64, steps: u32, canary: Canary, trace: bool, quiet: bool) !Report {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &buffer);
    const run_options = Options{
        .seed = seed,
        .steps = steps,
        .canary = canary,
        .trace = trace,
        .quiet = quiet,
    };
    return run(dir, run_options);
}

test "vopr: random operations and I/O faults against the reference model" {
    // Windows refuses to rename a file over one that is mapped (ERROR_ACCESS_DENIED; wine
    // does the same), and a compaction's swap renames over files the index still maps: the
    // swap needs an unmap-first order there before this can pass (see storage/os.zig).
    if (os.is_windows) return error.SkipZigTest;
    const soak = std.c.getenv("QUIVER_SOAK") != null;
    const replay = envInt("QUIVER_VOPR_SEED");
    // A replay of a CI seed runs past its CI steps: the same steps first, then more.
    const steps_default = if (soak or replay != null) default_steps else ci_steps;
    const steps: u32 = @intCast(envInt("QUIVER_VOPR_STEPS") orelse steps_default);
    if (replay) |seed| {
        std.debug.print("vopr: replaying seed {d}\n", .{seed});
        _ = try runSeed(seed, steps, .none, true, false);
        return;
    }
    const count = if (soak) envInt("QUIVER_VOPR_SEEDS") orelse 2000 else ci_seeds;
    const base: u64 = if (soak) std.crypto.random.int(u32) else 0;
    var total = std.mem.zeroes(Report);
    for (base..base + count) |i| {
        const seed = if (soak) i else ci_seed_list[i];
        if (soak) std.debug.print("vopr: seed {d}\n", .{seed});
        const report = try runSeed(seed, steps, .none, false, false);
        total.steps += report.steps;
        total.faults_fired += report.faults_fired;
        total.crashes += report.crashes;
        total.reopens += report.reopens;
        total.power_losses += report.power_losses;
    }
    std.debug.print(
        "vopr: seeds {d}..{d} passed: {d} steps, {d} faults fired, {d} crashes, " ++
            "{d} power losses, {d} reopens\n",
        .{
            base,
            base + count - 1,
            total.steps,
            total.faults_fired,
            total.crashes,
            total.power_losses,
            total.reopens,
        },
    );
    // The budget must exercise what it claims to.
    try std.testing.expect(total.faults_fired > 0);
    try std.testing.expect(total.crashes > 0);
    try std.testing.expect(total.power_losses > 0);
}

fn expectCaught(canary: Canary) !void {
    for (1..ci_seeds + 1) |seed| {
        _ = runSeed(seed, ci_steps, canary, false, true) catch |err| switch (err) {
            error.Mismatch => return,
            else => return err,
        };
    }
    std.debug.print("vopr: the canary {s} was not caught\n", .{@tagName(canary)});
    return error.CanaryNotCaught;
}

test "vopr canary: a model that forgets removes is caught" {
    try expectCaught(.model_forgets_remove);
}

test "vopr canary: a crash that rolls the files back to the last checkpoint is caught" {
    try expectCaught(.crash_rolls_back);
}

// Found by seed 6: a checkpoint whose log fsync failed after the log was truncated left the
// log's end at its old length; the next add was written behind a hole of zeros, and the open
// after a crash said Corrupt (every acknowledged write unreachable). Fixed in storage/wal.zig
// (`Wal.reset`). Minimized: fail each fsync of one checkpoint in turn, add, crash, reopen.
test "vopr regression: a checkpoint failing at any fsync leaves a log that replays" {
    defer os.faults.reset();
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "{s}/index", .{dir});
    var open: ?*Index = try Index.create(gpa, options(), path);
    defer if (open) |index| index.destroy();
    var nth: u64 = 1;
    var key: u64 = 0;
    while (nth < 16) : (nth += 1) {
        const index = open.?;
        try write.add(index, key, &.{ 1, 2, 3, @floatFromInt(key) });
        key += 1;
        os.faults.arm(.fsync, nth, .io, false);
        const result = index.checkpoint();
        const fired = os.faults.fired(.fsync);
        os.faults.reset();
        if (fired == 0) break;
        try std.testing.expectError(error.Io, result);
        try write.add(index, key, &.{ 1, 2, 3, @floatFromInt(key) });
        key += 1;
        open = null;
        crashIndex(index);
        open = try recovery.open(gpa, path, options(), .fast);
        try std.testing.expectEqual(key, open.?.size());
    }
    try std.testing.expect(nth > 2);
}

test "vopr canary: a power loss that keeps unsynced writes is caught" {
    try expectCaught(.power_loss_keeps_everything);
}

// Found by seed 2: after an add failed past linking its slot (the slot stayed `inserting`) and a
// crash, verify() said not ok (level_mismatches 1: slot 81, key 2, level 2, above the entry
// point's level 1, which the recovery scan chose without the unpublished slot). Fixed: a failed
// add retires its slot (index/write.zig `retire`), and verify does not hold an interrupted
// insert's levels against the top (index/verify.zig).
test "vopr regression: verify after recovery counts no abandoned slot (a failed add retires)" {
    // Windows refuses to rename a file over one that is mapped (ERROR_ACCESS_DENIED; wine
    // does the same), and a compaction's swap renames over files the index still maps: the
    // swap needs an unmap-first order there before this can pass (see storage/os.zig).
    if (os.is_windows) return error.SkipZigTest;
    _ = try runSeed(2, default_steps, .none, false, false);
}

// Found by seed 3 (step 16 to 18): an add to an empty index whose log append fails leaves its
// linked but unpublished slot as the entry point; the clean close writes that entry into the
// header, and the next open refuses the index (Corrupt: the entry is not on a published slot's
// top level). Every acknowledged write is then unreachable. The same held for an add that
// promotes a new top level and then fails. Fixed by index/write.zig `retire` (a published
// routing tombstone with a sequence number of its own).
test "vopr regression: a failed first add leaves an index that reopens (retired entry point)" {
    defer os.faults.reset();
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "{s}/index", .{dir});
    {
        const index = try Index.create(gpa, options(), path);
        defer index.destroy();
        os.faults.arm(.write, 1, .nospc, false);
        try std.testing.expectError(error.DiskFull, write.add(index, 1, &.{ 1, 2, 3, 4 }));
        os.faults.reset();
    }
    const index = try recovery.open(gpa, path, options(), .fast);
    defer index.destroy();
    try std.testing.expectEqual(@as(u64, 0), index.size());
}

// Found by a soak seed (2542053802, steps 79 to 93): a checkpoint synced the records file and
// then failed at the data file's fsync; a power loss kept the payload entry of a slot that the
// data file lost, the next add gave that slot number to another key, and the open after a crash
// met the entry on the wrong key: Corrupt, every write unreachable (with the same key re-added
// without a payload, the stale payload would have come back). Fixed in index/index.zig
// (`checkpointLocked`): the log, then the mapped files, and only then the payload entries.
test "vopr regression: a checkpoint failing at any fsync leaves no payload on a lost slot" {
    if (os.is_windows) return error.SkipZigTest;
    defer os.faults.reset();
    os.faults.on_fsync = Durable.onFsync;
    defer os.faults.on_fsync = null;
    defer Durable.clear();
    var nth: u64 = 1;
    while (nth < 16) : (nth += 1) {
        if (!try checkpointThenPowerLoss(nth)) break;
    }
    try std.testing.expect(nth > 3);
}

/// One round of the regression above with the checkpoint's `nth` fsync failing; false when
/// the checkpoint made fewer fsyncs (and succeeded).
fn checkpointThenPowerLoss(nth: u64) !bool {
    var tmp = std.testing.tmpDir(.{});
    defer tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try os.tmpDirPath(&tmp, &buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "{s}/index", .{dir});
    Durable.clear();
    const vectors = [_]Vector{ .{ 1, 2, 3, 4 }, .{ 5, 6, 7, 8 }, .{ 9, 1, 2, 3 } };
    var record_buffer: [record_bytes_max]u8 = undefined;
    {
        const index = try Index.create(gpa, options(), path);
        try setSchema(index);
        try write.addRecord(index, 1, &vectors[0], recordOf(1, &vectors[0], &record_buffer));
        try index.checkpoint();
        // Unsynced: key 3 (with a payload) in a new slot, then a checkpoint that fails.
        try write.addRecord(index, 3, &vectors[1], recordOf(3, &vectors[1], &record_buffer));
        os.faults.arm(.fsync, nth, .io, false);
        const result = index.checkpoint();
        const fired = os.faults.fired(.fsync) > 0;
        os.faults.reset();
        if (!fired) {
            try result;
            index.destroy();
            return false;
        }
        try std.testing.expectError(error.Io, result);
        crashIndex(index);
    }
    try Durable.restore(dir);
    {
        // Key 4 (no payload) takes the next slot: the one key 3 had, if the power loss lost it.
        const index = try recovery.open(gpa, path, options(), .fast);
        try write.add(index, 4, &vectors[2]);
        crashIndex(index);
    }
    const index = try recovery.open(gpa, path, options(), .fast);
    defer index.destroy();
    for ([_]u64{ 1, 3, 4 }, [_]usize{ 0, 1, 2 }) |key, i| {
        var out: Vector = undefined;
        if (!read.get(index, key, live_seq, &out)) {
            // Only key 3 was unsynced when the power went.
            try std.testing.expectEqual(@as(u64, 3), key);
            continue;
        }
        try std.testing.expectEqualSlices(f32, &vectors[i], &out);
        const want = recordOf(key, &vectors[i], &record_buffer);
        var got: [4 + record_bytes_max]u8 = undefined;
        var needed: u64 = 0;
        try records.readPayloads(index, live_seq, &.{key}, &got, &needed);
        const length = std.mem.readInt(u32, got[0..4], .little);
        try std.testing.expectEqualSlices(u8, want, got[4..][0..length]);
    }
    return true;
}

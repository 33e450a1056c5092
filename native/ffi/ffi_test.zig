//! Tests of the FFI table itself, beside the index's exclusive paths: calls through `exports`
//! exactly as a runtime makes them.
const std = @import("std");
const abi = @import("../abi.zig");
const ffi = @import("exports.zig").exports;
const stress = @import("../index/stress_test.zig");
const t = @import("../index/index_test.zig");
const dims = stress.dims;
const gpa = stress.gpa;
const scale = stress.scale;
const pattern = stress.pattern;

test "compaction on the exclusive path: FFI searches beside it never see a torn state" {
    var opts = t.options(dims, .l2sq);
    var handle: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
    defer _ = ffi.qv_index_release(handle);
    defer _ = ffi.qv_index_close(handle);
    const n = scale(1000);
    const keys = try gpa.alloc(u64, n);
    defer gpa.free(keys);
    const vectors = try gpa.alloc(f32, n * dims);
    defer gpa.free(vectors);
    for (0..n) |i| {
        keys[i] = i;
        pattern(i, 0, vectors[i * dims ..][0..dims]);
    }
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_index_add_batch(handle, keys.ptr, @intCast(n), vectors.ptr, n * dims, 2),
    );
    var removed: u32 = undefined;
    for (0..n) |key| {
        if (key % 2 == 0) try std.testing.expectEqual(
            abi.Status.ok,
            ffi.qv_index_remove(handle, key, &removed),
        );
    }

    const Ctx = struct {
        handle: u32,
        stop: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
        searches: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        self_hits: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        compacted: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
        failures: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),

        fn searcher(ctx: *@This(), total: usize) void {
            var found_keys: [5]u64 = undefined;
            var found: [5]f32 = undefined;
            var count: u32 = undefined;
            var q: [dims]f32 = undefined;
            var round: u64 = 0;
            while (!ctx.stop.load(.acquire)) : (round += 1) {
                const key = (round * 2 + 1) % total; // odd keys stay live
                pattern(key, 0, &q);
                const status = ffi.qv_index_search(
                    ctx.handle,
                    0,
                    &q,
                    dims,
                    5,
                    32,
                    0,
                    &found_keys,
                    &found,
                    &count,
                );
                // Every search succeeds with a full result list before, during and after the
                // swap; a removed (even) key is never returned; a live key finds itself (the
                // search is approximate, so that is counted and bounded below, not required).
                if (status != .ok or count != 5) {
                    if (ctx.failures.fetchAdd(1, .monotonic) < 3) std.debug.print(
                        "compaction search (compacted: {}): {s}, {d} results for key {d}\n",
                        .{ ctx.compacted.load(.acquire), @tagName(status), count, key },
                    );
                }
                if (status == .ok and count > 0 and found_keys[0] == key) {
                    _ = ctx.self_hits.fetchAdd(1, .monotonic);
                }
                for (found_keys[0..count]) |k| {
                    if (k % 2 == 0 and ctx.failures.fetchAdd(1, .monotonic) < 3) std.debug.print(
                        "compaction search returned removed key {d}\n",
                        .{k},
                    );
                }
                _ = ctx.searches.fetchAdd(1, .monotonic);
            }
        }
    };
    var ctx = Ctx{ .handle = handle };
    const thread = try std.Thread.spawn(.{}, Ctx.searcher, .{ &ctx, n });
    while (ctx.searches.load(.acquire) < 10) std.atomic.spinLoopHint();
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_compact(handle, 2));
    ctx.compacted.store(true, .release);
    const after = ctx.searches.load(.acquire);
    while (ctx.searches.load(.acquire) < after + 10) std.atomic.spinLoopHint();
    ctx.stop.store(true, .release);
    thread.join();
    try std.testing.expectEqual(@as(u32, 0), ctx.failures.load(.monotonic));
    const searches = ctx.searches.load(.monotonic);
    try std.testing.expect(ctx.self_hits.load(.monotonic) * 100 >= searches * 95);
    var stats: abi.Stats = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, n / 2), stats.size);
    try std.testing.expectEqual(@as(u64, n / 2), stats.slots_used);
}

test "registry: a double release never touches another index (one ok, one invalid_handle)" {
    // Both threads release the same handle at once, over and over. The old check-then-decrement
    // let both pass the check: the second decrement hit a freed slot or the next index in it.
    const rounds = scale(2000);
    const Ctx = struct {
        handle: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),
        round: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        taken: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        other_status: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),

        fn other(ctx: *@This(), total: u64) void {
            var seen: u64 = 0;
            while (seen < total) {
                const round = ctx.round.load(.acquire);
                if (round == seen) {
                    std.atomic.spinLoopHint();
                    continue;
                }
                seen = round;
                const status = ffi.qv_index_release(ctx.handle.load(.acquire));
                ctx.other_status.store(@intCast(@intFromEnum(status)), .release);
                _ = ctx.taken.fetchAdd(1, .release);
            }
        }
    };
    var ctx = Ctx{};
    var opts = t.options(dims, .l2sq);
    // A bystander index that must keep its one reference throughout.
    var bystander: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &bystander));
    const thread = try std.Thread.spawn(.{}, Ctx.other, .{ &ctx, rounds });
    var ok_total: u64 = 0;
    for (1..rounds + 1) |round| {
        var handle: u32 = undefined;
        try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
        ctx.handle.store(handle, .release);
        ctx.round.store(round, .release);
        const mine = ffi.qv_index_release(handle);
        while (ctx.taken.load(.acquire) < round) std.atomic.spinLoopHint();
        const theirs: abi.Status = @enumFromInt(ctx.other_status.load(.acquire));
        // Exactly one of the two releases dropped the reference.
        const oks = @as(u32, @intFromBool(mine == .ok)) + @intFromBool(theirs == .ok);
        try std.testing.expectEqual(@as(u32, 1), oks);
        try std.testing.expect(mine == .ok or mine == .invalid_handle);
        try std.testing.expect(theirs == .ok or theirs == .invalid_handle);
        ok_total += oks;
    }
    thread.join();
    try std.testing.expectEqual(@as(u64, rounds), ok_total);
    // The bystander still answers and still holds exactly its own reference.
    var size: u64 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_size(bystander, 0, &size));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_release(bystander));
    try std.testing.expectEqual(abi.Status.invalid_handle, ffi.qv_index_release(bystander));
}

test "a pin holds its index past close and release; refused calls and forged pin ids take nothing" {
    // A zero-copy view's buffer owns this pin: once the owner closed (attached wrappers hold
    // no reference), only the pin keeps the index, and the memory the buffer reads, alive.
    var opts = t.options(dims, .l2sq);
    var handle: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
    var v: [dims]f32 = undefined;
    pattern(7, 0, &v);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_add(handle, 7, &v, dims));
    var open_before: u32 = undefined;
    var users: u64 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open_before, &users));
    var pin: u64 = undefined;
    var address: usize = undefined;
    var epoch: u64 = undefined;
    try std.testing.expectEqual(
        abi.Status.not_found,
        ffi.qv_pin_acquire(handle, 99, &pin, &address, &epoch),
    );
    try std.testing.expectEqual(
        abi.Status.invalid_argument,
        ffi.qv_pin_acquire(handle, 7, null, &address, &epoch),
    );
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_pin_acquire(handle, 7, &pin, &address, &epoch),
    );
    var stats: abi.Stats = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, 1), stats.guards_live);
    try std.testing.expectEqual(stats.epoch, epoch);
    // The owner closes and drops its reference: the pin alone keeps the index.
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_close(handle));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_release(handle));
    var open: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open, &users));
    try std.testing.expectEqual(open_before, open);
    // Closed for calls, yet the pinned memory is still the stored vector.
    var size: u64 = undefined;
    try std.testing.expectEqual(abi.Status.closed, ffi.qv_index_size(handle, 0, &size));
    const stored: [*]const f32 = @ptrFromInt(address);
    try std.testing.expectEqualSlices(f32, &v, stored[0..dims]);
    var other: u64 = undefined;
    try std.testing.expectEqual(
        abi.Status.closed,
        ffi.qv_pin_acquire(handle, 7, &other, &address, &epoch),
    );
    try std.testing.expectEqual(abi.Status.invalid_argument, ffi.qv_pin_release(pin +% 1));
    ffi.qv_pin_free(0, @intCast(pin +% 1));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_pin_release(pin));
    // The refused calls took no user: the pin's release was the last, and freed the index.
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open, &users));
    try std.testing.expectEqual(open_before - 1, open);
    try std.testing.expectEqual(abi.Status.closed, ffi.qv_index_size(handle, 0, &size));
    try std.testing.expectEqual(abi.Status.invalid_argument, ffi.qv_pin_release(pin));
    ffi.qv_pin_free(0, @intCast(pin));
}

test "qv_view_copy copies the stored vector and holds nothing after; bad arguments take nothing" {
    var opts = t.options(dims, .l2sq);
    var handle: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
    var v: [dims]f32 = undefined;
    pattern(5, 0, &v);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_add(handle, 5, &v, dims));
    var out: [dims + 1]f32 = @splat(-1);
    var epoch: u64 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_view_copy(handle, 5, &out, dims, &epoch));
    try std.testing.expectEqualSlices(f32, &v, out[0..dims]);
    try std.testing.expectEqual(@as(f32, -1), out[dims]);
    var stats: abi.Stats = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(stats.epoch, epoch);
    try std.testing.expectEqual(@as(u64, 0), stats.guards_live);
    const S = abi.Status;
    const copy = ffi.qv_view_copy;
    try std.testing.expectEqual(S.not_found, copy(handle, 6, &out, dims, &epoch));
    try std.testing.expectEqual(S.invalid_dimensions, copy(handle, 5, &out, 3, &epoch));
    try std.testing.expectEqual(S.invalid_argument, copy(handle, 5, null, dims, &epoch));
    try std.testing.expectEqual(S.invalid_argument, copy(handle, 5, &out, dims, null));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, 0), stats.guards_live);
    // Nothing is held: the owner's close and release free the index at once.
    var open_before: u32 = undefined;
    var users: u64 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open_before, &users));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_close(handle));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_release(handle));
    var open: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open, &users));
    try std.testing.expectEqual(open_before - 1, open);
    try std.testing.expectEqual(S.closed, copy(handle, 5, &out, dims, &epoch));
}

test "pins released from two threads at once (Bun's deallocator beside the wrapper): one wins" {
    var opts = t.options(dims, .l2sq);
    var handle: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
    var v: [dims]f32 = undefined;
    pattern(3, 0, &v);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_add(handle, 3, &v, dims));
    const rounds = scale(500);
    const Racer = struct {
        fn free(pin: *const std.atomic.Value(u64), go: *std.atomic.Value(u64), n: usize) void {
            for (0..n) |round| {
                while (go.load(.acquire) != 2 * round + 1) std.atomic.spinLoopHint();
                ffi.qv_pin_free(0, @intCast(pin.load(.acquire)));
                go.store(2 * round + 2, .release);
            }
        }
    };
    var pin = std.atomic.Value(u64).init(0);
    var go = std.atomic.Value(u64).init(0);
    const thread = try std.Thread.spawn(.{}, Racer.free, .{ &pin, &go, rounds });
    // Exactly one release per pin: a second would find its guard gone, which is a panic.
    for (0..rounds) |round| {
        var address: usize = undefined;
        var epoch: u64 = undefined;
        var id: u64 = undefined;
        try std.testing.expectEqual(
            abi.Status.ok,
            ffi.qv_pin_acquire(handle, 3, &id, &address, &epoch),
        );
        pin.store(id, .release);
        go.store(2 * round + 1, .release);
        const status = ffi.qv_pin_release(id);
        try std.testing.expect(status == .ok or status == .invalid_argument);
        while (go.load(.acquire) != 2 * round + 2) std.atomic.spinLoopHint();
    }
    thread.join();
    var stats: abi.Stats = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, 0), stats.guards_live);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_close(handle));
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_release(handle));
    var size: u64 = undefined;
    try std.testing.expectEqual(abi.Status.closed, ffi.qv_index_size(handle, 0, &size));
}

test "async: prepare_batch writes nothing; a cancelled controlled compaction changes nothing" {
    var opts = t.options(dims, .l2sq);
    var handle: u32 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_create(&opts, &handle));
    defer _ = ffi.qv_index_release(handle);
    defer _ = ffi.qv_index_close(handle);
    const n = 600;
    var keys: [n]u64 = undefined;
    var vectors: [n * dims]f32 = undefined;
    for (0..n) |i| {
        keys[i] = i;
        pattern(i, 0, vectors[i * dims ..][0..dims]);
    }
    // A bad last vector fails the whole batch before anything is written.
    const saved = vectors[(n - 1) * dims];
    vectors[(n - 1) * dims] = std.math.nan(f32);
    try std.testing.expectEqual(
        abi.Status.invalid_vector,
        ffi.qv_index_prepare_batch(handle, n, &vectors, n * dims),
    );
    vectors[(n - 1) * dims] = saved;
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_index_prepare_batch(handle, n, &vectors, n * dims),
    );
    var stats: abi.Stats = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, 0), stats.size);
    try std.testing.expect(stats.capacity >= n);
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_index_add_batch(handle, &keys, n, &vectors, n * dims, 2),
    );
    var removed: u32 = undefined;
    for (0..n / 2) |key| {
        try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_remove(handle, key, &removed));
    }
    var cancel: u32 = 1;
    var progress = [2]u64{ 0, 0 };
    var cancelled: u32 = undefined;
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_index_compact_controlled(handle, 2, &cancel, &progress, &cancelled),
    );
    try std.testing.expectEqual(@as(u32, 1), cancelled);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, n / 2), stats.tombstones);
    try std.testing.expectEqual(@as(u64, n / 2), stats.size);
    cancel = 0;
    try std.testing.expectEqual(
        abi.Status.ok,
        ffi.qv_index_compact_controlled(handle, 2, &cancel, &progress, &cancelled),
    );
    try std.testing.expectEqual(@as(u32, 0), cancelled);
    try std.testing.expectEqual([2]u64{ n / 2, n / 2 }, progress);
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_index_stats(handle, &stats));
    try std.testing.expectEqual(@as(u64, 0), stats.tombstones);
    try std.testing.expectEqual(@as(u64, n / 2), stats.size);
    var open: u32 = undefined;
    var users: u64 = undefined;
    try std.testing.expectEqual(abi.Status.ok, ffi.qv_registry_counts(&open, &users));
    try std.testing.expect(open >= 1);
    try std.testing.expect(users >= 1);
}

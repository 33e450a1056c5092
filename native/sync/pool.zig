//! Runs a batch on native threads: `threads` workers pull item indexes from one atomic counter,
//! so uneven items balance themselves. The first error stops the others early and is returned.
const std = @import("std");
const assert = std.debug.assert;

pub const threads_max: u32 = 256;

pub fn forEach(
    comptime E: type,
    threads: u32,
    count: usize,
    context: anytype,
    comptime run: fn (@TypeOf(context), usize) E!void,
) E!void {
    const Shared = struct {
        next: std.atomic.Value(usize) = std.atomic.Value(usize).init(0),
        failed: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
        first_error: ?E = null,
        error_lock: std.Thread.Mutex = .{},
        context: @TypeOf(context),
        count: usize,

        fn work(shared: *@This()) void {
            while (!shared.failed.load(.acquire)) {
                const i = shared.next.fetchAdd(1, .monotonic);
                if (i >= shared.count) return;
                run(shared.context, i) catch |err| {
                    shared.error_lock.lock();
                    defer shared.error_lock.unlock();
                    if (shared.first_error == null) shared.first_error = err;
                    shared.failed.store(true, .release);
                    return;
                };
            }
        }
    };
    var shared = Shared{ .context = context, .count = count };
    const wanted: usize = @min(@max(threads, 1), threads_max, count);
    var handles: [threads_max]std.Thread = undefined;
    var spawned: usize = 0;
    // The calling thread is worker 0; a failed spawn just means fewer workers.
    while (spawned + 1 < wanted) : (spawned += 1) {
        handles[spawned] = std.Thread.spawn(.{}, Shared.work, .{&shared}) catch break;
    }
    assert(spawned < wanted or wanted == 0);
    shared.work();
    for (handles[0..spawned]) |handle| handle.join();
    if (shared.first_error) |err| {
        assert(shared.failed.load(.acquire));
        return err;
    }
    // Without an error every item was taken: the counter ran past the end.
    assert(shared.next.load(.acquire) >= count);
}

test "parallel: every item runs exactly once, errors propagate" {
    var hits = [_]std.atomic.Value(u32){std.atomic.Value(u32).init(0)} ** 1000;
    const Ctx = struct {
        hits: []std.atomic.Value(u32),
        fn run(ctx: *const @This(), i: usize) error{Boom}!void {
            _ = ctx.hits[i].fetchAdd(1, .monotonic);
            if (i == 100_000) return error.Boom;
        }
    };
    const ctx = Ctx{ .hits = &hits };
    try forEach(error{Boom}, 4, hits.len, &ctx, Ctx.run);
    for (hits) |h| try std.testing.expectEqual(@as(u32, 1), h.load(.monotonic));

    const Failing = struct {
        fn run(_: *const @This(), i: usize) error{Boom}!void {
            if (i == 7) return error.Boom;
        }
    };
    const failing = Failing{};
    try std.testing.expectError(error.Boom, forEach(error{Boom}, 3, 100, &failing, Failing.run));
}

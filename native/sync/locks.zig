//! Folder sync/: concurrency primitives. locks.zig (ranked locks and the lock-order checker),
//! atomics.zig (the atomics layer the interleaving checker swaps), pool.zig (the thread pool of
//! batch calls), and two canaries (tsan_canary.zig, lock_order_canary.zig). Imports nothing
//! from native/ but abi.zig.
//!
//! Ranked locks and the lock-order checker. The checker runs in every build mode: Debug panics and
//! names both locks; release builds count the violation (Stats.lock_order_violations) and go on.
//!
//! Lock ranks (a thread may only acquire a lock of a strictly higher rank than any it holds):
//!
//! | rank | lock          | guards                                                         |
//! |------|---------------|----------------------------------------------------------------|
//! | 1    | structure     | shared by every FFI call on an index, exclusive for compact     |
//! | 2    | writers       | shared by every mutation, exclusive for checkpoint and verify  |
//! | 3    | key_stripe    | one of 64 stripes of the key map; held across WAL append+apply  |
//! | 4    | wal           | the write-ahead log file                                       |
//! | 5    | grow          | storage growth (remap) and upper-arena growth                   |
//! | 6    | records       | the records store: payloads, field indexes (records/store.zig)  |
//! | 7    | commit        | sequence numbers, publication of new/removed slots, snapshots  |
//! | 8    | unlink        | one of 256 stripes over level-0 link drops, by the dropped id   |
//! | 9    | node          | one HNSW node's neighbour lists (seqlock); at most one at a time |
//! | 10   | pool          | the scratch-space pool and guard/snapshot tables              |
const std = @import("std");
const builtin = @import("builtin");

pub const Rank = enum(u8) {
    structure = 1,
    writers = 2,
    key_stripe = 3,
    wal = 4,
    grow = 5,
    records = 6,
    commit = 7,
    unlink = 8,
    node = 9,
    pool = 10,
};

pub const Mode = enum(u8) { panic, count };

/// Debug builds stop at the first violation; release builds keep going and count.
pub var mode: Mode = if (builtin.mode == .Debug) .panic else .count;
pub var violations = std.atomic.Value(u64).init(0);

const held_max = 16;
threadlocal var held: [held_max]Rank = undefined;
threadlocal var held_len: u8 = 0;

/// Records that the calling thread acquires `rank`; checks it against what it holds.
pub fn acquire(rank: Rank) void {
    if (held_len > 0) {
        const top = held[held_len - 1];
        if (@intFromEnum(rank) <= @intFromEnum(top)) violation(rank, top);
    }
    if (held_len < held_max) {
        held[held_len] = rank;
        held_len += 1;
    } else {
        // Deeper nesting than any legal path: count it rather than overflow the stack.
        _ = violations.fetchAdd(1, .monotonic);
    }
}

/// Records the release of `rank`. Locks may be released in any order.
pub fn release(rank: Rank) void {
    var i: usize = held_len;
    while (i > 0) {
        i -= 1;
        if (held[i] == rank) {
            std.mem.copyForwards(Rank, held[i .. held_len - 1], held[i + 1 .. held_len]);
            held_len -= 1;
            return;
        }
    }
    // Releasing a lock that was never recorded is a bug in the caller, not an operating error.
    violation(rank, rank);
}

pub fn heldCount() u8 {
    return held_len;
}

/// Whether the calling thread holds a lock of `rank` (for assertions of preconditions). Past
/// `held_max` nested locks the record is incomplete, and this answers true.
pub fn holds(rank: Rank) bool {
    if (held_len >= held_max) return true;
    for (held[0..held_len]) |r| if (r == rank) return true;
    return false;
}

fn violation(acquiring: Rank, holding: Rank) void {
    _ = violations.fetchAdd(1, .monotonic);
    if (mode == .panic) {
        std.debug.panic("lock order violation: acquiring {s} (rank {d}) " ++
            "while holding {s} (rank {d})", .{
            @tagName(acquiring), @intFromEnum(acquiring), @tagName(holding), @intFromEnum(holding),
        });
    }
}

/// A mutex with a rank. `contention` counts acquisitions that had to wait.
pub const Mutex = struct {
    inner: std.Thread.Mutex = .{},
    rank: Rank,

    pub fn lock(self: *Mutex, contention: *std.atomic.Value(u64)) void {
        acquire(self.rank);
        if (!self.inner.tryLock()) {
            _ = contention.fetchAdd(1, .monotonic);
            self.inner.lock();
        }
    }

    pub fn unlock(self: *Mutex) void {
        self.inner.unlock();
        release(self.rank);
    }
};

/// A ranked reader-writer lock that prefers exclusive waiters. glibc's rwlock prefers readers:
/// with readers always overlapping, an exclusive waiter (compaction, a checkpoint) waited
/// without bound. Here a waiting exclusive locker turns new shared lockers away until it is
/// through, so its wait is bounded by the shared holders already inside (plus at most one that
/// passed the gate as it closed). Exclusive paths are rare; shared lockers pay one load.
pub const RwLock = struct {
    inner: std.Thread.RwLock = .{},
    rank: Rank,
    /// Exclusive lockers waiting or holding; while nonzero, new shared lockers wait here.
    exclusive_waiting: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),

    pub fn lockShared(self: *RwLock, contention: *std.atomic.Value(u64)) void {
        acquire(self.rank);
        if (self.exclusive_waiting.load(.acquire) == 0 and self.inner.tryLockShared()) return;
        _ = contention.fetchAdd(1, .monotonic);
        while (true) {
            const waiting = self.exclusive_waiting.load(.acquire);
            if (waiting == 0) break;
            std.Thread.Futex.wait(&self.exclusive_waiting, waiting);
        }
        self.inner.lockShared();
    }

    pub fn unlockShared(self: *RwLock) void {
        self.inner.unlockShared();
        release(self.rank);
    }

    pub fn lock(self: *RwLock, contention: *std.atomic.Value(u64)) void {
        acquire(self.rank);
        _ = self.exclusive_waiting.fetchAdd(1, .acq_rel);
        if (!self.inner.tryLock()) {
            _ = contention.fetchAdd(1, .monotonic);
            self.inner.lock();
        }
    }

    pub fn unlock(self: *RwLock) void {
        self.inner.unlock();
        const waiting = self.exclusive_waiting.fetchSub(1, .acq_rel);
        std.debug.assert(waiting > 0);
        if (waiting == 1) std.Thread.Futex.wake(&self.exclusive_waiting, std.math.maxInt(u32));
        release(self.rank);
    }
};

test "rwlock: an exclusive waiter gets in behind readers that always overlap" {
    // Three readers take turns so that the lock is always held shared. A reader-preferring lock
    // never lets the exclusive waiter in while they run; this one turns new readers away. The
    // measure is a count of reader rounds that got the lock while the waiter was announced in it
    // (not from a flag set before `lock`: a waiter descheduled between the two, as under qemu on
    // two cores, let the readers run on legitimately), not a time.
    const Ctx = struct {
        lock: RwLock = .{ .rank = .writers },
        contention: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        done: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
        rounds_after_wait: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        rounds: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),

        fn reader(ctx: *@This()) void {
            var rounds: u64 = 0;
            while (!ctx.done.load(.acquire) and rounds < 2_000_000) : (rounds += 1) {
                _ = ctx.rounds.fetchAdd(1, .monotonic);
                ctx.lock.lockShared(&ctx.contention);
                if (ctx.lock.exclusive_waiting.load(.acquire) > 0) {
                    _ = ctx.rounds_after_wait.fetchAdd(1, .monotonic);
                }
                for (0..200) |_| std.atomic.spinLoopHint();
                ctx.lock.unlockShared();
            }
        }
    };
    var ctx = Ctx{};
    var readers: [3]std.Thread = undefined;
    for (&readers) |*r| r.* = try std.Thread.spawn(.{}, Ctx.reader, .{&ctx});
    // Let the readers get going first.
    while (ctx.rounds.load(.monotonic) < 3000) std.atomic.spinLoopHint();
    ctx.lock.lock(&ctx.contention);
    ctx.done.store(true, .release);
    ctx.lock.unlock();
    for (readers) |r| r.join();
    // Each reader finishes the round it was in and at most one more that passed the gate.
    try std.testing.expect(ctx.rounds_after_wait.load(.monotonic) <= 3 * 2);
}

test "lock order: ascending ranks are legal, descending ranks are counted" {
    const saved = mode;
    defer mode = saved;
    mode = .count;
    var contention = std.atomic.Value(u64).init(0);
    var a = Mutex{ .rank = .key_stripe };
    var b = Mutex{ .rank = .commit };
    const before = violations.load(.monotonic);

    a.lock(&contention);
    b.lock(&contention);
    b.unlock();
    a.unlock();
    try std.testing.expectEqual(before, violations.load(.monotonic));

    // The canary: the checker must see this inversion.
    b.lock(&contention);
    a.lock(&contention);
    a.unlock();
    b.unlock();
    try std.testing.expectEqual(before + 1, violations.load(.monotonic));
    try std.testing.expectEqual(@as(u8, 0), heldCount());
}

test "lock order: two locks of the same rank at once are a violation" {
    const saved = mode;
    defer mode = saved;
    mode = .count;
    var contention = std.atomic.Value(u64).init(0);
    var a = Mutex{ .rank = .node };
    var b = Mutex{ .rank = .node };
    const before = violations.load(.monotonic);
    a.lock(&contention);
    b.lock(&contention);
    b.unlock();
    a.unlock();
    try std.testing.expectEqual(before + 1, violations.load(.monotonic));
}

//! The lock-order checker's Debug-mode canary: acquires two ranked locks out of order.
//! `zig build lock-order-canary` builds it in Debug and passes only if the process panics
//! with both locks named (release builds count instead; native/sync/locks.zig tests that path).
const std = @import("std");
const locks = @import("locks.zig");

pub fn main() void {
    var contention = std.atomic.Value(u64).init(0);
    var commit = locks.Mutex{ .rank = .commit };
    var stripe = locks.Mutex{ .rank = .key_stripe };
    commit.lock(&contention);
    stripe.lock(&contention); // rank 3 after rank 6: the checker must stop the process here
    stripe.unlock();
    commit.unlock();
    std.debug.print("the out-of-order acquisition was not caught\n", .{});
}

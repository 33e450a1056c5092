//! ThreadSanitizer's canary: a deliberate data race. `zig build tsan-canary` builds this with
//! TSan and passes only if TSan reports the race, proving the TSan build really checks.
const std = @import("std");

var shared: u64 = 0;

fn bump() void {
    for (0..100_000) |_| {
        // A plain read-modify-write from two threads: the race TSan must see.
        const p: *volatile u64 = &shared;
        p.* += 1;
    }
}

pub fn main() !void {
    const a = try std.Thread.spawn(.{}, bump, .{});
    const b = try std.Thread.spawn(.{}, bump, .{});
    a.join();
    b.join();
    std.debug.print("shared = {d}\n", .{shared});
}

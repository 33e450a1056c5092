//! Caller keys (u64) to slots, in 64 independently locked stripes. A mutation holds its key's
//! stripe for the whole operation (WAL append and apply), so operations on one key are applied
//! in the order they were logged. Removed keys keep their entry (pointing at the tombstoned
//! slot) so snapshots can follow a key's history through `Meta.prev_slot`.
const std = @import("std");
const locks = @import("../sync/locks.zig");

pub const stripe_count = 64;

pub const Stripe = struct {
    mutex: locks.Mutex = .{ .rank = .key_stripe },
    map: std.AutoHashMapUnmanaged(u64, u32) = .{},
};

pub const KeyMap = struct {
    stripes: [stripe_count]Stripe = [_]Stripe{.{}} ** stripe_count,

    pub fn deinit(self: *KeyMap, gpa: std.mem.Allocator) void {
        for (&self.stripes) |*stripe| stripe.map.deinit(gpa);
    }

    pub fn stripeOf(self: *KeyMap, key: u64) *Stripe {
        // Fibonacci hashing spreads sequential keys over every stripe.
        const mixed = key *% 0x9E3779B97F4A7C15;
        comptime std.debug.assert(stripe_count == 1 << (64 - 58));
        return &self.stripes[@intCast(mixed >> 58)];
    }
};

test "keymap: sequential keys spread over stripes" {
    var map = KeyMap{};
    var seen = [_]bool{false} ** stripe_count;
    for (0..1024) |key| seen[
        (@intFromPtr(map.stripeOf(key)) - @intFromPtr(
            &map.stripes[0],
        )) / @sizeOf(Stripe)
    ] = true;
    for (seen) |s| try std.testing.expect(s);
}

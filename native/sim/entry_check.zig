//! Interleaving checks of the real entry-point promotion (native/hnsw/entry.zig).
//!
//! Threads promote candidates of different levels concurrently. Invariants:
//!   - the entry level never decreases, at every step;
//!   - a promotion that returned true installed its candidate; one that returned false saw an
//!     entry at least as high (both checked right after the call, with no step in between);
//!   - at the end the entry level is the maximum candidate level, and its slot is one of the
//!     candidates with that level.
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const entry = @import("../hnsw/entry.zig");

const EntryPoint = entry.EntryPoint(Sim);
const Entry = entry.Entry;
const PromoteFn = fn (*EntryPoint, Entry) bool;

fn promoteReal(point: *EntryPoint, candidate: Entry) bool {
    return point.promote(candidate);
}

/// Canary: promotion as a plain load and store. Two promoters that both read the old entry
/// can overwrite a higher level with a lower one.
fn promoteRacy(point: *EntryPoint, candidate: Entry) bool {
    if (entry.unpack(point.word.load(.acquire))) |current| {
        if (current.level >= candidate.level) return false;
    }
    point.word.store(entry.pack(candidate), .release);
    return true;
}

pub fn Scenario(
    comptime name_: []const u8,
    comptime promote: PromoteFn,
    comptime plan: []const []const Entry,
) type {
    comptime std.debug.assert(plan.len <= sched.threads_max);
    return struct {
        const Self = @This();
        pub const name = "entry." ++ name_;
        pub const thread_count: u8 = plan.len;

        point: EntryPoint,
        /// The highest level observed so far, by any step.
        level_seen: ?u32,

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            self.* = .{ .point = .{}, .level_seen = null };
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = self;
            _ = gpa;
        }

        pub fn thread(self: *Self, index: u8) void {
            for (plan[index]) |candidate| {
                const won = promote(&self.point, candidate);
                // The promotion's last operation was its final load or swap, so this peek sees
                // the same state that decided the result.
                const now = entry.unpack(self.point.word.peek());
                if (won and !std.meta.eql(now, candidate)) {
                    sched.fail(
                        "t{d} won with slot {d} but the entry is not it",
                        .{ index, candidate.slot },
                    );
                }
                if (!won and (now == null or now.?.level < candidate.level)) {
                    sched.fail(
                        "t{d} lost with level {d} to a lower entry",
                        .{ index, candidate.level },
                    );
                }
            }
        }

        pub fn invariant(self: *Self) void {
            const now = entry.unpack(self.point.word.peek()) orelse {
                if (self.level_seen != null) sched.fail("the entry point became empty", .{});
                return;
            };
            if (self.level_seen) |seen| {
                if (now.level < seen) sched.fail(
                    "entry level decreased from {d} to {d}",
                    .{ seen, now.level },
                );
            }
            if (self.level_seen == null or now.level > self.level_seen.?) self.level_seen =
                now.level;
        }

        pub fn check(self: *Self) void {
            self.invariant();
            var level_max: u32 = 0;
            for (plan) |candidates| {
                for (candidates) |candidate| level_max = @max(level_max, candidate.level);
            }
            const final = entry.unpack(self.point.word.peek()) orelse return sched.fail(
                "no entry point at the end",
                .{},
            );
            if (final.level != level_max) sched.fail(
                "final level {d}, expected {d}",
                .{ final.level, level_max },
            );
            for (plan) |candidates| {
                for (candidates) |candidate| {
                    if (candidate.level == level_max and candidate.slot == final.slot) return;
                }
            }
            sched.fail(
                "final slot {d} is not a candidate of level {d}",
                .{ final.slot, level_max },
            );
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            _ = buf;
            return if (address == @intFromPtr(&self.point.word)) "word" else null;
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            _ = self;
            _ = address;
            const unpacked = entry.unpack(value) orelse return "empty";
            return std.fmt.bufPrint(
                buf,
                "slot {d} level {d}",
                .{ unpacked.slot, unpacked.level },
            ) catch "?";
        }
    };
}

/// Two promoters raising the level in turns, with a tie at the top level and a late low one.
const plan_two: []const []const Entry = &.{
    &.{ .{ .slot = 1, .level = 1 }, .{ .slot = 3, .level = 3 }, .{ .slot = 5, .level = 0 } },
    &.{ .{ .slot = 2, .level = 2 }, .{ .slot = 4, .level = 3 }, .{ .slot = 6, .level = 1 } },
};

/// Three promoters whose candidates arrive in no particular level order.
const plan_three: []const []const Entry = &.{
    &.{ .{ .slot = 1, .level = 0 }, .{ .slot = 4, .level = 2 } },
    &.{ .{ .slot = 2, .level = 1 }, .{ .slot = 5, .level = 3 } },
    &.{ .{ .slot = 3, .level = 3 }, .{ .slot = 6, .level = 1 } },
};

const test_gpa = std.testing.allocator;

test "entry sim: two promoters, every interleaving" {
    const S = Scenario("two.real", promoteReal, plan_two);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000 } },
    );
    try explore.expectPass(S, test_gpa, &report);
    try explore.expectComplete(&report);
}

test "entry sim: three promoters, every interleaving with at most 3 preemptions" {
    const S = Scenario("three.real", promoteReal, plan_three);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000, .preemptions_max = 3 } },
    );
    try explore.expectPass(S, test_gpa, &report);
    try explore.expectComplete(&report);
}

test "entry sim: three promoters, seeded random schedules" {
    const S = Scenario("three.real", promoteReal, plan_three);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

const random_seed = 0x5eed_e417;

test "entry sim canary: promotion by plain load and store is caught" {
    const S = Scenario("two.racy", promoteRacy, plan_two);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000 } },
    );
    try explore.expectCaught(&report);
    const R = Scenario("three.racy", promoteRacy, plan_three);
    const random_report = try explore.explore(
        R,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectCaught(&random_report);
}

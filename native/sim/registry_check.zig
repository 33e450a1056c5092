//! Interleaving checks of the real handle registry (native/ffi/registry.zig `Table`): enter,
//! leave, close, release, retain and register over one atomic word per entry.
//!
//! The table has one slot, so a register after the slot was freed reuses it with the next
//! generation, and a stale handle names a live entry of another index. The payloads are fake
//! indexes whose `destroy` counts calls and keeps the memory, so a broken variant's use after
//! destroy is detected instead of crashing. Two scenarios:
//!   - lifecycle: an owner and a worker each hold a reference and make a call; the owner then
//!     closes and both release; a third thread makes a call and attaches (retain) while that
//!     happens. A payload a thread is using is never destroyed; a call that starts after
//!     `close` returned fails; the last user out destroys the index exactly once.
//!   - stale: two threads release the same handle (a double release) while a third registers
//!     a second index, which takes the slot over as soon as it is free, and uses it. Exactly
//!     one release succeeds; the second index is never destroyed while its owner holds its
//!     reference; every index is destroyed exactly once.
//! Both end with the slot free: no open bit, no users, no payload.
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const registry = @import("../ffi/registry.zig");

const Fake = struct {
    id: u32,
    destroys: u32,

    pub fn destroy(fake: *Fake) void {
        fake.destroys += 1;
        if (fake.destroys > 1) sched.fail("index {d} destroyed twice", .{fake.id});
    }
};

const Result = enum { pending, ok, invalid_handle, closed, too_many_handles };

fn resultOf(outcome: registry.Error!void) Result {
    outcome catch |err| return switch (err) {
        error.InvalidHandle => .invalid_handle,
        error.Closed => .closed,
        error.TooManyHandles => .too_many_handles,
    };
    return .ok;
}

pub const Kind = enum { lifecycle, stale };

pub fn Scenario(comptime variant: registry.Variant, comptime kind: Kind) type {
    return struct {
        const Self = @This();
        const T = registry.Table(Sim, *Fake, 0, variant);
        pub const name = "registry." ++ @tagName(kind) ++ "." ++ @tagName(variant);
        pub const thread_count: u8 = 3;

        table: T,
        fakes: [2]Fake,
        handle_a: u32,
        /// The payload each thread is using inside a call (between enter and leave).
        using: [thread_count]?*Fake,
        /// The index whose reference each thread owns and has not begun to release.
        owns: [thread_count]?*Fake,
        close_returned: bool,
        results: [thread_count][2]Result,

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            self.* = .{
                .table = .{},
                .fakes = .{ .{ .id = 0, .destroys = 0 }, .{ .id = 1, .destroys = 0 } },
                .handle_a = undefined,
                .using = @splat(null),
                .owns = @splat(null),
                .close_returned = false,
                .results = @splat(@splat(.pending)),
            };
            // Setup runs on the main thread, outside the schedule.
            self.handle_a = try self.table.register(&self.fakes[0]);
            if (kind == .lifecycle) try self.table.retain(self.handle_a);
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = self;
            _ = gpa;
        }

        pub fn thread(self: *Self, index: u8) void {
            switch (kind) {
                .lifecycle => self.lifecycle(index),
                .stale => self.stale(index),
            }
        }

        fn lifecycle(self: *Self, index: u8) void {
            const a = &self.fakes[0];
            switch (index) {
                0 => {
                    self.owns[0] = a;
                    self.results[0][0] = self.call(index, self.handle_a);
                    self.table.close(self.handle_a) catch |err| sched.fail(
                        "close of an open index failed: {s}",
                        .{@errorName(err)},
                    );
                    self.close_returned = true;
                    self.owns[0] = null;
                    self.results[0][1] = resultOf(self.table.release(self.handle_a));
                },
                1 => {
                    self.owns[1] = a;
                    self.results[1][0] = self.call(index, self.handle_a);
                    self.owns[1] = null;
                    self.results[1][1] = resultOf(self.table.release(self.handle_a));
                },
                else => {
                    self.results[2][0] = self.call(index, self.handle_a);
                    const closed_before = self.close_returned;
                    const retained = resultOf(self.table.retain(self.handle_a));
                    if (retained == .ok and closed_before) sched.fail(
                        "t2 retained an index after close returned",
                        .{},
                    );
                    if (retained != .ok) return;
                    self.owns[2] = a;
                    _ = self.call(index, self.handle_a);
                    self.owns[2] = null;
                    self.results[2][1] = resultOf(self.table.release(self.handle_a));
                },
            }
        }

        fn stale(self: *Self, index: u8) void {
            if (index < 2) {
                self.results[index][0] = resultOf(self.table.release(self.handle_a));
                return;
            }
            const b = &self.fakes[1];
            const handle_b = self.table.register(b) catch |err| {
                if (err != error.TooManyHandles) sched.fail(
                    "register failed: {s}",
                    .{@errorName(err)},
                );
                self.results[2][0] = .too_many_handles;
                return;
            };
            if (handle_b == self.handle_a) sched.fail("the reused slot kept its handle", .{});
            self.owns[2] = b;
            self.results[2][0] = self.call(index, handle_b);
            self.owns[2] = null;
            self.results[2][1] = resultOf(self.table.release(handle_b));
        }

        /// One FFI call: enter, use the index, leave.
        fn call(self: *Self, index: u8, handle: u32) Result {
            const closed_before = self.close_returned;
            const fake = self.table.enter(handle) catch |err| return resultOf(err);
            if (closed_before) sched.fail("t{d} entered after close returned", .{index});
            self.using[index] = fake;
            if (fake.destroys != 0) sched.fail("t{d} entered destroyed index {d}", .{
                index,
                fake.id,
            });
            // The body of the call: a scheduling point while the index is in use.
            _ = self.table.entries[0].word.load(.acquire);
            if (fake.destroys != 0) sched.fail("index {d} destroyed under t{d}'s call", .{
                fake.id,
                index,
            });
            self.using[index] = null;
            self.table.leave(handle);
            return .ok;
        }

        pub fn invariant(self: *Self) void {
            for (self.using, self.owns, 0..) |using, owns, index| {
                if (using) |fake| if (fake.destroys != 0) sched.fail(
                    "index {d} destroyed while t{d} is inside a call",
                    .{ fake.id, index },
                );
                if (owns) |fake| if (fake.destroys != 0) sched.fail(
                    "index {d} destroyed while t{d} holds a reference",
                    .{ fake.id, index },
                );
            }
        }

        pub fn check(self: *Self) void {
            self.invariant();
            const entry = &self.table.entries[0];
            const word = entry.word.peek();
            if (word & ((1 << 44) - 1) != 0) sched.fail("the slot ends in use: {x}", .{word});
            if (entry.index.peek() != null) sched.fail("the slot ends with a payload", .{});
            if (self.fakes[0].destroys != 1) sched.fail(
                "index 0 destroyed {d} times",
                .{self.fakes[0].destroys},
            );
            switch (kind) {
                .lifecycle => self.checkLifecycle(),
                .stale => self.checkStale(),
            }
        }

        fn checkLifecycle(self: *Self) void {
            if (self.fakes[1].destroys != 0) sched.fail("index 1 was destroyed", .{});
            if (self.results[0][1] != .ok or self.results[1][1] != .ok) sched.fail(
                "a reference holder's release failed: {s}, {s}",
                .{ @tagName(self.results[0][1]), @tagName(self.results[1][1]) },
            );
            // The owner calls before it closes; the worker's call may come after the close.
            if (self.results[0][0] != .ok) sched.fail(
                "the owner's call before close failed: {s}",
                .{@tagName(self.results[0][0])},
            );
            if (self.results[1][0] != .ok and self.results[1][0] != .closed) sched.fail(
                "the worker's call failed: {s}",
                .{@tagName(self.results[1][0])},
            );
        }

        fn checkStale(self: *Self) void {
            const first = self.results[0][0];
            const second = self.results[1][0];
            const one_ok = (first == .ok) != (second == .ok);
            const other_invalid = first == .invalid_handle or second == .invalid_handle;
            if (!one_ok or !other_invalid) sched.fail(
                "double release returned {s} and {s}, expected one ok and one invalid_handle",
                .{ @tagName(first), @tagName(second) },
            );
            const registered = self.results[2][0] != .too_many_handles;
            const expect: u32 = if (registered) 1 else 0;
            if (self.fakes[1].destroys != expect) sched.fail(
                "index 1 destroyed {d} times, expected {d}",
                .{ self.fakes[1].destroys, expect },
            );
            if (registered and (self.results[2][0] != .ok or self.results[2][1] != .ok)) {
                sched.fail("the new index's call or release failed: {s}, {s}", .{
                    @tagName(self.results[2][0]),
                    @tagName(self.results[2][1]),
                });
            }
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            _ = buf;
            if (address == @intFromPtr(&self.table.entries[0].word)) return "word";
            if (address == @intFromPtr(&self.table.entries[0].index)) return "index";
            return null;
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            if (address == @intFromPtr(&self.table.entries[0].index)) {
                if (value == 0) return "null";
                if (value == @intFromPtr(&self.fakes[0])) return "index0";
                if (value == @intFromPtr(&self.fakes[1])) return "index1";
            }
            if (address == @intFromPtr(&self.table.entries[0].word)) {
                return std.fmt.bufPrint(buf, "gen={d} open={d} closed={d} users={d}", .{
                    value >> 44,
                    (value >> 43) & 1,
                    (value >> 42) & 1,
                    value & ((1 << 42) - 1),
                }) catch "?";
            }
            return std.fmt.bufPrint(buf, "{d}", .{value}) catch "?";
        }
    };
}

const test_gpa = std.testing.allocator;

fn expectPass(comptime S: type, preemptions_max: ?u32) !void {
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 200_000, .preemptions_max = preemptions_max } },
    );
    try explore.expectPass(S, test_gpa, &report);
    try explore.expectComplete(&report);
}

test "registry sim: calls, close, release and retain racing, at most 3 preemptions" {
    try expectPass(Scenario(.correct, .lifecycle), 3);
}

test "registry sim: a double release beside a register that reuses the slot, every interleaving" {
    try expectPass(Scenario(.correct, .stale), null);
}

test "registry sim canary: release as a check then a separate decrement is caught" {
    const S = Scenario(.release_check_then_decrement, .stale);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 200_000 } },
    );
    try explore.expectCaught(&report);
}

test "registry sim canary: seeded random schedules catch the check-then-decrement release" {
    const S = Scenario(.release_check_then_decrement, .stale);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = 0x5eed_9e61 } },
    );
    try explore.expectCaught(&report);
}

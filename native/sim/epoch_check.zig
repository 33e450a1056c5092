//! Interleaving checks of the real mapping-generation code (native/storage/epoch.zig).
//!
//! Each generation's payload points at a fake mapping whose release clears `mapped` and
//! poisons its bytes but keeps the memory, so a broken variant's read is detected instead of
//! crashing. Threads play roles: a reader pins for one operation and reads; a guard holds its
//! pin across a remap and reads twice; the remapper publishes new generations. Invariants:
//!   - a generation held by a thread is mapped and not released, at every step;
//!   - the current generation is never released, at every step;
//!   - `isCurrent(g)` true means no newer generation is pinnable yet (epoch moves first), and
//!     false means a newer generation is being published (a fresh pin never reads stale);
//!   - once the publish that superseded `g` has returned, `isCurrent(g)` is false;
//!   - at the end exactly one generation is live, and every mapping is released exactly once.
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const epoch = @import("../storage/epoch.zig");

const poison: u8 = 0xdd;

const Mapping = struct {
    id: u32,
    bytes: [8]u8,
    mapped: Sim.Atomic(bool),
    releases: u32,

    fn pattern(id: u32) u8 {
        return @intCast(0x10 + id);
    }
};

/// The release function the generations call: "unmaps" the fake mapping.
fn release(mapping: *Mapping) void {
    mapping.releases += 1;
    if (mapping.releases > 1) sched.fail("mapping {d} released twice", .{mapping.id});
    // Unmapping is one step: the flag flips at a scheduling point, the poison follows at once.
    mapping.mapped.store(false, .seq_cst);
    @memset(&mapping.bytes, poison);
}

pub const Role = enum { reader, guard, remapper };

pub fn Scenario(
    comptime variant: epoch.Variant,
    comptime roles: []const Role,
    comptime publishes: u32,
) type {
    comptime std.debug.assert(roles.len <= sched.threads_max);
    comptime std.debug.assert(std.mem.count(Role, roles, &.{.remapper}) == 1);
    return struct {
        const Self = @This();
        const Epochs = epoch.Epochs(Sim, *Mapping, variant);
        const Generation = Epochs.Generation;
        const generations_bytes = (publishes + 1) * @sizeOf(Generation);

        pub const name = "epoch." ++ roleNames(roles) ++ std.fmt.comptimePrint(
            ".p{d}.",
            .{publishes},
        ) ++ @tagName(variant);
        pub const thread_count: u8 = roles.len;

        /// Generations come from a fixed buffer: a general-purpose allocator maps and unmaps
        /// pages every schedule, which would dominate the run time. `Epochs.deinit` frees the
        /// newest first, the reverse of allocation, so the buffer empties exactly when nothing
        /// leaked.
        arena_buf: [generations_bytes]u8 align(@alignOf(Generation)),
        arena: std.heap.FixedBufferAllocator,
        epochs: Epochs,
        mappings: [publishes + 1]Mapping,
        /// Publishes begun and returned, counted by the remapper around each `publish` call.
        publishes_started: u32,
        publishes_done: u32,
        /// The generation each thread holds a pin on, if any.
        held: [sched.threads_max]?*Generation,

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            for (&self.mappings, 0..) |*mapping, i| {
                const id: u32 = @intCast(i);
                mapping.* = .{
                    .id = id,
                    .bytes = @splat(Mapping.pattern(id)),
                    .mapped = Sim.Atomic(bool).init(true),
                    .releases = 0,
                };
            }
            self.arena = std.heap.FixedBufferAllocator.init(&self.arena_buf);
            self.publishes_started = 0;
            self.publishes_done = 0;
            self.held = @splat(null);
            self.epochs = try Epochs.init(self.arena.allocator(), &self.mappings[0], release);
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = gpa;
            self.epochs.deinit(self.arena.allocator());
            if (self.arena.end_index != 0) sched.fail(
                "{d} bytes of generations leaked",
                .{self.arena.end_index},
            );
            for (self.mappings) |mapping| {
                if (mapping.releases != 1) sched.fail(
                    "mapping {d} released {d} times in all",
                    .{ mapping.id, mapping.releases },
                );
            }
        }

        pub fn thread(self: *Self, index: u8) void {
            switch (roles[index]) {
                .reader => self.reader(index),
                .guard => self.guard(index),
                .remapper => self.remapper(),
            }
        }

        fn reader(self: *Self, index: u8) void {
            const generation = self.epochs.pin();
            self.held[index] = generation;
            self.read(index, generation);
            self.checkCurrent(generation);
            // Cleared before unpin: after unpin's first operation the mapping may go away.
            self.held[index] = null;
            self.epochs.unpin(generation);
        }

        fn guard(self: *Self, index: u8) void {
            const generation = self.epochs.pin();
            self.held[index] = generation;
            self.checkCurrent(generation);
            self.read(index, generation);
            // A remap may complete here; the stale guard must still read mapped memory.
            self.checkCurrent(generation);
            self.read(index, generation);
            self.held[index] = null;
            self.epochs.unpin(generation);
        }

        fn remapper(self: *Self) void {
            for (0..publishes) |i| {
                self.publishes_started += 1;
                _ = self.epochs.publish(self.arena.allocator(), &self.mappings[i + 1]) catch |err| {
                    sched.fail("publish failed: {s}", .{@errorName(err)});
                    return;
                };
                self.publishes_done += 1;
            }
        }

        fn read(self: *Self, index: u8, generation: *Generation) void {
            _ = self;
            const mapping = generation.payload;
            if (!mapping.mapped.load(.seq_cst)) {
                sched.fail("t{d} read mapping {d} after it was unmapped", .{ index, mapping.id });
                return;
            }
            for (mapping.bytes) |byte| {
                if (byte != Mapping.pattern(mapping.id)) sched.fail(
                    "t{d} read poisoned bytes of mapping {d}",
                    .{ index, mapping.id },
                );
            }
        }

        /// Calls `isCurrent` and checks its answer against the state it saw: no scheduling point
        /// lies between its load and the peeks below.
        fn checkCurrent(self: *Self, generation: *Generation) void {
            const is_current = self.epochs.isCurrent(generation);
            const pinnable = self.epochs.current.peek();
            if (is_current and pinnable.epoch != generation.epoch) {
                sched.fail(
                    "guard of epoch {d} reads current while epoch {d} is already pinnable",
                    .{ generation.epoch, pinnable.epoch },
                );
            }
            // Generation e is superseded by publish number e; until that one starts, stale is
            // wrong.
            if (!is_current and self.publishes_started < generation.epoch) {
                sched.fail(
                    "pin of epoch {d} reads stale but no newer generation is being published",
                    .{generation.epoch},
                );
            }
            if (is_current and self.publishes_done >= generation.epoch) {
                sched.fail(
                    "guard of epoch {d} reads current after the publish superseding it returned",
                    .{generation.epoch},
                );
            }
        }

        pub fn invariant(self: *Self) void {
            for (self.held, 0..) |held, index| {
                const generation = held orelse continue;
                if (!generation.payload.mapped.peek()) sched.fail(
                    "t{d} holds epoch {d} but its mapping is unmapped",
                    .{ index, generation.epoch },
                );
                if (generation.state.peek() == @intFromEnum(epoch.State.released)) {
                    sched.fail(
                        "t{d} holds epoch {d} but it is released",
                        .{ index, generation.epoch },
                    );
                }
            }
            const current = self.epochs.current.peek();
            if (current.state.peek() == @intFromEnum(epoch.State.released)) sched.fail(
                "the current generation is released",
                .{},
            );
        }

        pub fn check(self: *Self) void {
            var live: u32 = 0;
            var it: ?*Generation = self.epochs.newest.load(.seq_cst);
            while (it) |generation| : (it = generation.older) {
                if (generation.pins.peek() != 0) sched.fail(
                    "epoch {d} still has {d} pins",
                    .{ generation.epoch, generation.pins.peek() },
                );
                const released = generation.state.peek() == @intFromEnum(epoch.State.released);
                if (!released) live += 1;
                const newest = self.epochs.newest.load(.seq_cst);
                const expect_releases: u32 = if (generation == newest) 0 else 1;
                if (generation.payload.releases != expect_releases) {
                    sched.fail(
                        "epoch {d} released {d} times, expected {d}",
                        .{ generation.epoch, generation.payload.releases, expect_releases },
                    );
                }
            }
            if (live != 1) sched.fail("{d} generations live at the end, expected 1", .{live});
            if (self.epochs.newest.load(.seq_cst).epoch != publishes + 1) sched.fail(
                "newest epoch is {d}",
                .{self.epochs.newest.load(.seq_cst).epoch},
            );
            if (self.epochs.epoch.peek() != publishes + 1) sched.fail(
                "published epoch is {d}",
                .{self.epochs.epoch.peek()},
            );
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            if (address == @intFromPtr(&self.epochs.current)) return "current";
            if (address == @intFromPtr(&self.epochs.epoch)) return "epoch";
            if (address == @intFromPtr(&self.epochs.retries)) return "retries";
            for (&self.mappings) |*mapping| {
                if (address == @intFromPtr(&mapping.mapped)) return std.fmt.bufPrint(
                    buf,
                    "map{d}.mapped",
                    .{mapping.id},
                ) catch null;
            }
            var it: ?*Generation = self.epochs.newest.load(.seq_cst);
            while (it) |generation| : (it = generation.older) {
                if (address == @intFromPtr(generation)) return std.fmt.bufPrint(
                    buf,
                    "gen{d}",
                    .{generation.epoch},
                ) catch null;
                if (address == @intFromPtr(&generation.pins)) return std.fmt.bufPrint(
                    buf,
                    "gen{d}.pins",
                    .{generation.epoch},
                ) catch null;
                if (address == @intFromPtr(&generation.state)) return std.fmt.bufPrint(
                    buf,
                    "gen{d}.state",
                    .{generation.epoch},
                ) catch null;
            }
            return null;
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            if (address == @intFromPtr(&self.epochs.current)) return self.label(
                @intCast(value),
                buf,
            ) orelse "?";
            return std.fmt.bufPrint(buf, "{d}", .{value}) catch "?";
        }
    };
}

fn roleNames(comptime roles: []const Role) []const u8 {
    comptime var text: []const u8 = "";
    inline for (roles, 0..) |role, i| text = text ++ (if (i == 0) "" else "+") ++ @tagName(role);
    return text;
}

const test_gpa = std.testing.allocator;

test "epoch sim: reader against one publish, every interleaving" {
    try expectPass(Scenario(.correct, &.{ .reader, .remapper }, 1), null);
}

test "epoch sim: guard held across one publish, every interleaving" {
    try expectPass(Scenario(.correct, &.{ .guard, .remapper }, 1), null);
}

test "epoch sim: guard held across two publishes, every interleaving with at most 4 preemptions" {
    try expectPass(Scenario(.correct, &.{ .guard, .remapper }, 2), 4);
}

test "epoch sim: reader, guard and remapper, every interleaving with at most 3 preemptions" {
    try expectPass(Scenario(.correct, &.{ .reader, .guard, .remapper }, 1), 3);
}

test "epoch sim: reader, guard and remapper over two publishes, seeded random schedules" {
    const S = Scenario(.correct, &.{ .reader, .guard, .remapper }, 2);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

const random_seed = 0x5eed_e90c;

fn expectPass(comptime S: type, preemptions_max: ?u32) !void {
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000, .preemptions_max = preemptions_max } },
    );
    try explore.expectPass(S, test_gpa, &report);
    try explore.expectComplete(&report);
}

fn expectCanaryCaught(comptime variant: epoch.Variant) !void {
    const S = Scenario(variant, &.{ .reader, .remapper }, 1);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000 } },
    );
    try explore.expectCaught(&report);
    const R = Scenario(variant, &.{ .reader, .guard, .remapper }, 2);
    const random_report = try explore.explore(
        R,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectCaught(&random_report);
}

test "epoch sim canary: pin without re-check is caught" {
    try expectCanaryCaught(.pin_without_recheck);
}

test "epoch sim canary: release ignoring pins is caught" {
    try expectCanaryCaught(.release_ignores_pins);
}

test "epoch sim canary: epoch bumped after publish is caught" {
    try expectCanaryCaught(.epoch_after_publish);
}

test "epoch sim canary: unpin trusting its stale pin count is caught (the bug this checker found)" {
    // Needs three threads: a reader unpinning, a guard pinning in the gap, and a publisher.
    const R = Scenario(.unpin_trusts_stale_count, &.{ .reader, .guard, .remapper }, 1);
    const bounded = try explore.explore(
        R,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 100_000, .preemptions_max = 3 } },
    );
    try explore.expectCaught(&bounded);
    const P = Scenario(.unpin_trusts_stale_count, &.{ .reader, .guard, .remapper }, 2);
    const random_report = try explore.explore(
        P,
        test_gpa,
        .{ .random = .{ .runs = 5_000, .seed = random_seed } },
    );
    try explore.expectCaught(&random_report);
}

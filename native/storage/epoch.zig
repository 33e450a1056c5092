//! Mapping generations and epoch-based reclamation: the heart of the remap path.
//!
//! Storage lives in one generation of mappings at a time. Growth publishes a new generation
//! (epoch + 1) and retires the old one; a retired generation is released (unmapped) only once
//! no reader pins it. Readers pin the current generation for the length of an operation, and a
//! guard (a zero-copy view) pins it until released. A guard whose generation is no longer
//! current is stale: callers check `isCurrent` and refuse it, but its memory stays mapped until
//! the guard is released, so nothing can ever read unmapped memory.
//!
//! The type is generic over the sync layer (native/sync/atomics.zig) and over the payload, so the
//! interleaving checker drives this exact code; `Variant` holds deliberately broken orderings
//! that the checker must catch (its canaries). Production always uses `.correct`.
const std = @import("std");
const assert = std.debug.assert;
const sync = @import("../sync/atomics.zig");

pub const Variant = enum {
    correct,
    /// Canary: pins without re-checking that the generation is still current, so a reader can
    /// pin a generation that was already released.
    pin_without_recheck,
    /// Canary: releases a retired generation without looking at its pin count.
    release_ignores_pins,
    /// Canary: bumps the published epoch after the new generation is visible.
    epoch_after_publish,
    /// Canary (a real bug the checker found): releases on the pin count seen before the
    /// decrement, not re-read after the generation was seen retired.
    unpin_trusts_stale_count,
};

pub const State = enum(u8) { current = 0, retired = 1, released = 2 };

pub fn Epochs(comptime Sync: type, comptime Payload: type, comptime variant: Variant) type {
    return struct {
        const Self = @This();

        pub const Generation = struct {
            payload: Payload,
            epoch: u64,
            pins: Sync.Atomic(u32),
            state: Sync.Atomic(u8),
            /// All generations ever made, newest first; freed only in `deinit`, because a reader
            /// may still touch `pins` of a released generation while it backs off.
            older: ?*Generation,
        };

        current: Sync.Atomic(*Generation),
        /// The epoch readers compare guards against (also read by the TS side through a pointer).
        epoch: Sync.Atomic(u64),
        /// Atomic: `stats()` walks the list while a remap publishes (under the grow lock). A
        /// plain hardware atomic, not a `Sync` one: the checker need not explore a list that
        /// only publishers (serialized by the grow lock) change and no protocol step reads.
        newest: std.atomic.Value(*Generation),
        /// Pins that had to back off because a remap raced with them.
        retries: Sync.Atomic(u64),
        releaseFn: *const fn (Payload) void,

        pub fn init(
            gpa: std.mem.Allocator,
            payload: Payload,
            releaseFn: *const fn (Payload) void,
        ) !Self {
            const generation = try gpa.create(Generation);
            generation.* = .{
                .payload = payload,
                .epoch = 1,
                .pins = Sync.Atomic(u32).init(0),
                .state = Sync.Atomic(u8).init(@intFromEnum(State.current)),
                .older = null,
            };
            return .{
                .current = Sync.Atomic(*Generation).init(generation),
                .epoch = Sync.Atomic(u64).init(1),
                .newest = std.atomic.Value(*Generation).init(generation),
                .retries = Sync.Atomic(u64).init(0),
                .releaseFn = releaseFn,
            };
        }

        /// Releases every generation. No pin may be alive: the caller drained all users.
        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            var it: ?*Generation = self.newest.load(.acquire);
            while (it) |generation| {
                it = generation.older;
                assert(generation.pins.load(.seq_cst) == 0);
                if (generation.state.load(.seq_cst) != @intFromEnum(State.released)) {
                    self.releaseFn(generation.payload);
                }
                gpa.destroy(generation);
            }
        }

        /// Pins the current generation. Its payload stays valid until `unpin`.
        pub fn pin(self: *Self) *Generation {
            while (true) {
                const generation = self.current.load(.seq_cst);
                _ = generation.pins.fetchAdd(1, .seq_cst);
                if (variant == .pin_without_recheck) return generation;
                // A remap may have retired (and released) this generation between the load and
                // the increment; only a generation still current after the increment is safe.
                if (self.current.load(.seq_cst) == generation) return generation;
                self.unpin(generation);
                _ = self.retries.fetchAdd(1, .monotonic);
                Sync.spin();
            }
        }

        pub fn unpin(self: *Self, generation: *Generation) void {
            const before = generation.pins.fetchSub(1, .seq_cst);
            assert(before > 0);
            if (before != 1 or generation.state.load(.seq_cst) != @intFromEnum(
                State.retired,
            )) return;
            // `before == 1` is stale by now: another reader may have pinned while the generation
            // was still current, and the publisher then saw its pin and left the release to it.
            // Once retired, new pins back off, so a zero count read now means no holder is left.
            // (Found by the interleaving checker: native/sim, 3 threads.)
            if (variant == .unpin_trusts_stale_count or generation.pins.load(.seq_cst) == 0) {
                self.tryRelease(generation);
            }
        }

        pub fn isCurrent(self: *Self, generation: *const Generation) bool {
            return self.epoch.load(.seq_cst) == generation.epoch;
        }

        /// Publishes `payload` as the new current generation and retires the old one.
        /// The caller serializes publishers (the grow lock).
        pub fn publish(self: *Self, gpa: std.mem.Allocator, payload: Payload) !*Generation {
            const old = self.current.load(.seq_cst);
            const generation = try gpa.create(Generation);
            generation.* = .{
                .payload = payload,
                .epoch = old.epoch + 1,
                .pins = Sync.Atomic(u32).init(0),
                .state = Sync.Atomic(u8).init(@intFromEnum(State.current)),
                .older = self.newest.load(.monotonic),
            };
            // Linked whole before it is reachable: walkers load `newest` with acquire.
            self.newest.store(generation, .release);
            // The epoch moves first: once any reader can pin the new generation, every guard of
            // the old one already reads as stale.
            if (variant != .epoch_after_publish) self.epoch.store(generation.epoch, .seq_cst);
            self.current.store(generation, .seq_cst);
            if (variant == .epoch_after_publish) self.epoch.store(generation.epoch, .seq_cst);
            old.state.store(@intFromEnum(State.retired), .seq_cst);
            if (variant == .release_ignores_pins or old.pins.load(.seq_cst) == 0) {
                self.tryRelease(old);
            }
            return generation;
        }

        fn tryRelease(self: *Self, generation: *Generation) void {
            const won = generation.state.cmpxchgStrong(
                @intFromEnum(State.retired),
                @intFromEnum(State.released),
                .seq_cst,
                .seq_cst,
            ) == null;
            if (won) self.releaseFn(generation.payload);
        }

        /// Generations not yet released (the current one included).
        pub fn liveCount(self: *Self) u64 {
            var count: u64 = 0;
            var it: ?*Generation = self.newest.load(.acquire);
            while (it) |generation| : (it = generation.older) {
                if (generation.state.load(.seq_cst) != @intFromEnum(State.released)) count += 1;
            }
            return count;
        }
    };
}

const TestPayload = struct {
    id: u32,
    released: *std.atomic.Value(u32),
};

fn testRelease(payload: TestPayload) void {
    _ = payload.released.fetchAdd(1, .seq_cst);
}

test "epochs: a pinned generation outlives its retirement, then is released exactly once" {
    const E = Epochs(sync.Production, TestPayload, .correct);
    var released = std.atomic.Value(u32).init(0);
    var epochs = try E.init(
        std.testing.allocator,
        .{ .id = 0, .released = &released },
        testRelease,
    );
    defer epochs.deinit(std.testing.allocator);

    const guard = epochs.pin();
    try std.testing.expect(epochs.isCurrent(guard));
    _ = try epochs.publish(std.testing.allocator, .{ .id = 1, .released = &released });
    try std.testing.expect(!epochs.isCurrent(guard));
    try std.testing.expectEqual(@as(u32, 0), released.load(.seq_cst));
    try std.testing.expectEqual(@as(u64, 2), epochs.liveCount());
    epochs.unpin(guard);
    try std.testing.expectEqual(@as(u32, 1), released.load(.seq_cst));
    try std.testing.expectEqual(@as(u64, 1), epochs.liveCount());

    const fresh = epochs.pin();
    try std.testing.expectEqual(@as(u32, 1), fresh.payload.id);
    epochs.unpin(fresh);
}

test "epochs: 1000 publishes with guards taken and released keep live generations bounded" {
    const E = Epochs(sync.Production, TestPayload, .correct);
    var released = std.atomic.Value(u32).init(0);
    var epochs = try E.init(
        std.testing.allocator,
        .{ .id = 0, .released = &released },
        testRelease,
    );
    defer epochs.deinit(std.testing.allocator);
    var held: ?*E.Generation = null;
    for (1..1001) |i| {
        if (i % 3 == 0) held = epochs.pin();
        _ = try epochs.publish(
            std.testing.allocator,
            .{ .id = @intCast(i), .released = &released },
        );
        if (held) |g| {
            try std.testing.expect(!epochs.isCurrent(g));
            epochs.unpin(g);
            held = null;
        }
        try std.testing.expectEqual(@as(u64, 1), epochs.liveCount());
    }
    try std.testing.expectEqual(@as(u32, 1000), released.load(.seq_cst));
}

//! Interleaving checks of the real slot-visibility protocol (native/hnsw/view.zig `Slots`):
//! `publish` of add/upsert (index/write.zig) against readers that use `visible` — the scan of
//! `keys()` at the current sequence number, a live search pass, and a snapshot reader.
//!
//! Slot 0 holds key 7, published at seq 1. The writer upserts key 7 twice, into slots 1 and 2,
//! each as `addLocked` does: take the slot (`slots_used`), write its metadata as `writeSlot`
//! does (`created_seq = unpublished`, state `inserting` last), then `publish` (the commit lock
//! has one writer here). Invariants:
//!   - `keys()` at the current sequence number sees key 7 exactly once;
//!   - a live reader sees it at most twice (searches drop the duplicate), at least once
//!     unless its newest slot was published beyond the reader's bound (`publishedFrom`), and
//!     never a visible slot that is not `ready` with its key written (half-published);
//!   - the same for a live reader that tests the live bits instead (hnsw/search.zig);
//!   - a snapshot reader at seq 1 sees exactly slot 0;
//!   - at the end seq is 3, one slot is live (slot 2) with the only live bit, and `live` is 1.
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const view = @import("../hnsw/view.zig");
const layout = @import("../storage/layout.zig");

const key = 7;
const slot_count = 3;

pub fn Scenario(comptime variant: view.SlotsVariant) type {
    return struct {
        const Self = @This();
        const S = view.Slots(Sim, variant);
        pub const name = "slots." ++ @tagName(variant);
        pub const thread_count: u8 = 3;

        /// The metadata column, as `layout.Regions.meta` hands it out.
        const Regions = struct {
            metas: *[slot_count]layout.Meta,

            pub fn meta(metas: Regions, slot: u32) *layout.Meta {
                return &metas.metas[slot];
            }
        };

        /// The live bits, as graph.zig `NodeLocks` keeps them (one word covers the slots here).
        const Bits = struct {
            word: Sim.Atomic(u64),

            pub fn isLive(bits: *Bits, slot: u32) bool {
                return bits.word.load(.acquire) & (@as(u64, 1) << @intCast(slot)) != 0;
            }

            pub fn setLive(bits: *Bits, slot: u32, on: bool) void {
                const mask = @as(u64, 1) << @intCast(slot);
                if (on) {
                    _ = bits.word.fetchOr(mask, .release);
                } else {
                    _ = bits.word.fetchAnd(~mask, .release);
                }
            }
        };

        metas: [slot_count]layout.Meta,
        bits: Bits,
        seq: Sim.Atomic(u64),
        live: Sim.Atomic(u64),
        slots_used: Sim.Atomic(u64),

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            // Fresh slots are zero, as in a new mapping.
            self.metas = std.mem.zeroes([slot_count]layout.Meta);
            self.metas[0] = std.mem.zeroes(layout.Meta);
            self.metas[0].key = key;
            self.metas[0].created_seq = 1;
            self.metas[0].prev_slot = layout.no_slot;
            self.metas[0].state = @intFromEnum(layout.SlotState.ready);
            self.bits = .{ .word = Sim.Atomic(u64).init(1) };
            self.seq = Sim.Atomic(u64).init(1);
            self.live = Sim.Atomic(u64).init(1);
            self.slots_used = Sim.Atomic(u64).init(1);
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = self;
            _ = gpa;
        }

        fn column(self: *Self) Regions {
            return .{ .metas = &self.metas };
        }

        pub fn thread(self: *Self, index: u8) void {
            switch (index) {
                0 => for (1..slot_count) |slot| self.upsert(@intCast(slot)),
                1 => for (0..2) |_| self.keysScan(),
                else => {
                    self.liveScan(.metadata);
                    self.liveScan(.bits);
                    self.snapshotScan();
                },
            }
        }

        fn upsert(self: *Self, slot: u32) void {
            if (self.slots_used.cmpxchgStrong(slot, slot + 1, .acq_rel, .acquire) != null) {
                return sched.fail("slot {d} was taken", .{slot});
            }
            // writeSlot: the sequence numbers atomically, the state last by a release store.
            const meta = &self.metas[slot];
            meta.key = key;
            Sim.store(u64, &meta.created_seq, layout.unpublished, .monotonic);
            Sim.store(u64, &meta.deleted_seq, 0, .monotonic);
            meta.prev_slot = slot - 1;
            Sim.store(u8, &meta.state, @intFromEnum(layout.SlotState.inserting), .release);
            const previous: S.Previous = .{ .meta = &self.metas[slot - 1], .slot = slot - 1 };
            const seq = S.publish(meta, slot, previous, &self.seq, &self.live, &self.bits);
            if (seq != slot + 1) sched.fail("publish gave seq {d} to slot {d}", .{ seq, slot });
        }

        /// `keys()` at the live view: the current sequence number, then the slot bound.
        fn keysScan(self: *Self) void {
            const seq = self.seq.load(.acquire);
            const bound = @min(self.slots_used.load(.acquire), slot_count);
            var out: [slot_count]u64 = undefined;
            const n = S.collectKeys(self.column(), bound, seq, &out);
            if (n != 1) sched.fail("keys() at seq {d} saw key {d} {d} times", .{ seq, key, n });
        }

        /// A live search's visibility filter over every slot it may reach: by the metadata (a
        /// key lookup's) or by the live bits (a live search's, hnsw/search.zig).
        fn liveScan(self: *Self, by: enum { metadata, bits }) void {
            const bound = @min(self.slots_used.load(.acquire), slot_count);
            var seen: u32 = 0;
            for (0..bound) |slot| {
                const meta = &self.metas[slot];
                const visible = switch (by) {
                    .metadata => S.visible(meta, view.live_seq),
                    .bits => S.visibleLive(&self.bits, @intCast(slot)),
                };
                if (!visible) continue;
                seen += 1;
                if (meta.state != @intFromEnum(layout.SlotState.ready) or meta.key != key) {
                    sched.fail("a live reader saw half-published slot {d}", .{slot});
                }
            }
            if (seen == 0 and !self.publishedFrom(bound)) sched.fail(
                "a live reader found key {d} missing with its newest slot in bound",
                .{key},
            );
            if (seen > 2) sched.fail("a live reader saw key {d} {d} times", .{ key, seen });
        }

        /// Whether a slot at or above `bound` is published by now. A live reader's bound is
        /// taken before its scan (as a search's view bound is), so an upsert that publishes
        /// past the bound and retires the slot the reader would have found hides the key from
        /// that reader: the search is approximate there, never wrong about what it returns.
        /// Inside the bound, the order of `publish` (new slot visible, then the old retired)
        /// means that a reader always finds one of them.
        fn publishedFrom(self: *Self, bound: u64) bool {
            for (self.metas[@intCast(bound)..]) |*meta| {
                const created = @atomicLoad(u64, &meta.created_seq, .seq_cst);
                if (created != 0 and created != layout.unpublished) return true;
            }
            return false;
        }

        fn snapshotScan(self: *Self) void {
            const bound = @min(self.slots_used.load(.acquire), slot_count);
            for (0..bound) |slot| {
                const seen = S.visible(&self.metas[slot], 1);
                if (seen != (slot == 0)) sched.fail(
                    "a snapshot at seq 1 {s} slot {d}",
                    .{ if (seen) "saw" else "missed", slot },
                );
            }
        }

        pub fn check(self: *Self) void {
            if (self.seq.peek() != slot_count) sched.fail("seq ends {d}", .{self.seq.peek()});
            if (self.live.peek() != 1) sched.fail("live ends {d}", .{self.live.peek()});
            for (&self.metas, 0..) |*meta, slot| {
                const want = slot == slot_count - 1;
                const got = view.visible(meta, view.live_seq);
                if (got != want) sched.fail("slot {d} ends visible={}", .{ slot, got });
                const bit = self.bits.isLive(@intCast(slot));
                if (bit != want) sched.fail("slot {d} ends with live bit {}", .{ slot, bit });
            }
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            if (address == @intFromPtr(&self.seq)) return "seq";
            if (address == @intFromPtr(&self.live)) return "live";
            if (address == @intFromPtr(&self.slots_used)) return "slots_used";
            if (address == @intFromPtr(&self.bits.word)) return "live_bits";
            for (&self.metas, 0..) |*meta, slot| {
                const field = if (address == @intFromPtr(&meta.created_seq))
                    "created_seq"
                else if (address == @intFromPtr(&meta.deleted_seq))
                    "deleted_seq"
                else if (address == @intFromPtr(&meta.state)) "state" else continue;
                return std.fmt.bufPrint(buf, "slot{d}.{s}", .{ slot, field }) catch null;
            }
            return null;
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            _ = self;
            _ = address;
            if (value == layout.unpublished) return "unpublished";
            return std.fmt.bufPrint(buf, "{d}", .{value}) catch "?";
        }
    };
}

const test_gpa = std.testing.allocator;
const random_seed = 0x5eed_5107;

test "slots sim: two upserts against keys(), live and snapshot readers, at most 3 preemptions" {
    const S = Scenario(.correct);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 200_000, .preemptions_max = 3 } },
    );
    try explore.expectPass(S, test_gpa, &report);
    try explore.expectComplete(&report);
}

test "slots sim: two upserts against keys(), live and snapshot readers, seeded random" {
    const S = Scenario(.correct);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

fn expectCanaryCaught(comptime variant: view.SlotsVariant) !void {
    const S = Scenario(variant);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .exhaustive = .{ .schedules_max = 200_000, .preemptions_max = 2 } },
    );
    try explore.expectCaught(&report);
}

test "slots sim canary: a sequence number before the ready state is caught (half-published)" {
    try expectCanaryCaught(.created_before_ready);
}

test "slots sim canary: retiring the old slot before the new one is visible is caught" {
    try expectCanaryCaught(.deleted_before_created);
}

test "slots sim canary: advancing seq before the slots is caught (a key seen twice)" {
    try expectCanaryCaught(.seq_before_slots);
}

test "slots sim canary: a live bit set before the slot is ready is caught (half-published)" {
    try expectCanaryCaught(.live_bit_first);
}

/// The key lookup of `get`/`has` (index/read.zig `slotAt`): under the key's stripe, from the
/// key map's newest slot down the upsert chain. The stripe is a spin lock here (`get` and
/// `addLocked` both hold it), so only seeded random schedules explore it. The writer upserts
/// key 7 twice, each under the stripe with its key-map update; the reader looks the key up at
/// every sequence number up to the current one, and live. It must find slot `s - 1` at seq `s`
/// (the slot that upsert `s - 1` made) and the newest slot live.
pub fn Chain(comptime variant: view.SlotsVariant) type {
    return struct {
        const Self = @This();
        const Base = Scenario(variant);
        const S = Base.S;
        pub const name = "slots.chain." ++ @tagName(variant);
        pub const thread_count: u8 = 2;

        base: Base,
        stripe: Sim.Atomic(bool),
        /// The key map's entry for key 7 (guarded by the stripe).
        newest: u32,

        const Regions = struct {
            metas: *[slot_count]layout.Meta,
            capacity: u64,

            pub fn meta(metas: Regions, slot: u32) *layout.Meta {
                return &metas.metas[slot];
            }
        };

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            try self.base.init(gpa);
            self.stripe = Sim.Atomic(bool).init(false);
            self.newest = 0;
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            self.base.deinit(gpa);
        }

        fn lock(self: *Self) void {
            while (self.stripe.cmpxchgWeak(false, true, .acquire, .monotonic) != null) Sim.spin();
        }

        fn unlock(self: *Self) void {
            self.stripe.store(false, .release);
        }

        pub fn thread(self: *Self, index: u8) void {
            if (index == 0) {
                for (1..slot_count) |slot| {
                    self.lock();
                    self.base.upsert(@intCast(slot));
                    self.newest = @intCast(slot);
                    self.unlock();
                }
                return;
            }
            for (0..2) |_| self.lookups();
        }

        fn lookups(self: *Self) void {
            const regions: Regions = .{ .metas = &self.base.metas, .capacity = slot_count };
            self.lock();
            defer self.unlock();
            const current = self.base.seq.load(.acquire);
            const used = self.base.slots_used.load(.acquire);
            for (1..current + 1) |seq| self.expect(regions, used, seq, seq - 1);
            self.expect(regions, used, view.live_seq, current - 1);
        }

        fn expect(self: *Self, regions: Regions, used: u64, seq: u64, want: u64) void {
            const got = S.chainAt(regions, self.newest, used, key, seq) catch {
                return sched.fail("a lookup at seq {d} reported a stale view", .{seq});
            };
            if (got == null or got.? != want) sched.fail(
                "a lookup at seq {d} found slot {?d}, expected {d}",
                .{ seq, got, want },
            );
        }

        pub fn check(self: *Self) void {
            self.base.check();
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            if (address == @intFromPtr(&self.stripe)) return "stripe";
            return self.base.label(address, buf);
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            return self.base.formatValue(address, value, buf);
        }
    };
}

test "slots sim: key lookups down the upsert chain beside two upserts, seeded random" {
    const S = Chain(.correct);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

test "slots sim canary: a lookup that stops at the newest slot is caught" {
    const S = Chain(.chain_without_walk);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 2_000, .seed = random_seed } },
    );
    try explore.expectCaught(&report);
}

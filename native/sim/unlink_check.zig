//! Interleaving checks of the unlink protocol of a level-0 backlink (native/hnsw/insert.zig
//! `Backlink`, native/hnsw/graph.zig `NodeLocks.unlink`): a full list that takes a new node
//! drops an old neighbour only if another list still links to that neighbour, read while the
//! neighbour's unlink stripe is held, and the stripe is held until the list is written.
//!
//! Two lists, A and B, both name node 7 (its only in-links). Thread 0 adds 10 to A, which
//! drops 7 if B still names it; thread 1 adds 11 to B, which drops 7 if A still names it. Both
//! run the real seqlock `Protocol.update`; the stripe is a spin lock on a simulated atomic.
//! Invariant: at the end, A or B names 7 (the node kept an in-link). The canary drops without
//! the stripe: each thread reads the other list before the other's write, and both drop it
//! (the race a 4-thread build hit about once in fifty builds under load).
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const graph = @import("../hnsw/graph.zig");

const P = graph.Protocol(Sim, graph.NoHooks);
const capacity = 2;
const dropped: u32 = 7;

const List = struct {
    version: P.Word,
    words: [1 + capacity]P.Word,

    fn init(self: *List, ids: []const u32) void {
        self.version = P.Word.init(0);
        self.words[0] = P.Word.init(@intCast(ids.len));
        for (ids, 1..) |id, i| self.words[i] = P.Word.init(id);
    }

    fn holds(self: *List, id: u32) bool {
        var out: [capacity]u32 = undefined;
        const copy = P.read(&self.version, &self.words, capacity, &out);
        return std.mem.indexOfScalar(u32, copy.ids, id) != null;
    }

    fn peekHolds(self: *List, id: u32) bool {
        const count = @min(self.words[0].peek(), capacity);
        for (self.words[1 .. 1 + count]) |*word| if (word.peek() == id) return true;
        return false;
    }
};

/// The backlink's merge: the new id replaces `dropped` only if `other` still names it.
const Merge = struct {
    new: u32,
    other: *List,

    pub fn merge(self: *Merge, current: []const u32, out: []u32, locked: bool) ?[]u32 {
        if (locked) return null;
        if (std.mem.indexOfScalar(u32, current, dropped) == null) return null;
        if (!self.other.holds(dropped)) return null;
        var n: usize = 0;
        for (current) |id| {
            if (id == dropped) continue;
            out[n] = id;
            n += 1;
        }
        out[n] = self.new;
        return out[0 .. n + 1];
    }
};

pub const Variant = enum { striped, unstriped };

pub fn Scenario(comptime variant: Variant) type {
    return struct {
        const Self = @This();
        pub const name = "unlink." ++ @tagName(variant);
        pub const thread_count: u8 = 2;

        lists: [2]List,
        stripe: Sim.Atomic(u32),

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            self.lists[0].init(&.{ dropped, 1 });
            self.lists[1].init(&.{ dropped, 2 });
            self.stripe = Sim.Atomic(u32).init(0);
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = self;
            _ = gpa;
        }

        pub fn thread(self: *Self, index: u8) void {
            const own = &self.lists[index];
            var merge = Merge{ .new = 10 + @as(u32, index), .other = &self.lists[1 - index] };
            if (variant == .striped) {
                while (self.stripe.cmpxchgWeak(0, 1, .acquire, .monotonic) != null) Sim.spin();
            }
            var current: [capacity]u32 = undefined;
            var out: [capacity]u32 = undefined;
            _ = P.update(&own.version, &own.words, capacity, &merge, &current, &out);
            if (variant == .striped) self.stripe.store(0, .release);
        }

        pub fn check(self: *Self) void {
            if (!self.lists[0].peekHolds(dropped) and !self.lists[1].peekHolds(dropped)) {
                sched.fail("both lists dropped node {d}: it has no in-link left", .{dropped});
            }
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            if (address == @intFromPtr(&self.stripe)) return "stripe";
            for (&self.lists, 0..) |*list, l| {
                if (address == @intFromPtr(&list.version)) {
                    return std.fmt.bufPrint(buf, "{c}.version", .{"AB"[l]}) catch "version";
                }
                for (&list.words, 0..) |*word, i| {
                    if (address != @intFromPtr(word)) continue;
                    return std.fmt.bufPrint(buf, "{c}[{d}]", .{ "AB"[l], i }) catch "word";
                }
            }
            return null;
        }

        pub fn formatValue(self: *Self, address: usize, value: u64, buf: []u8) []const u8 {
            _ = self;
            _ = address;
            return std.fmt.bufPrint(buf, "{d}", .{value}) catch "?";
        }
    };
}

const test_gpa = std.testing.allocator;
const random_seed = 0x0a11_1e5;

// Seeded random schedules: the stripe is a spin loop, which the depth-first search cannot
// finish on (sched.zig offers the spinner again at every spin).
test "unlink sim: two backlinks dropping one node from two lists leave it an in-link" {
    const S = Scenario(.striped);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

test "unlink sim canary: without the stripe both drop it" {
    const S = Scenario(.unstriped);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectCaught(&report);
}

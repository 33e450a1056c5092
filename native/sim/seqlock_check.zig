//! Interleaving checks of the real seqlock protocol (native/hnsw/graph.zig `Protocol`): the
//! versioned read against insert's link and backlink writes.
//!
//! One neighbour list of capacity 3 starts as {3, 2, 1}. Writers run `Protocol.update` with a
//! merge of the shape insert uses: add ids, and when the list overflows keep the `capacity`
//! largest (the stand-in for the pruning heuristic: a pure function of the ids it is given,
//! computed outside the lock). A backlink writer adds one id; an own-list writer adds two (a
//! new node's first list write, which must keep what others linked first). A reader copies the
//! list with `Protocol.read`. Invariants:
//!   - every copy the reader returns is a list some set of the writers' additions produces
//!     (or the initial list): never a mixture of two writes;
//!   - the version is even whenever no writer is inside a write;
//!   - at the end the list is exactly the merge of every id added: no writer's link is lost.
const std = @import("std");
const sched = @import("sched.zig");
const explore = @import("explore.zig");
const Sim = @import("atomic.zig").Sim;
const graph = @import("../hnsw/graph.zig");

const P = graph.Protocol(Sim, graph.NoHooks);
const capacity = 3;
const initial = [_]u32{ 3, 2, 1 };

/// Keeps the `capacity` largest of the list and the additions, largest first.
const Merge = struct {
    add: []const u32,

    pub fn merge(self: *Merge, current: []const u32, out: []u32, locked: bool) ?[]u32 {
        _ = locked;
        var all: [capacity + 4]u32 = undefined;
        var n: usize = 0;
        for (current) |id| {
            all[n] = id;
            n += 1;
        }
        var changed = false;
        for (self.add) |id| {
            if (std.mem.indexOfScalar(u32, all[0..n], id) != null) continue;
            all[n] = id;
            n += 1;
            changed = true;
        }
        if (!changed) return null;
        std.mem.sort(u32, all[0..n], {}, std.sort.desc(u32));
        const kept = @min(n, capacity);
        @memcpy(out[0..kept], all[0..kept]);
        return out[0..kept];
    }
};

fn mergedOf(add: []const u32, out: []u32) []u32 {
    var merge = Merge{ .add = add };
    return merge.merge(&initial, out, false) orelse {
        @memcpy(out[0..initial.len], &initial);
        return out[0..initial.len];
    };
}

pub const Writer = enum { update, blind };
pub const Reader = enum { versioned, unchecked };

pub fn Scenario(comptime writer: Writer, comptime reader: Reader) type {
    return struct {
        const Self = @This();
        pub const name = "seqlock." ++ @tagName(writer) ++ "." ++ @tagName(reader);
        pub const thread_count: u8 = 3;
        /// Thread 0 adds a backlink, thread 1 writes a new node's own list of two.
        const additions = [_][]const u32{ &.{10}, &.{ 11, 4 } };

        version: P.Word,
        list: [1 + capacity]P.Word,
        writing: [2]bool,

        pub fn init(self: *Self, gpa: std.mem.Allocator) !void {
            _ = gpa;
            self.version = P.Word.init(0);
            self.list[0] = P.Word.init(initial.len);
            for (initial, 1..) |id, i| self.list[i] = P.Word.init(id);
            self.writing = .{ false, false };
        }

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            _ = self;
            _ = gpa;
        }

        pub fn thread(self: *Self, index: u8) void {
            if (index == 2) return self.readTwice();
            var merge = Merge{ .add = additions[index] };
            var current: [capacity]u32 = undefined;
            var out: [capacity]u32 = undefined;
            self.writing[index] = true;
            switch (writer) {
                .update => _ = P.update(
                    &self.version,
                    &self.list,
                    capacity,
                    &merge,
                    &current,
                    &out,
                ),
                .blind => updateBlind(self, &merge, &current, &out),
            }
            self.writing[index] = false;
        }

        /// Canary: merge outside the lock, then lock and write without checking that the
        /// version is the one the copy was taken at. Two writers lose one's link.
        fn updateBlind(self: *Self, merge: *Merge, current: []u32, out: []u32) void {
            const snapshot = P.read(&self.version, &self.list, capacity, current);
            const next = merge.merge(snapshot.ids, out, false) orelse return;
            _ = P.lock(&self.version);
            P.write(&self.list, next);
            P.unlock(&self.version);
        }

        /// Canary: a copy without the second version read can mix two writes.
        fn readUnchecked(self: *Self, out: []u32) []u32 {
            while (self.version.load(.acquire) & 1 == 1) Sim.spin();
            const count: usize = @min(self.list[0].load(.acquire), capacity);
            for (out[0..count], self.list[1 .. 1 + count]) |*dst, *src| dst.* = src.load(.acquire);
            return out[0..count];
        }

        fn readTwice(self: *Self) void {
            for (0..2) |_| {
                var out: [capacity]u32 = undefined;
                const got = switch (reader) {
                    .versioned => P.read(&self.version, &self.list, capacity, &out).ids,
                    .unchecked => self.readUnchecked(&out),
                };
                if (!allowed(got)) sched.fail("the reader copied a torn list {any}", .{got});
            }
        }

        /// Whether `got` is the merge of some subset of the additions.
        fn allowed(got: []const u32) bool {
            for (0..4) |mask| {
                var add: [3]u32 = undefined;
                var n: usize = 0;
                for (additions, 0..) |ids, i| {
                    if (mask & (@as(usize, 1) << @intCast(i)) == 0) continue;
                    for (ids) |id| {
                        add[n] = id;
                        n += 1;
                    }
                }
                var buf: [capacity]u32 = undefined;
                if (std.mem.eql(u32, mergedOf(add[0..n], &buf), got)) return true;
            }
            return false;
        }

        pub fn invariant(self: *Self) void {
            const odd = self.version.peek() & 1 == 1;
            if (odd and !self.writing[0] and !self.writing[1]) {
                sched.fail("the version is odd with no writer inside", .{});
            }
        }

        pub fn check(self: *Self) void {
            self.invariant();
            var buf: [capacity]u32 = undefined;
            const want = mergedOf(&.{ 10, 11, 4 }, &buf);
            const count = self.list[0].peek();
            var got: [capacity]u32 = undefined;
            for (got[0..@min(count, capacity)], self.list[1..]) |*dst, *src| dst.* = src.peek();
            if (count != want.len or !std.mem.eql(u32, got[0..count], want)) sched.fail(
                "final list {any}, expected {any}: a writer's link was lost",
                .{ got[0..@min(count, capacity)], want },
            );
            if (self.version.peek() & 1 == 1) sched.fail("the version ends odd", .{});
        }

        pub fn label(self: *Self, address: usize, buf: []u8) ?[]const u8 {
            if (address == @intFromPtr(&self.version)) return "version";
            for (&self.list, 0..) |*word, i| {
                if (address == @intFromPtr(word)) {
                    return if (i == 0) "count" else std.fmt.bufPrint(buf, "id[{d}]", .{i - 1}) catch
                        "id";
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
const random_seed = 0x5eed_5e91;

// Seeded random schedules only: the depth-first search re-runs a spinning reader without end
// (sched.zig offers the spinner again at every spin), so it cannot finish on a spin loop.
test "seqlock sim: backlink and own-list writers beside a reader, seeded random schedules" {
    const S = Scenario(.update, .versioned);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectPass(S, test_gpa, &report);
}

test "seqlock sim canary: a write without the version re-check loses a link" {
    const S = Scenario(.blind, .versioned);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectCaught(&report);
}

test "seqlock sim canary: a read without the second version load copies a torn list" {
    const S = Scenario(.update, .unchecked);
    const report = try explore.explore(
        S,
        test_gpa,
        .{ .random = .{ .runs = 3_000, .seed = random_seed } },
    );
    try explore.expectCaught(&report);
}

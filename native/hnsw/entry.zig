//! The HNSW entry point and maximum level, packed into one atomic word so that promotion is a
//! single lock-free compare-and-swap. Generic over the sync layer so the interleaving checker
//! explores this exact code.
const std = @import("std");
const sync = @import("../sync/atomics.zig");

/// `slot` of the entry node in the low 32 bits, `level + 1` in the high 32 bits; 0 means empty.
pub const Packed = u64;
pub const empty: Packed = 0;

pub const Entry = struct {
    slot: u32,
    level: u32,
};

pub fn pack(entry: Entry) Packed {
    return (@as(u64, entry.level + 1) << 32) | entry.slot;
}

/// The entry a word holds; null for `empty` and for a word no `pack` makes (level part 0),
/// which only a corrupt file can hold.
pub fn unpack(word: Packed) ?Entry {
    const level_plus_one: u32 = @truncate(word >> 32);
    if (level_plus_one == 0) return null;
    return .{ .slot = @truncate(word), .level = level_plus_one - 1 };
}

pub fn EntryPoint(comptime Sync: type) type {
    return struct {
        const Self = @This();
        word: Sync.Atomic(Packed) = Sync.Atomic(Packed).init(empty),

        pub fn load(self: *const Self) ?Entry {
            return unpack(self.word.load(.acquire));
        }

        /// Makes `candidate` the entry point if the index is empty or its level is higher than
        /// the current maximum. The node must be fully linked below the current maximum first,
        /// so that a search entering through it reaches every level. Returns whether it won.
        pub fn promote(self: *Self, candidate: Entry) bool {
            var seen = self.word.load(.acquire);
            while (true) {
                if (unpack(seen)) |current| {
                    if (current.level >= candidate.level) return false;
                }
                seen = self.word.cmpxchgWeak(
                    seen,
                    pack(candidate),
                    .acq_rel,
                    .acquire,
                ) orelse return true;
            }
        }

        /// Makes `candidate` the entry point only if the entry is still exactly `expected`, the
        /// entry the candidate was linked against. A higher node promoted in between may have
        /// levels the candidate has not linked yet; the caller links those and tries again.
        pub fn promoteFrom(self: *Self, expected: Entry, candidate: Entry) bool {
            std.debug.assert(candidate.level > expected.level);
            return self.word.cmpxchgStrong(
                pack(expected),
                pack(candidate),
                .acq_rel,
                .acquire,
            ) == null;
        }

        /// Replaces the entry point when it is removed from the graph by compaction.
        pub fn reset(self: *Self, entry: ?Entry) void {
            self.word.store(if (entry) |e| pack(e) else empty, .release);
        }
    };
}

test "entry point: promotion only raises the level" {
    var ep = EntryPoint(sync.Production){};
    try std.testing.expect(ep.load() == null);
    try std.testing.expect(ep.promote(.{ .slot = 3, .level = 0 }));
    try std.testing.expect(!ep.promote(.{ .slot = 4, .level = 0 }));
    try std.testing.expect(ep.promote(.{ .slot = 5, .level = 2 }));
    try std.testing.expect(!ep.promote(.{ .slot = 6, .level = 1 }));
    const e = ep.load().?;
    try std.testing.expectEqual(@as(u32, 5), e.slot);
    try std.testing.expectEqual(@as(u32, 2), e.level);
    // From a stale entry the exact swap refuses, even for a higher level.
    try std.testing.expect(!ep.promoteFrom(.{ .slot = 3, .level = 0 }, .{ .slot = 7, .level = 4 }));
    try std.testing.expect(ep.promoteFrom(e, .{ .slot = 7, .level = 4 }));
    try std.testing.expectEqual(@as(u32, 7), ep.load().?.slot);
}

//! The global table of open indexes. The TS side holds a u32 handle (`generation << 12 | slot`),
//! never a pointer, so a stale or forged handle is an `InvalidHandle` error, not a wild pointer.
//! Each entry packs its state in one atomic word; entering an operation is one CAS, and the last
//! user out of a closed index destroys it, so `close()` never frees memory under a running call.
//!
//! The protocol is `Table`, generic over the sync layer (native/sync/atomics.zig), the payload
//! and the slot count, so the interleaving checker (native/sim/registry_check.zig) drives this
//! exact code; `Variant` holds the deliberately broken release it must catch. Production uses
//! one `Table(sync.Production, *Index, slot_bits, .correct)` behind the functions below.
const std = @import("std");
const Index = @import("../index/index.zig").Index;
const sync = @import("../sync/atomics.zig");

pub const slot_bits = 12;
pub const indexes_max: u32 = 1 << slot_bits;
const generation_bits = 20;

/// word: | generation:20 | open:1 | closed:1 | users:42 |
const users_mask: u64 = (1 << 42) - 1;
const closed_bit: u64 = 1 << 42;
const open_bit: u64 = 1 << 43;
const generation_shift = 44;

pub const Error = error{ InvalidHandle, Closed, TooManyHandles };

pub const Variant = enum {
    correct,
    /// Canary (the shipped bug fixed in 122b830): release loads the word, checks the handle,
    /// then decrements with a separate fetchSub, so a stale or double release that passed the
    /// check can land after the slot was freed or taken over by another index.
    release_check_then_decrement,
};

fn generationOf(word: u64) u32 {
    return @intCast(word >> generation_shift);
}

var table: Table(sync.Production, *Index, slot_bits, .correct) = .{};

/// Registers a new index with one user (its creator). Returns the handle.
pub fn register(index: *Index) Error!u32 {
    return table.register(index);
}

/// Adds a user; fails for closed or unknown handles. Pair with `leave`.
pub fn enter(handle: u32) Error!*Index {
    return table.enter(handle);
}

/// Drops a user; the last user out destroys the index and frees the slot.
pub fn leave(handle: u32) void {
    table.leave(handle);
}

/// Marks the index closed: new calls fail with `Closed`; running calls finish.
pub fn close(handle: u32) Error!void {
    return table.close(handle);
}

/// Drops a user that may already be closed (a wrapper's reference).
pub fn release(handle: u32) Error!void {
    return table.release(handle);
}

/// Adds a reference for another wrapper (a Worker); closed indexes refuse.
pub fn retain(handle: u32) Error!void {
    return table.retain(handle);
}

/// The registry protocol over `1 << slot_count_bits` entries. `Payload` is a pointer whose
/// `destroy()` the last user out calls.
pub fn Table(
    comptime Sync: type,
    comptime Payload: type,
    comptime slot_count_bits: u5,
    comptime variant: Variant,
) type {
    comptime std.debug.assert(slot_count_bits <= slot_bits);
    comptime std.debug.assert(@typeInfo(Payload) == .pointer);
    return struct {
        const Self = @This();
        pub const slot_count: u32 = 1 << slot_count_bits;

        pub const Entry = struct {
            word: Sync.Atomic(u64) = Sync.Atomic(u64).init(0),
            index: Sync.Atomic(?Payload) = Sync.Atomic(?Payload).init(null),
        };

        entries: [slot_count]Entry = [_]Entry{.{}} ** slot_count,

        /// Registers a new index with one user (its creator). Returns the handle.
        pub fn register(self: *Self, index: Payload) Error!u32 {
            for (&self.entries, 0..) |*entry, slot| {
                const word = entry.word.load(.acquire);
                if (word & open_bit != 0) continue;
                const generation = (generationOf(word) + 1) & ((1 << generation_bits) - 1);
                const next = (@as(u64, generation) << generation_shift) | open_bit | 1;
                // Claim the slot closed first, so nobody enters before the pointer is stored.
                if (entry.word.cmpxchgStrong(word, next | closed_bit, .acq_rel, .acquire) == null) {
                    entry.index.store(index, .release);
                    entry.word.store(next, .release);
                    return (generation << slot_bits) | @as(u32, @intCast(slot));
                }
            }
            return error.TooManyHandles;
        }

        /// The entry a handle's slot bits name; whether the handle is current is the caller's
        /// check.
        fn entryOf(self: *Self, handle: u32) *Entry {
            return &self.entries[handle & (slot_count - 1)];
        }

        /// Adds a user; fails for closed or unknown handles. Pair with `leave`.
        pub fn enter(self: *Self, handle: u32) Error!Payload {
            const entry = self.entryOf(handle);
            var word = entry.word.load(.acquire);
            while (true) {
                if (word & open_bit == 0 or
                    generationOf(word) != handle >> slot_bits) return error.InvalidHandle;
                if (word & closed_bit != 0) return error.Closed;
                if (word & users_mask == users_mask) return error.TooManyHandles;
                word = entry.word.cmpxchgWeak(word, word + 1, .acq_rel, .acquire) orelse break;
            }
            return entry.index.load(.acquire).?;
        }

        /// Drops a user; the last user out destroys the index and frees the slot. Every wrapper
        /// holds one user for its lifetime, so this only happens once no wrapper can reach the
        /// index.
        pub fn leave(self: *Self, handle: u32) void {
            const entry = self.entryOf(handle);
            const before = entry.word.fetchSub(1, .acq_rel);
            Sync.assert(before & users_mask > 0, "leave on an entry with no users");
            if (before & users_mask == 1) destroy(entry, before - 1);
        }

        /// Marks the index closed: new calls fail with `Closed`; running calls finish.
        pub fn close(self: *Self, handle: u32) Error!void {
            const entry = self.entryOf(handle);
            var word = entry.word.load(.acquire);
            while (true) {
                if (word & open_bit == 0 or
                    generationOf(word) != handle >> slot_bits) return error.InvalidHandle;
                if (word & closed_bit != 0) return;
                word = entry.word.cmpxchgWeak(
                    word,
                    word | closed_bit,
                    .acq_rel,
                    .acquire,
                ) orelse return;
            }
        }

        /// Drops a user that may already be closed (a wrapper's reference). Unknown handles are
        /// refused. The check and the decrement are one compare-and-swap: a check followed by a
        /// separate decrement let a stale handle's release, landing after the slot was reused,
        /// drop a reference of the index that took the slot over.
        pub fn release(self: *Self, handle: u32) Error!void {
            if (variant == .release_check_then_decrement) return self.releaseCheckThenDecrement(
                handle,
            );
            const entry = self.entryOf(handle);
            var word = entry.word.load(.acquire);
            while (true) {
                if (word & open_bit == 0 or
                    generationOf(word) != handle >> slot_bits) return error.InvalidHandle;
                if (word & users_mask == 0) return error.InvalidHandle;
                word = entry.word.cmpxchgWeak(word, word - 1, .acq_rel, .acquire) orelse break;
            }
            if (word & users_mask == 1) destroy(entry, word - 1);
        }

        /// Canary: the release shipped before 122b830, kept for the checker only.
        fn releaseCheckThenDecrement(self: *Self, handle: u32) Error!void {
            const word = self.entryOf(handle).word.load(.acquire);
            if (word & open_bit == 0 or
                generationOf(word) != handle >> slot_bits) return error.InvalidHandle;
            self.leave(handle);
        }

        /// Adds a reference for another wrapper (a Worker); closed indexes refuse.
        pub fn retain(self: *Self, handle: u32) Error!void {
            _ = try self.enter(handle);
        }

        fn destroy(entry: *Entry, word: u64) void {
            const index = entry.index.swap(null, .acq_rel).?;
            index.destroy();
            // Free the slot, keeping the generation so the next registration bumps it.
            entry.word.store(word & ~(open_bit | closed_bit | users_mask), .release);
        }
    };
}

/// The open entries and the users they hold, summed over the table (a racy snapshot: exact only
/// while no call starts or ends). For leak checks in tests.
pub fn counts() struct { open: u32, users: u64 } {
    var open: u32 = 0;
    var users: u64 = 0;
    for (&table.entries) |*entry| {
        const word = entry.word.load(.acquire);
        if (word & open_bit == 0) continue;
        open += 1;
        users += word & users_mask;
    }
    std.debug.assert(open <= indexes_max);
    return .{ .open = open, .users = users };
}

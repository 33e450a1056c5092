//! The production sync layer. Code that the interleaving checker (native/sim/) explores is
//! generic over a `Sync` type with this shape, so the checker runs the real algorithm with
//! atomics whose every operation yields to its deterministic scheduler.
const std = @import("std");
const AtomicOrder = std.builtin.AtomicOrder;

pub const Production = struct {
    pub fn Atomic(comptime T: type) type {
        return std.atomic.Value(T);
    }

    /// Atomic access to a plain field (of a struct in a mapped file, which cannot hold an
    /// `Atomic`): exactly `@atomicLoad`/`@atomicStore`; scheduling points in the checker.
    pub inline fn load(comptime T: type, ptr: *const T, comptime order: AtomicOrder) T {
        return @atomicLoad(T, ptr, order);
    }

    pub inline fn store(comptime T: type, ptr: *T, value: T, comptime order: AtomicOrder) void {
        @atomicStore(T, ptr, value, order);
    }

    /// An assertion in checked code: exactly `std.debug.assert` here; the simulated layer
    /// records a failure with a replayable schedule instead of aborting the whole search.
    pub inline fn assert(ok: bool, comptime what: []const u8) void {
        _ = what;
        std.debug.assert(ok);
    }

    /// Called in spin loops; the simulated layer turns it into a scheduling point.
    pub inline fn spin() void {
        std.atomic.spinLoopHint();
    }
};

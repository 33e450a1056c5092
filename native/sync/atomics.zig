//! The production sync layer. Code that the interleaving checker (native/sim/) explores is
//! generic over a `Sync` type with this shape, so the checker runs the real algorithm with
//! atomics whose every operation yields to its deterministic scheduler.
const std = @import("std");

pub const Production = struct {
    pub fn Atomic(comptime T: type) type {
        return std.atomic.Value(T);
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

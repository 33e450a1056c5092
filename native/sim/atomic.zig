//! The simulated sync layer: the shape of `sync.Production`, but every operation is a
//! scheduling point of the deterministic scheduler (sched.zig). Values live in a real
//! `std.atomic.Value`, so the code under test sees ordinary atomic semantics; because only one
//! simulated thread runs at a time, every order behaves as sequentially consistent.
const std = @import("std");
const sched = @import("sched.zig");
const AtomicOrder = std.builtin.AtomicOrder;

pub const Sim = struct {
    pub fn Atomic(comptime T: type) type {
        return struct {
            const Self = @This();
            raw: std.atomic.Value(T),

            pub fn init(value: T) Self {
                return .{ .raw = std.atomic.Value(T).init(value) };
            }

            /// Reads the value without a scheduling point: for invariant checks only, which
            /// must observe the state between two steps without adding steps of their own.
            pub fn peek(self: *const Self) T {
                return self.raw.load(.seq_cst);
            }

            pub fn load(self: *const Self, comptime order: AtomicOrder) T {
                sched.point(.op);
                const value = self.raw.load(order);
                sched.note(.load, @intFromPtr(self), bits(value));
                return value;
            }

            pub fn store(self: *Self, value: T, comptime order: AtomicOrder) void {
                sched.point(.op);
                self.raw.store(value, order);
                sched.note(.store, @intFromPtr(self), bits(value));
            }

            pub fn fetchAdd(self: *Self, operand: T, comptime order: AtomicOrder) T {
                sched.point(.op);
                const before = self.raw.fetchAdd(operand, order);
                sched.note(.fetch_add, @intFromPtr(self), bits(before));
                return before;
            }

            pub fn fetchSub(self: *Self, operand: T, comptime order: AtomicOrder) T {
                sched.point(.op);
                const before = self.raw.fetchSub(operand, order);
                sched.note(.fetch_sub, @intFromPtr(self), bits(before));
                return before;
            }

            pub fn fetchOr(self: *Self, operand: T, comptime order: AtomicOrder) T {
                sched.point(.op);
                const before = self.raw.fetchOr(operand, order);
                sched.note(.fetch_or, @intFromPtr(self), bits(before));
                return before;
            }

            pub fn fetchAnd(self: *Self, operand: T, comptime order: AtomicOrder) T {
                sched.point(.op);
                const before = self.raw.fetchAnd(operand, order);
                sched.note(.fetch_and, @intFromPtr(self), bits(before));
                return before;
            }

            pub fn swap(self: *Self, value: T, comptime order: AtomicOrder) T {
                sched.point(.op);
                const before = self.raw.swap(value, order);
                sched.note(.swap, @intFromPtr(self), bits(before));
                return before;
            }

            /// Never fails spuriously: a spurious failure only re-runs the caller's loop, and
            /// modelling it as a choice would make every CAS loop an unbounded search.
            pub fn cmpxchgWeak(
                self: *Self,
                expected: T,
                new: T,
                comptime success: AtomicOrder,
                comptime failure: AtomicOrder,
            ) ?T {
                return self.cmpxchgStrong(expected, new, success, failure);
            }

            pub fn cmpxchgStrong(
                self: *Self,
                expected: T,
                new: T,
                comptime success: AtomicOrder,
                comptime failure: AtomicOrder,
            ) ?T {
                sched.point(.op);
                const seen = self.raw.cmpxchgStrong(expected, new, success, failure);
                if (seen) |value| {
                    sched.note(.cmpxchg_fail, @intFromPtr(self), bits(value));
                } else {
                    sched.note(.cmpxchg_ok, @intFromPtr(self), bits(new));
                }
                return seen;
            }

            fn bits(value: T) u64 {
                return switch (@typeInfo(T)) {
                    .pointer => @intFromPtr(value),
                    .optional => if (value) |pointer| @intFromPtr(pointer) else 0,
                    .bool => @intFromBool(value),
                    .int => |info| @as(std.meta.Int(.unsigned, info.bits), @bitCast(value)),
                    .@"enum" => @intFromEnum(value),
                    else => @compileError("sim: cannot trace values of type " ++ @typeName(T)),
                };
            }
        };
    }

    /// Atomic access to a plain field, as `Production.load`/`store`: a scheduling point each.
    pub fn load(comptime T: type, ptr: *const T, comptime order: AtomicOrder) T {
        sched.point(.op);
        const value = @atomicLoad(T, ptr, order);
        sched.note(.load, @intFromPtr(ptr), Atomic(T).bits(value));
        return value;
    }

    pub fn store(comptime T: type, ptr: *T, value: T, comptime order: AtomicOrder) void {
        sched.point(.op);
        @atomicStore(T, ptr, value, order);
        sched.note(.store, @intFromPtr(ptr), Atomic(T).bits(value));
    }

    /// A failed assertion in the code under test is an invariant violation of the schedule:
    /// recorded (the run goes on, so its end state stays consistent) rather than an abort,
    /// which would end the search without a replayable report. Outside a search it panics.
    pub fn assert(ok: bool, comptime what: []const u8) void {
        if (ok) return;
        if (sched.current() == null) @panic("assertion failed: " ++ what);
        sched.fail("assertion failed: " ++ what, .{});
    }

    /// A spin is a scheduling point that prefers other threads, so a retry loop lets the
    /// thread it waits for make progress.
    pub fn spin() void {
        sched.point(.spin);
        sched.note(.spin, 0, 0);
    }
};

//! `zig build bench-kernels`: every distance kernel of every CPU level this machine supports,
//! in nanoseconds per call on vectors in L1, called directly (no FFI). A benchmark, not a test:
//! it prints, and BENCHMARKS.md records what it printed.
const std = @import("std");
const distance = @import("kernels/distance.zig");
const quantize = @import("kernels/quantize.zig");

pub fn main() !void {
    const gpa = std.heap.page_allocator;
    const out = std.io.getStdOut().writer();
    try out.print("chosen level: {s}\n", .{@tagName(distance.level())});
    try out.print(
        "{s:<14} {s:>6} {s:>10} {s:>10} {s:>10}\n",
        .{ "level", "d", "f32 l2sq", "f16 l2sq", "i8 l2sq" },
    );
    for ([_]usize{ 128, 768, 1536 }) |d| {
        const a = try gpa.alignedAlloc(f32, 64, d);
        const b = try gpa.alignedAlloc(f32, 64, d);
        const ha = try gpa.alignedAlloc(f16, 64, d);
        const hb = try gpa.alignedAlloc(f16, 64, d);
        for (a, b, ha, hb, 0..) |*x, *y, *hx, *hy, i| {
            x.* = @sin(@as(f32, @floatFromInt(i)));
            y.* = @cos(@as(f32, @floatFromInt(i)));
            hx.* = @floatCast(x.*);
            hy.* = @floatCast(y.*);
        }
        const zero = try gpa.alloc(f32, d);
        @memset(zero, 0);
        const ca = try quantize.Coded.init(gpa, d);
        const cb = try quantize.Coded.init(gpa, d);
        quantize.encode(.l2sq, a, zero, ca.codes());
        quantize.encode(.l2sq, b, zero, cb.codes());
        for (std.enums.values(distance.Level)) |level| {
            if (!distance.supported(level)) continue;
            const k = distance.kernelsOf(level);
            const f32_ns = time(k.l2sq, a.ptr, b.ptr, d);
            const f16_ns = time(k.l2sq_f16, ha.ptr, hb.ptr, d);
            const i8_ns = time(k.l2sq_i8, ca.codes(), cb.codes(), d);
            try out.print(
                "{s:<14} {d:>6} {d:>8.1}ns {d:>8.1}ns {d:>8.1}ns\n",
                .{ @tagName(level), d, f32_ns, f16_ns, i8_ns },
            );
        }
    }
}

/// Best of five runs of a million calls, in ns per call.
fn time(kernel: anytype, a: anytype, b: anytype, d: usize) f64 {
    var best: f64 = std.math.inf(f64);
    for (0..5) |_| {
        var sum: f32 = 0;
        var timer = std.time.Timer.start() catch return std.math.nan(f64);
        const calls = 1_000_000;
        for (0..calls) |_| {
            sum += kernel(a, b, d);
            std.mem.doNotOptimizeAway(sum);
        }
        best = @min(best, @as(f64, @floatFromInt(timer.read())) / calls);
    }
    return best;
}

//! The batch form of a distance kernel, shared by every kernel object (kernels/simd.zig) and the
//! portable level (kernels/distance.zig). A leaf like kernels/i8.zig: it imports nothing from
//! native/.

/// A kernel: `(a, b, n)` over elements `E` (f32, f16, or the u8 codes of kernels/i8.zig).
pub fn Single(comptime E: type) type {
    return fn ([*]const E, [*]const E, usize) callconv(.c) f32;
}

/// A batch form: `out[j]` = the kernel of `query` and the vector at `base + slots[j] * stride`,
/// for j < count; elements as the kernel's (f32, f16, or i8 codes with their terms in front).
pub const ManyFn = *const fn (
    query: [*]const u8,
    base: [*]const u8,
    stride: usize,
    slots: [*]const u32,
    count: usize,
    n: usize,
    out: [*]f32,
) callconv(.c) void;

/// The batch form of `single` (a `ManyFn`). One call per expansion of the walk instead of one
/// per neighbour: the kernel inlines into the loop, so no call, spill or `vzeroupper` sits
/// between two neighbours (measured 1.02x to 1.05x on a whole 96-dimension search, BENCHMARKS.md
/// "Session 7").
pub fn Many(comptime E: type, comptime single: Single(E)) type {
    return struct {
        pub fn run(
            query: [*]const u8,
            base: [*]const u8,
            stride: usize,
            slots: [*]const u32,
            count: usize,
            n: usize,
            out: [*]f32,
        ) callconv(.c) void {
            const q: [*]const E = @ptrCast(@alignCast(query));
            for (slots[0..count], out[0..count]) |slot, *d| {
                const b: [*]const E = @ptrCast(@alignCast(base + @as(usize, slot) * stride));
                d.* = @call(.always_inline, single, .{ q, b, n });
            }
        }
    };
}

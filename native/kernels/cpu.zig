//! Run-time CPU detection for choosing a distance kernel level (native/kernels/distance.zig).
//!
//! On x86-64 a kernel object compiled for psABI level v3 or v4 may use any instruction that
//! level allows, not only the vector ones it was written for (LLVM freely emits BMI2 shifts,
//! MOVBE loads or LZCNT in address arithmetic). So a level is usable only when the CPU reports
//! every feature of that level and the OS has enabled the register state (XCR0) that its
//! vectors need; a CPU that reports AVX-512F under an OS that does not save the ZMM registers
//! must not run the AVX-512 kernel.
const std = @import("std");
const builtin = @import("builtin");

/// The psABI levels the running x86-64 CPU (and OS) can execute.
pub const X86Levels = struct {
    v2: bool,
    v3: bool,
    v4: bool,
    /// v4 plus AVX512_VNNI (the i8 kernels' `vpdpbusd`), which v4 does not include.
    v4_vnni: bool = false,
    /// v3 plus AVX-VNNI (`vpdpbusd` on ymm, VEX-encoded), which v3 does not include.
    v3_vnni: bool = false,
};

/// The raw CPUID and XCR0 words that decide the levels, kept apart from the instructions that
/// read them so that the decoding can be tested with made-up CPUs.
pub const X86Words = struct {
    /// CPUID leaf 1, ECX.
    leaf1_ecx: u32,
    /// CPUID leaf 7 subleaf 0, EBX; zero when the CPU has no leaf 7.
    leaf7_ebx: u32,
    /// CPUID leaf 7 subleaf 0, ECX; zero when the CPU has no leaf 7.
    leaf7_ecx: u32 = 0,
    /// CPUID leaf 7 subleaf 1, EAX; zero when the CPU has no such subleaf.
    leaf7_1_eax: u32 = 0,
    /// CPUID leaf 0x80000001, ECX; zero when the CPU has no such leaf.
    ext1_ecx: u32,
    /// XCR0; zero when the OS has not set CR4.OSXSAVE, since XGETBV would then fault.
    xcr0: u64,
};

/// Bit positions, from the Intel SDM vol. 2A (CPUID) and vol. 1 ch. 13 (XCR0).
const bit = struct {
    const leaf1_sse3 = 0;
    const leaf1_ssse3 = 9;
    const leaf1_fma = 12;
    const leaf1_cx16 = 13;
    const leaf1_sse4_1 = 19;
    const leaf1_sse4_2 = 20;
    const leaf1_movbe = 22;
    const leaf1_popcnt = 23;
    const leaf1_xsave = 26;
    const leaf1_osxsave = 27;
    const leaf1_avx = 28;
    const leaf1_f16c = 29;
    const leaf7_bmi1 = 3;
    const leaf7_avx2 = 5;
    const leaf7_bmi2 = 8;
    const leaf7_avx512f = 16;
    const leaf7_avx512dq = 17;
    const leaf7_avx512cd = 28;
    const leaf7_avx512bw = 30;
    const leaf7_avx512vl = 31;
    const leaf7_ecx_avx512vnni = 11;
    const leaf7_1_eax_avxvnni = 4;
    const ext1_lahf = 0;
    const ext1_lzcnt = 5;
};

/// XCR0 state components: SSE (XMM) and AVX (upper YMM halves) for v3; additionally the
/// opmask registers, the upper ZMM halves and ZMM16-31 for v4.
const xcr0_avx: u64 = 0b0000_0110;
const xcr0_avx512: u64 = 0b1110_0110;

/// Reads the CPU. On other architectures every level is false; the comptime branch keeps the
/// x86 instructions out of those builds.
pub fn x86Levels() X86Levels {
    if (builtin.cpu.arch == .x86_64) {
        return decodeX86(readX86());
    } else {
        return .{ .v2 = false, .v3 = false, .v4 = false };
    }
}

/// Decodes the levels from raw words: pure, so tests can feed it any CPU.
pub fn decodeX86(words: X86Words) X86Levels {
    const v2 = hasAll(words.leaf1_ecx, &.{
        bit.leaf1_sse3,   bit.leaf1_ssse3,  bit.leaf1_cx16,
        bit.leaf1_sse4_1, bit.leaf1_sse4_2, bit.leaf1_popcnt,
    }) and hasAll(words.ext1_ecx, &.{bit.ext1_lahf});
    const v3 = v2 and
        hasAll(words.leaf1_ecx, &.{
            bit.leaf1_fma,     bit.leaf1_movbe, bit.leaf1_xsave,
            bit.leaf1_osxsave, bit.leaf1_avx,   bit.leaf1_f16c,
        }) and
        hasAll(words.leaf7_ebx, &.{ bit.leaf7_bmi1, bit.leaf7_avx2, bit.leaf7_bmi2 }) and
        hasAll(words.ext1_ecx, &.{bit.ext1_lzcnt}) and
        words.xcr0 & xcr0_avx == xcr0_avx;
    const v4 = v3 and
        hasAll(words.leaf7_ebx, &.{
            bit.leaf7_avx512f,  bit.leaf7_avx512dq, bit.leaf7_avx512cd,
            bit.leaf7_avx512bw, bit.leaf7_avx512vl,
        }) and
        words.xcr0 & xcr0_avx512 == xcr0_avx512;
    const v4_vnni = v4 and hasAll(words.leaf7_ecx, &.{bit.leaf7_ecx_avx512vnni});
    const v3_vnni = v3 and hasAll(words.leaf7_1_eax, &.{bit.leaf7_1_eax_avxvnni});
    return .{ .v2 = v2, .v3 = v3, .v4 = v4, .v4_vnni = v4_vnni, .v3_vnni = v3_vnni };
}

fn hasAll(word: u32, comptime bits: []const u5) bool {
    inline for (bits) |b| {
        if (word & (@as(u32, 1) << b) == 0) return false;
    }
    return true;
}

fn readX86() X86Words {
    const max_leaf = cpuid(0, 0).eax;
    const max_ext_leaf = cpuid(0x8000_0000, 0).eax;
    const leaf1_ecx = cpuid(1, 0).ecx;
    const osxsave = leaf1_ecx & (@as(u32, 1) << bit.leaf1_osxsave) != 0;
    const leaf7 = if (max_leaf >= 7) cpuid(7, 0) else CpuidLeaf{
        .eax = 0,
        .ebx = 0,
        .ecx = 0,
        .edx = 0,
    };
    return .{
        .leaf1_ecx = leaf1_ecx,
        .leaf7_ebx = leaf7.ebx,
        .leaf7_ecx = leaf7.ecx,
        // Subleaf 1 exists when subleaf 0's EAX (the highest subleaf) is at least 1.
        .leaf7_1_eax = if (max_leaf >= 7 and leaf7.eax >= 1) cpuid(7, 1).eax else 0,
        .ext1_ecx = if (max_ext_leaf >= 0x8000_0001) cpuid(0x8000_0001, 0).ecx else 0,
        .xcr0 = if (osxsave) xgetbv(0) else 0,
    };
}

const CpuidLeaf = struct { eax: u32, ebx: u32, ecx: u32, edx: u32 };

fn cpuid(leaf: u32, subleaf: u32) CpuidLeaf {
    var eax: u32 = undefined;
    var ebx: u32 = undefined;
    var ecx: u32 = undefined;
    var edx: u32 = undefined;
    asm volatile ("cpuid"
        : [_] "={eax}" (eax),
          [_] "={ebx}" (ebx),
          [_] "={ecx}" (ecx),
          [_] "={edx}" (edx),
        : [_] "{eax}" (leaf),
          [_] "{ecx}" (subleaf),
    );
    return .{ .eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx };
}

/// XGETBV faults unless CR4.OSXSAVE is set: call it only after checking CPUID.1:ECX.OSXSAVE.
fn xgetbv(register: u32) u64 {
    var low: u32 = undefined;
    var high: u32 = undefined;
    asm volatile ("xgetbv"
        : [_] "={eax}" (low),
          [_] "={edx}" (high),
        : [_] "{ecx}" (register),
    );
    return @as(u64, high) << 32 | low;
}

/// A made-up CPU with every feature of x86-64-v4 and full OS support.
const full_v4: X86Words = .{
    .leaf1_ecx = mask(&.{
        bit.leaf1_sse3,   bit.leaf1_ssse3,   bit.leaf1_fma,   bit.leaf1_cx16,
        bit.leaf1_sse4_1, bit.leaf1_sse4_2,  bit.leaf1_movbe, bit.leaf1_popcnt,
        bit.leaf1_xsave,  bit.leaf1_osxsave, bit.leaf1_avx,   bit.leaf1_f16c,
    }),
    .leaf7_ebx = mask(&.{
        bit.leaf7_bmi1,     bit.leaf7_avx2,     bit.leaf7_bmi2,     bit.leaf7_avx512f,
        bit.leaf7_avx512dq, bit.leaf7_avx512cd, bit.leaf7_avx512bw, bit.leaf7_avx512vl,
    }),
    .ext1_ecx = mask(&.{ bit.ext1_lahf, bit.ext1_lzcnt }),
    .xcr0 = xcr0_avx512 | 1,
};

fn mask(comptime bits: []const u5) u32 {
    var word: u32 = 0;
    for (bits) |b| word |= @as(u32, 1) << b;
    return word;
}

fn expectLevels(words: X86Words, v2: bool, v3: bool, v4: bool) !void {
    const levels = decodeX86(words);
    try std.testing.expectEqual(v2, levels.v2);
    try std.testing.expectEqual(v3, levels.v3);
    try std.testing.expectEqual(v4, levels.v4);
    try std.testing.expect(!levels.v4_vnni or levels.v4);
    try std.testing.expect(!levels.v3_vnni or levels.v3);
}

test "cpu: AVX-VNNI counts only on top of a usable v3" {
    var words = full_v4;
    try std.testing.expect(!decodeX86(words).v3_vnni);
    words.leaf7_1_eax = mask(&.{bit.leaf7_1_eax_avxvnni});
    try std.testing.expect(decodeX86(words).v3_vnni);
    words.leaf7_ebx &= ~(@as(u32, 1) << bit.leaf7_avx2);
    try std.testing.expect(!decodeX86(words).v3_vnni);
}

test "cpu: VNNI counts only on top of a usable v4" {
    var words = full_v4;
    try std.testing.expect(!decodeX86(words).v4_vnni);
    words.leaf7_ecx = mask(&.{bit.leaf7_ecx_avx512vnni});
    try std.testing.expect(decodeX86(words).v4_vnni);
    words.xcr0 = xcr0_avx | 1; // the OS does not save ZMM state
    try std.testing.expect(!decodeX86(words).v4_vnni);
    words = full_v4;
    words.leaf7_ecx = mask(&.{bit.leaf7_ecx_avx512vnni});
    words.leaf7_ebx &= ~(@as(u32, 1) << bit.leaf7_avx512bw);
    try std.testing.expect(!decodeX86(words).v4_vnni);
}

test "cpu: a CPU with every v4 feature and OS support decodes as v4" {
    try expectLevels(full_v4, true, true, true);
}

test "cpu: AVX-512 without OS-enabled ZMM and opmask state is not v4" {
    // The typical case: a hypervisor or kernel that does not save the AVX-512 registers.
    var words = full_v4;
    words.xcr0 = xcr0_avx | 1;
    try expectLevels(words, true, true, false);
    words.xcr0 = xcr0_avx512 & ~@as(u64, 1 << 5); // No opmask state alone is enough to refuse.
    try expectLevels(words, true, true, false);
}

test "cpu: without OSXSAVE or with YMM state disabled there is no AVX at all" {
    var words = full_v4;
    words.leaf1_ecx &= ~(@as(u32, 1) << bit.leaf1_osxsave);
    words.xcr0 = 0;
    try expectLevels(words, true, false, false);
    words = full_v4;
    words.xcr0 = 0b11;
    try expectLevels(words, true, false, false);
}

test "cpu: removing any one feature of a level drops that level" {
    // Every bit that decodeX86 reads must matter: a decoder that forgot one would pass the
    // full-CPU test above and then run a kernel on a CPU missing an instruction it uses.
    inline for (.{ bit.leaf1_fma, bit.leaf1_movbe, bit.leaf1_f16c, bit.leaf1_avx }) |b| {
        var words = full_v4;
        words.leaf1_ecx &= ~(@as(u32, 1) << b);
        try expectLevels(words, true, false, false);
    }
    inline for (.{ bit.leaf7_bmi1, bit.leaf7_avx2, bit.leaf7_bmi2 }) |b| {
        var words = full_v4;
        words.leaf7_ebx &= ~(@as(u32, 1) << b);
        try expectLevels(words, true, false, false);
    }
    inline for (.{
        bit.leaf7_avx512f,
        bit.leaf7_avx512dq,
        bit.leaf7_avx512cd,
        bit.leaf7_avx512bw,
        bit.leaf7_avx512vl,
    }) |b| {
        var words = full_v4;
        words.leaf7_ebx &= ~(@as(u32, 1) << b);
        try expectLevels(words, true, true, false);
    }
    var words = full_v4;
    words.ext1_ecx &= ~(@as(u32, 1) << bit.ext1_lzcnt);
    try expectLevels(words, true, false, false);
    words = full_v4;
    words.leaf1_ecx &= ~(@as(u32, 1) << bit.leaf1_sse4_2);
    try expectLevels(words, false, false, false);
}

test "cpu: the running CPU is at least x86-64-v2, the floor this library is built for" {
    if (builtin.cpu.arch != .x86_64) return error.SkipZigTest;
    try std.testing.expect(x86Levels().v2);
}

//! Quiver's build. `zig build` makes the release library (and a debug variant) for the host;
//! `zig build test` runs the native tests; `zig build test-tsan` runs them under ThreadSanitizer;
//! `zig build gen` rewrites src/ffi.gen.ts from the export table in native/ffi/exports.zig.
const std = @import("std");
const builtin = @import("builtin");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{ .default_target = baselineQuery() });
    // The library is a release build unless asked otherwise; the debug variant is built beside it.
    const optimize = b.option(
        std.builtin.OptimizeMode,
        "optimize",
        "Optimization of libquiver (default ReleaseFast)",
    ) orelse .ReleaseFast;
    const test_filters = b.option(
        []const []const u8,
        "test-filter",
        "Run only the native tests whose names contain this",
    ) orelse &.{};

    const lib = addLibrary(b, "quiver", target, optimize, false);
    b.installArtifact(lib);
    addPackageStep(b, lib);
    const lib_debug = addLibrary(b, "quiver-debug", target, .Debug, false);
    b.installArtifact(lib_debug);

    // The FFI table generator: one source of truth (native/ffi/exports.zig) for the TS bindings.
    const gen_mod = nativeModule(b, "native/gen_ffi.zig", b.graph.host, .Debug, false);
    const gen_exe = b.addExecutable(.{ .name = "quiver-gen-ffi", .root_module = gen_mod });
    b.installArtifact(gen_exe);
    const gen_run = b.addRunArtifact(gen_exe);
    const gen_out = gen_run.captureStdOut();
    const gen_update = b.addUpdateSourceFiles();
    gen_update.addCopyFileToSource(gen_out, "src/ffi.gen.ts");
    b.step("gen", "Regenerate src/ffi.gen.ts from native/ffi/exports.zig").dependOn(
        &gen_update.step,
    );

    // Every distance kernel of every level this CPU supports, timed natively (BENCHMARKS.md).
    const bench_mod = nativeModule(b, "native/bench_kernels.zig", target, .ReleaseFast, false);
    const bench_exe = b.addExecutable(
        .{ .name = "quiver-bench-kernels", .root_module = bench_mod },
    );
    b.step(
        "bench-kernels",
        "Time every distance kernel at every supported CPU level",
    ).dependOn(&b.addRunArtifact(bench_exe).step);

    // Two builds of the library timed in one process, in alternating passes (native/bench_ab.zig).
    const ab_mod = nativeModule(b, "native/bench_ab.zig", target, .ReleaseFast, false);
    ab_mod.link_libc = true;
    const ab_exe = b.addExecutable(.{ .name = "quiver-bench-ab", .root_module = ab_mod });
    const ab_run = b.addRunArtifact(ab_exe);
    if (b.args) |args| ab_run.addArgs(args);
    b.step("bench-ab", "Time two builds of the library against each other, paired")
        .dependOn(&ab_run.step);

    // Tidy: zig fmt, line length, import placement, direction and cycles (native/tidy.zig).
    const tidy = b.addTest(.{
        .name = "quiver-tidy",
        .root_module = b.createModule(.{
            .root_source_file = b.path("native/tidy.zig"),
            .target = b.graph.host,
            .optimize = .Debug,
        }),
    });
    b.step("tidy", "Check formatting, line length and the import order of every Zig file")
        .dependOn(&b.addRunArtifact(tidy).step);

    const test_step = b.step("test", "Run the native unit and stress tests");
    test_step.dependOn(&b.addRunArtifact(addTests(b, target, .Debug, false, test_filters)).step);
    const test_fast = b.step("test-release", "Run the native tests in ReleaseSafe");
    test_fast.dependOn(
        &b.addRunArtifact(addTests(b, target, .ReleaseSafe, false, test_filters)).step,
    );
    const tsan_step = b.step("test-tsan", "Run the native tests under ThreadSanitizer");
    tsan_step.dependOn(
        &b.addRunArtifact(addTests(b, target, .ReleaseSafe, true, test_filters)).step,
    );

    // The canary: TSan must report the deliberate race in native/sync/tsan_canary.zig.
    const canary = b.addExecutable(.{
        .name = "quiver-tsan-canary",
        .root_module = b.createModule(.{
            .root_source_file = b.path("native/sync/tsan_canary.zig"),
            .target = target,
            .optimize = .ReleaseSafe,
            .link_libc = true,
            .sanitize_thread = true,
        }),
    });
    const canary_run = b.addRunArtifact(canary);
    canary_run.addCheck(.{ .expect_stderr_match = "WARNING: ThreadSanitizer: data race" });
    canary_run.addCheck(.{ .expect_term = .{ .Exited = 66 } });
    b.step(
        "tsan-canary",
        "Check that ThreadSanitizer catches a deliberate race",
    ).dependOn(&canary_run.step);

    // The lock-order canary: a Debug build must panic and name both locks.
    const order = b.addExecutable(.{
        .name = "quiver-lock-order-canary",
        .root_module = b.createModule(.{
            .root_source_file = b.path("native/sync/lock_order_canary.zig"),
            .target = target,
            .optimize = .Debug,
            .link_libc = true,
        }),
    });
    const order_run = b.addRunArtifact(order);
    // Both locks named; their rank numbers come from native/sync/locks.zig, not from here.
    order_run.addCheck(
        .{ .expect_stderr_match = "lock order violation: acquiring key_stripe (rank " },
    );
    order_run.addCheck(.{ .expect_stderr_match = "while holding commit (rank " });
    order_run.addCheck(.{ .expect_term = .{ .Signal = 6 } });
    b.step(
        "lock-order-canary",
        "Check that a Debug build panics on a lock-order violation",
    ).dependOn(&order_run.step);
}

/// Packaging (scripts/pack.sh): `zig build lib -Dtarget=... -Dstrip` installs the release library
/// alone, stripped, for one platform package.
fn addPackageStep(b: *std.Build, lib: *std.Build.Step.Compile) void {
    const strip_help = "Strip symbols and debug info from libquiver";
    const strip = b.option(bool, "strip", strip_help) orelse false;
    if (strip) lib.root_module.strip = true;
    const step = b.step("lib", "Install only the release library (for the npm platform packages)");
    step.dependOn(&b.addInstallArtifact(lib, .{}).step);
}

/// x86-64-v2 is the floor every released binary runs on; wider kernels are picked at run time.
fn baselineQuery() std.Target.Query {
    if (builtin.cpu.arch == .x86_64) {
        return .{ .cpu_model = .{ .explicit = &std.Target.x86.cpu.x86_64_v2 } };
    }
    return .{};
}

fn nativeModule(
    b: *std.Build,
    root: []const u8,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    tsan: bool,
) *std.Build.Module {
    const mod = b.createModule(.{
        .root_source_file = b.path(root),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .pic = true,
        .sanitize_thread = tsan,
    });
    for (kernelVariants(target)) |variant| {
        if (variant.cpu) |cpu| mod.addObject(
            addKernelObject(b, target, optimize, variant.suffix, cpu),
        );
    }
    mod.addOptions("build_options", kernelOptions(b, target));
    return mod;
}

fn addLibrary(
    b: *std.Build,
    name: []const u8,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    tsan: bool,
) *std.Build.Step.Compile {
    return b.addLibrary(.{
        .name = name,
        .linkage = .dynamic,
        .root_module = nativeModule(b, "native/lib.zig", target, optimize, tsan),
    });
}

fn addTests(
    b: *std.Build,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    tsan: bool,
    filters: []const []const u8,
) *std.Build.Step.Compile {
    return b.addTest(.{
        .name = if (tsan) "quiver-tests-tsan" else "quiver-tests",
        .filters = filters,
        .root_module = nativeModule(b, "native/tests.zig", target, optimize, tsan),
    });
}

const KernelVariant = struct { suffix: []const u8, cpu: ?*const std.Target.Cpu.Model };

/// Distance kernels are compiled once per CPU level, each into its own object with its own
/// symbol names, so one library carries AVX-512, AVX2+FMA and a baseline and picks at run time.
fn kernelVariants(target: std.Build.ResolvedTarget) []const KernelVariant {
    if (target.result.cpu.arch == .x86_64) {
        return &.{
            .{ .suffix = "avx512", .cpu = &std.Target.x86.cpu.x86_64_v4 },
            .{ .suffix = "avx2", .cpu = &std.Target.x86.cpu.x86_64_v3 },
            .{ .suffix = "baseline", .cpu = &std.Target.x86.cpu.x86_64_v2 },
        };
    }
    if (target.result.cpu.arch == .aarch64) {
        return &.{.{ .suffix = "neon", .cpu = &std.Target.aarch64.cpu.generic }};
    }
    return &.{.{ .suffix = "baseline", .cpu = null }};
}

fn kernelOptions(b: *std.Build, target: std.Build.ResolvedTarget) *std.Build.Step.Options {
    const options = b.addOptions();
    options.addOption(bool, "kernels_x86_64", target.result.cpu.arch == .x86_64);
    options.addOption(bool, "kernels_aarch64", target.result.cpu.arch == .aarch64);
    return options;
}

fn addKernelObject(
    b: *std.Build,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    suffix: []const u8,
    cpu: *const std.Target.Cpu.Model,
) *std.Build.Step.Compile {
    var query = target.query;
    query.cpu_model = .{ .explicit = cpu };
    query.cpu_features_add = .empty;
    query.cpu_features_sub = .empty;
    const options = b.addOptions();
    options.addOption([]const u8, "suffix", suffix);
    const mod = b.createModule(.{
        .root_source_file = b.path("native/kernels/simd.zig"),
        .target = b.resolveTargetQuery(query),
        // Kernels are always optimized: a Debug kernel would make debug test runs crawl.
        .optimize = if (optimize == .Debug) .ReleaseSafe else optimize,
        .pic = true,
    });
    mod.addOptions("kernel_options", options);
    return b.addObject(.{ .name = b.fmt("kernels_{s}", .{suffix}), .root_module = mod });
}

//! Folder sim/: the deterministic interleaving checker. sched.zig (the scheduler), explore.zig
//! (the schedule search), atomic.zig (simulated atomics), and one check per protocol of the
//! real code (epoch_check.zig, entry_check.zig, seqlock_check.zig, registry_check.zig,
//! slot_check.zig, unlink_check.zig), each with a canary. May import anything.
//!
//! This is its root; native/tests.zig imports it. The last test fails if a file in native/sim/
//! with tests is not listed.
const std = @import("std");

pub const files = .{
    @import("sched.zig"),
    @import("explore.zig"),
    @import("atomic.zig"),
    @import("epoch_check.zig"),
    @import("entry_check.zig"),
    @import("seqlock_check.zig"),
    @import("registry_check.zig"),
    @import("slot_check.zig"),
    @import("unlink_check.zig"),
    @import("vopr.zig"),
};

/// The same files by name, for the completeness check (Zig cannot list a module's imports).
const file_names = [_][]const u8{
    "sched.zig",
    "explore.zig",
    "atomic.zig",
    "epoch_check.zig",
    "entry_check.zig",
    "seqlock_check.zig",
    "registry_check.zig",
    "slot_check.zig",
    "unlink_check.zig",
    "vopr.zig",
};

test {
    inline for (files) |file| std.testing.refAllDecls(file);
}

test "every file in native/sim with tests is imported by sim/root.zig" {
    // Tests run from the repository root under `zig build test`; elsewhere there is nothing to
    // check.
    var dir = std.fs.cwd().openDir(
        "native/sim",
        .{ .iterate = true },
    ) catch return error.SkipZigTest;
    defer dir.close();
    var it = dir.iterate();
    while (try it.next()) |entry| {
        if (entry.kind != .file or !std.mem.endsWith(u8, entry.name, ".zig")) continue;
        if (std.mem.eql(u8, entry.name, "root.zig")) continue;
        const text = try dir.readFileAlloc(std.testing.allocator, entry.name, 1 << 22);
        defer std.testing.allocator.free(text);
        const has_tests = std.mem.startsWith(u8, text, "test \"") or std.mem.indexOf(
            u8,
            text,
            "\ntest \"",
        ) != null;
        if (!has_tests) continue;
        var listed = false;
        for (file_names) |name| listed = listed or std.mem.eql(u8, name, entry.name);
        if (!listed) {
            std.debug.print(
                "native/sim/{s} has tests but is not imported by native/sim/root.zig\n",
                .{entry.name},
            );
            return error.TestFileNotImported;
        }
    }
}

//! The single root of every native test. `refAllDecls` pulls in each file's tests; the test at
//! the bottom fails if a file under native/ that contains tests is not listed here.
const std = @import("std");

pub const files = .{
    @import("abi.zig"),
    @import("cpu.zig"),
    @import("distance.zig"),
    @import("epoch.zig"),
    @import("entry.zig"),
    @import("graph.zig"),
    @import("hnsw_insert.zig"),
    @import("keymap.zig"),
    @import("layout.zig"),
    @import("locks.zig"),
    @import("parallel.zig"),
    @import("quantize.zig"),
    @import("scratch.zig"),
    @import("storage.zig"),
    @import("tables.zig"),
    @import("wal.zig"),
    @import("index_test.zig"),
    @import("stress_test.zig"),
    @import("sim_tests.zig"),
};

/// Files listed by name for the completeness check (Zig cannot list a module's imports).
const file_names = [_][]const u8{
    "abi.zig",         "cpu.zig",    "distance.zig", "epoch.zig",    "entry.zig",
    "graph.zig",       "hnsw_insert.zig", "keymap.zig", "layout.zig", "locks.zig",
    "parallel.zig",    "quantize.zig", "scratch.zig", "storage.zig", "tables.zig", "wal.zig",
    "index_test.zig",  "stress_test.zig", "sim_tests.zig",
};

test {
    inline for (files) |file| std.testing.refAllDecls(file);
}

test "every native file with tests is imported by tests.zig" {
    var dir = std.fs.cwd().openDir("native", .{ .iterate = true }) catch return error.SkipZigTest;
    defer dir.close();
    var walker = try dir.walk(std.testing.allocator);
    defer walker.deinit();
    while (try walker.next()) |entry| {
        if (entry.kind != .file or !std.mem.endsWith(u8, entry.path, ".zig")) continue;
        // native/sim has its own root (sim/root.zig, imported through sim_tests.zig).
        if (std.mem.startsWith(u8, entry.path, "sim/") or std.mem.eql(u8, entry.path, "tests.zig")) continue;
        const text = try dir.readFileAlloc(std.testing.allocator, entry.path, 1 << 22);
        defer std.testing.allocator.free(text);
        if (std.mem.indexOf(u8, text, "\ntest \"") == null) continue;
        var listed = false;
        for (file_names) |name| listed = listed or std.mem.eql(u8, name, entry.path);
        if (!listed) {
            std.debug.print("native/{s} has tests but is not imported by native/tests.zig\n", .{entry.path});
            return error.TestFileNotImported;
        }
    }
}

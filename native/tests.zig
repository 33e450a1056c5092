//! The single root of every native test. `refAllDecls` pulls in each file's tests; the test at
//! the bottom fails if a file under native/ that contains tests is not listed here.
const std = @import("std");

pub const files = .{
    @import("abi.zig"),
    @import("hnsw/entry.zig"),
    @import("hnsw/graph.zig"),
    @import("hnsw/insert.zig"),
    @import("hnsw/scratch.zig"),
    @import("index/graph_quality_test.zig"),
    @import("index/durability_test.zig"),
    @import("index/index_test.zig"),
    @import("index/rabitq_test.zig"),
    @import("index/records_test.zig"),
    @import("index/records_stress_test.zig"),
    @import("records/store.zig"),
    @import("index/keymap.zig"),
    @import("index/stress_test.zig"),
    @import("index/tables.zig"),
    @import("index/write_test.zig"),
    @import("ffi/ffi_test.zig"),
    @import("kernels/cpu.zig"),
    @import("kernels/distance.zig"),
    @import("kernels/quantize.zig"),
    @import("kernels/rabitq.zig"),
    @import("records/bitset.zig"),
    @import("records/fields.zig"),
    @import("records/filter.zig"),
    @import("records/filter_test.zig"),
    @import("records/payload.zig"),
    @import("records/schema.zig"),
    @import("storage/epoch.zig"),
    @import("storage/layout.zig"),
    @import("storage/os.zig"),
    @import("storage/storage.zig"),
    @import("storage/wal.zig"),
    @import("sync/locks.zig"),
    @import("sync/pool.zig"),
    @import("sim/root.zig"),
};

/// Files listed by path for the completeness check (Zig cannot list a module's imports).
const file_names = [_][]const u8{
    "abi.zig",
    "hnsw/entry.zig",
    "hnsw/graph.zig",
    "hnsw/insert.zig",
    "hnsw/scratch.zig",
    "index/graph_quality_test.zig",
    "index/durability_test.zig",
    "index/index_test.zig",
    "index/rabitq_test.zig",
    "index/records_test.zig",
    "index/records_stress_test.zig",
    "index/keymap.zig",
    "index/stress_test.zig",
    "index/tables.zig",
    "index/write_test.zig",
    "ffi/ffi_test.zig",
    "kernels/cpu.zig",
    "kernels/distance.zig",
    "kernels/quantize.zig",
    "kernels/rabitq.zig",
    "records/bitset.zig",
    "records/fields.zig",
    "records/filter.zig",
    "records/filter_test.zig",
    "records/payload.zig",
    "records/schema.zig",
    "storage/epoch.zig",
    "storage/layout.zig",
    "storage/os.zig",
    "storage/storage.zig",
    "storage/wal.zig",
    "sync/locks.zig",
    "sync/pool.zig",
    "sim/root.zig",
};

/// Roots with tests of their own that other build steps run (`zig build tidy`).
const own_roots = [_][]const u8{ "tests.zig", "tidy.zig" };

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
        // The walker joins with the OS's separator; the table is written with '/'.
        var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
        const path = path_buffer[0..entry.path.len];
        _ = std.mem.replace(u8, entry.path, "\\", "/", path);
        // native/sim has its own root (sim/root.zig), which checks its own folder.
        if (std.mem.startsWith(u8, path, "sim/")) continue;
        var own = false;
        for (own_roots) |name| own = own or std.mem.eql(u8, name, path);
        if (own) continue;
        const text = try dir.readFileAlloc(std.testing.allocator, entry.path, 1 << 22);
        defer std.testing.allocator.free(text);
        if (std.mem.indexOf(u8, text, "\ntest \"") == null) continue;
        var listed = false;
        for (file_names) |name| listed = listed or std.mem.eql(u8, name, path);
        if (!listed) {
            std.debug.print("native/{s} has tests but is not in native/tests.zig\n", .{path});
            return error.TestFileNotImported;
        }
    }
}

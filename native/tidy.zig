//! Tidy: the checks `zig build tidy` runs over every Zig file of the tree (native/ and build.zig).
//! - `zig fmt` clean (the file equals its own rendering);
//! - lines within 100 columns;
//! - every `@import` at the top of its file, one per `const` line, never inside a body;
//! - imports between folders run one way: ffi → index → {hnsw, records} → {storage, kernels} →
//!   sync; any file may import abi.zig;
//!   build roots (the top of native/) and sim/ may import anything;
//! - no import cycle between files.
//! Each check has a canary below: a broken source it must flag.
const std = @import("std");

pub const line_columns_max = 100;

/// The folders in dependency order: a file may import its own folder and folders of lower rank.
/// hnsw and records share a rank and must not import each other; so do storage and kernels.
const Folder = enum { top, sim, ffi, index, hnsw, records, storage, kernels, sync, abi };

fn rank(folder: Folder) u8 {
    return switch (folder) {
        .top => 7,
        .sim => 6,
        .ffi => 5,
        .index => 4,
        .hnsw, .records => 3,
        .storage, .kernels => 2,
        .sync => 1,
        .abi => 0,
    };
}

fn folderOf(path: []const u8) Folder {
    if (std.mem.eql(u8, path, "abi.zig")) return .abi;
    const slash = std.mem.indexOfScalar(u8, path, '/') orelse return .top;
    return std.meta.stringToEnum(Folder, path[0..slash]) orelse .top;
}

pub const Problem = struct {
    path: []const u8,
    line: u32,
    what: []const u8,
};

pub const Report = struct {
    gpa: std.mem.Allocator,
    problems: std.ArrayListUnmanaged(Problem) = .{},
    strings: std.heap.ArenaAllocator,

    pub fn init(gpa: std.mem.Allocator) Report {
        return .{ .gpa = gpa, .strings = std.heap.ArenaAllocator.init(gpa) };
    }

    pub fn deinit(self: *Report) void {
        self.problems.deinit(self.gpa);
        self.strings.deinit();
    }

    fn add(
        self: *Report,
        path: []const u8,
        line: u32,
        comptime fmt: []const u8,
        args: anytype,
    ) !void {
        const arena = self.strings.allocator();
        const what = try std.fmt.allocPrint(arena, fmt, args);
        try self.problems.append(
            self.gpa,
            .{ .path = try arena.dupe(u8, path), .line = line, .what = what },
        );
    }

    fn has(self: *const Report, needle: []const u8) bool {
        for (self.problems.items) |p| {
            if (std.mem.indexOf(u8, p.what, needle) != null) return true;
        }
        return false;
    }
};

/// One import edge: `from` (a path under native/) imports `to` (resolved, under native/).
pub const Edge = struct { from: []const u8, to: []const u8, line: u32 };

/// Checks one file's text; appends its import edges (paths allocated in the report's arena).
pub fn checkSource(
    report: *Report,
    edges: *std.ArrayListUnmanaged(Edge),
    path: []const u8,
    text: [:0]const u8,
) !void {
    try checkFormat(report, path, text);
    var line_number: u32 = 0;
    var lines = std.mem.splitScalar(u8, text, '\n');
    var past_imports = false;
    while (lines.next()) |line| {
        line_number += 1;
        const columns = std.unicode.utf8CountCodepoints(line) catch line.len;
        if (columns > line_columns_max) {
            try report.add(
                path,
                line_number,
                "line is {d} columns (at most {d})",
                .{ columns, line_columns_max },
            );
        }
        const trimmed = std.mem.trimLeft(u8, line, " ");
        if (std.mem.startsWith(u8, trimmed, "//")) continue;
        const at = std.mem.indexOf(u8, line, "@import(\"") orelse {
            if (isDeclaration(line)) past_imports = true;
            continue;
        };
        const rest = line[at + "@import(\"".len ..];
        const end = std.mem.indexOfScalar(u8, rest, '"') orelse continue;
        const target = rest[0..end];
        if (trimmed.len != line.len and !isImportList(path)) {
            try report.add(
                path,
                line_number,
                "@import inside a body: move it to the top of the file",
                .{},
            );
        } else if (past_imports and !isImportList(path)) {
            try report.add(
                path,
                line_number,
                "@import after a declaration: move it to the top of the file",
                .{},
            );
        }
        if (!std.mem.endsWith(u8, target, ".zig")) continue;
        const arena = report.strings.allocator();
        const dir = std.fs.path.dirname(path) orelse "";
        const joined = try std.fs.path.resolvePosix(arena, &.{ dir, target });
        try edges.append(
            report.gpa,
            .{ .from = try arena.dupe(u8, path), .to = joined, .line = line_number },
        );
    }
}

/// Root files whose `files = .{ @import(...), ... }` lists are the way Zig pulls in tests.
fn isImportList(path: []const u8) bool {
    return std.mem.eql(u8, path, "tests.zig") or std.mem.eql(u8, path, "sim/root.zig");
}

/// A top-level declaration that is not an import: anything after it must not be an import.
fn isDeclaration(line: []const u8) bool {
    const starts = [_][]const u8{
        "fn ",
        "pub fn ",
        "test ",
        "test {",
        "comptime {",
        "export fn ",
        "inline fn ",
    };
    for (starts) |start| if (std.mem.startsWith(u8, line, start)) return true;
    return false;
}

fn checkFormat(report: *Report, path: []const u8, text: [:0]const u8) !void {
    var ast = try std.zig.Ast.parse(report.gpa, text, .zig);
    defer ast.deinit(report.gpa);
    if (ast.errors.len > 0) return report.add(path, 1, "does not parse", .{});
    const rendered = try ast.render(report.gpa);
    defer report.gpa.free(rendered);
    if (!std.mem.eql(u8, rendered, text)) try report.add(path, 1, "not zig fmt clean", .{});
}

/// Checks every edge's direction, then looks for a cycle among the files.
pub fn checkEdges(report: *Report, edges: []const Edge) !void {
    for (edges) |edge| {
        const from = folderOf(edge.from);
        const to = folderOf(edge.to);
        if (from == to or to == .abi) continue;
        if (rank(from) > rank(to)) continue;
        try report.add(edge.from, edge.line, "imports {s}: {s}/ may not import {s}/", .{
            edge.to, @tagName(from), @tagName(to),
        });
    }
    try checkCycles(report, edges);
}

fn checkCycles(report: *Report, edges: []const Edge) !void {
    // Depth-first search with colours over the file graph; the first back edge is the cycle.
    var colour = std.StringHashMap(u8).init(report.gpa);
    defer colour.deinit();
    for (edges) |edge| {
        try colour.put(edge.from, 0);
        try colour.put(edge.to, 0);
    }
    var it = colour.keyIterator();
    var starts = std.ArrayList([]const u8).init(report.gpa);
    defer starts.deinit();
    while (it.next()) |key| try starts.append(key.*);
    for (starts.items) |start| {
        if (colour.get(start).? == 0) try visit(report, edges, &colour, start, 0);
    }
}

fn visit(
    report: *Report,
    edges: []const Edge,
    colour: *std.StringHashMap(u8),
    node: []const u8,
    depth: u32,
) !void {
    // The tree has fewer than a thousand files: the recursion is bounded by that.
    std.debug.assert(depth < 1000);
    try colour.put(node, 1);
    for (edges) |edge| {
        if (!std.mem.eql(u8, edge.from, node)) continue;
        switch (colour.get(edge.to).?) {
            0 => try visit(report, edges, colour, edge.to, depth + 1),
            1 => try report.add(edge.from, edge.line, "import cycle through {s}", .{edge.to}),
            else => {},
        }
    }
    try colour.put(node, 2);
}

test "tidy: every Zig file of the tree" {
    const gpa = std.testing.allocator;
    var dir = std.fs.cwd().openDir("native", .{ .iterate = true }) catch return error.SkipZigTest;
    defer dir.close();
    var report = Report.init(gpa);
    defer report.deinit();
    var edges: std.ArrayListUnmanaged(Edge) = .{};
    defer edges.deinit(gpa);
    var walker = try dir.walk(gpa);
    defer walker.deinit();
    var files: u32 = 0;
    while (try walker.next()) |entry| {
        if (entry.kind != .file or !std.mem.endsWith(u8, entry.path, ".zig")) continue;
        const text = try dir.readFileAllocOptions(gpa, entry.path, 1 << 22, null, 1, 0);
        defer gpa.free(text);
        try checkSource(&report, &edges, entry.path, text);
        files += 1;
    }
    const build_text = try std.fs.cwd().readFileAllocOptions(gpa, "build.zig", 1 << 22, null, 1, 0);
    defer gpa.free(build_text);
    var build_edges: std.ArrayListUnmanaged(Edge) = .{};
    defer build_edges.deinit(gpa);
    try checkSource(&report, &build_edges, "../build.zig", build_text);
    try checkEdges(&report, edges.items);
    try std.testing.expect(files > 30);
    for (report.problems.items) |p| std.debug.print(
        "native/{s}:{d}: {s}\n",
        .{ p.path, p.line, p.what },
    );
    try std.testing.expectEqual(@as(usize, 0), report.problems.items.len);
}

fn canary(path: []const u8, text: [:0]const u8, other: ?Edge, expect: []const u8) !void {
    const gpa = std.testing.allocator;
    var report = Report.init(gpa);
    defer report.deinit();
    var edges: std.ArrayListUnmanaged(Edge) = .{};
    defer edges.deinit(gpa);
    try checkSource(&report, &edges, path, text);
    if (other) |edge| try edges.append(gpa, edge);
    try checkEdges(&report, edges.items);
    if (!report.has(expect)) {
        for (report.problems.items) |p| std.debug.print(
            "{s}:{d}: {s}\n",
            .{ p.path, p.line, p.what },
        );
        return error.CanaryNotCaught;
    }
}

test "tidy canaries: each check flags a broken source" {
    const long = "const std = @import(\"std\");\n// " ++ "x" ** 100 ++ "\n";
    try canary("index/a.zig", long, null, "columns");
    try canary("index/a.zig", "const std = @import(\"std\");\nconst  a = 1;\n", null, "zig fmt");
    try canary(
        "storage/a.zig",
        "const x = @import(\"../hnsw/view.zig\");\n",
        null,
        "may not import hnsw/",
    );
    try canary(
        "kernels/a.zig",
        "const x = @import(\"../storage/layout.zig\");\n",
        null,
        "may not import",
    );
    try canary(
        "index/a.zig",
        "fn f() void {\n    _ = @import(\"b.zig\");\n}\n",
        null,
        "inside a body",
    );
    try canary(
        "index/a.zig",
        "fn f() void {}\nconst b = @import(\"b.zig\");\n",
        null,
        "after a declaration",
    );
    try canary(
        "records/a.zig",
        "const x = @import(\"../hnsw/view.zig\");\n",
        null,
        "records/ may not import hnsw/",
    );
    try canary(
        "hnsw/a.zig",
        "const x = @import(\"../records/fields.zig\");\n",
        null,
        "hnsw/ may not import records/",
    );
    try canary(
        "records/a.zig",
        "const x = @import(\"../index/index.zig\");\n",
        null,
        "records/ may not import index/",
    );
    const back: Edge = .{ .from = "index/b.zig", .to = "index/a.zig", .line = 1 };
    try canary("index/a.zig", "const b = @import(\"b.zig\");\n", back, "cycle");
}

test "tidy: a clean source passes" {
    const gpa = std.testing.allocator;
    var report = Report.init(gpa);
    defer report.deinit();
    var edges: std.ArrayListUnmanaged(Edge) = .{};
    defer edges.deinit(gpa);
    const text = "const std = @import(\"std\");\nconst v = @import(\"../hnsw/view.zig\");\n";
    try checkSource(&report, &edges, "index/a.zig", text);
    // index/ may import records/, and records/ may import sync/.
    const to_records = "const f = @import(\"../records/fields.zig\");\n";
    try checkSource(&report, &edges, "index/b.zig", to_records);
    const to_sync = "const s = @import(\"../sync/locks.zig\");\n";
    try checkSource(&report, &edges, "records/c.zig", to_sync);
    try checkEdges(&report, edges.items);
    try std.testing.expectEqual(@as(usize, 0), report.problems.items.len);
    try std.testing.expectEqualStrings("hnsw/view.zig", edges.items[0].to);
}

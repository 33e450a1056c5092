//! Per-operation scratch space: the visited set, the two search heaps and list buffers. Each
//! thread takes one from the pool for the length of an operation, so the hot path allocates
//! nothing and threads never share scratch memory.
const std = @import("std");
const locks = @import("../sync/locks.zig");
const graph = @import("graph.zig");

pub const Candidate = struct {
    distance: f32,
    slot: u32,
};

/// A total order on distances: a NaN (only a corrupt stored vector makes one) compares equal
/// instead of tripping `std.math.order`, so it costs recall, never a crash.
fn order(a: f32, b: f32) std.math.Order {
    if (a < b) return .lt;
    if (a > b) return .gt;
    return .eq;
}

fn lessThan(_: void, a: Candidate, b: Candidate) std.math.Order {
    return order(a.distance, b.distance);
}

fn greaterThan(_: void, a: Candidate, b: Candidate) std.math.Order {
    return order(b.distance, a.distance);
}

pub const MinHeap = std.PriorityQueue(Candidate, void, lessThan);
pub const MaxHeap = std.PriorityQueue(Candidate, void, greaterThan);

/// A visited set over slot ids with generation tags: clearing it is one increment.
pub const Visited = struct {
    tags: []u16 = &.{},
    current: u16 = 0,

    pub fn reset(self: *Visited, gpa: std.mem.Allocator, slots: u64) !void {
        if (self.tags.len < slots) {
            const grown = @max(slots, self.tags.len * 2);
            gpa.free(self.tags);
            self.tags = &.{};
            self.tags = try gpa.alloc(u16, grown);
            @memset(self.tags, 0);
            self.current = 0;
        }
        self.current +%= 1;
        if (self.current == 0) {
            @memset(self.tags, 0);
            self.current = 1;
        }
    }

    /// Marks `slot`; returns whether it was already marked.
    pub inline fn testAndSet(self: *Visited, slot: u32) bool {
        if (self.tags[slot] == self.current) return true;
        self.tags[slot] = self.current;
        return false;
    }
};

pub const Scratch = struct {
    visited: Visited = .{},
    candidates: MinHeap,
    results: MaxHeap,
    /// Neighbour ids copied out of one list (at most m0).
    links: []u32,
    /// Working space for neighbour selection.
    selection: std.ArrayListUnmanaged(Candidate) = .{},
    chosen: std.ArrayListUnmanaged(Candidate) = .{},
    /// The query after normalization (cosine) lives here, cache-line aligned like stored vectors.
    query: []align(64) f32,
    /// Its half-precision copy, walked under f16 storage.
    query_f16: []align(64) f16,
    /// Its coded form under i8 storage (quantize.Coded's layout: codes at +64, terms before).
    query_i8: []align(64) u8,
    next: ?*Scratch = null,

    fn create(gpa: std.mem.Allocator, m0: u32, dimensions: u32) !*Scratch {
        const self = try gpa.create(Scratch);
        errdefer gpa.destroy(self);
        const links = try gpa.alloc(u32, m0 + 1);
        errdefer gpa.free(links);
        const query = try gpa.alignedAlloc(f32, 64, dimensions);
        errdefer gpa.free(query);
        const query_f16 = try gpa.alignedAlloc(f16, 64, dimensions);
        errdefer gpa.free(query_f16);
        const query_i8 = try gpa.alignedAlloc(
            u8,
            64,
            64 + std.mem.alignForward(usize, dimensions, 64),
        );
        self.* = .{
            .candidates = MinHeap.init(gpa, {}),
            .results = MaxHeap.init(gpa, {}),
            .links = links,
            .query = query,
            .query_f16 = query_f16,
            .query_i8 = query_i8,
        };
        return self;
    }

    fn destroy(self: *Scratch, gpa: std.mem.Allocator) void {
        gpa.free(self.visited.tags);
        self.candidates.deinit();
        self.results.deinit();
        gpa.free(self.links);
        gpa.free(self.query);
        gpa.free(self.query_f16);
        gpa.free(self.query_i8);
        self.selection.deinit(gpa);
        self.chosen.deinit(gpa);
        gpa.destroy(self);
    }
};

/// A free list of scratch spaces, grown on demand (bounded by the number of concurrent calls).
pub const Pool = struct {
    gpa: std.mem.Allocator,
    m0: u32,
    dimensions: u32,
    mutex: locks.Mutex = .{ .rank = .pool },
    free: ?*Scratch = null,

    pub fn deinit(self: *Pool) void {
        while (self.free) |scratch| {
            self.free = scratch.next;
            scratch.destroy(self.gpa);
        }
    }

    pub fn take(self: *Pool, counters: *graph.Counters) !*Scratch {
        self.mutex.lock(&counters.lock_contention);
        const got = self.free;
        if (got) |scratch| self.free = scratch.next;
        self.mutex.unlock();
        return got orelse try Scratch.create(self.gpa, self.m0, self.dimensions);
    }

    pub fn give(self: *Pool, scratch: *Scratch, counters: *graph.Counters) void {
        scratch.candidates.items.len = 0;
        scratch.results.items.len = 0;
        self.mutex.lock(&counters.lock_contention);
        scratch.next = self.free;
        self.free = scratch;
        self.mutex.unlock();
    }
};

test "visited: tags wrap without false positives" {
    var visited = Visited{};
    defer std.testing.allocator.free(visited.tags);
    for (0..70_000) |_| {
        try visited.reset(std.testing.allocator, 10);
        try std.testing.expect(!visited.testAndSet(3));
        try std.testing.expect(visited.testAndSet(3));
    }
}

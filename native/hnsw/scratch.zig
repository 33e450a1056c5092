//! Per-operation scratch space: the visited set, the two search heaps and list buffers. Each
//! thread takes one from the pool for the length of an operation, so the hot path allocates
//! nothing and threads never share scratch memory.
const std = @import("std");
const assert = std.debug.assert;
const locks = @import("../sync/locks.zig");
const graph = @import("graph.zig");
const quantize = @import("../kernels/quantize.zig");
const rabitq = @import("../kernels/rabitq.zig");

pub const Candidate = struct {
    distance: f32,
    slot: u32,
};

/// A binary heap of candidates, `first(a, b)` true when `a` belongs above `b`. Written out
/// rather than `std.PriorityQueue` for `replaceTop`: a full result set takes a closer candidate
/// with one sift-down instead of an add and a remove (two sifts), and the comparisons are plain
/// float compares the compiler inlines. A NaN distance (only a corrupt stored vector makes one)
/// compares false both ways: it costs recall, never a crash.
pub fn Heap(comptime first: fn (Candidate, Candidate) bool) type {
    return struct {
        const Self = @This();

        items: []Candidate = &.{},
        capacity: usize = 0,
        allocator: std.mem.Allocator,

        pub fn init(gpa: std.mem.Allocator, _: void) Self {
            return .{ .allocator = gpa };
        }

        pub fn deinit(self: *Self) void {
            self.allocator.free(self.items.ptr[0..self.capacity]);
            self.* = .{ .allocator = self.allocator };
        }

        pub inline fn count(self: *const Self) usize {
            return self.items.len;
        }

        pub inline fn peek(self: *const Self) ?Candidate {
            return if (self.items.len == 0) null else self.items[0];
        }

        pub fn add(self: *Self, candidate: Candidate) !void {
            if (self.items.len == self.capacity) try self.grow();
            const n = self.items.len;
            self.items.len = n + 1;
            self.siftUp(n, candidate);
        }

        /// Removes the top; the heap must not be empty.
        pub fn remove(self: *Self) Candidate {
            assert(self.items.len > 0);
            const top = self.items[0];
            const last = self.items[self.items.len - 1];
            self.items.len -= 1;
            if (self.items.len > 0) self.siftDown(0, last);
            return top;
        }

        pub fn removeOrNull(self: *Self) ?Candidate {
            return if (self.items.len == 0) null else self.remove();
        }

        /// Replaces the top by `candidate` (the heap must not be empty): remove then add, in
        /// one sift.
        pub fn replaceTop(self: *Self, candidate: Candidate) void {
            assert(self.items.len > 0);
            self.siftDown(0, candidate);
        }

        fn grow(self: *Self) !void {
            const capacity_new = @max(64, 2 * self.capacity);
            const old = self.items.ptr[0..self.capacity];
            const fresh = try self.allocator.realloc(old, capacity_new);
            self.items = fresh[0..self.items.len];
            self.capacity = capacity_new;
            assert(self.capacity > self.items.len);
        }

        inline fn siftUp(self: *Self, start: usize, candidate: Candidate) void {
            const items = self.items;
            var at = start;
            while (at > 0) {
                const parent = (at - 1) / 2;
                if (!first(candidate, items[parent])) break;
                items[at] = items[parent];
                at = parent;
            }
            items[at] = candidate;
        }

        inline fn siftDown(self: *Self, start: usize, candidate: Candidate) void {
            const items = self.items;
            const n = items.len;
            var at = start;
            while (true) {
                var child = 2 * at + 1;
                if (child >= n) break;
                if (child + 1 < n and first(items[child + 1], items[child])) child += 1;
                if (!first(items[child], candidate)) break;
                items[at] = items[child];
                at = child;
            }
            items[at] = candidate;
        }
    };
}

fn closer(a: Candidate, b: Candidate) bool {
    return a.distance < b.distance;
}

fn farther(a: Candidate, b: Candidate) bool {
    return a.distance > b.distance;
}

pub const MinHeap = Heap(closer);
pub const MaxHeap = Heap(farther);

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

    pub inline fn isSet(self: *const Visited, slot: u32) bool {
        return self.tags[slot] == self.current;
    }

    pub inline fn set(self: *Visited, slot: u32) void {
        self.tags[slot] = self.current;
    }

    /// Marks `slot`; returns whether it was already marked.
    pub inline fn testAndSet(self: *Visited, slot: u32) bool {
        if (self.tags[slot] == self.current) return true;
        self.tags[slot] = self.current;
        return false;
    }
};

/// The candidates a layer search expands together (search.zig `searchLayer`).
pub const beam_width = 2;

pub const Scratch = struct {
    visited: Visited = .{},
    /// Set by a filtered `searchLayer` that spent its distance budget and stopped early.
    over_budget: bool = false,
    candidates: MinHeap,
    results: MaxHeap,
    /// Neighbour ids copied out of the lists of one beam (`beam_width` lists of at most m0).
    links: []u32,
    /// The walk's distances to `links` (search.zig `searchLayer`).
    distances: []f32,
    /// Working space for neighbour selection.
    selection: std.ArrayListUnmanaged(Candidate) = .{},
    chosen: std.ArrayListUnmanaged(Candidate) = .{},
    /// The query after normalization (cosine) lives here, cache-line aligned like stored vectors.
    query: []align(64) f32,
    /// Its half-precision copy, walked under f16 storage.
    query_f16: []align(64) f16,
    /// Its coded form under i8 storage (quantize.Coded's layout: codes at +64, terms before).
    query_i8: []align(64) u8,
    /// rabitq storage (else empty): the rotated query less the rotated centre, the tables of
    /// one expansion, and the table sums and factors of its edges (search.zig `searchCodes`).
    code_query: []align(64) f32 = &.{},
    code_tables: []align(64) u8 = &.{},
    code_terms: rabitq.QueryTerms = undefined,
    /// |q|^2 (the ip metric's bound needs it).
    code_query_norm: f32 = 0,
    /// The lower end of each edge's estimate in one expansion (search.zig `Scan`).
    code_low: []f32 = &.{},
    next: ?*Scratch = null,

    /// `walk_dims`: the components of a walked vector (rabitq: of the rotated space), which
    /// the coded query has; `codes`: whether to make rabitq's buffers.
    fn create(
        gpa: std.mem.Allocator,
        m0: u32,
        dimensions: u32,
        walk_dims: u32,
        codes: bool,
    ) !*Scratch {
        const self = try gpa.create(Scratch);
        errdefer gpa.destroy(self);
        const links = try gpa.alloc(u32, beam_width * (m0 + 1));
        errdefer gpa.free(links);
        const distances = try gpa.alloc(f32, beam_width * (m0 + 1));
        errdefer gpa.free(distances);
        const query = try gpa.alignedAlloc(f32, 64, dimensions);
        errdefer gpa.free(query);
        const query_f16 = try gpa.alignedAlloc(f16, 64, dimensions);
        errdefer gpa.free(query_f16);
        const query_i8 = try gpa.alignedAlloc(
            u8,
            64,
            quantize.Coded.bytes(@max(dimensions, walk_dims)),
        );
        errdefer gpa.free(query_i8);
        self.* = .{
            .candidates = MinHeap.init(gpa, {}),
            .results = MaxHeap.init(gpa, {}),
            .links = links,
            .distances = distances,
            .query = query,
            .query_f16 = query_f16,
            .query_i8 = query_i8,
        };
        if (codes) try self.createCodes(gpa, m0, walk_dims);
        return self;
    }

    fn createCodes(self: *Scratch, gpa: std.mem.Allocator, m0: u32, walk_dims: u32) !void {
        const blocks = std.math.divCeil(u32, m0, rabitq.block_codes) catch unreachable;
        self.code_query = try gpa.alignedAlloc(f32, 64, walk_dims);
        errdefer gpa.free(self.code_query);
        self.code_tables = try gpa.alignedAlloc(u8, 64, rabitq.tableBytes(walk_dims));
        errdefer gpa.free(self.code_tables);
        self.code_low = try gpa.alloc(f32, blocks * rabitq.block_codes);
    }

    fn destroy(self: *Scratch, gpa: std.mem.Allocator) void {
        gpa.free(self.visited.tags);
        self.candidates.deinit();
        self.results.deinit();
        gpa.free(self.links);
        gpa.free(self.distances);
        gpa.free(self.query);
        gpa.free(self.query_f16);
        gpa.free(self.query_i8);
        gpa.free(self.code_query);
        gpa.free(self.code_tables);
        gpa.free(self.code_low);
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
    /// `Scratch.create`'s: the walked vector's components, and whether rabitq's buffers exist.
    walk_dims: u32,
    codes: bool = false,
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
        return got orelse try Scratch.create(
            self.gpa,
            self.m0,
            self.dimensions,
            self.walk_dims,
            self.codes,
        );
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

test "heap: replaceTop and remove keep the order" {
    var heap = MaxHeap.init(std.testing.allocator, {});
    defer heap.deinit();
    var prng = std.Random.DefaultPrng.init(13);
    const random = prng.random();
    // A bounded max-heap of the 8 smallest of 1,000 values, as searchLayer keeps its results.
    var values: [1000]f32 = undefined;
    for (&values, 0..) |*v, i| {
        v.* = random.float(f32);
        const c = Candidate{ .distance = v.*, .slot = @intCast(i) };
        if (heap.count() < 8) {
            try heap.add(c);
        } else if (c.distance < heap.peek().?.distance) heap.replaceTop(c);
    }
    std.mem.sort(f32, &values, {}, std.sort.asc(f32));
    var i: usize = 8;
    while (heap.removeOrNull()) |c| {
        i -= 1;
        try std.testing.expectEqual(values[i], c.distance);
    }
    try std.testing.expectEqual(@as(usize, 0), i);
}

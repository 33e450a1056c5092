//! Handle tables for guards (zero-copy views) and snapshots. A handle is `tag << 32 | index`;
//! the tag changes every time an entry is reused, so a released handle never names a new entry.
const std = @import("std");
const locks = @import("../sync/locks.zig");
const storage_mod = @import("../storage/storage.zig");
const Generation = storage_mod.Generation;

pub const entries_max: u32 = 1 << 20;

fn Table(comptime Value: type) type {
    return struct {
        const Self = @This();
        const Entry = struct { value: ?Value = null, tag: u32 = 1 };

        mutex: locks.Mutex = .{ .rank = .pool },
        entries: std.ArrayListUnmanaged(Entry) = .{},
        free: std.ArrayListUnmanaged(u32) = .{},
        count: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),
        contention: std.atomic.Value(u64) = std.atomic.Value(u64).init(0),

        pub fn deinit(self: *Self, gpa: std.mem.Allocator) void {
            self.entries.deinit(gpa);
            self.free.deinit(gpa);
        }

        pub fn add(self: *Self, gpa: std.mem.Allocator, value: Value) error{
            OutOfMemory,
            TooManyHandles,
        }!u64 {
            self.mutex.lock(&self.contention);
            defer self.mutex.unlock();
            const index: u32 = if (self.free.pop()) |i| i else blk: {
                if (self.entries.items.len >= entries_max) return error.TooManyHandles;
                try self.free.ensureTotalCapacity(gpa, self.entries.items.len + 1);
                try self.entries.append(gpa, .{});
                break :blk @intCast(self.entries.items.len - 1);
            };
            const entry = &self.entries.items[index];
            // A free index names an empty entry whose tag was bumped when it was freed.
            std.debug.assert(entry.value == null);
            std.debug.assert(entry.tag != 0);
            entry.value = value;
            _ = self.count.fetchAdd(1, .monotonic);
            std.debug.assert(self.count.load(.monotonic) <= self.entries.items.len);
            return (@as(u64, entry.tag) << 32) | index;
        }

        fn find(self: *Self, handle: u64) ?*Entry {
            const index: u32 = @truncate(handle);
            const tag: u32 = @intCast(handle >> 32);
            if (index >= self.entries.items.len) return null;
            const entry = &self.entries.items[index];
            if (entry.tag != tag or entry.value == null) return null;
            return entry;
        }

        pub fn get(self: *Self, handle: u64) ?Value {
            self.mutex.lock(&self.contention);
            defer self.mutex.unlock();
            const entry = self.find(handle) orelse return null;
            return entry.value;
        }

        /// Removes and returns the value; null for a handle that is not live.
        pub fn remove(self: *Self, handle: u64) ?Value {
            self.mutex.lock(&self.contention);
            defer self.mutex.unlock();
            const entry = self.find(handle) orelse return null;
            const value = entry.value;
            std.debug.assert(value != null);
            std.debug.assert(self.count.load(.monotonic) > 0);
            entry.value = null;
            entry.tag +%= 1;
            if (entry.tag == 0) entry.tag = 1;
            // Capacity was reserved in `add`, so this cannot fail.
            std.debug.assert(self.free.items.len < self.free.capacity);
            self.free.appendAssumeCapacity(@truncate(handle));
            _ = self.count.fetchSub(1, .monotonic);
            return value;
        }

        pub fn live(self: *Self) u64 {
            return self.count.load(.monotonic);
        }
    };
}

pub const Guard = struct {
    generation: *Generation,
    slot: u32,
};

pub const Snapshot = struct {
    seq: u64,
    live: u64,
    slots_used: u64,
};

pub const GuardTable = Table(Guard);
pub const SnapshotTable = Table(Snapshot);

pub const Guards = struct {
    table: GuardTable = .{},

    pub fn live(self: *Guards) u64 {
        return self.table.live();
    }

    /// Unpins every guard still alive (the index is being destroyed) and frees the table.
    pub fn releaseAll(self: *Guards, storage: *storage_mod.Storage) void {
        for (self.table.entries.items) |entry| {
            if (entry.value) |guard| storage.unpin(guard.generation);
        }
        self.table.deinit(storage.gpa);
    }
};

pub const Snapshots = struct {
    table: SnapshotTable = .{},

    /// The oldest live snapshot's sequence number, or null without snapshots. Snapshots are
    /// added under the commit lock, so a caller holding it sees every snapshot made before.
    pub fn oldestSeq(self: *Snapshots) ?u64 {
        self.table.mutex.lock(&self.table.contention);
        defer self.table.mutex.unlock();
        var oldest: ?u64 = null;
        for (self.table.entries.items) |entry| {
            const snap = entry.value orelse continue;
            oldest = if (oldest) |o| @min(o, snap.seq) else snap.seq;
        }
        return oldest;
    }

    pub fn live(self: *Snapshots) u64 {
        return self.table.live();
    }
};

test "tables: a released handle never names a reused entry" {
    const gpa = std.testing.allocator;
    var table = SnapshotTable{};
    defer table.deinit(gpa);
    const a = try table.add(gpa, .{ .seq = 1, .live = 0, .slots_used = 0 });
    try std.testing.expect(table.remove(a) != null);
    const b = try table.add(gpa, .{ .seq = 2, .live = 0, .slots_used = 0 });
    try std.testing.expect(@as(u32, @truncate(a)) == @as(u32, @truncate(b)));
    try std.testing.expect(table.get(a) == null);
    try std.testing.expect(table.remove(a) == null);
    try std.testing.expectEqual(@as(u64, 2), table.get(b).?.seq);
    try std.testing.expectEqual(@as(u64, 1), table.live());
}

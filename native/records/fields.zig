//! The fields index: for each field of the schema, which slots hold which values, so a filter
//! compiles to a bitset without reading any payload (filter.zig).
//!
//! - A keyword field maps each value (its bytes, owned) to a posting of the slots that hold it.
//!   A posting is a sorted list of slots while that is smaller than a bitset up to its highest
//!   slot, and a bitset after: a rare value (an id-like field) costs 4 bytes a slot, a common one
//!   (a category) one bit a slot. A bitset stays a bitset (remove cannot allocate a list) until
//!   the value's last slot leaves; then the posting is freed with the value.
//! - A number field keeps (value, slot) entries in a sorted array, plus an unsorted pending buffer
//!   that new entries join and that is merged in when it grows past max(1024, 8 sqrt(sorted)): a
//!   range query scans the pending buffer, an insert pays sorted/pending moves amortized, and the
//!   square root balances the two. A removal marks its sorted entry dead (or drops its pending
//!   one); dead entries are dropped when they pass the same bound, so a range query costs
//!   O(log n + matches + pending + dead), all bounded.
//! - Every field has an `exists` bitset: the slots with at least one value of it.
//!
//! Memory per record: one bit per field for `exists` (up to the highest slot); per keyword value
//! 4 bytes (list; up to 8 with growth slack) or a share of a bitset; per distinct keyword value
//! its bytes, a map entry and a posting header (about 64 bytes with the map's load factor); per
//! number value a 16-byte entry (up to 32 with growth slack).
//!
//! Not thread-safe: add and remove need the records lock exclusively; the reads (orKeyword,
//! orNumber, orNumberIn, orExists, which materialize uses) change nothing and may run together
//! under a shared lock.
const std = @import("std");
const assert = std.debug.assert;
const Allocator = std.mem.Allocator;
const schema_mod = @import("schema.zig");
const Schema = schema_mod.Schema;
const Kind = schema_mod.Kind;
const payload = @import("payload.zig");
const Parsed = payload.Parsed;
const bitset = @import("bitset.zig");
const Bitset = bitset.Bitset;

pub const Cmp = enum(u8) { eq = 1, lt = 2, lte = 3, gt = 4, gte = 5 };

/// A u64 whose unsigned order is the numeric order of finite numbers and infinities. -0 and +0
/// are one number to every comparison (and to JS), so both take +0's key.
pub fn orderedKey(value: f64) u64 {
    assert(!std.math.isNan(value));
    const normal: f64 = if (value == 0) 0.0 else value;
    const bits: u64 = @bitCast(normal);
    return if (bits >> 63 == 1) ~bits else bits | (@as(u64, 1) << 63);
}

/// Whether `key cmp bound`, on ordered keys.
pub fn compare(key: u64, cmp: Cmp, bound: u64) bool {
    return switch (cmp) {
        .eq => key == bound,
        .lt => key < bound,
        .lte => key <= bound,
        .gt => key > bound,
        .gte => key >= bound,
    };
}

pub const Fields = struct {
    /// Kept so remove, which cannot fail, can free a value whose posting empties.
    gpa: Allocator,
    /// One column per schema field, in field order.
    columns: []Column,

    pub fn init(gpa: Allocator, schema: *const Schema) error{OutOfMemory}!Fields {
        assert(schema.fields.len <= schema_mod.fields_max);
        const columns = try gpa.alloc(Column, schema.fields.len);
        for (columns, schema.fields) |*column, field| column.* = .{
            .exists = .{},
            .index = switch (field.kind) {
                .keyword => .{ .keyword = .{} },
                .number => .{ .number = .{} },
            },
        };
        return .{ .gpa = gpa, .columns = columns };
    }

    pub fn deinit(self: *Fields, gpa: Allocator) void {
        assert(sameAllocator(gpa, self.gpa));
        for (self.columns) |*column| column.deinit(gpa);
        gpa.free(self.columns);
        self.* = undefined;
    }

    pub fn kindOf(self: *const Fields, field: u8) Kind {
        assert(field < self.columns.len);
        return self.columns[field].index;
    }

    /// Indexes the terms of a slot's payload. All or nothing: on OutOfMemory the index is as it
    /// was. The slot must not be indexed already (remove it first).
    pub fn add(self: *Fields, gpa: Allocator, slot: u32, parsed: Parsed) error{OutOfMemory}!void {
        assert(sameAllocator(gpa, self.gpa));
        assert(slot < std.math.maxInt(u32));
        // Reserve first, so the inserts below cannot fail halfway; reserving changes no answer.
        errdefer self.dropEmpty(parsed);
        try self.reserve(slot, parsed);
        var terms = parsed.iterator();
        for (0..parsed.term_count) |_| {
            const term = terms.next().?;
            const column = &self.columns[term.field];
            assert(@as(Kind, column.index) == @as(Kind, term.value));
            column.exists.set(slot);
            switch (term.value) {
                .keyword => |value| column.index.keyword.getPtr(value).?.insert(slot),
                .number => |value| column.index.number.insert(orderedKey(value), slot),
            }
        }
        assert(terms.next() == null);
    }

    /// Removes exactly what add(slot, parsed) added; parsed is the payload that was added.
    pub fn remove(self: *Fields, slot: u32, parsed: Parsed) void {
        var terms = parsed.iterator();
        var run_field: ?u8 = null;
        for (0..parsed.term_count) |_| {
            const term = terms.next().?;
            const column = &self.columns[term.field];
            assert(@as(Kind, column.index) == @as(Kind, term.value));
            if (run_field != term.field) {
                run_field = term.field;
                assert(column.exists.isSet(slot));
                column.exists.unset(slot);
            }
            switch (term.value) {
                .keyword => |value| {
                    const map = &column.index.keyword;
                    const posting = map.getPtr(value).?;
                    posting.remove(slot);
                    if (posting.count() == 0) {
                        var entry = map.fetchRemove(value).?;
                        entry.value.deinit(self.gpa);
                        self.gpa.free(entry.key);
                    }
                },
                .number => |value| column.index.number.remove(orderedKey(value), slot),
            }
        }
        assert(terms.next() == null);
    }

    /// out |= the slots below slot_count holding `value` in keyword field `field`.
    pub fn orKeyword(
        self: *const Fields,
        field: u8,
        value: []const u8,
        out: *Bitset,
        slot_count: u32,
    ) void {
        const posting = self.columns[field].index.keyword.getPtr(value) orelse return;
        posting.orInto(out, slot_count);
    }

    /// out |= the slots below slot_count with a value v of number field `field`: v cmp bound.
    pub fn orNumber(
        self: *const Fields,
        field: u8,
        cmp: Cmp,
        bound: f64,
        out: *Bitset,
        slot_count: u32,
    ) void {
        self.columns[field].index.number.orRange(cmp, orderedKey(bound), out, slot_count);
    }

    /// out |= the slots below slot_count with a value of number field `field` whose ordered key
    /// is in `keys` (sorted ascending).
    pub fn orNumberIn(
        self: *const Fields,
        field: u8,
        keys: []const u64,
        out: *Bitset,
        slot_count: u32,
    ) void {
        self.columns[field].index.number.orIn(keys, out, slot_count);
    }

    /// out |= the slots below slot_count with any value of field `field`.
    pub fn orExists(self: *const Fields, field: u8, out: *Bitset, slot_count: u32) void {
        out.orWithin(&self.columns[field].exists, slot_count);
    }

    /// Makes room for every insert of add(slot, parsed).
    fn reserve(self: *Fields, slot: u32, parsed: Parsed) error{OutOfMemory}!void {
        var terms = parsed.iterator();
        var run_field: ?u8 = null;
        var run_len: u32 = 0;
        for (0..parsed.term_count) |_| {
            const term = terms.next().?;
            const column = &self.columns[term.field];
            if (run_field != term.field) {
                if (run_field) |field| try self.reserveNumbers(field, run_len);
                run_field = term.field;
                run_len = 0;
                assert(!column.exists.isSet(slot));
                try column.exists.ensure(self.gpa, @as(u64, slot) + 1);
            }
            run_len += 1;
            switch (term.value) {
                .keyword => |value| {
                    const map = &column.index.keyword;
                    const entry = try map.getOrPut(self.gpa, value);
                    if (!entry.found_existing) {
                        // The map holds the payload's bytes until they are replaced by a copy.
                        const owned = self.gpa.dupe(u8, value) catch |err| {
                            map.removeByPtr(entry.key_ptr);
                            return err;
                        };
                        entry.key_ptr.* = owned;
                        entry.value_ptr.* = .{ .list = .{} };
                    }
                    try entry.value_ptr.reserve(self.gpa, slot);
                },
                .number => {},
            }
        }
        if (run_field) |field| try self.reserveNumbers(field, run_len);
    }

    fn reserveNumbers(self: *Fields, field: u8, count: u32) error{OutOfMemory}!void {
        switch (self.columns[field].index) {
            .keyword => {},
            .number => |*index| try index.reserve(self.gpa, count),
        }
    }

    /// Undoes a failed reserve: frees the postings it created. Every posting in a map holds at
    /// least one slot, so an empty one for a value of this payload was made by that reserve.
    fn dropEmpty(self: *Fields, parsed: Parsed) void {
        var terms = parsed.iterator();
        for (0..parsed.term_count) |_| {
            const term = terms.next().?;
            const value = switch (term.value) {
                .keyword => |value| value,
                .number => continue,
            };
            const map = &self.columns[term.field].index.keyword;
            const posting = map.getPtr(value) orelse continue;
            if (posting.count() > 0) continue;
            var entry = map.fetchRemove(value).?;
            entry.value.deinit(self.gpa);
            self.gpa.free(entry.key);
        }
    }

    /// Lowers the pending buffer's floor, so tests on a few hundred values merge and drop dead
    /// entries as a large index does. Not for production: the floor only trades speeds.
    pub fn setPendingMinForTest(self: *Fields, pending_min: u32) void {
        assert(pending_min >= 1);
        for (self.columns) |*column| switch (column.index) {
            .keyword => {},
            .number => |*index| index.pending_min = pending_min,
        };
    }

    /// Checks every invariant of every column (for tests; O(size of the index)).
    pub fn verify(self: *const Fields) void {
        for (self.columns) |*column| switch (column.index) {
            .keyword => |*map| {
                var it = map.iterator();
                while (it.next()) |entry| {
                    assert(entry.value_ptr.count() > 0);
                    entry.value_ptr.verify();
                    var slots = entry.value_ptr.iterator();
                    while (slots.next()) |slot| assert(column.exists.isSet(slot));
                }
            },
            .number => |*index| index.verify(&column.exists),
        };
    }
};

fn sameAllocator(a: Allocator, b: Allocator) bool {
    return a.ptr == b.ptr and a.vtable == b.vtable;
}

const Column = struct {
    exists: Bitset,
    index: union(Kind) {
        keyword: std.StringHashMapUnmanaged(Posting),
        number: NumberIndex,
    },

    fn deinit(self: *Column, gpa: Allocator) void {
        self.exists.deinit(gpa);
        switch (self.index) {
            .keyword => |*map| {
                var it = map.iterator();
                while (it.next()) |entry| {
                    entry.value_ptr.deinit(gpa);
                    gpa.free(entry.key_ptr.*);
                }
                map.deinit(gpa);
            },
            .number => |*index| index.deinit(gpa),
        }
    }
};

/// The slots that hold one keyword value.
const Posting = union(enum) {
    /// Sorted ascending, no repeats.
    list: std.ArrayListUnmanaged(u32),
    bits: struct { set: Bitset, count: u32 },

    fn deinit(self: *Posting, gpa: Allocator) void {
        switch (self.*) {
            .list => |*list| list.deinit(gpa),
            .bits => |*bits| bits.set.deinit(gpa),
        }
    }

    fn count(self: *const Posting) u32 {
        return switch (self.*) {
            .list => |list| @intCast(list.items.len),
            .bits => |bits| bits.count,
        };
    }

    /// After this, insert(slot) cannot fail. Turns a list into a bitset when the list with the
    /// slot would take more bytes than a bitset up to its highest slot.
    fn reserve(self: *Posting, gpa: Allocator, slot: u32) error{OutOfMemory}!void {
        switch (self.*) {
            .bits => |*bits| try bits.set.ensure(gpa, @as(u64, slot) + 1),
            .list => |*list| {
                const items = list.items;
                const top = if (items.len > 0) @max(items[items.len - 1], slot) else slot;
                const list_bytes = (items.len + 1) * @sizeOf(u32);
                const bits_bytes = Bitset.wordsFor(@as(u64, top) + 1) * @sizeOf(u64);
                if (list_bytes <= bits_bytes) return list.ensureUnusedCapacity(gpa, 1);
                var set: Bitset = .{};
                try set.ensure(gpa, @as(u64, top) + 1);
                for (items) |s| set.set(s);
                list.deinit(gpa);
                self.* = .{ .bits = .{ .set = set, .count = @intCast(items.len) } };
                assert(self.bits.set.count() == self.bits.count);
            },
        }
    }

    fn insert(self: *Posting, slot: u32) void {
        switch (self.*) {
            .list => |*list| {
                const at = lowerBound(list.items, slot);
                assert(at == list.items.len or list.items[at] != slot);
                list.insertAssumeCapacity(at, slot);
            },
            .bits => |*bits| {
                assert(!bits.set.isSet(slot));
                bits.set.set(slot);
                bits.count += 1;
            },
        }
    }

    fn remove(self: *Posting, slot: u32) void {
        switch (self.*) {
            .list => |*list| {
                const at = lowerBound(list.items, slot);
                assert(at < list.items.len);
                assert(list.items[at] == slot);
                _ = list.orderedRemove(at);
            },
            .bits => |*bits| {
                assert(bits.set.isSet(slot));
                bits.set.unset(slot);
                bits.count -= 1;
            },
        }
    }

    fn orInto(self: *const Posting, out: *Bitset, slot_count: u32) void {
        switch (self.*) {
            .list => |list| for (list.items) |slot| {
                // Sorted: the first slot at or past slot_count ends the list's part.
                if (slot >= slot_count) break;
                out.set(slot);
            },
            .bits => |bits| out.orWithin(&bits.set, slot_count),
        }
    }

    const SlotIterator = union(enum) {
        list: []const u32,
        bits: bitset.Iterator,

        fn next(self: *SlotIterator) ?u32 {
            switch (self.*) {
                .list => |*rest| {
                    if (rest.len == 0) return null;
                    defer rest.* = rest.*[1..];
                    return rest.*[0];
                },
                .bits => |*it| return it.next(),
            }
        }
    };

    fn iterator(self: *const Posting) SlotIterator {
        return switch (self.*) {
            .list => |list| .{ .list = list.items },
            .bits => |*bits| .{ .bits = bits.set.iterator() },
        };
    }

    fn verify(self: *const Posting) void {
        switch (self.*) {
            .list => |list| if (list.items.len > 1) {
                for (list.items[0 .. list.items.len - 1], list.items[1..]) |a, b| assert(a < b);
            },
            .bits => |bits| assert(bits.set.count() == bits.count),
        }
    }
};

/// The index of the first item >= slot.
fn lowerBound(items: []const u32, slot: u32) usize {
    const S = struct {
        fn below(bound: u32, item: u32) bool {
            return item < bound;
        }
    };
    return std.sort.partitionPoint(u32, items, slot, S.below);
}

/// One value of one slot in a number field.
const Entry = struct {
    key: u64,
    slot: u32,
    /// Removed, not yet dropped (only in the sorted array).
    dead: bool,

    fn lessThan(_: void, a: Entry, b: Entry) bool {
        if (a.key != b.key) return a.key < b.key;
        return a.slot < b.slot;
    }
};

comptime {
    // The memory per number value that the file's comment promises.
    assert(@sizeOf(Entry) == 16);
}

const NumberIndex = struct {
    /// Sorted by (key, slot); a (key, slot) pair appears at most once.
    sorted: std.ArrayListUnmanaged(Entry) = .{},
    /// Unsorted and all live; at most pendingMax() after a reserve.
    pending: std.ArrayListUnmanaged(Entry) = .{},
    dead_count: u32 = 0,
    /// The floor of pendingMax: 1024, unless a test lowers it to reach merges on small data.
    pending_min: u32 = pending_min_default,

    const pending_min_default = 1024;

    fn deinit(self: *NumberIndex, gpa: Allocator) void {
        self.sorted.deinit(gpa);
        self.pending.deinit(gpa);
    }

    /// The bound on the pending buffer and on dead entries (see the file's comment).
    fn pendingMax(self: *const NumberIndex) usize {
        return @max(self.pending_min, 8 * std.math.sqrt(self.sorted.items.len));
    }

    /// After this, `count` inserts cannot fail.
    fn reserve(self: *NumberIndex, gpa: Allocator, count: u32) error{OutOfMemory}!void {
        assert(count <= payload.terms_max);
        if (self.pending.items.len + count > self.pendingMax()) try self.merge(gpa);
        try self.pending.ensureUnusedCapacity(gpa, count);
    }

    fn insert(self: *NumberIndex, key: u64, slot: u32) void {
        self.pending.appendAssumeCapacity(.{ .key = key, .slot = slot, .dead = false });
    }

    fn remove(self: *NumberIndex, key: u64, slot: u32) void {
        const probe: Entry = .{ .key = key, .slot = slot, .dead = false };
        const sorted = self.sorted.items;
        const at = std.sort.lowerBound(Entry, sorted, probe, orderEntry);
        if (at < sorted.len and sorted[at].key == key and sorted[at].slot == slot and
            !sorted[at].dead)
        {
            sorted[at].dead = true;
            self.dead_count += 1;
            if (self.dead_count > self.pendingMax()) self.compact();
            return;
        }
        // A sorted entry of this pair is dead or absent, so the live one is pending.
        for (self.pending.items, 0..) |entry, i| {
            if (entry.key == key and entry.slot == slot) {
                _ = self.pending.swapRemove(i);
                return;
            }
        }
        std.debug.panic("number index: slot {d} has no entry for key {x}", .{ slot, key });
    }

    /// Drops dead entries from the sorted array in place, keeping its order.
    fn compact(self: *NumberIndex) void {
        var kept: usize = 0;
        for (self.sorted.items) |entry| {
            if (entry.dead) continue;
            self.sorted.items[kept] = entry;
            kept += 1;
        }
        assert(self.sorted.items.len - kept == self.dead_count);
        self.sorted.items.len = kept;
        self.dead_count = 0;
    }

    /// Moves the pending entries into the sorted array (and drops dead ones). Only the first
    /// step can fail, and it changes nothing.
    fn merge(self: *NumberIndex, gpa: Allocator) error{OutOfMemory}!void {
        try self.sorted.ensureTotalCapacity(gpa, self.sorted.items.len + self.pending.items.len);
        self.compact();
        const pending = self.pending.items;
        std.sort.pdq(Entry, pending, {}, Entry.lessThan);
        // Merge from the back, so no entry is overwritten before it is moved.
        const old_len = self.sorted.items.len;
        self.sorted.items.len = old_len + pending.len;
        const all = self.sorted.items;
        var left = old_len;
        var right = pending.len;
        var write = all.len;
        while (right > 0) {
            write -= 1;
            if (left > 0 and Entry.lessThan({}, pending[right - 1], all[left - 1])) {
                all[write] = all[left - 1];
                left -= 1;
            } else {
                all[write] = pending[right - 1];
                right -= 1;
            }
        }
        assert(write == left);
        self.pending.clearRetainingCapacity();
    }

    fn orRange(self: *const NumberIndex, cmp: Cmp, bound: u64, out: *Bitset, slot_count: u32) void {
        const sorted = self.sorted.items;
        const below = keyBound(sorted, bound, false);
        const through = keyBound(sorted, bound, true);
        const range = switch (cmp) {
            .eq => sorted[below..through],
            .lt => sorted[0..below],
            .lte => sorted[0..through],
            .gt => sorted[through..],
            .gte => sorted[below..],
        };
        for (range) |entry| {
            assert(compare(entry.key, cmp, bound));
            if (!entry.dead and entry.slot < slot_count) out.set(entry.slot);
        }
        for (self.pending.items) |entry| {
            if (compare(entry.key, cmp, bound) and entry.slot < slot_count) out.set(entry.slot);
        }
    }

    fn orIn(self: *const NumberIndex, keys: []const u64, out: *Bitset, slot_count: u32) void {
        const sorted = self.sorted.items;
        for (keys) |key| {
            const below = keyBound(sorted, key, false);
            const through = keyBound(sorted, key, true);
            for (sorted[below..through]) |entry| {
                if (!entry.dead and entry.slot < slot_count) out.set(entry.slot);
            }
        }
        for (self.pending.items) |entry| {
            if (entry.slot >= slot_count) continue;
            if (std.sort.binarySearch(u64, keys, entry.key, orderKey) != null) out.set(entry.slot);
        }
    }

    /// The index of the first entry whose key is >= key (through: > key).
    fn keyBound(sorted: []const Entry, key: u64, through: bool) usize {
        const S = struct {
            fn below(bound: u64, entry: Entry) bool {
                return entry.key < bound;
            }
            fn belowOrAt(bound: u64, entry: Entry) bool {
                return entry.key <= bound;
            }
        };
        if (through) return std.sort.partitionPoint(Entry, sorted, key, S.belowOrAt);
        return std.sort.partitionPoint(Entry, sorted, key, S.below);
    }

    fn verify(self: *const NumberIndex, exists: *const Bitset) void {
        const sorted = self.sorted.items;
        var dead: u32 = 0;
        for (sorted, 0..) |entry, i| {
            if (i > 0) assert(Entry.lessThan({}, sorted[i - 1], entry));
            if (entry.dead) dead += 1 else assert(exists.isSet(entry.slot));
        }
        assert(dead == self.dead_count);
        for (self.pending.items) |entry| {
            assert(!entry.dead);
            assert(exists.isSet(entry.slot));
        }
    }
};

fn orderEntry(probe: Entry, item: Entry) std.math.Order {
    if (probe.key != item.key) return std.math.order(probe.key, item.key);
    return std.math.order(probe.slot, item.slot);
}

fn orderKey(probe: u64, item: u64) std.math.Order {
    return std.math.order(probe, item);
}

const testing = std.testing;
const Term = payload.Term;

fn testSeed() u64 {
    const text = std.mem.span(std.c.getenv("QUIVER_SEED") orelse return std.crypto.random.int(u64));
    return std.fmt.parseInt(u64, text, 0) catch |err| {
        std.debug.panic("QUIVER_SEED={s} is not a u64: {s}", .{ text, @errorName(err) });
    };
}

test "fields: orderedKey orders like f64, -0 is +0" {
    var prng = std.Random.DefaultPrng.init(0x0bde);
    const random = prng.random();
    const inf = std.math.inf(f64);
    const fixed = [_]f64{ -inf, -1e308, -1, -std.math.floatMin(f64), -0.0, 0, 5e-324, 1, inf };
    var values: [64]f64 = undefined;
    for (&values, 0..) |*v, i| {
        v.* = if (i < fixed.len) fixed[i] else (random.float(f64) - 0.5) * std.math.pow(
            f64,
            10,
            @floatFromInt(random.intRangeAtMost(i32, -300, 300)),
        );
    }
    for (values) |a| for (values) |b| {
        try testing.expectEqual(a < b, orderedKey(a) < orderedKey(b));
        try testing.expectEqual(a == b, orderedKey(a) == orderedKey(b));
    };
    try testing.expectEqual(orderedKey(0), orderedKey(-0.0));
}

test "fields: a keyword posting turns from a list into a bitset and back to nothing" {
    const gpa = testing.allocator;
    var schema = try payload.testSchema(gpa);
    defer schema.deinit(gpa);
    var fields = try Fields.init(gpa, &schema);
    defer fields.deinit(gpa);
    const term: Term = .{ .field = 0, .value = .{ .keyword = "k" } };
    const bytes = try payload.encode(gpa, "", "", &.{term});
    defer gpa.free(bytes);
    const parsed = try payload.parse(bytes, &schema);
    // Spread slots keep the list; dense ones make a bitset the smaller form.
    try fields.add(gpa, 100_000, parsed);
    try fields.add(gpa, 5, parsed);
    try testing.expect(fields.columns[0].index.keyword.get("k").? == .list);
    for (6..200) |slot| try fields.add(gpa, @intCast(slot), parsed);
    try testing.expect(fields.columns[0].index.keyword.get("k").? == .list);
    fields.remove(100_000, parsed);
    for (200..300) |slot| try fields.add(gpa, @intCast(slot), parsed);
    try testing.expect(fields.columns[0].index.keyword.get("k").? == .bits);
    fields.verify();
    var out: Bitset = .{};
    defer out.deinit(gpa);
    try out.resetAll(gpa, 250, false);
    fields.orKeyword(0, "k", &out, 250);
    try testing.expectEqual(@as(u64, 245), out.count());
    try testing.expect(!out.isSet(4));
    fields.remove(5, parsed);
    for (6..300) |slot| fields.remove(@intCast(slot), parsed);
    try testing.expectEqual(@as(u32, 0), fields.columns[0].index.keyword.count());
    try testing.expect(!fields.columns[0].exists.isSet(7));
}

/// Every answer of a field index over slots [0, slot_count), as a list of bitsets.
const Answers = struct {
    sets: std.ArrayListUnmanaged(Bitset) = .{},

    fn deinit(self: *Answers, gpa: Allocator) void {
        for (self.sets.items) |*set| set.deinit(gpa);
        self.sets.deinit(gpa);
    }

    fn take(
        gpa: Allocator,
        fields: *const Fields,
        words: []const []const u8,
        numbers: []const f64,
        slot_count: u32,
    ) !Answers {
        var answers: Answers = .{};
        errdefer answers.deinit(gpa);
        const count = 4 + words.len + numbers.len * 5;
        try answers.sets.ensureTotalCapacity(gpa, count);
        for (0..count) |_| {
            var set: Bitset = .{};
            try set.resetAll(gpa, slot_count, false);
            answers.sets.appendAssumeCapacity(set);
        }
        const sets = answers.sets.items;
        for (0..4) |field| fields.orExists(@intCast(field), &sets[field], slot_count);
        for (words, sets[4..][0..words.len]) |word, *set| {
            fields.orKeyword(0, word, set, slot_count);
            fields.orKeyword(2, word, set, slot_count);
        }
        const number_sets = sets[4 + words.len ..];
        for (numbers, 0..) |number, i| {
            for (std.enums.values(Cmp), 0..) |cmp, c| {
                fields.orNumber(1, cmp, number, &number_sets[i * 5 + c], slot_count);
                fields.orNumber(3, cmp, number, &number_sets[i * 5 + c], slot_count);
            }
        }
        return answers;
    }

    fn expectEqual(a: *const Answers, b: *const Answers) !void {
        try testing.expectEqual(a.sets.items.len, b.sets.items.len);
        for (a.sets.items, b.sets.items) |*x, *y| try testing.expect(x.eql(y));
    }
};

test "fields: add is all or nothing when allocation fails" {
    const gpa = testing.allocator;
    var schema = try payload.testSchema(gpa);
    defer schema.deinit(gpa);
    var failing = testing.FailingAllocator.init(gpa, .{});
    const fa = failing.allocator();
    var fields = try Fields.init(fa, &schema);
    defer fields.deinit(fa);
    const kw = struct {
        fn of(field: u8, value: []const u8) Term {
            return .{ .field = field, .value = .{ .keyword = value } };
        }
    }.of;
    const old = try payload.encode(gpa, "", "", &.{
        kw(0, "red"), .{ .field = 1, .value = .{ .number = 3 } }, kw(2, "a"), kw(2, "b"),
    });
    defer gpa.free(old);
    const old_parsed = try payload.parse(old, &schema);
    for (0..40) |slot| try fields.add(fa, @intCast(slot * 3), old_parsed);
    const new = try payload.encode(gpa, "", "", &.{
        kw(0, "red"),
        .{ .field = 1, .value = .{ .number = 4 } },
        kw(2, "a"),
        kw(2, "c"),
        kw(2, "d"),
        .{ .field = 3, .value = .{ .number = 1 } },
        .{ .field = 3, .value = .{ .number = 2 } },
    });
    defer gpa.free(new);
    const new_parsed = try payload.parse(new, &schema);
    const words = [_][]const u8{ "red", "a", "b", "c", "d", "e" };
    const numbers = [_]f64{ 1, 2, 3, 4 };
    var before = try Answers.take(gpa, &fields, &words, &numbers, 200);
    defer before.deinit(gpa);
    var failures: u32 = 0;
    // Each allocation of the add fails in turn (then each resize), until one add succeeds.
    for (0..64) |k| {
        failing.fail_index = failing.alloc_index + k % 32;
        const resize_never = std.math.maxInt(usize);
        failing.resize_fail_index = if (k >= 32) failing.resize_index + k % 32 else resize_never;
        if (fields.add(fa, 1000 + @as(u32, @intCast(k)), new_parsed)) {
            fields.remove(1000 + @as(u32, @intCast(k)), new_parsed);
        } else |err| {
            try testing.expectEqual(error.OutOfMemory, err);
            failures += 1;
        }
        fields.verify();
        var after = try Answers.take(gpa, &fields, &words, &numbers, 200);
        defer after.deinit(gpa);
        try before.expectEqual(&after);
    }
    try testing.expect(failures > 2);
}

test "fields: number ranges stay exact under many inserts and removals" {
    // Leak-checked without a stack trace per allocation, which would be most of the time here.
    var leaks: std.heap.DebugAllocator(.{ .stack_trace_frames = 0 }) = .init;
    defer if (leaks.deinit() == .leak) @panic("fields stress: leaked memory");
    const gpa = leaks.allocator();
    const seed = testSeed();
    std.debug.print("fields stress: QUIVER_SEED=0x{x}\n", .{seed});
    var prng = std.Random.DefaultPrng.init(seed);
    const random = prng.random();
    var schema = try payload.testSchema(gpa);
    defer schema.deinit(gpa);
    var fields = try Fields.init(gpa, &schema);
    defer fields.deinit(gpa);
    const slot_count = 2500;
    // A few hundred distinct numbers, so equal values, ties and -0 are common.
    var domain: [300]f64 = undefined;
    for (&domain, 0..) |*v, i| v.* = @as(f64, @floatFromInt(@as(i32, @intCast(i)) - 150)) / 4;
    domain[0] = -0.0;
    domain[1] = 1e300;
    domain[2] = -1e300;
    const Model = struct { bytes: ?[]u8 = null };
    var model = [_]Model{.{}} ** slot_count;
    defer for (model) |m| if (m.bytes) |b| gpa.free(b);
    var steps: u32 = 0;
    var saw_dead = false;
    var saw_pending_and_sorted = false;
    while (steps < 25_000) : (steps += 1) {
        const slot = random.uintLessThan(u32, slot_count);
        if (model[slot].bytes) |bytes| {
            fields.remove(slot, try payload.parse(bytes, &schema));
            gpa.free(bytes);
            model[slot].bytes = null;
            if (random.boolean()) continue;
        }
        var terms: std.BoundedArray(Term, 8) = .{};
        for ([_]u8{ 1, 3 }) |field| {
            const values = random.uintAtMost(u8, 3);
            var i: u8 = 0;
            outer: while (i < values) : (i += 1) {
                const v = domain[random.uintLessThan(usize, domain.len)];
                for (terms.slice()) |t| {
                    if (t.field == field and t.value.number == v) continue :outer;
                }
                terms.appendAssumeCapacity(.{ .field = field, .value = .{ .number = v } });
            }
        }
        const bytes = try payload.encode(gpa, "", "", terms.slice());
        model[slot].bytes = bytes;
        try fields.add(gpa, slot, try payload.parse(bytes, &schema));
        const index = &fields.columns[1].index.number;
        saw_dead = saw_dead or index.dead_count > 0;
        const both = index.sorted.items.len > 0 and index.pending.items.len > 0;
        saw_pending_and_sorted = saw_pending_and_sorted or both;
        if (steps % 2500 == 0) try checkRanges(gpa, &fields, &schema, &model, random, &domain);
    }
    try checkRanges(gpa, &fields, &schema, &model, random, &domain);
    // The default bounds were reached: merges happened and dead entries were marked.
    try testing.expect(saw_dead);
    try testing.expect(saw_pending_and_sorted);
}

fn checkRanges(
    gpa: Allocator,
    fields: *const Fields,
    schema: *const Schema,
    model: anytype,
    random: std.Random,
    domain: []const f64,
) !void {
    fields.verify();
    const slot_count: u32 = @intCast(model.len);
    var out: Bitset = .{};
    defer out.deinit(gpa);
    for (0..40) |_| {
        const field: u8 = if (random.boolean()) 1 else 3;
        const cmp = random.enumValue(Cmp);
        const between = (random.float(f64) - 0.5) * 80;
        const listed = domain[random.uintLessThan(usize, domain.len)];
        const bound = if (random.boolean()) listed else between;
        // A cut below every slot checks that slot_count bounds the answer too.
        const cut = random.uintLessThan(u8, 4) == 0;
        const used = if (cut) random.uintAtMost(u32, slot_count) else slot_count;
        try out.resetAll(gpa, used, false);
        fields.orNumber(field, cmp, bound, &out, used);
        for (model[0..used], 0..) |m, slot| {
            var want = false;
            if (m.bytes) |bytes| {
                var it = (try payload.parse(bytes, schema)).iterator();
                while (it.next()) |term| {
                    if (term.field != field) continue;
                    const v = term.value.number;
                    want = want or switch (cmp) {
                        .eq => v == bound,
                        .lt => v < bound,
                        .lte => v <= bound,
                        .gt => v > bound,
                        .gte => v >= bound,
                    };
                }
            }
            testing.expectEqual(want, out.isSet(@intCast(slot))) catch |err| {
                const args = .{ slot, field, @tagName(cmp), bound };
                std.debug.print("slot {d} field {d} {s} {d}\n", args);
                return err;
            };
        }
    }
}

//! A dynamic bitset over slots: bit `s` is slot `s`. Filters compile to one (filter.zig), the
//! fields index keeps one per common keyword value and one per field for EXISTS (fields.zig).
//! Every operation works a u64 word at a time; counting uses @popCount.
const std = @import("std");
const assert = std.debug.assert;
const Allocator = std.mem.Allocator;

pub const Bitset = struct {
    /// Word `i` holds bits [64 i, 64 i + 64). Bits past the last word read as unset, so a set
    /// never needs to cover slots above its highest set bit.
    words: std.ArrayListUnmanaged(u64) = .{},

    pub const empty: Bitset = .{};

    pub fn deinit(self: *Bitset, gpa: Allocator) void {
        self.words.deinit(gpa);
        self.* = undefined;
    }

    /// The number of words that hold `bit_count` bits.
    pub fn wordsFor(bit_count: u64) usize {
        return @intCast(std.math.divCeil(u64, bit_count, 64) catch unreachable);
    }

    /// How many bits are addressable (set and unset may touch any bit below this).
    pub fn bitCapacity(self: *const Bitset) u64 {
        return @as(u64, self.words.items.len) * 64;
    }

    /// Makes bits [0, bit_count) addressable; the new bits are unset. Never shrinks. Growth is
    /// geometric, so ensuring one more slot at a time is amortized O(1).
    pub fn ensure(self: *Bitset, gpa: Allocator, bit_count: u64) error{OutOfMemory}!void {
        const need = wordsFor(bit_count);
        const have = self.words.items.len;
        if (need <= have) return;
        try self.words.ensureTotalCapacity(gpa, need);
        self.words.items.len = need;
        @memset(self.words.items[have..], 0);
        assert(self.bitCapacity() >= bit_count);
    }

    /// Sizes the set to exactly the words of [0, bit_count) and sets every bit of that range to
    /// `value`; bits at or above `bit_count` are unset. Keeps the allocation for reuse.
    pub fn resetAll(
        self: *Bitset,
        gpa: Allocator,
        bit_count: u64,
        value: bool,
    ) error{OutOfMemory}!void {
        const need = wordsFor(bit_count);
        try self.words.ensureTotalCapacity(gpa, need);
        self.words.items.len = need;
        @memset(self.words.items, if (value) ~@as(u64, 0) else 0);
        self.maskTail(bit_count);
        assert(self.words.items.len == need);
        assert(!value or self.count() == bit_count);
    }

    pub fn set(self: *Bitset, bit: u32) void {
        assert(bit < self.bitCapacity());
        self.words.items[bit / 64] |= maskOf(bit);
    }

    pub fn unset(self: *Bitset, bit: u32) void {
        assert(bit < self.bitCapacity());
        self.words.items[bit / 64] &= ~maskOf(bit);
    }

    pub fn isSet(self: *const Bitset, bit: u32) bool {
        if (bit >= self.bitCapacity()) return false;
        return self.words.items[bit / 64] & maskOf(bit) != 0;
    }

    pub fn count(self: *const Bitset) u64 {
        var total: u64 = 0;
        for (self.words.items) |word| total += @popCount(word);
        return total;
    }

    /// self &= other. Bits of self past other's words become unset (they read as unset there).
    pub fn andWith(self: *Bitset, other: *const Bitset) void {
        const shared = @min(self.words.items.len, other.words.items.len);
        for (self.words.items[0..shared], other.words.items[0..shared]) |*word, o| word.* &= o;
        @memset(self.words.items[shared..], 0);
    }

    /// self |= other restricted to bits [0, bit_count); self must hold exactly those bits (as
    /// after resetAll(bit_count)), so its bits at or above bit_count stay unset.
    pub fn orWithin(self: *Bitset, other: *const Bitset, bit_count: u64) void {
        assert(self.words.items.len == wordsFor(bit_count));
        const shared = @min(self.words.items.len, other.words.items.len);
        for (self.words.items[0..shared], other.words.items[0..shared]) |*word, o| word.* |= o;
        self.maskTail(bit_count);
    }

    /// self = complement of self within [0, bit_count); bits at or above bit_count stay unset.
    pub fn notWithin(self: *Bitset, bit_count: u64) void {
        assert(self.words.items.len == wordsFor(bit_count));
        for (self.words.items) |*word| word.* = ~word.*;
        self.maskTail(bit_count);
    }

    /// True when both hold the same set bits (their lengths may differ).
    pub fn eql(a: *const Bitset, b: *const Bitset) bool {
        const shared = @min(a.words.items.len, b.words.items.len);
        if (!std.mem.eql(u64, a.words.items[0..shared], b.words.items[0..shared])) return false;
        for (a.words.items[shared..]) |word| if (word != 0) return false;
        for (b.words.items[shared..]) |word| if (word != 0) return false;
        return true;
    }

    pub fn iterator(self: *const Bitset) Iterator {
        const words = self.words.items;
        return .{ .words = words, .word_index = 0, .word = if (words.len > 0) words[0] else 0 };
    }

    /// Unsets the bits of the last word at or above bit_count.
    fn maskTail(self: *Bitset, bit_count: u64) void {
        const words = self.words.items;
        assert(words.len == wordsFor(bit_count));
        const used: u6 = @intCast(bit_count % 64);
        if (used == 0 or words.len == 0) return;
        const last = (bit_count - 1) / 64;
        words[last] &= (@as(u64, 1) << used) - 1;
    }

    fn maskOf(bit: u32) u64 {
        return @as(u64, 1) << @intCast(bit % 64);
    }
};

/// The set bits in ascending order. The bitset must not change while an iterator is live.
pub const Iterator = struct {
    words: []const u64,
    word_index: usize,
    /// The bits of words[word_index] not yet returned.
    word: u64,

    pub fn next(self: *Iterator) ?u32 {
        // Each pass either returns a bit or moves to the next word: bounded by the word count.
        while (self.word == 0) {
            self.word_index += 1;
            if (self.word_index >= self.words.len) return null;
            self.word = self.words[self.word_index];
        }
        const bit_in_word: u32 = @ctz(self.word);
        self.word &= self.word - 1;
        const bit = @as(u32, @intCast(self.word_index)) * 64 + bit_in_word;
        assert(self.words[self.word_index] & (@as(u64, 1) << @intCast(bit_in_word)) != 0);
        return bit;
    }
};

const testing = std.testing;

test "bitset: set, unset, count, iterate" {
    const gpa = testing.allocator;
    var bits: Bitset = .{};
    defer bits.deinit(gpa);
    try testing.expect(!bits.isSet(0));
    try testing.expect(!bits.isSet(1 << 30));
    try bits.ensure(gpa, 130);
    try testing.expectEqual(@as(u64, 192), bits.bitCapacity());
    for ([_]u32{ 0, 63, 64, 129, 5 }) |bit| bits.set(bit);
    try testing.expectEqual(@as(u64, 5), bits.count());
    bits.unset(63);
    try testing.expect(!bits.isSet(63));
    try testing.expect(bits.isSet(64));
    var it = bits.iterator();
    const want = [_]u32{ 0, 5, 64, 129 };
    for (want) |bit| try testing.expectEqual(@as(?u32, bit), it.next());
    try testing.expectEqual(@as(?u32, null), it.next());
    var none: Bitset = .{};
    var it_none = none.iterator();
    try testing.expectEqual(@as(?u32, null), it_none.next());
}

test "bitset: and, or, not within a bit count mask the tail" {
    const gpa = testing.allocator;
    var a: Bitset = .{};
    defer a.deinit(gpa);
    var b: Bitset = .{};
    defer b.deinit(gpa);
    try a.resetAll(gpa, 70, true);
    try testing.expectEqual(@as(u64, 70), a.count());
    try testing.expect(!a.isSet(70));
    try b.ensure(gpa, 300);
    b.set(3);
    b.set(69);
    b.set(200);
    a.andWith(&b);
    try testing.expectEqual(@as(u64, 2), a.count());
    a.notWithin(70);
    try testing.expectEqual(@as(u64, 68), a.count());
    try testing.expect(!a.isSet(3));
    try testing.expect(!a.isSet(69));
    try a.resetAll(gpa, 70, false);
    a.orWithin(&b, 70);
    try testing.expectEqual(@as(u64, 2), a.count());
    try testing.expect(!a.isSet(200));
    var short: Bitset = .{};
    defer short.deinit(gpa);
    try a.resetAll(gpa, 200, true);
    a.andWith(&short);
    try testing.expectEqual(@as(u64, 0), a.count());
    try testing.expect(a.eql(&short));
    try a.resetAll(gpa, 0, true);
    try testing.expectEqual(@as(usize, 0), a.words.items.len);
}

test "bitset: word operations match a bool array" {
    const gpa = testing.allocator;
    var prng = std.Random.DefaultPrng.init(0x5eed);
    const random = prng.random();
    const n = 517;
    var a: Bitset = .{};
    defer a.deinit(gpa);
    var b: Bitset = .{};
    defer b.deinit(gpa);
    var model_a: [n]bool = undefined;
    var model_b: [n]bool = undefined;
    for (0..20) |_| {
        try a.resetAll(gpa, n, false);
        try b.resetAll(gpa, n, false);
        for (0..n) |i| {
            model_a[i] = random.boolean();
            model_b[i] = random.uintLessThan(u8, 4) == 0;
            if (model_a[i]) a.set(@intCast(i));
            if (model_b[i]) b.set(@intCast(i));
        }
        switch (random.uintLessThan(u8, 3)) {
            0 => {
                a.andWith(&b);
                for (&model_a, model_b) |*x, y| x.* = x.* and y;
            },
            1 => {
                a.orWithin(&b, n);
                for (&model_a, model_b) |*x, y| x.* = x.* or y;
            },
            else => {
                a.notWithin(n);
                for (&model_a) |*x| x.* = !x.*;
            },
        }
        var expected: u64 = 0;
        for (model_a, 0..) |x, i| {
            try testing.expectEqual(x, a.isSet(@intCast(i)));
            expected += @intFromBool(x);
        }
        try testing.expectEqual(expected, a.count());
    }
}

//! The centre of i8 storage (native/quantize.zig): given by the caller before the first add, or
//! trained as the mean of the first add call's vectors. It lives at the front of the exact-vector
//! file; the header's `flag_centre_set` says it is final. Codes are only comparable when they
//! share a centre, so it is fixed before the first code is written and never changes after.
const std = @import("std");
const layout = @import("layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const quantize = @import("quantize.zig");

/// Whether codes may be written: always outside i8 storage. A slot in use implies a final
/// centre too (the centre is set before the first slot is written), which keeps an index
/// whose header lost the flag from ever re-centring codes that exist.
pub fn ready(self: *Index) bool {
    if (self.layout.storage != .i8) return true;
    return self.centre_ready.load(.acquire) or self.slots_used.load(.acquire) > 0;
}

/// Trains the centre on `vectors` (`count` validated vectors) unless it is final. Called by
/// writers before they take the writers lock, which this takes exclusively.
pub fn ensure(self: *Index, vectors: []const f32, count: usize) Error!void {
    if (ready(self)) return;
    self.writers.lock(&self.counters.lock_contention);
    defer self.writers.unlock();
    if (ready(self)) return;
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const centre = generation.payload.centre();
    quantize.mean(vectors[0 .. count * centre.len], count, centre, self.metric == .cosine);
    finish(self);
}

/// Sets the centre the caller chose. Allowed until the first add; after it, only the same
/// centre is accepted (so reopening with the option that created the index works).
pub fn set(self: *Index, given: []const f32) Error!void {
    if (self.layout.storage != .i8) return error.InvalidArgument;
    if (!self.writable) return error.ReadOnly;
    if (given.len != self.layout.dimensions) return error.DimensionMismatch;
    for (given) |x| if (!std.math.isFinite(x)) return error.InvalidVector;
    self.writers.lock(&self.counters.lock_contention);
    defer self.writers.unlock();
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const centre = generation.payload.centre();
    if (ready(self)) {
        if (!std.mem.eql(f32, centre, given)) return error.Busy;
        return;
    }
    @memcpy(centre, given);
    finish(self);
}

/// Publishes a written centre: the header flag (so an open knows), then the in-memory flag.
/// The caller holds the writers lock exclusively.
fn finish(self: *Index) void {
    const contention = &self.counters.lock_contention;
    if (self.persistent) self.storage.markDirty(&self.dirty, contention);
    var header = self.storage.currentHeader(contention);
    header.flags |= layout.flag_centre_set;
    self.storage.writeHeader(header, contention);
    self.centre_ready.store(true, .release);
}

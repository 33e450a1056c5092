//! The centre of i8 storage (native/kernels/quantize.zig): given by the caller before the first
//! add, or trained as the mean of the first add call's vectors. It lives at the front of the
//! exact-vector file; the header's `flag_centre_set` says it is final. Codes are only comparable
//! when they share a centre, so it is fixed before the first code is written and never changes
//! after.
const std = @import("std");
const layout = @import("../storage/layout.zig");
const index_mod = @import("index.zig");
const Index = index_mod.Index;
const Error = index_mod.Error;
const quantize = @import("../kernels/quantize.zig");
const distance = @import("../kernels/distance.zig");
const rabitq = @import("../kernels/rabitq.zig");

/// Whether codes may be written (`Index.centreReady`).
pub fn ready(self: *Index) bool {
    return self.centreReady();
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
    try finish(self);
}

/// Sets the centre the caller chose. Allowed until the first add; after it, only the same
/// centre is accepted (so reopening with the option that created the index works).
pub fn set(self: *Index, given: []const f32) Error!void {
    if (!self.layout.codedI8()) return error.InvalidArgument;
    if (given.len != self.layout.dimensions) return error.DimensionMismatch;
    // The bounds of a stored vector (but zero is a fine centre, under cosine too): the terms
    // computed from the centre must not overflow either.
    _ = try distance.boundedNorm(given);
    if (!self.writable) {
        // A read-only open may name the centre it expects; it cannot set one.
        if (!ready(self)) return error.ReadOnly;
        if (!sameAs(self, given)) return error.Busy;
        return;
    }
    self.writers.lock(&self.counters.lock_contention);
    defer self.writers.unlock();
    if (ready(self)) {
        if (!sameAs(self, given)) return error.Busy;
        return;
    }
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    @memcpy(generation.payload.centre(), given);
    try finish(self);
}

/// Copies the centre into `out` (zeros until it is set or trained). Waits for a first add that
/// is training it (that holds the writers lock exclusively).
pub fn copy(self: *Index, out: []f32) Error!void {
    if (!self.layout.codedI8()) return error.InvalidArgument;
    if (out.len != self.layout.dimensions) return error.DimensionMismatch;
    self.writers.lockShared(&self.counters.lock_contention);
    defer self.writers.unlockShared();
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    const centre = generation.payload.centre();
    std.debug.assert(centre.len == out.len);
    @memcpy(out, centre);
}

fn sameAs(self: *Index, given: []const f32) bool {
    const generation = self.storage.pin();
    defer self.storage.unpin(generation);
    return std.mem.eql(
        u8,
        std.mem.sliceAsBytes(generation.payload.centre()),
        std.mem.sliceAsBytes(given),
    );
}

/// Publishes a written centre: the header flag (so an open knows), then the in-memory flag.
/// A persistent index syncs both before any code is taken around the centre: the centre is not
/// in the WAL, so a power loss must not lose it while codes built on it survive. Once per index.
/// The caller holds the writers lock exclusively.
fn finish(self: *Index) Error!void {
    const contention = &self.counters.lock_contention;
    if (self.persistent) self.storage.markDirty(&self.dirty, contention);
    if (self.layout.storage == .rabitq) {
        // What the codes are taken around: the centre in the rotated space (kernels/rabitq.zig).
        const generation = self.storage.pin();
        defer self.storage.unpin(generation);
        const regions = generation.payload;
        rabitq.rotateVector(regions.centre(), regions.signs(), regions.rotatedCentre());
    }
    var header = self.storage.currentHeader(contention);
    header.flags |= layout.flag_centre_set;
    self.storage.writeHeader(header, contention);
    if (self.persistent) self.storage.sync() catch return error.Io;
    self.centre_ready.store(true, .release);
}

//! Folder records/: string ids, metadata and filters (issue #11; the byte formats are
//! docs/records.md). schema.zig (which fields are indexed, and as what), payload.zig (a slot's
//! id, metadata and terms, validated), bitset.zig (sets of slots), fields.zig (the in-memory
//! index of field values), filter.zig (filter programs: parse, materialize to a bitset over the
//! fields index, evaluate on one record), store.zig (the payload versions of every slot).
//! May import: storage/ (store.zig keeps `path.records` through storage/os.zig), sync/,
//! kernels/ and abi.zig; never hnsw/ or above (tidy.zig checks this). The other modules import
//! only std and each other.
pub const schema = @import("schema.zig");
pub const payload = @import("payload.zig");
pub const bitset = @import("bitset.zig");
pub const fields = @import("fields.zig");
pub const filter = @import("filter.zig");
pub const store = @import("store.zig");

pub const Kind = schema.Kind;
pub const Schema = schema.Schema;
pub const Parsed = payload.Parsed;
pub const Term = payload.Term;
pub const Bitset = bitset.Bitset;
pub const Fields = fields.Fields;
pub const Program = filter.Program;

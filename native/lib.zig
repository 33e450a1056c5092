//! The shared library's root: it exports every function of the FFI table in ffi/exports.zig.
const ffi = @import("ffi/exports.zig");

comptime {
    for (@typeInfo(ffi.exports).@"struct".decls) |decl| {
        @export(&@field(ffi.exports, decl.name), .{ .name = decl.name });
    }
}

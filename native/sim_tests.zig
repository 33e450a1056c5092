//! The interleaving checker's entry in native/: tests.zig imports it, and a scratch build can
//! use it as its root to run only the checker. It lives in native/ rather than native/sim/ so
//! that sim/ may import ../epoch.zig and ../entry.zig from inside the module root.
test {
    _ = @import("sim/root.zig");
}

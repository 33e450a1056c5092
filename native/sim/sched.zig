//! A deterministic scheduler for loom-style interleaving checks of the real concurrent code.
//!
//! Each simulated thread is a real OS thread, but only the one holding the baton runs. Every
//! operation of the simulated sync layer (atomic.zig) first calls `point`, which hands the baton to
//! the thread the schedule picks next. A schedule is the list of choices made at those points, so
//! replaying the list replays the run exactly, while the code under test (native/storage/epoch.zig,
//! native/hnsw/entry.zig) runs unmodified. Only one thread runs at a time, so every atomic
//! operation is sequentially consistent here: the checker finds interleaving bugs, not weak-memory
//! reorderings (ThreadSanitizer and the stress tests cover those).
//!
//! explore.zig drives whole searches over schedules; this file runs one schedule.
const std = @import("std");
const assert = std.debug.assert;

pub const threads_max = 4;
pub const choices_max = 1024;
const trace_max = 512;
const message_max = 256;

/// The baton value while the main thread (setup and final checks) owns the scenario.
const baton_main: u8 = 0xff;
/// The main thread's gate, after the simulated threads' gates.
const gate_main = threads_max;

pub const Point = enum { op, spin };

pub const OpKind = enum(u8) {
    load,
    store,
    fetch_add,
    fetch_sub,
    fetch_or,
    fetch_and,
    swap,
    cmpxchg_ok,
    cmpxchg_fail,
    spin,
};

pub const TraceEntry = struct {
    thread: u8,
    kind: OpKind,
    address: usize,
    /// The value loaded, stored, or seen by the operation (a pointer as its address).
    value: u64,
};

const Choice = struct { taken: u8, count: u8 };

/// The state of one schedule. Fields are touched only by the thread holding the baton, and the
/// baton moves through a gate's release store and acquire load, so every access is ordered.
pub const Run = struct {
    name: []const u8,
    thread_count: u8,
    running: u8 = baton_main,
    started: [threads_max]bool = @splat(false),
    finished: [threads_max]bool = @splat(false),
    /// Choices replayed before fresh ones are made: DFS prefixes and user replays.
    prefix: []const u8,
    /// Fresh choices are random when set, otherwise the first option (keep the current thread).
    prng: ?std.Random.DefaultPrng,
    seed: ?u64,
    preemptions_max: ?u32,
    preemptions: u32 = 0,
    steps: u32 = 0,
    steps_max: u32,
    choices: [choices_max]Choice = undefined,
    choice_count: u32 = 0,
    failure_buf: [message_max]u8 = undefined,
    failure_len: u32 = 0,
    /// The trace length when the first failure was recorded, to mark it in the printed trace.
    failure_at: u32 = 0,
    tracing: bool,
    trace: [trace_max]TraceEntry = undefined,
    trace_count: u32 = 0,
    scenario: *anyopaque = undefined,
    body: *const fn (*anyopaque, u8) void = undefined,
    invariant: ?*const fn (*anyopaque) void = null,
    in_invariant: bool = false,

    pub fn failed(run: *const Run) bool {
        return run.failure_len > 0;
    }

    pub fn failure(run: *const Run) []const u8 {
        return run.failure_buf[0..run.failure_len];
    }

    /// The choices this run made, as indices: the text of a replayable schedule.
    pub fn takenChoices(run: *const Run, buf: *[choices_max]u8) []const u8 {
        for (run.choices[0..run.choice_count], 0..) |choice, i| buf[i] = choice.taken;
        return buf[0..run.choice_count];
    }

    /// The prefix of the next schedule in depth-first order, or null when none is left.
    pub fn nextPrefix(run: *const Run, buf: *[choices_max]u8) ?[]const u8 {
        var i = run.choice_count;
        while (i > 0) {
            i -= 1;
            const choice = run.choices[i];
            if (choice.taken + 1 < choice.count) {
                for (run.choices[0..i], 0..) |earlier, j| buf[j] = earlier.taken;
                buf[i] = choice.taken + 1;
                return buf[0 .. i + 1];
            }
        }
        return null;
    }

    /// Picks the thread that runs next; `me` is the thread giving up the baton (null: main).
    /// Options are ordered so that choice 0 keeps the current thread running (fewest context
    /// switches first), except at a spin, where the spinning thread is offered last.
    fn choose(run: *Run, me: ?u8, spinning: bool) u8 {
        var options: [threads_max]u8 = undefined;
        var count: u8 = 0;
        const me_enabled = if (me) |index| !run.finished[index] else false;
        if (me_enabled and !spinning) {
            options[count] = me.?;
            count += 1;
        }
        for (0..run.thread_count) |i| {
            const index: u8 = @intCast(i);
            if (run.finished[index] or index == me) continue;
            options[count] = index;
            count += 1;
        }
        if (me_enabled and spinning) {
            options[count] = me.?;
            count += 1;
        }
        if (count == 0) return baton_main;
        const preemptable = me_enabled and !spinning;
        if (preemptable) {
            if (run.preemptions_max) |bound| {
                if (run.preemptions >= bound) count = 1;
            }
        }
        if (count == 1) return options[0];
        const taken = run.decide(count);
        if (preemptable and taken != 0) run.preemptions += 1;
        return options[taken];
    }

    fn decide(run: *Run, count: u8) u8 {
        assert(count >= 2);
        const i = run.choice_count;
        if (i == choices_max) @panic("sim: too many choice points in one schedule");
        var taken: u8 = 0;
        if (i < run.prefix.len) {
            taken = run.prefix[i];
            if (taken >= count) {
                run.fail(
                    "replayed schedule diverged at choice {d}: {d} of {d} options",
                    .{ i, taken, count },
                );
                taken = 0;
            }
        } else if (run.prng) |*prng| {
            taken = prng.random().uintLessThan(u8, count);
        }
        run.choices[i] = .{ .taken = taken, .count = count };
        run.choice_count += 1;
        return taken;
    }

    fn checkInvariant(run: *Run) void {
        const invariant = run.invariant orelse return;
        run.in_invariant = true;
        defer run.in_invariant = false;
        invariant(run.scenario);
    }

    pub fn fail(run: *Run, comptime fmt: []const u8, args: anytype) void {
        // The first failure is the cause; later ones are usually its consequences.
        if (run.failed()) return;
        const text = std.fmt.bufPrint(&run.failure_buf, fmt, args) catch |err| switch (err) {
            error.NoSpaceLeft => run.failure_buf[0..],
        };
        run.failure_len = @intCast(text.len);
        run.failure_at = run.trace_count;
    }
};

/// The simulated threads of one search: OS threads that live across its schedules (spawning
/// per schedule would cost more than the schedule), each parked on its own gate, a futex word,
/// so a hand-over wakes exactly the thread that runs next.
pub const Machine = struct {
    /// gates[i] is 1 while thread i holds the baton; the last gate is the main thread's.
    gates: [threads_max + 1]std.atomic.Value(u32) = [_]std.atomic.Value(u32){.init(
        0,
    )} ** (threads_max + 1),
    threads: [threads_max]std.Thread = undefined,
    spawned: u8 = 0,
    exiting: bool = false,
    run: Run,

    /// Spawns the simulated threads; they park until a schedule hands them the baton.
    pub fn start(machine: *Machine, thread_count: u8) !void {
        assert(machine.spawned == 0);
        assert(thread_count >= 1 and thread_count <= threads_max);
        errdefer machine.stop();
        while (machine.spawned < thread_count) : (machine.spawned += 1) {
            const config: std.Thread.SpawnConfig = .{ .stack_size = 1 << 20 };
            const index = machine.spawned;
            machine.threads[index] = try std.Thread.spawn(config, worker, .{ machine, index });
        }
    }

    pub fn stop(machine: *Machine) void {
        machine.exiting = true;
        for (0..machine.spawned) |index| machine.open(@intCast(index));
        for (machine.threads[0..machine.spawned]) |thread| thread.join();
        machine.spawned = 0;
    }

    fn open(machine: *Machine, next: u8) void {
        const gate = &machine.gates[if (next == baton_main) gate_main else next];
        gate.store(1, .release);
        std.Thread.Futex.wake(gate, 1);
    }

    fn wait(machine: *Machine, gate_index: usize) void {
        const gate = &machine.gates[gate_index];
        while (gate.load(.acquire) == 0) std.Thread.Futex.wait(gate, 0);
    }

    /// Gives the baton to `next` and parks until it comes back.
    fn handTo(machine: *Machine, me: u8, next: u8) void {
        machine.run.running = next;
        if (next == me) return;
        machine.gates[me].store(0, .monotonic);
        machine.open(next);
        machine.wait(me);
    }

    fn worker(machine: *Machine, index: u8) void {
        thread_index = index;
        while (true) {
            machine.wait(index);
            if (machine.exiting) return;
            const run = &machine.run;
            run.body(run.scenario, index);
            run.checkInvariant();
            run.finished[index] = true;
            const next = run.choose(index, false);
            run.running = next;
            machine.gates[index].store(0, .monotonic);
            machine.open(next);
        }
    }
};

/// The search in progress; tests run one at a time, so a single global suffices.
var active: ?*Machine = null;
/// Which simulated thread this OS thread is; null on the main thread, whose setup and final
/// checks use the simulated atomics without scheduling.
threadlocal var thread_index: ?u8 = null;

pub fn current() ?*Run {
    const machine = active orelse return null;
    return &machine.run;
}

/// A scheduling point: called by the sync layer before every operation.
pub fn point(kind: Point) void {
    const me = thread_index orelse return;
    const machine = active.?;
    const run = &machine.run;
    // An invariant hook runs on a simulated thread but must not reschedule itself.
    if (run.in_invariant) return;
    run.steps += 1;
    if (run.steps > run.steps_max) @panic(
        "sim: step bound exceeded (a livelock or an unbounded loop)",
    );
    run.checkInvariant();
    // The choice that handed a thread its first baton already chose its first operation;
    // choosing again here would count the same interleaving twice.
    if (!run.started[me]) {
        run.started[me] = true;
        return;
    }
    machine.handTo(me, run.choose(me, kind == .spin));
}

/// Records a finished operation in the trace when the run is being traced.
pub fn note(kind: OpKind, address: usize, value: u64) void {
    const me = thread_index orelse return;
    const run = &active.?.run;
    if (!run.tracing or run.in_invariant or run.trace_count == trace_max) return;
    run.trace[run.trace_count] = .{
        .thread = me,
        .kind = kind,
        .address = address,
        .value = value,
    };
    run.trace_count += 1;
}

/// Records an invariant violation; the run continues so that its end state stays consistent.
pub fn fail(comptime fmt: []const u8, args: anytype) void {
    active.?.run.fail(fmt, args);
}

fn Erased(comptime Scenario: type) type {
    return struct {
        fn body(erased: *anyopaque, index: u8) void {
            const scenario: *Scenario = @ptrCast(@alignCast(erased));
            scenario.thread(index);
        }

        fn invariant(erased: *anyopaque) void {
            const scenario: *Scenario = @ptrCast(@alignCast(erased));
            scenario.invariant();
        }
    };
}

/// Runs one schedule of `Scenario` on `machine`, whose `run` the caller has reset, from a
/// fresh scenario to its final checks. With `print_trace` the trace is printed while the
/// scenario is still alive, so that addresses can be named.
pub fn runOnce(
    comptime Scenario: type,
    gpa: std.mem.Allocator,
    machine: *Machine,
    print_trace: bool,
) !void {
    assert(active == null);
    assert(machine.spawned == Scenario.thread_count);
    active = machine;
    defer active = null;
    const run = &machine.run;
    var scenario: Scenario = undefined;
    try scenario.init(gpa);
    defer scenario.deinit(gpa);
    run.scenario = &scenario;
    run.body = Erased(Scenario).body;
    if (@hasDecl(Scenario, "invariant")) run.invariant = Erased(Scenario).invariant;

    machine.gates[gate_main].store(0, .monotonic);
    const first = run.choose(null, false);
    run.running = first;
    machine.open(first);
    machine.wait(gate_main);
    assert(run.running == baton_main);
    for (run.finished[0..Scenario.thread_count]) |finished| assert(finished);
    scenario.check();
    if (print_trace) printTrace(Scenario, &scenario, run);
}

fn printTrace(comptime Scenario: type, scenario: *Scenario, run: *const Run) void {
    var choices_buf: [choices_max]u8 = undefined;
    var text_buf: [choices_max * 2]u8 = undefined;
    const schedule = formatSchedule(&text_buf, run.takenChoices(&choices_buf));
    std.debug.print("sim: trace of {s} (schedule {s}):\n", .{ run.name, schedule });
    for (run.trace[0..run.trace_count], 0..) |entry, i| {
        if (run.failed() and i == run.failure_at) std.debug.print("  !! {s}\n", .{run.failure()});
        var name_buf: [64]u8 = undefined;
        var value_buf: [64]u8 = undefined;
        const name = describe(Scenario, scenario, entry.address, &name_buf);
        const value = scenario.formatValue(entry.address, entry.value, &value_buf);
        std.debug.print(
            "  {d:>3} t{d} {s} {s} {s}\n",
            .{ i, entry.thread, @tagName(entry.kind), name, value },
        );
    }
    if (run.failed() and run.failure_at == run.trace_count) std.debug.print(
        "  !! {s}\n",
        .{run.failure()},
    );
    if (run.trace_count == trace_max) std.debug.print("  (trace truncated)\n", .{});
}

fn describe(comptime Scenario: type, scenario: *Scenario, address: usize, buf: []u8) []const u8 {
    if (address == 0) return "-";
    return scenario.label(address, buf) orelse
        std.fmt.bufPrint(buf, "0x{x}", .{address}) catch unreachable;
}

/// Formats choices as "0,1,1,0", the form `parseSchedule` and QUIVER_SIM_REPLAY accept.
pub fn formatSchedule(buf: *[choices_max * 2]u8, choices: []const u8) []const u8 {
    assert(choices.len <= choices_max);
    var len: usize = 0;
    for (choices, 0..) |taken, i| {
        assert(taken < 10);
        if (i > 0) {
            buf[len] = ',';
            len += 1;
        }
        buf[len] = '0' + taken;
        len += 1;
    }
    return buf[0..len];
}

pub fn parseSchedule(buf: *[choices_max]u8, text: []const u8) error{InvalidSchedule}![]const u8 {
    var len: usize = 0;
    var it = std.mem.tokenizeScalar(u8, text, ',');
    while (it.next()) |token| {
        if (len == choices_max) return error.InvalidSchedule;
        buf[len] = std.fmt.parseInt(u8, token, 10) catch return error.InvalidSchedule;
        if (buf[len] >= threads_max) return error.InvalidSchedule;
        len += 1;
    }
    return buf[0..len];
}

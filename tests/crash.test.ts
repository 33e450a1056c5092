/**
 * Crash consistency: a child process (fixtures/crash_child.ts) runs a seeded stream of adds,
 * upserts, removes, syncs, checkpoints and close+reopens against a persisted index and
 * acknowledges each call after it returns; this spec kills it with SIGKILL at a random moment,
 * reopens the index (the open recovers from the WAL) and checks that every acknowledged
 * operation is there exactly: the key set, every vector bit for bit, the size, the integrity
 * walk. Only the one operation in flight at the kill may or may not have applied; for its key
 * both outcomes are allowed.
 *
 * One index is carried across rounds (a fresh one every `roundsPerIndex` kills, to bound the
 * cost of a soak): each round starts from files that were themselves recovered, so recovery of
 * recovered state is tested too. About a third of the rounds skip the check, so that the next
 * child's open is the one that replays the log, and some kills are aimed at that open.
 *
 * Seed: printed; QUIVER_SEED=<n> replays the same op stream and kill plan (kill timing is real
 * time, so a replay is close, not exact). QUIVER_SOAK=1 runs 3000 kills (QUIVER_KILLS=<n> sets
 * it); QUIVER_KEEP=1 keeps the files (and each round's starting state) for diagnosis.
 *
 * A third spec builds, exactly, each state a kill can leave `publish` in (a child adds and dies,
 * then the metadata is set back to what it was between publish's stores) and checks recovery.
 *
 * Registered under both runtimes: the child runs under the runtime of the test, and Deno's FFI
 * adapter and process handling are different code from Bun's.
 */
import { BusyError, Index, type Storage } from "../mod.ts";
import { assert, assertThrows, envFlag, killChildren, runtime, seedFromEnv, spawnRuntime, test } from "./harness.ts";
import {
  copyFile,
  activeHeaderSlot,
  exists,
  fileSize,
  headerValid,
  headerValue,
  listDir,
  loadFormat,
  makeTempDir,
  readBytes,
  readField,
  removeDir,
  removeFile,
  rng,
  sameVector,
  seededVector,
  indexFiles,
  writeBytes,
  writeField,
} from "./fixtures/util.ts";

const soak = envFlag("QUIVER_SOAK") === "1";
const kills = Number(envFlag("QUIVER_KILLS") ?? (soak ? 3000 : 300));
const keep = envFlag("QUIVER_KEEP") === "1";
const child = new URL("./fixtures/crash_child.ts", import.meta.url).pathname;

type Policy = "acks" | "time" | "opening" | "rewrite" | "after-rewrite";

/** What the index may hold for a key: op indices whose vector it may have, and/or -1 (absent). */
type Allowed = Set<number>;

/** Per key: what it may hold, and the outcome of an unacknowledged op on it (for the tally). */
interface Model {
  allowed: Map<bigint, Allowed>;
  inFlight: Map<bigint, number>;
}

interface Totals {
  kills: number;
  acked: number;
  checks: number;
  inFlightApplied: number;
  inFlightNotApplied: number;
  killsBeforeOpen: number;
  killsBeforeOpenWithLog: number;
  killsInRewrite: number;
  selfHits: number;
  selfProbes: number;
  misses: string[];
  maxKeys: number;
}

interface Scenario {
  name: string;
  dimensions: number;
  /** Op mix of the child: "mixed", or "rewrites" (upserts and checkpoints only). */
  mode: "mixed" | "rewrites";
  kills: number;
  roundsPerIndex: number;
  /** Probability that a round is followed by a check (else the next child recovers). */
  checkRate: number;
  /** Keys 1..n with the vectors of ops 0..n-1, added by this process before the first round. */
  preload: number;
  policy: (plan: () => number) => Policy;
  /** Upper bound of the random spin between the `begin` line of the targeted op and the kill. */
  spinMs: number;
}

const mixed: Scenario = {
  name: "mixed",
  dimensions: 8,
  mode: "mixed",
  kills,
  // 75: the default 300 kills then run one index of each storage kind (see `storages`).
  roundsPerIndex: 75,
  checkRate: 0.65,
  preload: 0,
  // Kill after a number of acks, after a delay once open, right around the open (recovery), or
  // as a checkpoint, close+reopen or compaction begins (the windows where files are rewritten).
  policy: (plan) => {
    const choice = plan();
    return choice < 0.3 ? "acks" : choice < 0.6 ? "time" : choice < 0.75 ? "opening" : choice < 0.9 ? "rewrite" : "after-rewrite";
  },
  spinMs: 0.2,
};

/**
 * Checkpoints of a larger index (they hash every region and msync) last long enough for kills to
 * be aimed inside them: a kill there must leave files that open, with every acknowledged write.
 */
const checkpoints: Scenario = {
  name: "checkpoints",
  dimensions: 256,
  mode: "rewrites",
  kills: soak ? 400 : 30,
  roundsPerIndex: 1_000_000,
  checkRate: 1,
  preload: 4000,
  // Inside a checkpoint, or inside the first write after one (whose first store to each page
  // that msync just cleaned takes a fault: a kernel entry inside publishing).
  policy: (plan) => (plan() < 0.5 ? "rewrite" : "after-rewrite"),
  spinMs: 0.3,
};

test(`crash: SIGKILL at random moments loses no acknowledged write (${mixed.kills} kills)`, () => runScenario(mixed), soak ? 6 * 3600_000 : 170_000);

test(`crash: SIGKILL inside checkpoints of a large index leaves it openable and complete (${checkpoints.kills} kills)`, () => runScenario(checkpoints), soak ? 3600_000 : 120_000);

async function runScenario(scenario: Scenario): Promise<void> {
  const seed = seedFromEnv(Math.floor(Math.random() * 2 ** 31));
  console.log(`crash/${scenario.name}: seed ${seed} (replay with QUIVER_SEED=${seed}), ${scenario.kills} kills, ${runtime}`);
  const plan = rng(seed);
  const dir = makeTempDir("quiver-crash-");
  const started = performance.now();
  const totals: Totals = {
    kills: 0,
    acked: 0,
    checks: 0,
    inFlightApplied: 0,
    inFlightNotApplied: 0,
    killsBeforeOpen: 0,
    killsBeforeOpenWithLog: 0,
    killsInRewrite: 0,
    selfHits: 0,
    selfProbes: 0,
    misses: [],
    maxKeys: 0,
  };
  try {
    let model: Model = { allowed: new Map(), inFlight: new Map() };
    let path = "";
    let nextOp = 0;
    let logPending = false;
    const history: string[] = [];
    for (let round = 0; round < scenario.kills; round++) {
      if (round % scenario.roundsPerIndex === 0) {
        path = `${dir}/index-${round}`;
        model = { allowed: new Map(), inFlight: new Map() };
        // The indexes of the mixed scenario rotate through the storage kinds.
        const storage = scenario.mode === "mixed" ? storages[(round / scenario.roundsPerIndex) % storages.length] : "f32";
        nextOp = preload(path, seed, scenario, model, storage);
        logPending = false;
      }
      // The files as this round's child finds them, kept for diagnosis.
      if (keep) for (const s of indexFiles()) if (exists(path + s)) copyFile(path + s, `${dir}/before${s}`);
      const result = await runRound({ path, seed, nextOp, model, plan, round, scenario });
      history.push(result.summary);
      nextOp = result.nextOp;
      totals.kills++;
      totals.acked += result.acked;
      if (result.killedInRewrite) totals.killsInRewrite++;
      if (!result.opened) {
        totals.killsBeforeOpen++;
        if (logPending) totals.killsBeforeOpenWithLog++;
      }
      const last = round === scenario.kills - 1 || (round + 1) % scenario.roundsPerIndex === 0;
      if (last || plan() < scenario.checkRate) {
        try {
          checkIndex(path, seed, scenario.dimensions, model, rng(seed + round), totals, `seed ${seed}, round ${round}`);
        } catch (error) {
          (error as Error).message += `\n${describeFiles(path)}\nrounds since the index's last check:\n  ${history.join("\n  ")}`;
          throw error;
        }
        history.length = 0;
        logPending = false;
      } else {
        logPending = true;
      }
    }
  } finally {
    killChildren();
    if (keep) console.log(`crash/${scenario.name}: files kept in ${dir} ("before*" is the last round's starting state)`);
    else removeDir(dir);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `crash/${scenario.name}: ${totals.kills} kills in ${seconds.toFixed(1)} s (${runtime}); ${totals.acked} acknowledged ops; ` +
      `${totals.checks} checks; in-flight op applied ${totals.inFlightApplied}, not applied ${totals.inFlightNotApplied}; ` +
      `${totals.killsBeforeOpen} kills before the child's open returned (${totals.killsBeforeOpenWithLog} with a log to replay); ` +
      `${totals.killsInRewrite} kills during a checkpoint/reopen; self-search ${totals.selfHits}/${totals.selfProbes}; ` +
      `up to ${totals.maxKeys} keys`,
  );
  assert(totals.selfHits >= 0.95 * totals.selfProbes, `self-search found ${totals.selfHits}/${totals.selfProbes}; misses: ${totals.misses.join("; ")}`);
}

/**
 * f32; f16 (walk copies beside an exact-vector file); i8 (codes around a centre trained by the
 * child's first add; exact vectors and the centre in that file); rabitq (i8 codes of rotated
 * vectors, and each record's edge codes, which a kill can leave behind its list: a dirty open
 * rewrites them, and the verify after every recovery checks them).
 */
const storages: readonly Storage[] = ["f32", "f16", "i8", "rabitq"];

/** Creates the index with the scenario's preloaded keys; returns the next op index. */
function preload(path: string, seed: number, scenario: Scenario, model: Model, storage: Storage): number {
  const { dimensions } = scenario;
  const index = Index.open(path, { dimensions, m: 8, efConstruction: 64, storage });
  try {
    if (scenario.preload === 0) return 0;
    const keys = new BigUint64Array(scenario.preload);
    const vectors = new Float32Array(scenario.preload * dimensions);
    for (let i = 0; i < scenario.preload; i++) {
      keys[i] = BigInt(i) + 1n; // the child's rule: op i adds key i + 1
      vectors.set(seededVector(seed, i, dimensions), i * dimensions);
      model.allowed.set(keys[i], new Set([i]));
    }
    index.add(keys, vectors, { threads: 2 });
    return scenario.preload;
  } finally {
    index.close();
  }
}

interface RoundInput {
  path: string;
  seed: number;
  nextOp: number;
  model: Model;
  plan: () => number;
  round: number;
  scenario: Scenario;
}

interface RoundResult {
  nextOp: number;
  acked: number;
  opened: boolean;
  killedInRewrite: boolean;
  /** What the round did, for the diagnosis of a later failure. */
  summary: string;
}

/** One child: spawn, kill per a seeded plan, fold its acknowledgements into the model. */
async function runRound(input: RoundInput): Promise<RoundResult> {
  const { path, seed, model, plan, round, scenario } = input;
  const policy = scenario.policy(plan);
  const targetAcks = Math.floor(plan() * 300);
  const delayMs = policy === "time" ? plan() * 25 : plan() * 4;
  const spinMs = plan() * scenario.spinMs;
  const args = [path, String(seed), String(input.nextOp), String(scenario.dimensions), "1000000", scenario.mode];
  const proc = spawnRuntime(child, args);
  let killed = false;
  const kill = () => {
    killed = true;
    proc.kill("SIGKILL");
  };
  const watchdog = setTimeout(kill, 20_000);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let nextOp = input.nextOp;
  let acked = 0;
  let opened = false;
  let done = false;
  let killedInRewrite = false;
  let rewriteOp = -1;
  let lastAckedRewrite = false;
  let pending: { op: number; kind: string; key: bigint | undefined } | undefined;
  const errors: string[] = [];
  for (;;) {
    const line = await proc.nextLine();
    if (line === null) break;
    const [tag, a, b, c] = line.split(" ");
    if (tag === "opening") {
      // Half of these kills are sent at once, to land inside the open (the WAL replay).
      if (policy === "opening") {
        if (delayMs < 2) kill();
        else timer = setTimeout(kill, delayMs - 2);
      }
    } else if (tag === "open") {
      opened = true;
      if (policy === "time") timer = setTimeout(kill, delayMs);
      if (policy === "acks" && targetAcks === 0) kill();
    } else if (tag === "begin") {
      pending = { op: Number(a), kind: b, key: c === "-" ? undefined : BigInt(c) };
      nextOp = Math.max(nextOp, pending.op + 1);
      const rewrite = b === "checkpoint" || b === "reopen" || b === "compact";
      const afterRewrite = policy === "after-rewrite" && lastAckedRewrite && (b === "add" || b === "upsert" || b === "remove");
      if (!killed && ((policy === "rewrite" && rewrite) || afterRewrite)) {
        // Spin a random fraction of a millisecond (timers are too coarse) so that kills spread
        // over the whole rewrite, not only its first microseconds.
        const until = performance.now() + spinMs;
        while (performance.now() < until) { /* spin */ }
        kill();
        killedInRewrite = rewrite;
        rewriteOp = pending.op;
      }
    } else if (tag === "ack") {
      assert(pending !== undefined && pending.op === Number(a), `round ${round}: ack ${a} without its begin`);
      if (pending.op === rewriteOp) killedInRewrite = false; // it finished before the signal landed
      lastAckedRewrite = pending.kind === "checkpoint" || pending.kind === "reopen" || pending.kind === "compact";
      apply(model, pending, true);
      pending = undefined;
      acked++;
      if (policy === "acks" && acked === targetAcks) kill();
      if ((policy === "rewrite" || policy === "after-rewrite") && acked === 400) kill(); // no rewrite came: end the round
    } else if (tag === "done") {
      done = true;
    } else {
      errors.push(line);
    }
  }
  clearTimeout(timer);
  clearTimeout(watchdog);
  const status = await proc.exited;
  const stderr = await proc.stderr;
  const context = `seed ${seed}, round ${round} (${policy}), exit ${JSON.stringify(status)}`;
  assert(errors.length === 0, `${context}: the child reported ${errors.join("; ")}\n${stderr}`);
  assert(status.signal === "SIGKILL" || (done && status.code === 0), `${context}: the child failed\n${stderr}`);
  assert(killed || done, `${context}: the child died without being killed\n${stderr}`);
  if (pending !== undefined) apply(model, pending, false);
  const inFlight = pending ? `${pending.kind} #${pending.op}` : "none";
  const summary = `round ${round}: ${policy}, ${acked} acks, opened ${opened}, killed during ${inFlight}, last acked rewrite ${lastAckedRewrite}`;
  return { nextOp, acked, opened, killedInRewrite, summary };
}

/** The index's files (and any others beside them) with sizes and both header copies' counters. */
function describeFiles(path: string): string {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const base = path.slice(path.lastIndexOf("/") + 1);
  const lines: string[] = [];
  for (const name of listDir(dir).filter((n) => n.startsWith(base)).sort()) lines.push(`  ${name}: ${fileSize(`${dir}/${name}`)} bytes`);
  if (exists(path)) {
    const data = readBytes(path);
    for (const slot of loadFormat().headerSlots) {
      const fields = ["header_seq", "clean", "capacity", "slots_used", "live", "seq", "storage", "flags"]
        .map((f) => `${f}=${loadFormat().header.fields[f] ? headerValue(data, f, slot) : "?"}`)
        .join(" ");
      lines.push(`  header at ${slot}: ${headerValid(data, slot) ? "valid" : "INVALID"} ${fields}`);
    }
  }
  return `files:\n${lines.join("\n")}`;
}

/** An acknowledged op fixes its key's state; the op in flight adds its outcome as a possibility. */
function apply(model: Model, op: { op: number; kind: string; key: bigint | undefined }, acked: boolean) {
  if (op.key === undefined || op.kind === "remove-missing") return;
  const outcome = op.kind === "remove" ? -1 : op.op;
  if (acked) {
    model.allowed.set(op.key, new Set([outcome]));
    model.inFlight.delete(op.key);
  } else {
    const allowed = new Set(model.allowed.get(op.key) ?? [-1]);
    allowed.add(outcome);
    model.allowed.set(op.key, allowed);
    model.inFlight.set(op.key, outcome);
  }
}

/** Reopens (and so recovers) the index and checks it against the model, key by key. */
function checkIndex(
  path: string,
  seed: number,
  dimensions: number,
  { allowed: model, inFlight }: Model,
  plan: () => number,
  totals: Totals,
  context: string,
) {
  totals.checks++;
  let opened: Index;
  try {
    opened = Index.open(path, { dimensions });
  } catch (error) {
    throw new Error(`${context}: the reopen after the kill failed: ${(error as Error).name}: ${(error as Error).message}`);
  }
  using index = opened;
  const report = index.verify();
  const json = JSON.stringify(report, (_k, v) => typeof v === "bigint" ? Number(v) : v);
  assert(report.ok, `${context}: verify failed after recovery: ${json}`);
  const stats = index.stats();
  if (stats.storage === 2 && Number(stats.slots_used) > 0) {
    // Codes exist, so their centre must have survived the kill as final and finite.
    assert(stats.centre_set === 1, `${context}: an i8 index with ${stats.slots_used} slots in use reopened with no centre`);
    assert(index.centre().every(Number.isFinite), `${context}: the i8 centre is not finite: ${index.centre()}`);
  }
  const keys = index.keys();
  const present = new Set(keys);
  assert(present.size === keys.length, `${context}: keys() lists ${keys.length - present.size} key(s) twice`);
  assert(index.size === keys.length, `${context}: size ${index.size} but keys() has ${keys.length}`);
  assert(Number(report.live) === keys.length, `${context}: verify counts ${report.live} live, keys() ${keys.length}`);
  totals.maxKeys = Math.max(totals.maxKeys, keys.length);
  for (const key of keys) assert(model.has(key), `${context}: key ${key} is present but was never acknowledged or in flight`);
  for (const [key, outcome] of inFlight) {
    const got = present.has(key) ? index.get(key) : undefined;
    const applied = outcome === -1 ? got === undefined : sameVector(got, seededVector(seed, outcome, dimensions));
    if (applied) totals.inFlightApplied++;
    else totals.inFlightNotApplied++;
  }
  inFlight.clear();
  const probes: bigint[] = [];
  for (const [key, allowed] of model) {
    if (!present.has(key)) {
      assert(allowed.has(-1), `${context}: acknowledged key ${key} is missing (expected op ${[...allowed]})`);
      model.delete(key);
      continue;
    }
    const stored = index.get(key);
    let match = -2;
    for (const op of allowed) {
      if (op >= 0 && sameVector(stored, seededVector(seed, op, dimensions))) match = op;
    }
    assert(match !== -2, `${context}: key ${key} holds the wrong vector (allowed ops ${[...allowed]}): ${stored}`);
    model.set(key, new Set([match]));
    if (plan() < 40 / Math.max(40, keys.length)) probes.push(key);
  }
  for (const key of probes) {
    const op = [...model.get(key)!][0];
    const found = index.search(seededVector(seed, op, dimensions), 1, { ef: 200 });
    totals.selfProbes++;
    if (found.keys[0] === key && found.distances[0] === 0) totals.selfHits++;
    else if (totals.misses.length < 8) {
      totals.misses.push(`${context}: key ${key} found ${found.keys[0]} at ${found.distances[0]} (${keys.length} keys, ${report.unreachable_live} unreachable)`);
    }
  }
}

/**
 * The states a kill can leave `publish` (native/index/write.zig) in, built exactly: a child
 * upserts key 7 and adds key 99 after a checkpoint and dies, then the metadata is set back to
 * what it was between publish's stores. Whatever instant the kill hit, the open must recover
 * every logged write: key 7 once with its new vector, key 99 present, 51 keys.
 */
test("crash: recovery handles every state a kill can leave an add or upsert in", async () => {
  const dimensions = 4;
  const seed = 21;
  const format = loadFormat();
  const meta = format.meta.fields;
  const unpublished = (1n << 64n) - 1n;
  const states: [string, (slots: { old7: number; new7: number; new99: number }, data: Uint8Array) => void][] = [
    ["after the last store (control)", () => {}],
    ["before publishing (slot still inserting)", (s, data) => {
      setMeta(data, s.new7, "state", 1n);
      setMeta(data, s.new7, "created_seq", unpublished);
      setMeta(data, s.old7, "deleted_seq", 0n);
    }],
    ["upsert: new slot ready, its sequence number not yet stored", (s, data) => {
      setMeta(data, s.new7, "created_seq", unpublished);
      setMeta(data, s.old7, "deleted_seq", 0n);
    }],
    ["upsert: new slot published, old slot not yet retired", (s, data) => setMeta(data, s.old7, "deleted_seq", 0n)],
    ["add: new slot ready, its sequence number not yet stored", (s, data) => setMeta(data, s.new99, "created_seq", unpublished)],
  ];
  function setMeta(data: Uint8Array, slot: number, field: string, value: bigint) {
    writeField(data, format.headerBytes + slot * format.meta.size + meta[field].offset, meta[field].width, value);
  }
  const dir = makeTempDir("quiver-crash-states-");
  const failures: string[] = [];
  try {
    for (const [k, [name, surgery]] of states.entries()) {
      const path = `${dir}/index-${k}`;
      const proc = spawnRuntime(new URL("./fixtures/upsert_and_die.ts", import.meta.url).pathname, [path, String(seed), String(dimensions)]);
      while ((await proc.nextLine()) !== null) { /* drain */ }
      const status = await proc.exited;
      assert(status.signal === "SIGKILL", `upsert_and_die.ts: ${JSON.stringify(status)}\n${await proc.stderr}`);
      const data = readBytes(path);
      const slotsOf = (key: bigint) => {
        const found: number[] = [];
        for (let slot = 0; (slot + 1) * format.meta.size + format.headerBytes <= data.length; slot++) {
          const at = format.headerBytes + slot * format.meta.size;
          if (data[at + meta.state.offset] !== 0 && readField(data, at + meta.key.offset, 8) === key) found.push(slot);
        }
        return found;
      };
      const sevens = slotsOf(7n);
      assert(sevens.length === 2 && slotsOf(99n).length === 1, `unexpected slots: key 7 in ${sevens}, key 99 in ${slotsOf(99n)}`);
      surgery({ old7: sevens[0], new7: sevens[1], new99: slotsOf(99n)[0] }, data);
      writeBytes(path, data);
      try {
        using index = Index.open(path, { dimensions });
        const keys = index.keys();
        const problems: string[] = [];
        if (new Set(keys).size !== keys.length) problems.push(`keys() lists ${keys.length - new Set(keys).size} key(s) twice`);
        if (index.size !== 51) problems.push(`size ${index.size}, expected 51`);
        if (!sameVector(index.get(7), seededVector(seed, 1000, dimensions))) problems.push(`key 7 holds ${index.get(7)}`);
        if (!sameVector(index.get(99), seededVector(seed, 1001, dimensions))) problems.push(`key 99 holds ${index.get(99)}`);
        if (!index.verify().ok) problems.push("verify failed");
        if (problems.length > 0) failures.push(`${name}: ${problems.join(", ")}`);
      } catch (error) {
        failures.push(`${name}: the open failed: ${(error as Error).name}: ${(error as Error).message}`);
      }
    }
  } finally {
    killChildren();
    removeDir(dir);
  }
  assert(failures.length === 0, `recovery failed for ${failures.length} crash state(s):\n  ${failures.join("\n  ")}`);
});

/**
 * Compaction swaps four files, which no single rename can do; native/storage/swap.zig makes it atomic
 * with a commit record. This builds, exactly, every state a kill can leave the swap in (the old
 * set and the compacted set are both real files, copied into each combination) and checks that
 * a read-only open and then a writable open see one whole index, the compacted one once the
 * commit record exists, the old one before, and that the writable open leaves no leftovers.
 */
test("crash: every state a kill can leave a compaction swap in opens as one whole index", () => {
  const dimensions = 8;
  const seed = 23;
  const files = indexFiles().slice(0, -1); // the WAL is empty across a compaction
  const renameOrder = [1, 2, 3, 0]; // native/storage/swap.zig: side files first, the data file last
  const dir = makeTempDir("quiver-swap-states-");
  const failures: string[] = [];
  try {
    const path = `${dir}/index`;
    const live = new Map<bigint, Float32Array>();
    {
      using index = Index.open(path, { dimensions, m: 8, efConstruction: 32 });
      for (let i = 0; i < 300; i++) {
        const vector = seededVector(seed, i, dimensions);
        index.add(BigInt(i), vector);
        live.set(BigInt(i), vector);
      }
      for (let i = 0; i < 300; i += 3) {
        index.remove(BigInt(i));
        live.delete(BigInt(i));
      }
    }
    const old = files.map((suffix) => readBytes(path + suffix));
    {
      using index = Index.open(path);
      index.compact();
    }
    const compacted = files.map((suffix) => readBytes(path + suffix));
    const slotsOf = (data: Uint8Array) => Number(headerValue(data, "slots_used", activeHeaderSlot(data) ?? 0));
    assert(slotsOf(old[0]) === 300 && slotsOf(compacted[0]) === live.size, "the fixtures are not what this spec expects");

    const states: { name: string; committed: boolean; renamed: number }[] = [
      { name: "build complete, not committed", committed: false, renamed: 0 },
      ...[0, 1, 2, 3, 4].map((renamed) => ({ name: `committed, ${renamed} of 4 renamed`, committed: true, renamed })),
    ];
    for (const state of states) {
      for (const suffix of [...files, ".wal", ".commit", ".building"]) removeFile(`${path}~compact${suffix}`);
      // Every build starts by marking its files as ours (native/storage/swap.zig step 1).
      writeBytes(`${path}~compact.building`, new Uint8Array(0));
      const renamed = new Set(renameOrder.slice(0, state.renamed));
      files.forEach((suffix, i) => {
        writeBytes(path + suffix, renamed.has(i) ? compacted[i] : old[i]);
        if (!renamed.has(i)) writeBytes(`${path}~compact${suffix}`, compacted[i]);
      });
      writeBytes(`${path}.wal`, new Uint8Array(0));
      if (state.committed) writeBytes(`${path}~compact.commit`, new Uint8Array(0));
      const expectSlots = state.committed ? live.size : 300;
      for (const readOnly of [true, false]) {
        const what = `${state.name}, ${readOnly ? "read-only" : "writable"} open`;
        try {
          using index = Index.open(path, { readOnly });
          const problems: string[] = [];
          const stats = index.stats();
          if (index.size !== live.size) problems.push(`size ${index.size}, expected ${live.size}`);
          if (Number(stats.slots_used) !== expectSlots) problems.push(`${stats.slots_used} slots, expected ${expectSlots} (the ${state.committed ? "old" : "compacted"} index)`);
          for (const [key, vector] of live) {
            if (!sameVector(index.get(key), vector)) {
              problems.push(`key ${key} holds ${index.get(key)}`);
              break;
            }
          }
          const probe = live.get(1n)!;
          if (index.search(probe, 1).keys[0] !== 1n) problems.push("a search for key 1's vector does not find it");
          if (!index.verify().ok) problems.push("verify failed");
          if (problems.length > 0) failures.push(`${what}: ${problems.join(", ")}`);
        } catch (error) {
          failures.push(`${what}: the open failed: ${(error as Error).name}: ${(error as Error).message}`);
        }
      }
      const left = [...files, ".wal", ".creating", ".commit", ".building"].filter((suffix) => exists(`${path}~compact${suffix}`));
      if (left.length > 0) failures.push(`${state.name}: the writable open left ${left.map((s) => `~compact${s}`).join(", ")}`);
    }
    // An index of the caller's that happens to be named `path~compact` is not a build of ours
    // (no marker): opening `path` leaves it alone, and compact() refuses rather than overwrite it.
    const sibling = `${path}~compact`;
    {
      using other = Index.open(sibling, { dimensions, m: 8, efConstruction: 32 });
      other.add(1n, live.get(1n)!);
    }
    {
      using index = Index.open(path);
      index.remove(2n);
      live.delete(2n);
      assertThrows(() => index.compact(), BusyError);
      if (index.size !== live.size) failures.push(`the refused compaction changed the size: ${index.size}`);
    }
    {
      using other = Index.open(sibling);
      if (other.size !== 1 || !sameVector(other.get(1n), live.get(1n))) failures.push("the foreign path~compact index was damaged");
    }
  } finally {
    removeDir(dir);
  }
  assert(failures.length === 0, `${failures.length} compaction swap state(s) went wrong:\n  ${failures.join("\n  ")}`);
});

/** The checker's canary: a lost, altered or invented write must each be caught. */
test("crash: the checker catches a lost, an altered and an invented write (canary)", async () => {
  const seed = 99;
  const dir = makeTempDir("quiver-crash-canary-");
  try {
    const path = `${dir}/index`;
    const model: Model = { allowed: new Map(), inFlight: new Map() };
    const scenario: Scenario = { ...mixed, kills: 1, policy: () => "acks" };
    preload(path, seed, scenario, model, "f32");
    const result = await runRound({ path, seed, nextOp: 0, model, plan: () => 0.5, round: 0, scenario });
    assert(result.acked >= 100, `only ${result.acked} acks`);
    const totals = { selfHits: 0, selfProbes: 0, misses: [], checks: 0, inFlightApplied: 0, inFlightNotApplied: 0, maxKeys: 0 } as unknown as Totals;
    checkIndex(path, seed, scenario.dimensions, model, rng(1), totals, "canary baseline");
    const present = [...model.allowed].filter(([, allowed]) => !allowed.has(-1));
    const [key, allowed] = present[0];
    const op = [...allowed][0];
    const copy = (): Model => ({ allowed: new Map([...model.allowed].map(([k, a]) => [k, new Set(a)])), inFlight: new Map() });
    const sabotage: [string, (index: Index) => void, (index: Index) => void][] = [
      ["is missing", (index) => index.remove(key), (index) => index.add(key, seededVector(seed, op, scenario.dimensions))],
      ["holds the wrong vector", (index) => index.add(key, seededVector(seed, op + 1, scenario.dimensions)), (index) => index.add(key, seededVector(seed, op, scenario.dimensions))],
      ["was never acknowledged", (index) => index.add(1n << 61n, seededVector(seed, 0, scenario.dimensions)), (index) => index.remove(1n << 61n)],
    ];
    for (const [expected, breakIt, repair] of sabotage) {
      const broken = Index.open(path);
      breakIt(broken);
      broken.close();
      let caught = "";
      try {
        checkIndex(path, seed, scenario.dimensions, copy(), rng(1), totals, "canary");
      } catch (error) {
        caught = (error as Error).message;
      }
      assert(caught.includes(expected), `the checker missed a write that ${expected}: ${caught || "no error"}`);
      const repaired = Index.open(path);
      repair(repaired);
      repaired.close();
    }
  } finally {
    killChildren();
    removeDir(dir);
  }
});

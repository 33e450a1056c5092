/**
 * Zero-copy views (src/view.ts): a view reads the stored vector in place, pins its mapping, goes
 * stale on a remap (then `array` throws StaleGuardError and a kept Float32Array reads
 * `undefined`, never freed memory), and is revoked by dispose and by closing the index.
 * Remapping many times while taking views keeps the mapped memory bounded.
 */
import { ClosedError, Index, type Metric, StaleGuardError, type VectorView } from "../mod.ts";
import { native } from "../src/runtime/loader.ts";
import { addressOf, assert, assertEquals, assertThrows, bitsOf, tempDir, test } from "./harness.ts";

const d = 16;

function vectorOf(key: number): Float32Array {
  const v = new Float32Array(d);
  for (let j = 0; j < d; j++) v[j] = Math.sin(key * 7.3 + j) * (j + 1) + (j === 0 ? 0.5 : 0);
  return v;
}

function filled(count: number, metric: Metric = "l2"): Index {
  const index = new Index({ dimensions: d, metric });
  const flat = new Float32Array(count * d);
  for (let i = 0; i < count; i++) flat.set(vectorOf(i), i * d);
  index.add(Array.from({ length: count }, (_, i) => i), flat);
  return index;
}

/** The stats that reading a view must not move (guards_live is checked separately). */
function shape(index: Index) {
  const s = index.stats();
  return [s.size, s.slots_used, s.capacity, s.epoch, s.remaps, s.mapped_bytes, s.mappings_live, s.seq];
}

function assertRevoked(kept: Float32Array, what: string): void {
  assertEquals(kept.length, 0, `${what}: a kept array still has its length`);
  assertEquals(kept[0], undefined, `${what}: a kept array still reads memory`);
  assertEquals(kept.byteLength, 0, what);
}

test("views: a view's array equals get(key), bit for bit, for l2 and cosine", () => {
  for (const metric of ["l2", "cosine"] as const) {
    using index = filled(40, metric);
    for (const key of [0, 1, 17, 39]) {
      using view = index.view(key);
      const got = index.get(key)!;
      assertEquals(view.array.length, d);
      assertEquals(bitsOf(view.array), bitsOf(got), `${metric} key ${key}`);
      if (metric === "l2") assertEquals(bitsOf(view.array), bitsOf(vectorOf(key)));
    }
    assertEquals(index.stats().guards_live, 0);
  }
});

test("views: a view is zero-copy (it reads the stored bytes in place) and taking one changes nothing", () => {
  using index = filled(40);
  const before = shape(index);
  const a = index.view(7);
  const b = index.view(7);
  const other = index.view(8);
  assertEquals(index.stats().guards_live, 3);
  // Two views of one key point at the same native bytes: nothing was copied.
  assertEquals(addressOf(a.array), addressOf(b.array));
  assert(addressOf(a.array) !== addressOf(other.array), "two keys share an address");
  // The array is cached: the same object every time.
  assert(a.array === a.array, "view.array is not cached");
  // Reading views changes nothing in the index.
  let sum = 0;
  for (let r = 0; r < 100; r++) for (const x of a.array) sum += x;
  assert(Number.isFinite(sum));
  assertEquals(shape(index), before);
  assertEquals(index.get(7), vectorOf(7));
  assertEquals(index.search(vectorOf(7), 1).keys, new BigUint64Array([7n]));
  for (const v of [a, b, other]) v[Symbol.dispose]();
  assertEquals(index.stats().guards_live, 0);
  assertEquals(shape(index), before);
  assertEquals(index.verify().ok, true);
});

test("views: index.remap() makes a view stale: array throws StaleGuardError, a kept array reads undefined", () => {
  using index = filled(40);
  const view = index.view(5);
  const kept = view.array;
  assertEquals(kept, vectorOf(5));
  const before = index.stats();
  index.remap();
  const after = index.stats();
  assertEquals(after.remaps, before.remaps + 1);
  assertEquals(after.epoch, before.epoch + 1);
  assertEquals(view.valid, false);
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD"); // and stays stale
  assertRevoked(kept, "after remap");
  // The stale view released its guard; disposing it later is a no-op.
  assertEquals(after.guards_live, 0);
  view[Symbol.dispose]();
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
  // A fresh view reads the same vector from the new mapping.
  using fresh = index.view(5);
  assertEquals(fresh.array, vectorOf(5));
  assertEquals(fresh.epoch, BigInt(after.epoch));
});

test("views: growth past capacity remaps and makes earlier views stale", () => {
  using index = new Index({ dimensions: d, capacity: 64 });
  for (let i = 0; i < 10; i++) index.add(i, vectorOf(i));
  const before = index.stats();
  assertEquals(before.capacity, 64);
  const view = index.view(3);
  const kept = view.array;
  assertEquals(kept, vectorOf(3));
  for (let i = 10; i < before.capacity + 1; i++) index.add(i, vectorOf(i));
  const after = index.stats();
  assert(after.capacity > before.capacity, `capacity ${after.capacity}`);
  assert(after.remaps > before.remaps, "growth did not remap");
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
  assertRevoked(kept, "after growth");
  assertEquals(after.guards_live, 0);
  assertEquals(after.mappings_live, 1);

  // The batch path and reserve() grow too.
  for (const grow of [
    () => {
      const count = index.capacity - index.size + 5;
      const flat = new Float32Array(count * d);
      for (let i = 0; i < count; i++) flat.set(vectorOf(1000 + i), i * d);
      index.add(Array.from({ length: count }, (_, i) => 1000 + i), flat, { threads: 2 });
    },
    () => index.reserve(index.capacity * 4),
  ]) {
    const remaps = index.stats().remaps;
    const v = index.view(3);
    const k = v.array;
    grow();
    assert(index.stats().remaps > remaps, "no remap");
    assertThrows(() => v.array, StaleGuardError, "STALE_GUARD");
    assertRevoked(k, "after batch growth / reserve");
  }
  assertEquals(index.stats().guards_live, 0);
  for (const key of [0, 3, 9, 64, 1000]) assertEquals(index.get(key), vectorOf(key));
  assertEquals(index.verify().ok, true);
});

test("views: a remap by another wrapper (another thread's view of the index) also makes the view stale", () => {
  using index = filled(20);
  using other = Index.attach(index.handle);
  const view = index.view(4);
  const kept = view.array;
  other.remap();
  // This wrapper did not see the remap happen: until the view notices (on its next use), a kept
  // array reads the old mapping, which the view's pin keeps mapped (README: not `undefined`).
  assertEquals(Array.from(kept), Array.from(index.get(4)!), "a kept array between the remap and the next use");
  assertEquals(view.valid, false);
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
  assertRevoked(kept, "after a remap through another wrapper");
  assertEquals(index.stats().guards_live, 0);
});

test("views: dispose (explicit or `using`) makes array throw ClosedError and a kept array read undefined", () => {
  using index = filled(20);
  const view = index.view(2);
  const kept = view.array;
  assertEquals(index.stats().guards_live, 1);
  view[Symbol.dispose]();
  assertEquals(index.stats().guards_live, 0);
  assertEquals(view.valid, false);
  assertThrows(() => view.array, ClosedError, "CLOSED");
  assertRevoked(kept, "after dispose");
  view[Symbol.dispose](); // idempotent
  view.revoke();
  assertEquals(index.stats().guards_live, 0);

  let escaped: VectorView | undefined;
  let keptToo: Float32Array | undefined;
  {
    using scoped = index.view(3);
    escaped = scoped;
    keptToo = scoped.array;
    assertEquals(keptToo, vectorOf(3));
    assertEquals(index.stats().guards_live, 1);
  }
  assertEquals(index.stats().guards_live, 0);
  assertThrows(() => escaped!.array, ClosedError, "CLOSED");
  assertRevoked(keptToo, "after `using` scope end");
  // The index is untouched.
  assertEquals(index.get(3), vectorOf(3));
  assertEquals(index.size, 20);
});

test("views: closing the index revokes its views: array throws ClosedError, kept arrays read undefined", () => {
  const index = filled(20);
  const views = [index.view(1), index.view(2), index.view(2)];
  const kept = views.map((v) => v.array);
  index.close();
  for (const [i, view] of views.entries()) {
    assertEquals(view.valid, false);
    assertThrows(() => view.array, ClosedError, "CLOSED");
    assertRevoked(kept[i], `view ${i} after close`);
    view[Symbol.dispose](); // a no-op on a closed index
  }
});

test("views: a view held across remaps by another wrapper keeps its mapping alive until disposed", () => {
  using index = filled(20);
  using other = Index.attach(index.handle);
  const one = index.stats().mapped_bytes;
  assertEquals(index.stats().mappings_live, 1);
  const view = index.view(6);
  const kept = view.array;
  const address = addressOf(kept);
  other.remap();
  other.remap();
  other.remap();
  const held = index.stats();
  assertEquals(held.guards_live, 1);
  assertEquals(held.mappings_live, 2, "the pinned mapping was released (or the unpinned ones were not)");
  assertEquals(held.mapped_bytes, 2 * one);
  // The pinned memory is still mapped and still holds the vector: reading it is safe.
  assertEquals(kept, vectorOf(6));
  using fresh = index.view(6);
  assert(addressOf(fresh.array) !== address, "a new mapping at the address of a live one");
  assertEquals(index.stats().guards_live, 2);
  view[Symbol.dispose]();
  assertRevoked(kept, "after dispose");
  const released = index.stats();
  assertEquals(released.guards_live, 1);
  assertEquals(released.mappings_live, 1);
  assertEquals(released.mapped_bytes, one);
  assertEquals(fresh.array, vectorOf(6));
});

test("views: a remap through the same wrapper revokes held views at once, so the old mapping goes at once", () => {
  using index = filled(20);
  const one = index.stats().mapped_bytes;
  const view = index.view(6);
  const kept = view.array;
  index.remap();
  assertRevoked(kept, "after remap");
  const s = index.stats();
  assertEquals([s.guards_live, s.mappings_live, s.mapped_bytes], [0, 1, one]);
  assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
});

test("views: 1,000 forced remaps with views taken and released keep mapped memory bounded", () => {
  using index = filled(50);
  using other = Index.attach(index.handle);
  const start = index.stats();
  const one = start.mapped_bytes;
  assertEquals(start.mappings_live, 1);
  let maxMapped = 0;
  let maxMappings = 0;
  let held: VectorView | undefined;
  let heldArray: Float32Array | undefined;
  for (let i = 0; i < 1000; i++) {
    const key = i % 50;
    if (i % 3 === 0) {
      // Hold a view across a remap done elsewhere: it pins the old mapping until released.
      held = index.view(key);
      heldArray = held.array;
      other.remap();
      assertEquals(heldArray[0], vectorOf(key)[0], `remap ${i}: a held view lost its memory`);
    } else {
      using v = index.view(key);
      assertEquals(v.array[0], vectorOf(key)[0]);
      if (i % 3 === 1) index.remap();
      else other.remap();
    }
    const s = index.stats();
    maxMapped = Math.max(maxMapped, s.mapped_bytes);
    maxMappings = Math.max(maxMappings, s.mappings_live);
    if (held !== undefined && i % 3 === 2) {
      held[Symbol.dispose]();
      assertRevoked(heldArray!, `held view ${i}`);
      held = undefined;
    }
  }
  held?.[Symbol.dispose]();
  const end = index.stats();
  assertEquals(end.remaps, start.remaps + 1000);
  assertEquals(end.epoch, start.epoch + 1000);
  assert(maxMapped <= 3 * one, `mapped_bytes reached ${maxMapped} (one mapping is ${one})`);
  assert(maxMappings <= 2, `mappings_live reached ${maxMappings}`);
  assertEquals(end.guards_live, 0);
  assertEquals(end.mappings_live, 1);
  assertEquals(end.mapped_bytes, one);
  assertEquals(index.size, 50);
  for (let key = 0; key < 50; key++) assertEquals(index.get(key), vectorOf(key));
  assertEquals(index.verify().ok, true);
});

test("views: an attached wrapper's copy is made in the native call, so the owner closing right after it frees nothing the copy reads, and nothing is left held", () => {
  // The copy path (a read-only index here; every view in a Deno Worker): the attached wrapper
  // holds no reference. The hook closes the owner right after the native call view() makes.
  // Before the fix that call took a bare guard and JS copied afterwards: the close freed the
  // index and the copy read unmapped memory. Now the native call makes the copy itself.
  const path = `${tempDir()}/copy`;
  {
    using writer = Index.open(path, { dimensions: d });
    for (let key = 1; key <= 40; key++) writer.add(key, vectorOf(key));
  }
  const owner = Index.open(path, { readOnly: true });
  const attached = Index.attach(owner.handle);
  const fn = native().fn as unknown as Record<string, (...args: unknown[]) => number>;
  const hooked = ["qv_view_copy", "qv_pin_acquire", "qv_guard_acquire"].filter((name) => name in fn);
  const saved = hooked.map((name) => fn[name]);
  let closedAt = "";
  for (const [i, name] of hooked.entries()) {
    fn[name] = (...args: unknown[]) => {
      const status = saved[i](...args);
      if (closedAt === "") {
        closedAt = name;
        owner.close();
      }
      return status;
    };
  }
  let view: VectorView;
  try {
    view = attached.view(7);
  } finally {
    for (const [i, name] of hooked.entries()) fn[name] = saved[i];
  }
  assert(closedAt !== "", "the hook never ran: view() took its address some other way");
  assert(owner.closed, "the owner is closed");
  assert(view.copy, "a read-only index's view is a copy");
  assertEquals(view.array, vectorOf(7));
  assertThrows(() => attached.view(8), ClosedError, "CLOSED");
  attached.close();
  // Nothing the copy took is left: the index was freed, and its files are free to open.
  Index.open(path).close();
});

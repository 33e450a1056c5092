import { Index } from "../mod.ts";
import { assertEquals, test } from "./harness.ts";

test("smoke: add and find a vector", () => {
  using index = new Index({ dimensions: 3 });
  index.add(1, new Float32Array([1, 0, 0]));
  index.add(2, new Float32Array([0, 1, 0]));
  const r = index.search(new Float32Array([0.9, 0.1, 0]), 1);
  assertEquals(r.keys, new BigUint64Array([1n]));
});

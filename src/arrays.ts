/**
 * Typed arrays from callers, checked by their internal slots before their memory goes to native
 * code. Native code reads `length` elements from the array's data pointer, so the length passed
 * must be the array's real one: a subclass or an own `length` property can claim more (an
 * overread past the buffer), and a Proxy of a typed array passes `instanceof` but not the FFI
 * layer (a raw TypeError in both runtimes). Pure: imports nothing that loads the library.
 */

type Column = Float32Array | BigUint64Array | Uint8Array;
type ColumnClass = Float32ArrayConstructor | BigUint64ArrayConstructor | Uint8ArrayConstructor;

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
/** %TypedArray%.prototype getters, taken once: they read internal slots, never properties. */
const tagGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, Symbol.toStringTag)!.get!;
const lengthGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, "length")!.get!;

/**
 * `value` as a `type` whose `length` can be trusted (a plain instance: the array itself, no
 * copy), a copy of it when it is a real `type` that overrides `length` (a subclass, an own
 * property), or undefined when it is not a `type` at all (a Proxy, an imitation, anything
 * else). Cost: O(1); O(length) for the copy.
 */
export function plainTyped<T extends Column>(value: unknown, type: ColumnClass): T | undefined {
  // The tag getter returns undefined for anything without a typed array's internal slots.
  if (Reflect.apply(tagGetter, value, []) !== type.name) return undefined;
  const array = value as T;
  // An own `length` or `constructor` (whose species `slice` and `subarray` would follow) marks an
  // imitation: the copy below is what the call uses.
  if (Object.getPrototypeOf(array) === type.prototype && !Object.hasOwn(array, "length") && !Object.hasOwn(array, "constructor")) {
    return array;
  }
  const copy = new type(Reflect.apply(lengthGetter, array, []) as number) as T;
  // %TypedArray%.prototype.set reads a typed array source through its internal slots.
  (copy as Float32Array).set(array as Float32Array);
  return copy;
}


/** Reads and writes the extern structs of the FFI boundary by their generated layouts. */
import type { layouts } from "./ffi.gen.ts";

type Layout = (typeof layouts)[keyof typeof layouts];
type Fields<L extends Layout> = { [K in keyof L["fields"]]: number };

export function encode<L extends Layout>(layout: L, values: Partial<Fields<L>>): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  const view = new DataView(bytes.buffer);
  for (const [name, field] of Object.entries(layout.fields) as [string, { offset: number; type: string }][]) {
    const value = (values as Record<string, number>)[name] ?? 0;
    if (field.type === "u64") view.setBigUint64(field.offset, BigInt(value), true);
    else view.setUint32(field.offset, value, true);
  }
  return bytes;
}

export function decode<L extends Layout>(layout: L, bytes: Uint8Array): Fields<L> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, number> = {};
  for (const [name, field] of Object.entries(layout.fields) as [string, { offset: number; type: string }][]) {
    out[name] = field.type === "u64" ? Number(view.getBigUint64(field.offset, true)) : view.getUint32(field.offset, true);
  }
  return out as Fields<L>;
}

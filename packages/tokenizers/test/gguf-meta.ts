/**
 * Minimal GGUF (v2/v3) metadata reader for tests only: reads the key/value section and ignores tensors.
 * Strings → string, string arrays → string[], numeric arrays → typed arrays, u64/i64 → bigint.
 */
import { readFileSync } from "node:fs";

export function readGGUFMetadata(path: string): Record<string, unknown> {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const td = new TextDecoder("utf-8");
  let off = 0;
  const u32 = () => {
    const v = dv.getUint32(off, true);
    off += 4;
    return v;
  };
  const u64 = () => {
    const v = dv.getBigUint64(off, true);
    off += 8;
    return v;
  };
  const str = () => {
    const n = Number(u64());
    const s = td.decode(buf.subarray(off, off + n));
    off += n;
    return s;
  };
  if (td.decode(buf.subarray(0, 4)) !== "GGUF") throw new Error(`${path}: not a GGUF file`);
  off = 4;
  const version = u32();
  if (version < 2) throw new Error(`GGUF v${version} not supported`);
  u64(); // tensor count
  const kvCount = Number(u64());
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0:
        return dv.getUint8(off++);
      case 1:
        return dv.getInt8(off++);
      case 2: {
        const v = dv.getUint16(off, true);
        off += 2;
        return v;
      }
      case 3: {
        const v = dv.getInt16(off, true);
        off += 2;
        return v;
      }
      case 4:
        return u32();
      case 5: {
        const v = dv.getInt32(off, true);
        off += 4;
        return v;
      }
      case 6: {
        const v = dv.getFloat32(off, true);
        off += 4;
        return v;
      }
      case 7:
        return dv.getUint8(off++) !== 0;
      case 8:
        return str();
      case 10:
        return u64();
      case 11: {
        const v = dv.getBigInt64(off, true);
        off += 8;
        return v;
      }
      case 12: {
        const v = dv.getFloat64(off, true);
        off += 8;
        return v;
      }
      default:
        throw new Error(`bad GGUF value type ${t}`);
    }
  };
  const typed: Record<number, new (n: number) => { [i: number]: number | bigint }> = {
    0: Uint8Array,
    1: Int8Array,
    2: Uint16Array,
    3: Int16Array,
    4: Uint32Array,
    5: Int32Array,
    6: Float32Array,
    10: BigUint64Array,
    11: BigInt64Array,
    12: Float64Array,
  };
  const meta: Record<string, unknown> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const t = u32();
    if (t === 9) {
      const et = u32();
      const n = Number(u64());
      const Ctor = typed[et];
      if (Ctor) {
        const arr = new Ctor(n);
        for (let j = 0; j < n; j++) arr[j] = scalar(et) as number;
        meta[key] = arr;
      } else {
        const arr: unknown[] = new Array(n);
        for (let j = 0; j < n; j++) arr[j] = scalar(et);
        meta[key] = arr;
      }
    } else {
      meta[key] = scalar(t);
    }
  }
  return meta;
}

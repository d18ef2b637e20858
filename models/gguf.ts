// A small GGUF v3 reader (metadata and tensor infos) and a streaming writer.
// Enough to copy a tokenizer out of one model and write a new one; tensor data
// is never read, and is written tensor by tensor so a 250 MB model never sits
// in memory whole.
import fs from "node:fs/promises";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum ValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export enum TensorType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

/** A metadata value with its GGUF type, so it can be written back identically. */
export type GgufValue =
  | { type: Exclude<ValueType, ValueType.ARRAY | ValueType.STRING | ValueType.BOOL | ValueType.UINT64 | ValueType.INT64>; value: number }
  | { type: ValueType.UINT64 | ValueType.INT64; value: bigint }
  | { type: ValueType.BOOL; value: boolean }
  | { type: ValueType.STRING; value: string }
  | { type: ValueType.ARRAY; itemType: ValueType; value: Array<number | bigint | boolean | string> };

export interface TensorInfo {
  name: string;
  /** ne0 first (the innermost, contiguous dimension), as GGUF stores them. */
  dims: number[];
  type: TensorType;
  offset: bigint;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: TensorInfo[];
}

const SCALAR_BYTES: Partial<Record<ValueType, number>> = {
  [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2,
  [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4, [ValueType.BOOL]: 1,
  [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8,
};

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number { const v = this.buf.readUInt32LE(this.pos); this.pos += 4; return v; }
  u64(): bigint { const v = this.buf.readBigUInt64LE(this.pos); this.pos += 8; return v; }
  string(): string {
    const len = Number(this.u64());
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
  scalar(type: ValueType): number | bigint | boolean | string {
    const b = this.buf;
    const p = this.pos;
    if (type === ValueType.STRING) return this.string();
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new Error(`GGUF: unknown value type ${type}`);
    this.pos += size;
    switch (type) {
      case ValueType.UINT8: return b.readUInt8(p);
      case ValueType.INT8: return b.readInt8(p);
      case ValueType.UINT16: return b.readUInt16LE(p);
      case ValueType.INT16: return b.readInt16LE(p);
      case ValueType.UINT32: return b.readUInt32LE(p);
      case ValueType.INT32: return b.readInt32LE(p);
      case ValueType.FLOAT32: return b.readFloatLE(p);
      case ValueType.BOOL: return b.readUInt8(p) !== 0;
      case ValueType.UINT64: return b.readBigUInt64LE(p);
      case ValueType.INT64: return b.readBigInt64LE(p);
      default: return b.readDoubleLE(p);
    }
  }
  value(type: ValueType): GgufValue {
    if (type !== ValueType.ARRAY) return { type, value: this.scalar(type) } as GgufValue;
    const itemType = this.u32() as ValueType;
    const count = Number(this.u64());
    const value: Array<number | bigint | boolean | string> = new Array(count);
    for (let i = 0; i < count; i++) value[i] = this.scalar(itemType);
    return { type, itemType, value };
  }
}

/** Reads a GGUF's metadata and tensor infos (the file is read whole: callers use it on small files). */
export async function readGguf(path: string): Promise<GgufFile> {
  const buf = await fs.readFile(path);
  const r = new Reader(buf);
  if (r.u32() !== GGUF_MAGIC) throw new Error(`${path} is not a GGUF file`);
  const version = r.u32();
  if (version < 2) throw new Error(`${path}: GGUF v${version} is not supported`);
  const tensorCount = Number(r.u64());
  const kvCount = Number(r.u64());
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string();
    metadata.set(key, r.value(r.u32() as ValueType));
  }
  const tensors: TensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string();
    const nDims = r.u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(Number(r.u64()));
    tensors.push({ name, dims, type: r.u32() as TensorType, offset: r.u64() });
  }
  return { version, metadata, tensors };
}

/** Bytes of a tensor's data. */
export function tensorBytes(type: TensorType, elements: number): number {
  switch (type) {
    case TensorType.F32: return elements * 4;
    case TensorType.F16: return elements * 2;
    case TensorType.Q8_0:
      if (elements % 32 !== 0) throw new Error("Q8_0 tensors need a multiple of 32 elements");
      return (elements / 32) * 34;
  }
}

class Writer {
  private readonly parts: Buffer[] = [];
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.parts.push(b); }
  u64(v: bigint | number): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.parts.push(b); }
  string(s: string): void { const bytes = Buffer.from(s, "utf8"); this.u64(bytes.length); this.parts.push(bytes); }
  scalar(type: ValueType, v: number | bigint | boolean | string): void {
    if (type === ValueType.STRING) return this.string(v as string);
    const size = SCALAR_BYTES[type]!;
    const b = Buffer.alloc(size);
    switch (type) {
      case ValueType.UINT8: b.writeUInt8(v as number); break;
      case ValueType.INT8: b.writeInt8(v as number); break;
      case ValueType.UINT16: b.writeUInt16LE(v as number); break;
      case ValueType.INT16: b.writeInt16LE(v as number); break;
      case ValueType.UINT32: b.writeUInt32LE(v as number); break;
      case ValueType.INT32: b.writeInt32LE(v as number); break;
      case ValueType.FLOAT32: b.writeFloatLE(v as number); break;
      case ValueType.BOOL: b.writeUInt8(v ? 1 : 0); break;
      case ValueType.UINT64: b.writeBigUInt64LE(v as bigint); break;
      case ValueType.INT64: b.writeBigInt64LE(v as bigint); break;
      case ValueType.FLOAT64: b.writeDoubleLE(v as number); break;
    }
    this.parts.push(b);
  }
  value(v: GgufValue): void {
    this.u32(v.type);
    if (v.type !== ValueType.ARRAY) return this.scalar(v.type, v.value);
    this.u32(v.itemType);
    this.u64(v.value.length);
    for (const item of v.value) this.scalar(v.itemType, item);
  }
  concat(): Buffer { return Buffer.concat(this.parts); }
}

export interface TensorSpec {
  name: string;
  dims: number[];
  type: TensorType;
  /** Produces the tensor's bytes, in one or more chunks, in order. */
  data: () => AsyncIterable<Buffer> | Iterable<Buffer>;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * Writes a GGUF v3 file: header, metadata, tensor infos, then each tensor's
 * data at its aligned offset. Writes to `path.tmp` and renames, so a partial
 * file never appears under the final name.
 */
export async function writeGguf(
  path: string,
  metadata: Map<string, GgufValue>,
  tensors: TensorSpec[],
  onTensor?: (index: number, total: number) => void,
): Promise<number> {
  const alignment = (metadata.get("general.alignment")?.value as number | undefined) ?? 32;
  const w = new Writer();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, value] of metadata) {
    w.string(key);
    w.value(value);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const bytes = tensorBytes(t.type, t.dims.reduce((a, b) => a * b, 1));
    sizes.push(bytes);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset = align(offset + bytes, alignment);
  }
  const header = w.concat();
  const tmp = `${path}.tmp`;
  const fh = await fs.open(tmp, "w");
  try {
    let pos = 0;
    const write = async (b: Buffer) => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await write(header);
    await write(Buffer.alloc(align(pos, alignment) - pos));
    for (const [i, t] of tensors.entries()) {
      const start = pos;
      for await (const chunk of t.data()) await write(chunk);
      if (pos - start !== sizes[i]) throw new Error(`tensor ${t.name}: wrote ${pos - start} bytes, expected ${sizes[i]}`);
      await write(Buffer.alloc(align(pos, alignment) - pos));
      onTensor?.(i + 1, tensors.length);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
  return (await fs.stat(path)).size;
}

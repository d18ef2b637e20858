// A small GGUF v3 reader (metadata and tensor infos only) and a streaming
// writer. Enough to copy a tokenizer out of one model and write a new one:
// tensor data is never read, and is written chunk by chunk through a write
// stream, so a 270 MB model never sits in memory whole.
import { once } from "node:events";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { finished } from "node:stream/promises";

// The number codecs live in quant.ts; re-exported so this module is the one
// entry point for "everything needed to write a GGUF".
export { dequantizeQ8_0, f16ToF32, f32ToF16, quantizeQ8_0, toF16Buffer, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from "./quant.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const DEFAULT_ALIGNMENT_BYTES = 32;

export enum ValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** The ggml tensor types this module can size; others are rejected when writing. */
export enum TensorType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

type Scalar = number | bigint | boolean | string;

/** A metadata value with its GGUF type, so it can be written back identically. */
export type GgufValue =
  | { type: Exclude<ValueType, ValueType.ARRAY | ValueType.STRING | ValueType.BOOL | ValueType.UINT64 | ValueType.INT64>; value: number }
  | { type: ValueType.UINT64 | ValueType.INT64; value: bigint }
  | { type: ValueType.BOOL; value: boolean }
  | { type: ValueType.STRING; value: string }
  | { type: ValueType.ARRAY; itemType: ValueType; value: Scalar[] };

export interface TensorInfo {
  name: string;
  /** ne0 first (the innermost, contiguous dimension), as GGUF stores them. */
  dims: number[];
  /** Kept as a number: a reader must not fail on tensor types it cannot size. */
  type: TensorType | number;
  /** Relative to dataOffset. */
  offset: bigint;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: TensorInfo[];
  /** Absolute byte offset of the tensor data section. */
  dataOffset: number;
}

export const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment;

const SCALAR_BYTES: Partial<Record<ValueType, number>> = {
  [ValueType.UINT8]: 1,
  [ValueType.INT8]: 1,
  [ValueType.UINT16]: 2,
  [ValueType.INT16]: 2,
  [ValueType.UINT32]: 4,
  [ValueType.INT32]: 4,
  [ValueType.FLOAT32]: 4,
  [ValueType.BOOL]: 1,
  [ValueType.UINT64]: 8,
  [ValueType.INT64]: 8,
  [ValueType.FLOAT64]: 8,
};

/** Thrown when the buffered prefix of the file ends mid-header: read more and parse again. */
class ShortRead extends Error {}

class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly complete: boolean,
  ) {}

  private take(bytes: number): number {
    const at = this.pos;
    if (at + bytes > this.buf.length) {
      if (this.complete) throw new Error("GGUF: file ends inside its header");
      throw new ShortRead();
    }
    this.pos += bytes;
    return at;
  }
  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64LE(this.take(8));
  }
  /** A u64 that must fit in a JS number (lengths and counts). */
  count(): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`GGUF: implausible length ${v}`);
    return Number(v);
  }
  string(): string {
    const bytes = this.count();
    const at = this.take(bytes);
    return this.buf.toString("utf8", at, at + bytes);
  }
  scalar(type: ValueType): Scalar {
    if (type === ValueType.STRING) return this.string();
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new Error(`GGUF: unknown value type ${type}`);
    const at = this.take(size);
    const b = this.buf;
    switch (type) {
      case ValueType.UINT8:
        return b.readUInt8(at);
      case ValueType.INT8:
        return b.readInt8(at);
      case ValueType.UINT16:
        return b.readUInt16LE(at);
      case ValueType.INT16:
        return b.readInt16LE(at);
      case ValueType.UINT32:
        return b.readUInt32LE(at);
      case ValueType.INT32:
        return b.readInt32LE(at);
      case ValueType.FLOAT32:
        return b.readFloatLE(at);
      case ValueType.BOOL:
        return b.readUInt8(at) !== 0;
      case ValueType.UINT64:
        return b.readBigUInt64LE(at);
      case ValueType.INT64:
        return b.readBigInt64LE(at);
      default:
        return b.readDoubleLE(at);
    }
  }
  value(type: ValueType): GgufValue {
    if (type !== ValueType.ARRAY) return { type, value: this.scalar(type) } as GgufValue;
    const itemType = this.u32() as ValueType;
    if (itemType === ValueType.ARRAY) throw new Error("GGUF: nested arrays are not supported");
    const n = this.count();
    const value: Scalar[] = new Array(n);
    for (let i = 0; i < n; i++) value[i] = this.scalar(itemType);
    return { type, itemType, value };
  }
}

function parseHeader(buf: Buffer, complete: boolean, path: string): GgufFile {
  const r = new Reader(buf, complete);
  if (r.u32() !== GGUF_MAGIC) throw new Error(`${path} is not a GGUF file`);
  const version = r.u32();
  // v1 used 32-bit counts; v2 and v3 share this layout (v3 only adds big-endian files).
  if (version < 2 || version > 3) throw new Error(`${path}: GGUF v${version} is not supported`);
  const tensorCount = r.count();
  const kvCount = r.count();
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
    for (let d = 0; d < nDims; d++) dims.push(r.count());
    tensors.push({ name, dims, type: r.u32(), offset: r.u64() });
  }
  return { version, metadata, tensors, dataOffset: alignUp(r.pos, alignmentOf(metadata)) };
}

const FIRST_READ_BYTES = 256 * 1024;

/**
 * Reads a GGUF's metadata and tensor infos. Only the header is read: a prefix
 * of the file, doubled until the header parses (a 32,000-token vocabulary is
 * under 1 MB; the tensor data after it may be gigabytes).
 */
export async function readGguf(path: string): Promise<GgufFile> {
  const fh = await fsp.open(path, "r");
  try {
    const sizeBytes = (await fh.stat()).size;
    for (let want = FIRST_READ_BYTES; ; want *= 2) {
      const length = Math.min(want, sizeBytes);
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, 0);
      try {
        return parseHeader(buf.subarray(0, bytesRead), length === sizeBytes, path);
      } catch (err) {
        if (!(err instanceof ShortRead)) throw err;
      }
    }
  } finally {
    await fh.close();
  }
}

export function alignmentOf(metadata: Map<string, GgufValue>): number {
  const v = metadata.get("general.alignment")?.value;
  return typeof v === "number" && v > 0 ? v : DEFAULT_ALIGNMENT_BYTES;
}

/** Bytes of a tensor's data. Quantized types pack rows (ne0) in blocks, so ne0 must divide evenly. */
export function tensorBytes(type: TensorType | number, dims: number[]): number {
  const elements = dims.reduce((a, b) => a * b, 1);
  switch (type) {
    case TensorType.F32:
      return elements * 4;
    case TensorType.F16:
      return elements * 2;
    case TensorType.Q8_0:
      if ((dims[0] ?? 0) % 32 !== 0) throw new Error(`Q8_0 rows need a multiple of 32 elements, got ne0=${dims[0]}`);
      return (elements / 32) * 34;
    default:
      throw new Error(`GGUF: cannot size tensor type ${type}`);
  }
}

/** A growable little-endian byte buffer for the header (~1 MB with a 32k vocabulary). */
class ByteWriter {
  private buf = Buffer.alloc(64 * 1024);
  private len = 0;

  private room(bytes: number): number {
    if (this.len + bytes > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.len + bytes));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    const at = this.len;
    this.len += bytes;
    return at;
  }
  // room() may swap this.buf, so it is always called before this.buf is read.
  u32(v: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  u64(v: bigint | number): void {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }
  string(s: string): void {
    const bytes = Buffer.byteLength(s, "utf8");
    this.u64(bytes);
    const at = this.room(bytes);
    this.buf.write(s, at, bytes, "utf8");
  }
  scalar(type: ValueType, v: Scalar): void {
    if (type === ValueType.STRING) {
      this.string(v as string);
      return;
    }
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new Error(`GGUF: unknown value type ${type}`);
    const at = this.room(size);
    const b = this.buf;
    switch (type) {
      case ValueType.UINT8:
        b.writeUInt8(v as number, at);
        break;
      case ValueType.INT8:
        b.writeInt8(v as number, at);
        break;
      case ValueType.UINT16:
        b.writeUInt16LE(v as number, at);
        break;
      case ValueType.INT16:
        b.writeInt16LE(v as number, at);
        break;
      case ValueType.UINT32:
        b.writeUInt32LE(v as number, at);
        break;
      case ValueType.INT32:
        b.writeInt32LE(v as number, at);
        break;
      case ValueType.FLOAT32:
        b.writeFloatLE(v as number, at);
        break;
      case ValueType.BOOL:
        b.writeUInt8(v ? 1 : 0, at);
        break;
      case ValueType.UINT64:
        b.writeBigUInt64LE(v as bigint, at);
        break;
      case ValueType.INT64:
        b.writeBigInt64LE(v as bigint, at);
        break;
      default:
        b.writeDoubleLE(v as number, at);
    }
  }
  value(v: GgufValue): void {
    this.u32(v.type);
    if (v.type !== ValueType.ARRAY) {
      this.scalar(v.type, v.value);
      return;
    }
    this.u32(v.itemType);
    this.u64(v.value.length);
    for (const item of v.value) this.scalar(v.itemType, item);
  }
  pad(alignment: number): void {
    this.room(alignUp(this.len, alignment) - this.len);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

export interface TensorSpec {
  name: string;
  /** ne0 first, as in the file. */
  dims: number[];
  type: TensorType;
  /** Produces the tensor's bytes, in one or more chunks, in order; called once, when its turn comes. */
  data: () => AsyncIterable<Buffer> | Iterable<Buffer>;
}

/** The header, already padded to where tensor data starts, plus the layout it promises. */
export function encodeHeader(metadata: Map<string, GgufValue>, tensors: Array<Pick<TensorInfo, "name" | "dims" | "type">>) {
  const alignment = alignmentOf(metadata);
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, value] of metadata) {
    w.string(key);
    w.value(value);
  }
  const tensorBytesList: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = tensorBytes(t.type, t.dims);
    tensorBytesList.push(bytes);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset = alignUp(offset + bytes, alignment);
  }
  w.pad(alignment);
  return { header: w.bytes(), alignment, tensorBytes: tensorBytesList, dataBytes: offset };
}

/**
 * Writes a GGUF v3 file: header, metadata, tensor infos, then each tensor's
 * data at its aligned offset. Goes to `path + ".tmp"` and is renamed into
 * place only once complete and synced, so a partial file never appears under
 * the final name; the temporary file is removed on failure.
 * Returns the file's size in bytes.
 */
export async function writeGguf(
  path: string,
  metadata: Map<string, GgufValue>,
  tensors: TensorSpec[],
  onProgress?: (writtenBytes: number, totalBytes: number) => void,
): Promise<number> {
  const layout = encodeHeader(metadata, tensors);
  const totalBytes = layout.header.length + layout.dataBytes;
  const tmp = `${path}.tmp`;
  const out = fs.createWriteStream(tmp, { highWaterMark: 1024 * 1024 });
  let failure: Error | null = null;
  out.on("error", (err) => (failure ??= err));
  let written = 0;
  const write = async (chunk: Buffer) => {
    if (failure) throw failure;
    written += chunk.length;
    // Backpressure: wait for the stream to drain rather than queue the whole
    // model in memory (once() rejects if the stream errors meanwhile).
    if (!out.write(chunk)) await once(out, "drain");
  };
  try {
    await write(layout.header);
    for (const [i, t] of tensors.entries()) {
      const start = written;
      for await (const chunk of t.data()) {
        await write(chunk);
        onProgress?.(written, totalBytes);
      }
      const expected = layout.tensorBytes[i]!;
      if (written - start !== expected) throw new Error(`tensor ${t.name}: wrote ${written - start} bytes, expected ${expected}`);
      const pad = alignUp(written - layout.header.length, layout.alignment) - (written - layout.header.length);
      if (pad > 0) await write(Buffer.alloc(pad));
    }
    out.end();
    await finished(out);
    if (failure) throw failure;
    // fsync before rename: otherwise a crash can leave an empty file under the final name.
    const fh = await fsp.open(tmp, "r+");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path);
  } catch (err) {
    out.destroy();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  return totalBytes;
}

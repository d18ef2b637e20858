// API keys: generation, hashing and display. A key is shown in plaintext once,
// when it is created; everything kept afterwards (database, tenants file, logs)
// is its hash "sha256:<64 hex>" or a short display prefix.
import crypto from "node:crypto";

export const KEY_PREFIX = "lmx-";
export const KEY_RANDOM_CHARS = 40;
const BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
// The largest multiple of 62 that fits in a byte: bytes at or above it are
// dropped so every character is equally likely (no modulo bias).
const UNBIASED_BYTE_LIMIT = 248;

export const KEY_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** `count` characters of [A-Za-z0-9] from crypto.randomBytes, uniformly distributed. */
export function randomBase62(count: number): string {
  let out = "";
  while (out.length < count) {
    for (const byte of crypto.randomBytes(count + 16)) {
      if (byte >= UNBIASED_BYTE_LIMIT) continue;
      out += BASE62[byte % 62];
      if (out.length === count) break;
    }
  }
  return out;
}

/** A new API key: "lmx-" + 40 base62 characters (~238 bits of entropy). */
export function generateApiKey(): string {
  return KEY_PREFIX + randomBase62(KEY_RANDOM_CHARS);
}

/** A new key record id (not secret): "key_" + 24 base62 characters. */
export function generateKeyId(): string {
  return `key_${randomBase62(24)}`;
}

/** The stored form of a key: "sha256:" + hex of SHA-256 over its UTF-8 bytes. */
export function hashApiKey(key: string): string {
  return `sha256:${crypto.createHash("sha256").update(key, "utf8").digest("hex")}`;
}

/** Normalizes a hash written by hand (upper-case hex is accepted); null when it is not "sha256:<64 hex>". */
export function normalizeKeyHash(value: string): string | null {
  const lower = value.trim().toLowerCase();
  return KEY_HASH_PATTERN.test(lower) ? lower : null;
}

/** Constant-time equality of two "sha256:<hex>" hashes (false when either is malformed). */
export function keyHashesEqual(a: string, b: string): boolean {
  const da = hashDigest(a);
  const db = hashDigest(b);
  return da !== null && db !== null && crypto.timingSafeEqual(da, db);
}

function hashDigest(hash: string): Buffer | null {
  return KEY_HASH_PATTERN.test(hash) ? Buffer.from(hash.slice("sha256:".length), "hex") : null;
}

/** Constant-time equality of two secrets of any length: their SHA-256 digests are compared. */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = crypto.createHash("sha256").update(presented, "utf8").digest();
  const b = crypto.createHash("sha256").update(expected, "utf8").digest();
  return crypto.timingSafeEqual(a, b);
}

/** What the admin API lists for a key: enough to recognise it, useless to an attacker ("lmx-ab12…"). */
export function displayPrefix(key: string): string {
  return `${key.slice(0, 8)}…`;
}

/** Display prefix for a key known only by its hash (keys from the tenants file). */
export function displayPrefixOfHash(hash: string): string {
  return `${hash.slice(0, "sha256:".length + 8)}…`;
}

/**
 * A presented key as OpenAI echoes it in a 401 ("sk-abc1****wxyz"): the start
 * and the last four characters. Short strings are masked entirely so a 401
 * never repeats most of a secret.
 */
export function maskApiKey(key: string): string {
  if (key.length < 16) return "****";
  return `${key.slice(0, 8)}****${key.slice(-4)}`;
}

/** Shortest secret (admin key, metrics token) accepted from the environment. */
export const MIN_SECRET_LENGTH = 16;
/** The least estimated entropy, in bits, of such a secret (16 random hex digits estimate at about 50; below 32 means few distinct characters). */
export const MIN_SECRET_BITS = 32;

/**
 * Shannon entropy of the secret's own characters times its length: a crude
 * estimate that is 0 for "0000000000000000" and 16 bits for "abab…ab", and
 * about 4 to 6 bits a character for random keys.
 */
export function estimatedEntropyBits(secret: string): number {
  const counts = new Map<string, number>();
  const chars = [...secret];
  for (const c of chars) counts.set(c, (counts.get(c) ?? 0) + 1);
  let perChar = 0;
  for (const n of counts.values()) {
    const p = n / chars.length;
    perChar -= p * Math.log2(p);
  }
  return perChar * chars.length;
}

/** The length of the shortest substring `s` is made of by repetition (s.length when none is). */
export function repeatPeriod(s: string): number {
  for (let p = 1; p <= s.length / 2; p++) {
    let repeats = true;
    for (let i = p; i < s.length && repeats; i++) repeats = s[i] === s[i - p];
    if (repeats) return p;
  }
  return s.length;
}

/**
 * Why `secret` is too weak to guard anything, or null when it is acceptable:
 * too short, surrounded by spaces, one short pattern repeated (however long),
 * or too little estimated entropy. Not a guarantee of strength: a dictionary
 * phrase passes; it refuses the keys a person types to get started.
 */
export function secretWeakness(secret: string): string | null {
  if (secret !== secret.trim()) return "it has leading or trailing spaces";
  if (secret.length < MIN_SECRET_LENGTH) return `it has ${secret.length} characters, fewer than ${MIN_SECRET_LENGTH}`;
  const period = repeatPeriod(secret);
  if (period <= secret.length / 2) return `it is the pattern '${period <= 4 ? secret.slice(0, period) : `${period} characters`}' repeated`;
  const bits = estimatedEntropyBits(secret);
  if (bits < MIN_SECRET_BITS) return `it has too little entropy (about ${Math.floor(bits)} bits estimated, at least ${MIN_SECRET_BITS} needed)`;
  return null;
}

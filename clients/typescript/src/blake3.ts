/**
 * BLAKE3, the part the client needs: the hash and `derive_key` of inputs of
 * at most one chunk (1,024 bytes). Node's crypto has no BLAKE3, and the
 * server binds a lease to the license key with BLAKE3's derive_key
 * (`domain::lease::key_binding`), so the client recomputes it here.
 * Longer inputs are refused, never hashed wrongly.
 */

/** The longest input hashed: one chunk. */
export const BLAKE3_INPUT_BYTES_MAX = 1024;

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const ROOT = 8;
const DERIVE_KEY_CONTEXT = 32;
const DERIVE_KEY_MATERIAL = 64;
const BLOCK_BYTES = 64;
const ROUNDS = 7;

function rotr(x: number, n: number): number {
  return ((x >>> n) | (x << (32 - n))) >>> 0;
}

function g(s: Uint32Array, a: number, b: number, c: number, d: number, mx: number, my: number): void {
  s[a] = (s[a]! + s[b]! + mx) >>> 0;
  s[d] = rotr(s[d]! ^ s[a]!, 16);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotr(s[b]! ^ s[c]!, 12);
  s[a] = (s[a]! + s[b]! + my) >>> 0;
  s[d] = rotr(s[d]! ^ s[a]!, 8);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotr(s[b]! ^ s[c]!, 7);
}

/** The compression function; returns the first 8 words of its output. */
function compress(cv: Uint32Array, block: Uint32Array, blockLen: number, flags: number): Uint32Array {
  const s = new Uint32Array([...cv, IV[0]!, IV[1]!, IV[2]!, IV[3]!, 0, 0, blockLen, flags]);
  let m = block;
  for (let round = 0; round < ROUNDS; round++) {
    g(s, 0, 4, 8, 12, m[0]!, m[1]!);
    g(s, 1, 5, 9, 13, m[2]!, m[3]!);
    g(s, 2, 6, 10, 14, m[4]!, m[5]!);
    g(s, 3, 7, 11, 15, m[6]!, m[7]!);
    g(s, 0, 5, 10, 15, m[8]!, m[9]!);
    g(s, 1, 6, 11, 12, m[10]!, m[11]!);
    g(s, 2, 7, 8, 13, m[12]!, m[13]!);
    g(s, 3, 4, 9, 14, m[14]!, m[15]!);
    const previous = m;
    m = new Uint32Array(PERMUTATION.map((i) => previous[i]!));
  }
  const out = new Uint32Array(8);
  for (let i = 0; i < 8; i++) out[i] = (s[i]! ^ s[i + 8]!) >>> 0;
  return out;
}

/** One chunk (chunk counter 0) as the root: 32 bytes of output. */
function rootChunk(key: Uint32Array, input: Uint8Array, modeFlags: number): Buffer {
  if (input.length > BLAKE3_INPUT_BYTES_MAX) {
    throw new RangeError(`BLAKE3 here hashes at most ${BLAKE3_INPUT_BYTES_MAX} bytes`);
  }
  const blocks = Math.max(1, Math.ceil(input.length / BLOCK_BYTES));
  let cv = key;
  for (let i = 0; i < blocks; i++) {
    const bytes = input.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES);
    const padded = Buffer.alloc(BLOCK_BYTES);
    padded.set(bytes);
    const words = new Uint32Array(16);
    for (let w = 0; w < 16; w++) words[w] = padded.readUInt32LE(w * 4);
    let flags = modeFlags;
    if (i === 0) flags |= CHUNK_START;
    if (i === blocks - 1) flags |= CHUNK_END | ROOT;
    cv = compress(cv, words, bytes.length, flags);
  }
  const out = Buffer.alloc(32);
  for (let w = 0; w < 8; w++) out.writeUInt32LE(cv[w]!, w * 4);
  return out;
}

/** BLAKE3 of `input` (at most 1,024 bytes), 32 bytes. */
export function blake3(input: Uint8Array): Buffer {
  return rootChunk(new Uint32Array(IV), input, 0);
}

/** BLAKE3's `derive_key(context, material)`, 32 bytes (both at most 1,024 bytes). */
export function deriveKey(context: string, material: Uint8Array): Buffer {
  const contextKey = rootChunk(new Uint32Array(IV), Buffer.from(context, "utf8"), DERIVE_KEY_CONTEXT);
  const key = new Uint32Array(8);
  for (let w = 0; w < 8; w++) key[w] = contextKey.readUInt32LE(w * 4);
  return rootChunk(key, material, DERIVE_KEY_MATERIAL);
}

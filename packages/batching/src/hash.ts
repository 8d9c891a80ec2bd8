/**
 * Hash of one full KV block chained to its parent's hash: two independent 32-bit mixes over the
 * parent hash and the block's token ids, printed as one string key (64 bits; collisions are
 * negligible at the scale of a KV cache).
 */
export function chainHash(parent: string, tokens: ArrayLike<number>, start: number, end: number): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < parent.length; i++) {
    const c = parent.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  for (let i = start; i < end; i++) {
    const t = tokens[i] | 0;
    h1 = Math.imul(h1 ^ (t & 0xffff), 0x01000193);
    h1 = Math.imul(h1 ^ (t >>> 16), 0x01000193);
    h2 = Math.imul(h2 ^ t, 0x5bd1e995);
    h2 ^= h2 >>> 13;
  }
  h2 = Math.imul(h2 ^ (h2 >>> 16), 0x85ebca6b);
  return `${(h1 >>> 0).toString(36)}.${(h2 >>> 0).toString(36)}`;
}

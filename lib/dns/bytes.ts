/** Big-endian writers for the codec's message builders (callers size `out` beforehand). */

/** Writes the low 16 bits of `v` at `p`, most significant byte first. */
export function putU16(out: Uint8Array, p: number, v: number): void {
  out[p] = v >>> 8;
  out[p + 1] = v;
}

/** Writes the low 32 bits of `v` at `p`, most significant byte first. */
export function putU32(out: Uint8Array, p: number, v: number): void {
  putU16(out, p, v >>> 16);
  putU16(out, p + 2, v & 0xffff);
}

/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum a PROXY protocol v2 header
 * may carry in its PP2_TYPE_CRC32C TLV. A 256-entry table, computed once; no allocation per call.
 */

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * The CRC-32C of `bytes[start, end)`, with the 4 bytes at `zeroAt` (if given) read as zero: the
 * PROXY header's checksum is computed over the header with its own checksum field zeroed.
 */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, zeroAt = -1): number {
  let c = 0xffffffff;
  const zeroEnd = zeroAt < 0 ? zeroAt : zeroAt + 4;
  for (let i = start; i < end; i++) {
    const b = i >= zeroAt && i < zeroEnd ? 0 : bytes[i];
    c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The ceiling for any Deno UDP server on this machine: receive a datagram, set QR, send the same
 * bytes back. No parsing, no allocation beyond what Deno.DatagramConn does itself. bench/run.sh
 * pins it to the same core as dotproxy and drives it with dnsperf's UDP cache-hit workload, so
 * "dotproxy hits / echo" says how close dotproxy gets to the runtime's own limit.
 *
 *   deno run --unstable-net --allow-net=127.0.0.1 bench/echo_udp.ts [--port N] [--loops N] [--reuse]
 *
 * --loops runs N receive loops on the one socket (default 1); each keeps one receive() pending.
 * --reuse passes each loop's own buffer to receive() and copies the datagram out of it. Without
 * it, Deno allocates a fresh zero-filled 65,507-byte buffer for every datagram (DatagramConn's
 * default), which is what `socket.receive()` with no argument costs.
 * Sends are not awaited before the next receive (the proxy does not await them either), and a
 * failed send is ignored.
 */

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`echo_udp: --${name} needs a non-negative integer`);
    Deno.exit(2);
  }
  return n;
}

const port = arg("port", 5354);
const loops = Math.max(1, arg("loops", 1));
const reuse = Deno.args.includes("--reuse");
const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
const ignore = () => {};

async function loop(): Promise<void> {
  const buffer = reuse ? new Uint8Array(65536) : undefined;
  for (;;) {
    let datagram: [Uint8Array, Deno.Addr];
    try {
      datagram = await socket.receive(buffer);
    } catch {
      continue;
    }
    const addr = datagram[1];
    // With --reuse, copy: the buffer is overwritten by the next receive while send may be pending.
    const bytes = reuse ? datagram[0].slice() : datagram[0];
    if (bytes.length < 12) continue;
    bytes[2] |= 0x80; // QR: this is a response
    socket.send(bytes, addr).catch(ignore);
  }
}

console.error(`echo_udp listening on 127.0.0.1:${(socket.addr as Deno.NetAddr).port}`);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
await Promise.all(Array.from({ length: loops }, loop));

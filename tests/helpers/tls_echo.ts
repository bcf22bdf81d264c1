/**
 * Peers for tests of TLS client behaviour (pins, chains, session resumption, handshake
 * deadlines) that need a real handshake but no DNS: a node:tls server that echoes what it reads
 * (TLS 1.2 allowed, so sessions can resume), and a TCP peer that never answers the handshake.
 */
import { createServer, type TLSSocket } from "node:tls";
import { fixtureText } from "./fixtures.ts";

/** A running echo server. */
export interface TlsEcho {
  port: number;
  /** Stops accepting and resolves once every connection has closed. */
  stop(): Promise<void>;
}

/** Starts an echo server on 127.0.0.1 with `cert`/`key` (default the dns.test fixture). */
export async function startTlsEcho(
  opts: { cert?: string; key?: string; maxVersion?: "TLSv1.2" | "TLSv1.3" } = {},
): Promise<TlsEcho> {
  const server = createServer({
    cert: opts.cert ?? fixtureText("server.pem"),
    key: opts.key ?? fixtureText("server-key.pem"),
    minVersion: "TLSv1.2",
    maxVersion: opts.maxVersion ?? "TLSv1.3",
  }, (s) => {
    s.on("error", () => {});
    s.on("data", (d) => s.write(d));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Destroys a TLS socket and waits for its close event. */
export async function closeSocket(s: TLSSocket): Promise<void> {
  const closed = new Promise((resolve) => s.once("close", resolve));
  s.destroy();
  await closed;
}

/**
 * Runs `fn` with the port of a TCP listener on 127.0.0.1 that accepts and then says nothing, so
 * a TLS handshake with it never completes; `accepted()` resolves once the connection is in.
 * The connection and listener are closed after.
 */
export async function withSilentPeer(
  fn: (port: number, accepted: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let conn: Deno.Conn | undefined;
  try {
    await fn(listener.addr.port, async () => {
      conn = await listener.accept();
    });
  } finally {
    conn?.close();
    listener.close();
  }
}

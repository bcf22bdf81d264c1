/**
 * A node:tls server that echoes what it reads, for tests of TLS client behaviour (pins, chains,
 * session resumption) that need a real handshake but no DNS. TLS 1.2 is allowed so that sessions
 * can resume.
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

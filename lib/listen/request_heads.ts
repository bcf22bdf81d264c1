/**
 * Whether a client is part-way through sending an HTTP request head, judged from the bytes it
 * sends (after TLS) and the requests the HTTP server has dispatched. The DoH front
 * (lib/listen/http_front.ts) closes a connection whose head stays incomplete past the read
 * timeout (slowloris); `Deno.serve` itself never gives up on a head. Pure: no sockets, no clock.
 *
 * HTTP/1.1: clients send nothing between requests, so bytes that arrive while no request is in
 * flight are the start of a head, and the head is complete once the server dispatches the
 * request. Bytes arriving while a request is in flight belong to its body, which the handler
 * reads under its own deadline.
 *
 * HTTP/2 (detected by the connection preface, RFC 9113 §3.4): control frames (PING, SETTINGS,
 * WINDOW_UPDATE) arrive at any time, so the frames themselves are followed: a head is incomplete
 * while a frame is incomplete or a header block (HEADERS without END_HEADERS, then
 * CONTINUATION) is still open.
 */

/** The HTTP/2 connection preface a client sends first. */
export const H2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const FRAME_HEADER = 9;
const HEADERS = 0x1;
const PUSH_PROMISE = 0x5;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;

/** Follows one connection's client-to-server bytes. */
export class RequestHeadTracker {
  /** "unknown" until the first bytes tell HTTP/1.1 from HTTP/2. */
  #protocol: "unknown" | "http/1.1" | "h2" = "unknown";
  #prefaceSeen = 0;
  /** HTTP/1.1: bytes of a head arrived since the last dispatch. */
  #headBytes = false;
  /** h2: bytes of the current frame header seen, and payload bytes still to come. */
  #header = new Uint8Array(FRAME_HEADER);
  #headerFill = 0;
  #payloadLeft = 0;
  #blockOpen = false;

  /** The protocol spoken, once known. */
  get protocol(): "unknown" | "http/1.1" | "h2" {
    return this.#protocol;
  }

  /** True while a request head (or, for HTTP/2, a frame) has started but not completed. */
  get partial(): boolean {
    if (this.#protocol === "unknown") return this.#prefaceSeen > 0;
    if (this.#protocol === "http/1.1") return this.#headBytes;
    return this.#headerFill > 0 || this.#payloadLeft > 0 || this.#blockOpen;
  }

  /**
   * Feeds bytes the client sent; `inFlight` is how many of its requests are being answered.
   * True when something (an HTTP/2 frame) completed in them: a part still pending then started
   * within this chunk.
   */
  push(chunk: Uint8Array, inFlight: number): boolean {
    let at = 0;
    if (this.#protocol === "unknown") {
      while (at < chunk.length && this.#prefaceSeen < H2_PREFACE.length) {
        if (chunk[at] !== H2_PREFACE[this.#prefaceSeen]) {
          this.#protocol = "http/1.1";
          break;
        }
        this.#prefaceSeen++;
        at++;
      }
      if (this.#protocol === "unknown") {
        if (this.#prefaceSeen < H2_PREFACE.length) return false;
        this.#protocol = "h2";
        return this.#frames(chunk, at) || true;
      }
    }
    if (this.#protocol === "http/1.1") {
      if (inFlight === 0 && chunk.length > 0) this.#headBytes = true;
      return false;
    }
    return this.#frames(chunk, at);
  }

  /** The server dispatched a request: for HTTP/1.1, the head that was arriving is complete. */
  dispatched(): void {
    this.#headBytes = false;
  }

  /** Follows frames through `chunk` from `start`; true if one completed. */
  #frames(chunk: Uint8Array, start: number): boolean {
    let completed = false;
    let at = start;
    while (at < chunk.length) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, chunk.length - at);
        this.#payloadLeft -= take;
        at += take;
        if (this.#payloadLeft === 0) completed = true;
        continue;
      }
      const take = Math.min(FRAME_HEADER - this.#headerFill, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), this.#headerFill);
      this.#headerFill += take;
      at += take;
      if (this.#headerFill < FRAME_HEADER) return completed;
      this.#headerFill = 0;
      const h = this.#header;
      this.#payloadLeft = (h[0] << 16) | (h[1] << 8) | h[2];
      const type = h[3];
      const flags = h[4];
      if (type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) {
        this.#blockOpen = (flags & END_HEADERS) === 0;
      }
      if (this.#payloadLeft === 0) completed = true;
    }
    return completed;
  }
}

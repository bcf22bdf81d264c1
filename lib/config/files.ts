/**
 * The files a configuration names (cert_file, key_file, ca_file): paths resolved against the
 * config's directory, read once each after the whole config is known to be valid, and their PEM
 * contents checked as start-up would check them (lib/sys/tls_material.ts).
 */

import { isAbsolute, join } from "node:path";
import { keyPath } from "./errors.ts";
import { describe, Invalid, type Reader, type Table } from "./readers.ts";
import { certificateProblem, keyPairProblem } from "../sys/tls_material.ts";

/** Reads a text file; throws on unreadable files (the error message is shown as the OS reason). */
export type FileReader = (path: string) => Promise<string>;

/** A file to read, where its contents go, and the key it came from (for messages). */
export interface FileJob {
  /** Key path and value as written, for messages. */
  key: string;
  value: unknown;
  /** Resolved path. */
  path: string;
  /** The PEM blocks wanted, or a message saying why the file has none. */
  extract: (text: string, file: string) => string[] | string;
  apply: (blocks: string[]) => void;
}

/** The reads a config needs, and the checks to run once they are done, in config order. */
export class FileJobs {
  #steps: (FileJob | (() => void))[] = [];

  /** Queues a file read. */
  read(job: FileJob): void {
    this.#steps.push(job);
  }

  /** Queues a check to run after the reads queued so far (it throws Invalid). */
  then(check: () => void): void {
    this.#steps.push(check);
  }

  /** Reads each file once, in order; the first unreadable or unsuitable file is the error. */
  async run(read: FileReader): Promise<void> {
    const texts = new Map<string, { text: string } | { error: string }>();
    for (const step of this.#steps) {
      if (typeof step === "function") {
        step();
        continue;
      }
      let got = texts.get(step.path);
      if (got === undefined) {
        try {
          got = { text: await read(step.path) };
        } catch (e) {
          got = { error: `cannot read ${step.path}: ${osReason(e)}` };
        }
        texts.set(step.path, got);
      }
      if ("error" in got) throw new Invalid(step.key, step.value, got.error);
      const blocks = step.extract(got.text, step.path);
      if (typeof blocks === "string") throw new Invalid(step.key, step.value, blocks);
      step.apply(blocks);
    }
  }
}

/** A file path as written (not yet resolved against the config's directory). */
export const filePathString: Reader<string> = (v, path) => {
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a file path string, got ${describe(v)}`);
  }
  if (v.trim() === "") throw new Invalid(path, v, "must not be empty");
  return v;
};

/** A file path key, resolved against baseDir; `required` is the hint when it is missing. */
export function filePath(
  t: Table,
  at: string,
  key: string,
  baseDir: string,
  required: string,
): string {
  const path = keyPath(at, key);
  if (t[key] === undefined) throw new Invalid(path, undefined, required);
  const v = filePathString(t[key], path, key);
  return isAbsolute(v) ? v : join(baseDir, v);
}

/**
 * Queues the reads of a certificate chain and its private key, then the check that they are a
 * pair; `apply` receives both once read.
 */
export function readKeyPair(
  files: FileJobs,
  t: Table,
  at: string,
  paths: { certFile: string; keyFile: string },
  apply: (cert: string, key: string) => void,
): void {
  let cert = "";
  let key = "";
  files.read({
    key: keyPath(at, "cert_file"),
    value: t.cert_file,
    path: paths.certFile,
    extract: pemCertificates,
    apply: (blocks) => cert = blocks.join(""),
  });
  files.read({
    key: keyPath(at, "key_file"),
    value: t.key_file,
    path: paths.keyFile,
    extract: pemPrivateKey,
    apply: (blocks) => key = blocks.join(""),
  });
  files.then(() => {
    const problem = keyPairProblem(cert, key);
    if (problem?.part === "cert") {
      throw new Invalid(
        keyPath(at, "cert_file"),
        t.cert_file,
        `${paths.certFile}: ${problem.reason}`,
      );
    }
    if (problem) {
      throw new Invalid(
        keyPath(at, "key_file"),
        t.key_file,
        `${paths.keyFile} cannot serve ${paths.certFile}: ${problem.reason}`,
      );
    }
    apply(cert, key);
  });
}

/** The PEM certificate blocks in `text`, or a message (string) saying why there are none. */
export function pemCertificates(text: string, file: string): string[] | string {
  const blocks = text.match(
    /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?\r?\n-----END CERTIFICATE-----/g,
  );
  if (!blocks) {
    return `${file} contains no PEM certificate (no "-----BEGIN CERTIFICATE-----" block)`;
  }
  for (const [i, block] of blocks.entries()) {
    if (!base64Body(block)) {
      return `${file} contains a malformed PEM certificate (body is not base64)`;
    }
    const problem = certificateProblem(block);
    if (problem !== null) {
      return `${file} contains a PEM certificate that does not parse (block ${i + 1}): ${problem}`;
    }
  }
  return blocks.map((b) => `${b.replace(/\r\n/g, "\n")}\n`);
}

/** The one unencrypted PEM private key block in `text`, or a message saying what is wrong. */
export function pemPrivateKey(text: string, file: string): string[] | string {
  const blocks = text.match(
    /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n[\s\S]*?\r?\n-----END \1-----/g,
  );
  if (!blocks) {
    return `${file} contains no PEM private key (no "-----BEGIN PRIVATE KEY-----" block)`;
  }
  if (blocks.length > 1) {
    return `${file} contains ${blocks.length} private keys; keep only the key of cert_file`;
  }
  const [block] = blocks;
  if (block.startsWith("-----BEGIN ENCRYPTED")) {
    return `${file} holds an encrypted private key, which cannot be used without a passphrase; ` +
      `decrypt it with "openssl pkey -in ${file} -out <new file>"`;
  }
  if (!base64Body(block)) {
    return `${file} contains a malformed PEM private key (body is not base64)`;
  }
  return [`${block.replace(/\r\n/g, "\n")}\n`];
}

/** True when the lines between a PEM block's BEGIN and END lines are base64. */
function base64Body(block: string): boolean {
  const body = block.split(/\r?\n/).slice(1, -1).join("");
  return /^[A-Za-z0-9+/]+={0,2}$/.test(body);
}

/** The OS's words for a failed read, without Deno's "readfile '<path>'" suffix. */
export function osReason(e: unknown): string {
  if (e instanceof Deno.errors.NotCapable) {
    return "dotproxy was not given read permission for it: add it to --allow-read " +
      "(e.g. --allow-read=.,/etc/hosts)";
  }
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/,?\s*(readfile|open|stat) '.*'$/s, "").replace(/:\s*$/, "") ||
    "unknown error";
}

/**
 * [[clients]]: named clients. A name comes from the networks listed here, from a DoT client
 * certificate or a DoH token; the ACL ([access] allow_clients, deny_clients), the rate limiter
 * (qps, burst: a bucket of the client's own instead of its prefix's), the query log and the
 * per-client metric use it (lib/identity/clients.ts).
 */

import { clientsProblem, MAX_NAMED_CLIENTS } from "../../identity/clients.ts";
import { clientNameProblem } from "../../identity/names.ts";
import { formatCidr } from "../../policy/acl.ts";
import { keyPath } from "../errors.ts";
import {
  arrayOf,
  cidrList,
  describe,
  integer,
  Invalid,
  number,
  type Reader,
  required,
  type Table,
} from "../readers.ts";
import { declareSection, key, readRow } from "../table.ts";

/** A client name as the configuration writes it (lib/identity/names.ts says what is valid). */
export const clientName: Reader<string> = (v, path) => {
  if (typeof v !== "string") {
    throw new Invalid(path, v, `expected a client name such as "alice", got ${describe(v)}`);
  }
  const problem = clientNameProblem(v);
  if (problem) throw new Invalid(path, v, problem);
  return v;
};

/** A list of client names (`allow_clients = ["alice", "office"]`). */
export const clientNameList: Reader<string[]> = (v, path, name) => {
  return arrayOf(v, path, name, "client names", '["alice"]').map((item, i) =>
    clientName(item, keyPath(path, i), name)
  );
};

/** The [[clients]] keys; a reload rebuilds the names, so every key is reloadable. */
export const CLIENTS = declareSection("clients", "clients", "array", {
  name: key(clientName, {
    doc: "the client's name: in the ACL, the query log and the per-client metric",
    reloadable: true,
  }),
  networks: key(cidrList(false), {
    default: [],
    defaultDoc: "[] (named by certificate or token only)",
    doc: "address prefixes this client owns (the longest prefix wins)",
    reloadable: true,
  }),
  qps: key(number({ min: 0, max: 1_000_000 }), {
    default: 0,
    doc: "the client's own rate limit, queries per second; 0: the [rate_limit] of its prefix",
    reloadable: true,
  }),
  burst: key(integer({ min: 1, max: 10_000_000 }), {
    defaultDoc: "twice qps (at least 1)",
    doc: "the client's own bucket size (with qps)",
    reloadable: true,
  }),
});

/** One [[clients]] entry. */
export interface ClientConfig {
  name: string;
  /** Canonical prefix texts ("10.1.0.0/16"). */
  networks: string[];
  /** Own rate limit in queries per second; 0: none (the prefix limit applies). */
  qps: number;
  /** Own bucket size; 0 while qps is 0. */
  burst: number;
}

/** Reads one [[clients]] entry `t` at key path `at` (keys already checked). */
export function readClient(t: Table, at: string): ClientConfig {
  const rows = CLIENTS.rows;
  const name = required(t, at, "name", rows.name.read, `e.g. name = "alice"`);
  const networks = readRow(rows.networks, t, at, "networks").map(formatCidr);
  const qps = readRow(rows.qps, t, at, "qps");
  if (t.burst !== undefined && qps === 0) {
    throw new Invalid(keyPath(at, "burst"), t.burst, "burst needs qps: set this client's qps too");
  }
  const burst = t.burst !== undefined
    ? rows.burst.read(t.burst, keyPath(at, "burst"), "burst")
    : qps > 0
    ? Math.max(1, Math.ceil(2 * qps))
    : 0;
  return { name, networks, qps, burst };
}

/** Checks the entries together (duplicate names, a prefix given twice, too many). */
export function checkClients(clients: readonly ClientConfig[]): void {
  if (clients.length > MAX_NAMED_CLIENTS) {
    throw new Invalid("clients", undefined, clientsProblem(clients)!);
  }
  const problem = clientsProblem(clients);
  if (problem === null) return;
  // The message starts with "clients[i].key": name that key and its value.
  const m = /^clients\[(\d+)\]\.(name|networks)/.exec(problem);
  if (!m) throw new Invalid("clients", undefined, problem);
  const c = clients[Number(m[1])];
  const value = m[2] === "name" ? c.name : c.networks;
  throw new Invalid(`clients[${m[1]}].${m[2]}`, value, problem.replace(/^[^:]*: /, ""));
}

/**
 * [[clients]] names and DoH token names are the per-client metric's labels: together at most
 * {@link MAX_NAMED_CLIENTS} distinct names (run after the tokens files are read).
 */
export function checkDeclaredNames(
  clients: readonly ClientConfig[],
  listeners: readonly { tokens?: readonly { name: string }[] }[],
): void {
  const names = new Set(clients.map((c) => c.name));
  for (const l of listeners) for (const t of l.tokens ?? []) names.add(t.name);
  if (names.size > MAX_NAMED_CLIENTS) {
    throw new Invalid(
      "clients",
      undefined,
      `${names.size} distinct client names ([[clients]] and DoH tokens) is more than the ` +
        `limit of ${MAX_NAMED_CLIENTS} (each is a metric label)`,
    );
  }
}

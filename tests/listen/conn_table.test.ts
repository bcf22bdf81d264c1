/**
 * Connection caps (lib/listen/conn_table.ts): at a cap the client's (or anyone's) longest-idle
 * connection makes room; busy connections are never cut; with none idle the newcomer is refused.
 */
import assert from "node:assert/strict";
import { ConnectionTable, type Tracked } from "../../lib/listen/conn_table.ts";

class Conn implements Tracked {
  evicted = false;
  constructor(readonly client: string, public lastActivity: number, public idle = true) {}
  evict(): void {
    this.evicted = true;
  }
}

function open(table: ConnectionTable<Conn>, client: string, at: number, idle = true): Conn | null {
  if (!table.admit(client)) return null;
  const c = new Conn(client, at, idle);
  table.add(c);
  return c;
}

Deno.test("at the total cap the longest-idle connection is evicted for the newcomer", () => {
  const table = new ConnectionTable<Conn>({ maxConnections: 3, maxConnectionsPerClient: 10 });
  const [a, b, c] = [open(table, "1", 30)!, open(table, "2", 10)!, open(table, "3", 20)!];
  const d = open(table, "4", 40);
  assert.ok(d);
  assert.deepEqual([a.evicted, b.evicted, c.evicted], [false, true, false]);
  assert.equal(table.size, 3);
  assert.deepEqual(table.stats, { open: 3, rejected: 0, evictedIdle: 1 });
});

Deno.test("at a client's cap only that client's own idle connection is evicted", () => {
  const table = new ConnectionTable<Conn>({ maxConnections: 10, maxConnectionsPerClient: 2 });
  const other = open(table, "other", 0)!;
  const [x, y] = [open(table, "x", 5)!, open(table, "x", 6)!];
  assert.ok(open(table, "x", 7));
  assert.deepEqual([other.evicted, x.evicted, y.evicted], [false, true, false]);
});

Deno.test("busy connections are never evicted: with none idle the newcomer is refused", () => {
  const table = new ConnectionTable<Conn>({ maxConnections: 2, maxConnectionsPerClient: 2 });
  const busy = [open(table, "a", 1, false)!, open(table, "b", 2, false)!];
  assert.equal(open(table, "c", 3), null);
  assert.equal(open(table, "a", 3), null);
  assert.ok(busy.every((c) => !c.evicted));
  assert.deepEqual(table.stats, { open: 2, rejected: 2, evictedIdle: 0 });
  table.remove(busy[0]);
  table.remove(busy[0]);
  assert.equal(table.size, 1);
  assert.ok(open(table, "c", 4));
});

/**
 * The connections a listener holds, capped in total and per client address. When a cap is
 * reached, the longest-idle connection that counts against it is evicted to make room for the
 * newcomer; if none is idle, the newcomer is refused. Either way the offender pays: a client
 * that fills its own quota with idle connections loses its own oldest one, and busy connections
 * are never cut. Removal is synchronous, so an evicted connection's slot is free at once.
 */

/** What the table needs of a connection. */
export interface Tracked {
  /** The client's address (the cap per client is on this). */
  readonly client: string;
  /** True when nothing is in flight on it: it may be evicted. */
  readonly idle: boolean;
  /** Clock time of its last request (or when it was accepted); the oldest is evicted first. */
  readonly lastActivity: number;
  /** Closes it at once; must call `ConnectionTable.remove` (synchronously or later). */
  evict(): void;
}

/** The caps. */
export interface ConnectionCaps {
  maxConnections: number;
  maxConnectionsPerClient: number;
}

/** Counters for metrics and tests. */
export interface AdmissionStats {
  open: number;
  rejected: number;
  evictedIdle: number;
}

/** The set of open connections with its caps. */
export class ConnectionTable<T extends Tracked> {
  readonly #all = new Set<T>();
  readonly #perClient = new Map<string, Set<T>>();

  /** `stats` is updated in place (it may be a larger object the owner exposes). */
  constructor(
    private readonly caps: ConnectionCaps,
    readonly stats: AdmissionStats = { open: 0, rejected: 0, evictedIdle: 0 },
  ) {}

  /** The connections open now. */
  get size(): number {
    return this.#all.size;
  }

  /** Every open connection (a copy: safe to close them while iterating). */
  list(): T[] {
    return [...this.#all];
  }

  /**
   * Whether a new connection from `client` may be added, after evicting an idle one if a cap
   * is reached. Counts a refusal.
   */
  admit(client: string): boolean {
    const mine = this.#perClient.get(client);
    if (mine && mine.size >= this.caps.maxConnectionsPerClient) {
      if (!this.#evictOldestIdle(mine)) return this.#refuse();
    }
    if (this.#all.size >= this.caps.maxConnections && !this.#evictOldestIdle(this.#all)) {
      return this.#refuse();
    }
    return true;
  }

  /** Adds an admitted connection. */
  add(conn: T): void {
    this.#all.add(conn);
    let mine = this.#perClient.get(conn.client);
    if (!mine) this.#perClient.set(conn.client, mine = new Set());
    mine.add(conn);
    this.stats.open = this.#all.size;
  }

  /** Removes a connection (closed or evicted); harmless if it is not there. */
  remove(conn: T): void {
    if (!this.#all.delete(conn)) return;
    const mine = this.#perClient.get(conn.client);
    mine?.delete(conn);
    if (mine?.size === 0) this.#perClient.delete(conn.client);
    this.stats.open = this.#all.size;
  }

  #evictOldestIdle(among: Set<T>): boolean {
    let victim: T | null = null;
    for (const c of among) {
      if (c.idle && (!victim || c.lastActivity < victim.lastActivity)) victim = c;
    }
    if (!victim) return false;
    this.stats.evictedIdle++;
    victim.evict();
    this.remove(victim);
    return true;
  }

  #refuse(): boolean {
    this.stats.rejected++;
    return false;
  }
}

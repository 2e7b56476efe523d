/**
 * Events out to open connections: fan-out to everyone who holds the event's scope and passes a
 * filter, or to one connection by id. Each connection numbers its own events (see the sender).
 */
import type { Connection, Peer, PeerRegistry } from "./peer.ts";
import { defaultEventScope, hasScope } from "./scopes.ts";
import type { Scope } from "./scopes.ts";
import type { Sender } from "./sender.ts";

export interface BroadcastOptions {
  /** Scope a connection needs; null = every authenticated connection. Default: by event name (chat, agent, sessions.changed, session.message, presence → operator.read; others → null). */
  scope?: Scope | null;
  filter?: (conn: Connection) => boolean;
}

export interface Broadcaster {
  /** Event to every open connection that holds the scope and passes the filter (a filter that throws excludes the connection). */
  broadcast(event: string, payload: unknown, options?: BroadcastOptions): void;
  /** Event to one open connection (no scope check); false when it is gone or not writable. */
  send(connId: string, event: string, payload: unknown): boolean;
  /** The open connections, in handshake order. */
  connections(): Connection[];
}

export function createBroadcaster(deps: { peers: PeerRegistry; sender: Sender; log: (line: string) => void }): Broadcaster {
  const { peers, sender, log } = deps;

  function passes(filter: BroadcastOptions["filter"], conn: Connection, event: string): boolean {
    if (filter === undefined) return true;
    try {
      return filter(conn);
    } catch (error) {
      log(`gateway broadcast filter for ${event} threw: ${(error as Error).message}`);
      return false;
    }
  }

  function reaches(peer: Peer, scope: Scope | null, options: BroadcastOptions, event: string): boolean {
    const conn = peer.conn;
    if (conn === undefined || peer.phase !== "open") return false;
    if (scope !== null && !hasScope(conn.scopes, scope)) return false;
    return passes(options.filter, conn, event);
  }

  return {
    broadcast(event, payload, options = {}) {
      const scope = options.scope === undefined ? defaultEventScope(event) : options.scope;
      const payloadJson = JSON.stringify(payload) as string | undefined;
      for (const peer of peers.open.values()) {
        if (reaches(peer, scope, options, event)) sender.event(peer, event, payloadJson);
      }
    },
    send(connId, event, payload) {
      const peer = peers.open.get(connId);
      if (peer === undefined || peer.phase !== "open") return false;
      return sender.event(peer, event, JSON.stringify(payload) as string | undefined);
    },
    connections: () => [...peers.open.values()].flatMap((peer) => (peer.conn !== undefined && peer.phase === "open" ? [peer.conn] : [])),
  };
}

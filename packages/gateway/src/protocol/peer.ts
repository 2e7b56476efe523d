/**
 * One socket's state (a {@link Peer}) and the registry of all of them. A peer moves
 * handshake → open → closing → closed; only open peers have a {@link Connection} and are
 * reachable by connId.
 */
import type { WebSocket } from "ws";

/** An authenticated connection as method handlers see it. */
export interface Connection {
  readonly connId: string;
  readonly scopes: ReadonlySet<string>;
  readonly client: { id: string; mode: string; version?: string };
  readonly caps: ReadonlySet<string>;
  /** What the client proved on connect: the gateway token, or nothing (gateway.auth.mode "none"). */
  readonly credential: "token" | "none";
  /** Per-connection state for method handlers, e.g. "sessions.subscribed". */
  readonly data: Map<string, unknown>;
}

export interface Peer {
  readonly ws: WebSocket;
  /** `address:port` of the remote end, for log lines. */
  readonly remote: string;
  /** The remote address, and the browser Origin of the upgrade if it carried one: the keys of auth throttling. */
  readonly address: string;
  readonly origin: string | undefined;
  /** Requests of this peer whose final response has not been sent. */
  inFlight: number;
  /** handshake → open → closing → closed; a rejected handshake goes straight to closing. */
  phase: "handshake" | "open" | "closing" | "closed";
  /** Set when the handshake succeeds. */
  conn: Connection | undefined;
  /** The seq of the last event written; the next event gets seq + 1. */
  seq: number;
  /** False between a ping and its pong. */
  alive: boolean;
  handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Aborted when the socket closes (method handlers see its signal). */
  readonly abort: AbortController;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  /** Resolves {@link closed}; called once, by the socket's close handler. */
  readonly settleClosed: () => void;
}

export function createPeer(ws: WebSocket, identity: { address: string; port: number | undefined; origin: string | undefined }): Peer {
  let settleClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    settleClosed = resolve;
  });
  const { address, origin } = identity;
  const remote = `${address}:${identity.port ?? "?"}`;
  return { ws, remote, address, origin, inFlight: 0, phase: "handshake", conn: undefined, seq: 0, alive: true, handshakeTimer: undefined, abort: new AbortController(), closed, settleClosed };
}

export function clearHandshakeTimer(peer: Peer): void {
  if (peer.handshakeTimer !== undefined) {
    clearTimeout(peer.handshakeTimer);
    peer.handshakeTimer = undefined;
  }
}

/**
 * Every socket the server holds (`all`, in accept order) and the open ones by connId (`open`, in
 * handshake order: the order broadcasts reach them).
 */
export interface PeerRegistry {
  readonly all: ReadonlySet<Peer>;
  readonly open: ReadonlyMap<string, Peer>;
  add(peer: Peer): void;
  /** Marks a peer open under its new connection. */
  opened(peer: Peer, conn: Connection): void;
  /** Forgets a peer whose socket has closed. */
  remove(peer: Peer): void;
}

export function createPeerRegistry(): PeerRegistry {
  const all = new Set<Peer>();
  const open = new Map<string, Peer>();
  return {
    all,
    open,
    add: (peer) => void all.add(peer),
    opened(peer, conn) {
      peer.conn = conn;
      peer.phase = "open";
      open.set(conn.connId, peer);
    },
    remove(peer) {
      all.delete(peer);
      if (peer.conn !== undefined) open.delete(peer.conn.connId);
    },
  };
}

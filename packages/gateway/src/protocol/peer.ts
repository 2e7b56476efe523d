/**
 * One socket's state (a {@link Peer}) and the registry of all of them. A peer moves
 * handshake → open → closing → closed; only open peers have a {@link Connection} and are
 * reachable by connId.
 */
import type { Socket } from "node:net";
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
  /** Corks the socket until the end of this tick (see {@link corkPerTick}); the sender calls it before each frame. */
  readonly corkTick: () => void;
}

/**
 * What is written to a socket in one tick leaves in one write: the first frame of a tick corks
 * the socket and the end of the tick (process.nextTick) uncorks it. ws hands every frame of a
 * read to its handlers synchronously, so the replies to one read go out together, and so do the
 * events one turn of the loop emits (a run's end: its lifecycle end and its final; the starts of
 * the runs one commit admitted). Each frame is still handed over at once; what is saved is a
 * `writev` per frame, which on loopback costs more than admitting a turn.
 */
export function corkPerTick(socket: Socket): () => void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  return () => {
    if (corked) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  };
}

export function createPeer(ws: WebSocket, identity: { address: string; port: number | undefined; origin: string | undefined }, socket: Socket): Peer {
  let settleClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    settleClosed = resolve;
  });
  const { address, origin } = identity;
  const remote = `${address}:${identity.port ?? "?"}`;
  const corkTick = corkPerTick(socket);
  return { ws, remote, address, origin, inFlight: 0, phase: "handshake", conn: undefined, seq: 0, alive: true, handshakeTimer: undefined, abort: new AbortController(), closed, settleClosed, corkTick };
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

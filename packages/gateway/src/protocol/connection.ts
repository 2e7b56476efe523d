/**
 * One accepted socket from upgrade to close (the receiving side): registers the peer, sends the
 * `connect.challenge`, arms the handshake timeout (close 1008), cuts off a peer refused before
 * authentication (the pre-auth frame limit itself is enforced by ws while reading, see
 * frame-limit.ts), and routes
 * each frame by phase (handshake → the handshake handler, open → dispatch, otherwise dropped).
 * On close it forgets the peer, aborts its handlers' signal and settles `peer.closed`.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { RawData, WebSocket } from "ws";
import type { RequestHandler } from "./dispatch.ts";
import { encodeEvent } from "./frames.ts";
import { requestIdentity } from "./admission.ts";
import { CLOSE_POLICY_VIOLATION, CLOSE_SERVICE_RESTART } from "./handshake.ts";
import type { ProtocolLimits } from "./limits.ts";
import { clearHandshakeTimer, createPeer } from "./peer.ts";
import type { Peer, PeerRegistry } from "./peer.ts";
import { type Sender, terminateSoon } from "./sender.ts";

export interface ConnectionDeps {
  limits: Required<ProtocolLimits>;
  peers: PeerRegistry;
  sender: Sender;
  /** True once the server is closing: a socket accepted now is closed 1012 at once. */
  isClosing(): boolean;
  /** The peer's first frame (already checked against `preauthMaxBytes`). */
  onHandshakeFrame(peer: Peer, text: string): void;
  onRequestFrame: RequestHandler;
  log: (line: string) => void;
}

function rawDataToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * A peer refused before authentication (a frame over the pre-auth limit): ws has written its close
 * (1009) and goes on reading, to discard what still arrives. Reading a flood only to drop it costs
 * memory and CPU: stop reading once ws has resumed the socket (TCP flow control then stalls the
 * sender), and cut the connection after a short grace instead of the usual 30 s.
 */
function cutOff(peer: Peer, socket: Socket): void {
  peer.phase = "closing";
  clearHandshakeTimer(peer);
  setImmediate(() => socket.pause());
  terminateSoon(peer);
}

/** Bookkeeping that runs whatever the phase: errors, pongs, and the close. */
function trackSocket(peer: Peer, socket: Socket, deps: ConnectionDeps): void {
  const { ws, remote } = peer;
  ws.on("error", (error) => {
    deps.log(`gateway ws ${remote} error: ${error.message}`);
    if (peer.conn === undefined) cutOff(peer, socket);
  });
  ws.on("pong", () => {
    peer.alive = true;
  });
  ws.on("close", (code, reason) => {
    const wasOpen = peer.conn !== undefined;
    peer.phase = "closed";
    clearHandshakeTimer(peer);
    deps.peers.remove(peer);
    peer.abort.abort();
    if (wasOpen) deps.log(`gateway ws closed conn=${peer.conn?.connId ?? "-"} code=${code} reason=${reason.toString("utf8")}`);
    peer.settleClosed();
  });
}

function receive(peer: Peer, deps: ConnectionDeps): void {
  peer.ws.on("message", (data, _isBinary) => {
    const buffer = rawDataToBuffer(data);
    if (peer.phase === "handshake") {
      // Never above preauthMaxBytes: ws refuses a larger frame from its header (frame-limit.ts).
      deps.onHandshakeFrame(peer, buffer.toString("utf8"));
    } else if (peer.phase === "open" && peer.conn !== undefined) {
      deps.onRequestFrame(peer, peer.conn, buffer.toString("utf8"));
    }
  });
}

function armHandshakeTimeout(peer: Peer, deps: ConnectionDeps): void {
  peer.handshakeTimer = setTimeout(() => {
    peer.handshakeTimer = undefined;
    if (peer.phase === "handshake") {
      deps.log(`gateway ws ${peer.remote}: handshake timeout`);
      deps.sender.close(peer, CLOSE_POLICY_VIOLATION, "handshake timeout");
    }
  }, deps.limits.handshakeTimeoutMs);
}

/** Takes over a socket the server just accepted. */
export function acceptConnection(ws: WebSocket, request: IncomingMessage, deps: ConnectionDeps): void {
  const peer = createPeer(ws, { ...requestIdentity(request), port: request.socket.remotePort }, request.socket);
  deps.peers.add(peer);
  trackSocket(peer, request.socket, deps);
  if (deps.isClosing()) {
    deps.sender.close(peer, CLOSE_SERVICE_RESTART, "service restart");
    return;
  }
  receive(peer, deps);
  armHandshakeTimeout(peer, deps);
  deps.sender.write(peer, encodeEvent("connect.challenge", JSON.stringify({ nonce: randomUUID(), ts: Date.now() }), undefined));
}

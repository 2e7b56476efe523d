/**
 * Everything that goes out on a socket: responses, events with the per-connection seq, and
 * closes. Enforces the outbound limit: a peer whose buffer is above `maxBufferedBytes` is closed
 * 1008 "slow consumer" instead of being written to.
 */
import { WebSocket } from "ws";
import { toWireError } from "../errors.ts";
import type { WireError } from "../errors.ts";
import { encodeEvent, encodeResponse } from "./frames.ts";
import { CLOSE_POLICY_VIOLATION, truncateCloseReason } from "./handshake.ts";
import { clearHandshakeTimer } from "./peer.ts";
import type { Peer } from "./peer.ts";

export interface SenderOptions {
  /** Outbound buffer above which a socket is closed 1008 "slow consumer". */
  maxBufferedBytes: number;
  log: (line: string) => void;
}

export interface Sender {
  /** Writes one frame; false when the socket is not open or was just closed as a slow consumer. */
  write(peer: Peer, text: string): boolean;
  /** Starts the close handshake (the peer becomes `closing`); terminates the socket if close throws. */
  close(peer: Peer, code: number, reason: string): void;
  /** Sends an event with the peer's next seq (consumed only when the frame is written). */
  event(peer: Peer, event: string, payloadJson: string | undefined): boolean;
  /** A response; a payload that cannot be serialised becomes an error response with the same id. */
  respond(peer: Peer, id: string, ok: boolean, payload?: unknown, error?: WireError): void;
  /** An error response; anything thrown maps to the wire error shape through {@link toWireError}. */
  respondError(peer: Peer, id: string, error: unknown): void;
}

/**
 * How long a socket that never authenticated has to answer our close frame before it is cut (ws
 * waits 30 s): a refused socket must not hold a place under gateway.maxConnections for long.
 */
export const REFUSED_CLOSE_GRACE_MS = 1000;

function closePeer(options: SenderOptions, peer: Peer, code: number, reason: string): void {
  if (peer.phase !== "closed") peer.phase = "closing";
  clearHandshakeTimer(peer);
  try {
    peer.ws.close(code, truncateCloseReason(reason));
  } catch (error) {
    options.log(`gateway ws close failed: ${(error as Error).message}`);
    peer.ws.terminate();
  }
  if (peer.conn === undefined) terminateSoon(peer);
}

/** Cuts a peer that never authenticated once {@link REFUSED_CLOSE_GRACE_MS} has passed, answered close or not. */
export function terminateSoon(peer: Peer): void {
  setTimeout(() => peer.ws.terminate(), REFUSED_CLOSE_GRACE_MS).unref();
}

function write(options: SenderOptions, peer: Peer, text: string): boolean {
  if (peer.ws.readyState !== WebSocket.OPEN) return false;
  if (peer.ws.bufferedAmount > options.maxBufferedBytes) {
    options.log(`gateway ws slow consumer conn=${peer.conn?.connId ?? "-"} buffered=${peer.ws.bufferedAmount}`);
    closePeer(options, peer, CLOSE_POLICY_VIOLATION, "slow consumer");
    return false;
  }
  // Every frame of this tick to this peer leaves in one write (peer.ts, corkPerTick).
  peer.corkTick();
  peer.ws.send(text);
  return true;
}

function writeEvent(options: SenderOptions, peer: Peer, event: string, payloadJson: string | undefined): boolean {
  if (peer.ws.readyState !== WebSocket.OPEN) return false;
  const seq = peer.seq + 1;
  if (!write(options, peer, encodeEvent(event, payloadJson, seq))) return false;
  peer.seq = seq;
  return true;
}

function respond(options: SenderOptions, peer: Peer, id: string, ok: boolean, payload?: unknown, error?: WireError): void {
  let text: string;
  try {
    text = encodeResponse(id, ok, payload, error);
  } catch (serializeError) {
    options.log(`gateway response for ${id} could not be serialised: ${(serializeError as Error).message}`);
    text = encodeResponse(id, false, undefined, toWireError(serializeError));
  }
  write(options, peer, text);
}

export function createSender(options: SenderOptions): Sender {
  return {
    write: (peer, text) => write(options, peer, text),
    close: (peer, code, reason) => closePeer(options, peer, code, reason),
    event: (peer, event, payloadJson) => writeEvent(options, peer, event, payloadJson),
    respond: (peer, id, ok, payload, error) => respond(options, peer, id, ok, payload, error),
    respondError: (peer, id, error) => respond(options, peer, id, false, undefined, toWireError(error)),
  };
}

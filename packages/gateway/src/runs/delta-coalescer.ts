/**
 * Turns a runner's reply chunks into the deltas a run puts on the wire, so that the cost of a
 * reply grows linearly with its length whatever the runner's chunking (one word, one token or one
 * pipe read per chunk).
 */

/**
 * The longest reply (in UTF-16 characters, 16 Ki) that a delta still attaches whole as its
 * snapshot, on the doubling schedule. Snapshots let a client that joined mid-reply catch up
 * (OpenClaw's control UI resyncs from `message` when it has one); past this length a reply
 * streams as its deltas alone, so each event stream carries a long reply about once (a 1 MiB
 * reply with snapshots up to its length would carry it about three times per stream).
 */
export const SNAPSHOT_MAX_CHARS = 16 * 1024;

/** One delta as the wire carries it. */
export interface CoalescedDelta {
  /** The reply text new since the previous delta; never empty. */
  readonly delta: string;
  /**
   * The whole reply so far. The first delta always carries one; a later delta carries one only when
   * the reply is at least twice as long as the last snapshot sent and at most
   * {@link SNAPSHOT_MAX_CHARS} long. So the snapshots of a reply add up to less than its first
   * delta plus 2 × SNAPSHOT_MAX_CHARS characters, however long it is and however many deltas it takes.
   */
  readonly snapshot?: string;
}

export interface DeltaCoalescerOptions {
  /**
   * `gateway.deltaWindowMs`: at most one delta per window. A chunk that arrives when no window is
   * open goes out at once and opens one; chunks that arrive while it is open wait for its end.
   * 0 = a window ends on the next turn of the event loop (only chunks that arrive together merge).
   */
  windowMs: number;
  /** `gateway.deltaMaxBytes`: pending text of at least this many UTF-8 bytes goes out at once, window or not. */
  maxBytes: number;
  emit(delta: CoalescedDelta): void;
}

export interface DeltaCoalescer {
  /** Adds a chunk of reply text (empty chunks are ignored). */
  push(chunk: string): void;
  /** Sends what is pending now and closes the window; call it before the run's terminal event. */
  flush(): void;
}

/**
 * A throttle with a size valve. The number of deltas is at most one per window plus one per
 * `maxBytes` of text, and each carries only its own text plus, on a doubling schedule that stops
 * at {@link SNAPSHOT_MAX_CHARS}, a snapshot: the characters of all deltas of a reply of n
 * characters stay below n + its first delta + 2 × SNAPSHOT_MAX_CHARS, plus a constant per delta.
 * Timers only end windows; nothing reads the clock, so a reply produced in one synchronous burst
 * always gives the same deltas.
 */
export function createDeltaCoalescer(options: DeltaCoalescerOptions): DeltaCoalescer {
  const { windowMs, maxBytes, emit } = options;
  let pending = "";
  let pendingBytes = 0;
  let sentLength = 0;
  let snapshotLength = 0;
  let reply = "";
  let window: ReturnType<typeof setTimeout> | undefined;

  function send(): void {
    if (pending === "") return;
    const delta = pending;
    pending = "";
    pendingBytes = 0;
    sentLength += delta.length;
    if (snapshotLength === 0 || (sentLength >= 2 * snapshotLength && sentLength <= SNAPSHOT_MAX_CHARS)) {
      snapshotLength = sentLength;
      emit({ delta, snapshot: reply });
    } else {
      emit({ delta });
    }
  }

  function openWindow(): void {
    window = setTimeout(() => {
      window = undefined;
      if (pending === "") return;
      send();
      openWindow();
    }, windowMs);
  }

  return {
    push(chunk) {
      if (chunk === "") return;
      pending += chunk;
      reply += chunk;
      pendingBytes += Buffer.byteLength(chunk, "utf8");
      if (window === undefined) {
        send();
        openWindow();
      } else if (pendingBytes >= maxBytes) {
        send();
      }
    },
    flush() {
      clearTimeout(window);
      window = undefined;
      send();
    },
  };
}

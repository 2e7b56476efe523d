/**
 * Turns a runner's reply chunks into the deltas a run puts on the wire, so that the cost of a
 * reply grows linearly with its length whatever the runner's chunking (one word, one token or one
 * pipe read per chunk).
 */

/** One delta as the wire carries it. */
export interface CoalescedDelta {
  /** The reply text new since the previous delta; never empty. */
  readonly delta: string;
  /**
   * The whole reply so far, present only when it is at least twice as long as the last snapshot
   * sent (the first delta always carries one): the snapshots of a reply of n characters add up to
   * less than 2n, however many deltas it takes.
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
 * `maxBytes` of text, and each carries only its own text plus, on a doubling schedule, a
 * snapshot: the bytes of all deltas of a reply of n bytes stay below 3n plus a constant per delta.
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
    if (sentLength >= 2 * snapshotLength) {
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

/**
 * The sweeper's clock: a first pass shortly after start, then one every `intervalMs` after the
 * previous pass ended (passes never overlap). Timers are unref'd, so the sweeper never keeps the
 * gateway alive; `stop()` clears them and waits for a pass in flight.
 */
export interface SweeperOptions {
  readonly intervalMs: number;
  /** Before the first pass (ms): the gateway finishes starting first. */
  readonly firstDelayMs: number;
  /** One pass; must not reject (the plugin wraps it). */
  readonly pass: () => Promise<void>;
}

export interface Sweeper {
  start(): void;
  stop(): Promise<void>;
}

export function createSweeper(options: SweeperOptions): Sweeper {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(tick, ms);
    timer.unref();
  };
  function tick(): void {
    timer = undefined;
    running = options.pass().finally(() => {
      running = undefined;
      schedule(options.intervalMs);
    });
  }
  return {
    start(): void {
      if (!stopped) return;
      stopped = false;
      schedule(options.firstDelayMs);
    },
    async stop(): Promise<void> {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}

/**
 * Idle deadlines of many sessions on one timer. Every deadline is "now + the same TTL", so a Map
 * in insertion order is already sorted by deadline once re-arming deletes before it sets: the
 * first entry is always the next one due, and one `setTimeout` waits for it. A live session then
 * costs one Map entry instead of a `Timeout` and its closure.
 */
export interface IdleTimers {
  /** (Re)arms `key`: due `ttlMs` from now. */
  arm(key: string): void;
  /** Disarms `key`; false when it was not armed. */
  cancel(key: string): boolean;
  has(key: string): boolean;
  readonly size: number;
}

export function createIdleTimers(ttlMs: number, onDue: (key: string) => void): IdleTimers {
  const due = new Map<string, number>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline the timer waits for, when it is set. */
  let timerAt = Infinity;

  function schedule(): void {
    const first = due.values().next();
    const next = first.done === true ? Infinity : first.value;
    if (next === timerAt) return;
    clearTimeout(timer);
    timer = undefined;
    timerAt = next;
    if (next === Infinity) return;
    timer = setTimeout(fire, Math.max(0, next - performance.now()));
    timer.unref();
  }

  function fire(): void {
    timer = undefined;
    timerAt = Infinity;
    const now = performance.now();
    const fired: string[] = [];
    for (const [key, deadline] of due) {
      if (deadline > now) break;
      fired.push(key);
    }
    for (const key of fired) due.delete(key);
    schedule();
    for (const key of fired) onDue(key);
  }

  return {
    arm(key) {
      due.delete(key);
      due.set(key, performance.now() + ttlMs);
      schedule();
    },
    cancel(key) {
      const had = due.delete(key);
      if (had) schedule();
      return had;
    },
    has(key) {
      return due.has(key);
    },
    get size() {
      return due.size;
    },
  };
}

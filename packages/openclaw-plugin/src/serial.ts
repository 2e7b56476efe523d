/**
 * Runs jobs one at a time, in order: a `session_end` release and a sweep pass never decide the
 * same directory at once. A job's failure is its caller's to handle; the queue goes on.
 */
export interface SerialQueue {
  run<T>(job: () => Promise<T>): Promise<T>;
  /** Resolves when every job queued so far has settled. */
  idle(): Promise<void>;
}

export function createSerialQueue(): SerialQueue {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    run<T>(job: () => Promise<T>): Promise<T> {
      const next = tail.then(job);
      tail = next.catch(() => undefined);
      return next;
    },
    idle: () => tail.then(() => undefined),
  };
}

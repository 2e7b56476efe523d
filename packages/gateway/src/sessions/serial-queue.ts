/**
 * A first-in, first-out queue of async tasks: a task starts once every task queued before it has
 * settled. Tasks of one queue never overlap, and no task ever waits on one queued after it, so
 * a queue cannot deadlock as long as its tasks do not wait on the queue themselves.
 */
export interface SerialQueue {
  /**
   * Queues `task` and settles as it does. With `signal`: if the signal aborts before the task has
   * started, the returned promise rejects at once with the signal's reason and the task is skipped
   * when its turn comes; once started, a task runs to its end and the promise follows it.
   */
  push<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Tasks queued or running. */
  readonly size: number;
}

/** `onDrain` runs each time the last queued task has settled (size back to 0). */
export function createSerialQueue(onDrain?: () => void): SerialQueue {
  let tail: Promise<unknown> = Promise.resolve();
  let size = 0;

  function push<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    size += 1;
    let started = false;
    const ran = tail.then(() => {
      if (signal?.aborted === true) throw signal.reason;
      started = true;
      return task();
    });
    tail = ran.then(settled, settled);
    return signal === undefined ? ran : abortableWait(ran, signal, () => started);
  }

  function settled(): void {
    size -= 1;
    if (size === 0) onDrain?.();
  }

  return {
    push,
    get size() {
      return size;
    },
  };
}

/** `ran`, or the signal's reason as soon as it aborts while `started()` is still false. */
function abortableWait<T>(ran: Promise<T>, signal: AbortSignal, started: () => boolean): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      if (!started()) reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    ran.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

import { GatewayError } from "../errors.ts";

/** True for the reason `AbortSignal.timeout()` aborts with (a `TimeoutError` DOMException). */
export function isTimeoutReason(reason: unknown): boolean {
  return reason instanceof Error && reason.name === "TimeoutError";
}

/**
 * What a run rejects with once `signal` has aborted: a `TimeoutError` becomes
 * GatewayError("RUNNER_TIMEOUT"), any other Error reason is returned as it is, and a non-Error
 * reason becomes GatewayError("RUNNER_ABORTED").
 */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (isTimeoutReason(reason)) return new GatewayError("RUNNER_TIMEOUT", "The run timed out and was stopped", { cause: reason });
  if (reason instanceof Error) return reason;
  const why = typeof reason === "string" && reason !== "" ? `: ${reason}` : "";
  return new GatewayError("RUNNER_ABORTED", `The run was aborted${why}`, reason === undefined ? {} : { cause: reason });
}

/** The error a runner's `run` rejects with after `close()`. */
export function runnerClosedError(kind: string): GatewayError {
  return new GatewayError("RUNNER_ABORTED", `The ${kind} runner is closed`);
}

/**
 * Resolves after `ms`, or rejects with {@link abortError} as soon as one of `signals` aborts
 * (immediately if one already has). The timer and listeners are always cleaned up.
 */
export function abortableDelay(ms: number, signals: readonly AbortSignal[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const already = signals.find((signal) => signal.aborted);
    if (already !== undefined) {
      reject(abortError(already));
      return;
    }
    const cleanup = (): void => {
      clearTimeout(timer);
      for (const signal of signals) signal.removeEventListener("abort", onAbort);
    };
    const onAbort = (event: Event): void => {
      cleanup();
      reject(abortError(event.target as AbortSignal));
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve();
    }, ms);
    for (const signal of signals) signal.addEventListener("abort", onAbort, { once: true });
  });
}

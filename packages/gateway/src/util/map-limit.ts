import pLimit from "p-limit";

/** Runs `fn` on each item, at most `limit` at a time (p-limit); results in input order. */
export function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const run = pLimit(Math.max(1, limit));
  return Promise.all(items.map((item, index) => run(() => fn(item, index))));
}

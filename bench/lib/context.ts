import type { Row } from "./report.ts";

/** What every bench section gets: its own directory under the bench root, and where to put results. */
export interface SectionContext {
  /** A fresh directory for this section, inside the bench's mkdtemp root. */
  readonly dir: string;
  /** Rows for the table, in order. */
  readonly rows: Row[];
  /** Extra numbers for latest.json (per-section object). */
  readonly details: Record<string, unknown>;
  /** Progress to stderr (the table goes to stdout). */
  log(line: string): void;
}

/**
 * The report: one row per measure, printed as a table and written as JSON. A target is never a
 * verdict on the run: a missed one is printed with its gap, and the bench still exits 0.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import type { Stats } from "./stats.ts";

export type Unit = "ns" | "ms" | "s" | "MB" | "B" | "x" | "count";

export interface Target {
  /** Which number the target applies to. */
  readonly on: "p50" | "p95" | "p99" | "value";
  /** The target holds when that number is at most this. */
  readonly max: number;
  readonly text: string;
}

export interface Row {
  readonly id: string;
  readonly measure: string;
  readonly unit: Unit;
  readonly p50?: number | undefined;
  readonly p95?: number | undefined;
  readonly p99?: number | undefined;
  readonly n?: number | undefined;
  readonly value?: number | undefined;
  /** Printed instead of the formatted value (e.g. "1.2 KB, 0.00 files"). */
  readonly display?: string | undefined;
  readonly target?: Target | undefined;
  /** null when there is no target or nothing was measured. */
  readonly met: boolean | null;
  /** For a missed target: how far off, in words. */
  readonly gap: string | null;
  /** Upstream OpenClaw 2026.9.6's number for the same measure (another machine), if comparable. */
  readonly upstream?: string | undefined;
  readonly note?: string | undefined;
}

export function format(value: number | undefined, unit: Unit): string {
  if (value === undefined || Number.isNaN(value)) return "";
  switch (unit) {
    case "ns":
      return value >= 100 ? `${Math.round(value).toLocaleString("en-US")} ns` : `${value.toFixed(1)} ns`;
    case "ms":
      return value >= 100 ? `${value.toFixed(0)} ms` : value >= 10 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
    case "s":
      return `${value.toFixed(2)} s`;
    case "MB":
      return `${value.toFixed(1)} MB`;
    case "B":
      return value >= 10_000 ? `${(value / 1024).toFixed(1)} KB` : `${value.toFixed(0)} B`;
    case "x":
      return `${value.toFixed(2)}×`;
    case "count":
      return value.toLocaleString("en-US");
  }
}

/** A row from distribution stats, with the target checked against the chosen quantile. */
export function statRow(id: string, measure: string, s: Stats, unit: Unit, extra: { target?: Target; upstream?: string; note?: string } = {}): Row {
  return judge({ id, measure, unit, p50: s.p50, p95: s.p95, p99: s.p99, n: s.n, ...extra });
}

/** A single-value row. */
export function valueRow(id: string, measure: string, value: number, unit: Unit, extra: { target?: Target; upstream?: string; note?: string; display?: string; n?: number } = {}): Row {
  return judge({ id, measure, unit, value, ...extra });
}

function judge(row: Omit<Row, "met" | "gap">): Row {
  const target = row.target;
  if (target === undefined) return { ...row, met: null, gap: null };
  const actual = row[target.on];
  if (actual === undefined || Number.isNaN(actual)) return { ...row, met: null, gap: "not measured" };
  if (actual <= target.max) return { ...row, met: true, gap: null };
  const over = actual - target.max;
  const times = target.max > 0 && row.unit !== "x" ? `, ${(actual / target.max).toFixed(2)}× the target` : "";
  const what = target.on === "value" ? format(actual, row.unit) : `${target.on} ${format(actual, row.unit)}`;
  const overText = row.unit === "x" ? over.toFixed(2) : format(over, row.unit);
  return { ...row, met: false, gap: `${what}, ${overText} over${times}` };
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly kernel: string;
  readonly tmpFs: string;
  readonly loadAvg: string;
}

export function describeMachine(tmp: string): Machine {
  let tmpFs = "unknown";
  try {
    tmpFs = execFileSync("df", ["-T", tmp], { encoding: "utf8", timeout: 5_000 }).trim().split("\n").at(-1)?.split(/\s+/)[1] ?? "unknown";
  } catch {
    // df missing: leave it unknown.
  }
  const readOr = (file: string, fallback: string): string => {
    try {
      return readFileSync(file, "utf8");
    } catch {
      return fallback;
    }
  };
  const kernel = readOr("/proc/sys/kernel/osrelease", "").trim();
  const loadAvg = readOr("/proc/loadavg", "").split(" ").slice(0, 3).join(" ");
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: process.platform,
    kernel,
    tmpFs,
    loadAvg,
  };
}

const HEADER = ["measure", "p50", "p95", "p99", "value", "target", "met?", "upstream 2026.9.6"];

/** One row's cells; `missed` is how a missed target is marked ("NO" in the terminal, bold in Markdown). */
function cellsOf(row: Row, missed: string): string[] {
  return [
    row.measure,
    format(row.p50, row.unit),
    format(row.p95, row.unit),
    format(row.p99, row.unit),
    row.display ?? format(row.value, row.unit),
    row.target?.text ?? "",
    row.met === null ? (row.gap ?? "") : row.met ? "yes" : `${missed}: ${row.gap ?? ""}`,
    row.upstream ?? "",
  ];
}

export function renderTable(rows: readonly Row[]): string {
  const cells = rows.map((row) => cellsOf(row, "NO"));
  const widths = HEADER.map((h, i) => Math.max(h.length, ...cells.map((line) => (line[i] ?? "").length)));
  const line = (values: string[]): string =>
    values
      .map((value, i) => value.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(HEADER), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n");
}

/** The same table as Markdown, for docs/benchmarks.md. */
export function renderMarkdown(rows: readonly Row[]): string {
  const escape = (text: string): string => text.replaceAll("|", "\\|");
  const body = rows.map((row) => `| ${cellsOf(row, "**no**").map(escape).join(" | ")} |`);
  return [`| ${HEADER.join(" | ")} |`, `| ${HEADER.map(() => "---").join(" | ")} |`, ...body].join("\n");
}

import type { z } from "zod";
import { GatewayError } from "../errors.ts";
import { configSchema } from "./schema.ts";

/** One configuration problem, as listed in a CONFIG_INVALID error's message and `details.issues`. */
export interface ConfigIssue {
  /** Dotted key path such as `workspace.implicit` or `runner.command.argv[0]`; `(top level)` for the whole document. */
  readonly path: string;
  /** What is wrong and how to fix it, e.g. `must be one of "echo", "command", "openai"; got "shell"`. */
  readonly message: string;
  /** Where the offending value came from: `file <path>`, `env OCGW_PORT`, `flag --port`, `input` or `defaults`. */
  readonly source: string;
}

type PathSegment = PropertyKey;

/** Values never echoed back in messages (secrets). */
const SECRET_PATHS = ["gateway.auth.token", "runner.openai.apiKey", "runner.command.env"];

/** Renders a key path: `a.b[0].c`; keys that are not plain words are quoted (`entries["my agent"]`). */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z0-9_$-]+$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out === "" ? "(top level)" : out;
}

function isSecret(path: string): boolean {
  return SECRET_PATHS.some((secret) => path === secret || path.startsWith(`${secret}.`) || path.startsWith(`${secret}[`));
}

/** A short rendering of an offending value: `"abc"`, `42`, `an array`, `an object`. */
function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  return typeof value === "undefined" ? "nothing" : `a ${typeof value}`;
}

const TYPE_RULES: Record<string, string> = {
  object: "must be an object ({ ... })",
  string: "must be a string",
  number: "must be a number",
  boolean: "must be true or false",
  array: "must be an array",
};

/**
 * The parse-time error map for issues whose schema sets no message of its own: every message is
 * phrased as the rule to follow (`must be ...`), so it says how to fix the value.
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      return TYPE_RULES[issue.expected] ?? `must be ${issue.expected}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(", ")}`;
    case "too_small":
      return `must be at least ${String(issue.minimum)}${issue.origin === "string" ? " characters long" : issue.origin === "array" ? " items long" : ""}`;
    case "too_big":
      return `must be at most ${String(issue.maximum)}${issue.origin === "string" ? " characters long" : issue.origin === "array" ? " items long" : ""}`;
    case "invalid_format":
      return issue.format === "regex" && issue.pattern !== undefined ? `must match ${issue.pattern}` : `must be a valid ${issue.format}`;
    default:
      return undefined;
  }
};

/** The known keys of the object schema at `path`, for "did you mean" hints. */
function knownKeysAt(path: readonly PathSegment[]): string[] {
  let schema: z.core.$ZodType = configSchema;
  for (let i = 0; ; ) {
    const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
    if (def.type === "default" || def.type === "prefault" || def.type === "optional" || def.type === "nullable") {
      schema = def["innerType"] as z.core.$ZodType;
      continue;
    }
    if (i >= path.length) return def.type === "object" ? Object.keys(def["shape"] as object) : [];
    const segment = path[i++];
    if (def.type === "object" && typeof segment === "string") {
      const next = (def["shape"] as Record<string, z.core.$ZodType | undefined>)[segment];
      if (next === undefined) return [];
      schema = next;
    } else if (def.type === "record") {
      schema = def["valueType"] as z.core.$ZodType;
    } else if (def.type === "array") {
      schema = def["element"] as z.core.$ZodType;
    } else {
      return [];
    }
  }
}

/** Optimal string alignment distance: edits, with a swap of two neighbours counting as one. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const cell = (i: number, j: number): number => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    const row = rows[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(cell(i - 1, j) + 1, cell(i, j - 1) + 1, cell(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, cell(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return cell(a.length, b.length);
}

function unknownKeyMessage(parent: readonly PathSegment[], key: string): string {
  const known = knownKeysAt(parent);
  const close = known
    .map((candidate) => ({ candidate, distance: candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(candidate, key) }))
    .filter(({ distance }) => distance <= Math.max(1, Math.floor(key.length / 3)))
    .sort((x, y) => x.distance - y.distance)[0];
  if (close !== undefined) return `is not a known key: did you mean "${close.candidate}"? Otherwise remove it`;
  return known.length > 0 ? `is not a known key: remove it (keys allowed here: ${known.join(", ")})` : "is not a known key: remove it";
}

/**
 * Turns zod issues into {@link ConfigIssue}s: one per unknown key, the offending value appended
 * as `; got ...` (never for secrets), and the source looked up by `sourceOf`.
 */
export function toConfigIssues(issues: readonly z.core.$ZodIssue[], sourceOf: (path: readonly PathSegment[]) => string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        out.push({ path: formatPath(path), message: unknownKeyMessage(issue.path, key), source: sourceOf(path) });
      }
      continue;
    }
    const path = formatPath(issue.path);
    let message = issue.message;
    if (issue.code === "invalid_key") {
      message = issue.issues[0]?.message ?? "is not a valid key";
    } else {
      const crossField = issue.code === "custom" && issue.params?.["crossField"] === true;
      if (!crossField && "input" in issue && !isSecret(path)) message += `; got ${describeValue(issue.input)}`;
    }
    out.push({ path, message, source: sourceOf(issue.path) });
  }
  return out;
}

/**
 * The CONFIG_INVALID error for a list of problems. The message lists every problem on its own
 * line (path, source when it is not `defaultSource`, rule and offending value), so it already
 * says how to fix each one; `details.issues` holds the same list.
 */
export function configInvalidError(issues: readonly ConfigIssue[], defaultSource: string, configPath: string | null): GatewayError {
  const where = configPath === null ? "The configuration" : `The configuration (file ${configPath})`;
  const count = issues.length === 1 ? "1 problem" : `${issues.length} problems`;
  const lines = issues.map((issue) => `  - ${issue.path}${issue.source === defaultSource ? "" : ` (from ${issue.source})`}: ${issue.message}`);
  return new GatewayError("CONFIG_INVALID", `${where} is invalid, ${count}:\n${lines.join("\n")}`, {
    fix: null,
    details: { issues: issues.map((issue) => ({ ...issue })), configPath },
  });
}

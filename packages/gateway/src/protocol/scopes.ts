/**
 * Operator scopes and how they imply each other (upstream `operator-scope-compat`):
 * `operator.admin` satisfies every scope; `operator.write` satisfies `operator.read`.
 * Other upstream scope strings (`operator.approvals`, `operator.talk`, …) may be granted to a
 * connection — they are echoed back in hello-ok — but no method of this core requires them.
 */
export const OPERATOR_SCOPES = ["operator.read", "operator.write", "operator.admin"] as const;

export type Scope = (typeof OPERATOR_SCOPES)[number];

/** What a connection gets when its connect request carries no `scopes` array. */
export const DEFAULT_SCOPES: readonly Scope[] = ["operator.read", "operator.write"];

export function isScope(value: unknown): value is Scope {
  return typeof value === "string" && (OPERATOR_SCOPES as readonly string[]).includes(value);
}

/** Whether a connection holding `granted` may use something that requires `required`. */
export function hasScope(granted: ReadonlySet<string>, required: Scope): boolean {
  if (granted.has("operator.admin")) return true;
  switch (required) {
    case "operator.read":
      return granted.has("operator.read") || granted.has("operator.write");
    case "operator.write":
      return granted.has("operator.write");
    case "operator.admin":
      return false;
  }
}

/**
 * The scope an event needs when `broadcast` is not told otherwise (upstream `server-start`):
 * session and run traffic needs read; housekeeping events (`tick`, `shutdown`, `health`,
 * `heartbeat`, …) go to every authenticated connection.
 */
const EVENT_SCOPES: Readonly<Record<string, Scope>> = {
  agent: "operator.read",
  chat: "operator.read",
  "sessions.changed": "operator.read",
  "session.message": "operator.read",
  presence: "operator.read",
};

export function defaultEventScope(event: string): Scope | null {
  return Object.hasOwn(EVENT_SCOPES, event) ? (EVENT_SCOPES[event] ?? null) : null;
}

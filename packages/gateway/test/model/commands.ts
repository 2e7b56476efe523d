/**
 * The commands of the model-based lifecycle test (fast-check `fc.commands`) and the small model
 * they keep: what each session's workspace mode must be, which slow runs still wait for their
 * gate, and which gateway kind runs. Every command acts on the real gateway, records what it did
 * in the trace, then checks the step invariants. `toString()` prints a command as a person would
 * replay it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { afterCollectionViolations, afterGracefulStopViolations, stepViolations, throwIfAny } from "./invariants.ts";
import { type Behaviour, HANG_TIMEOUT_MS, KEYS, type Key, type ModelSystem, type SessionMode, canonicalKey, newRunId, runnerProcesses } from "./system.ts";

export interface Model {
  /** Each session's workspace mode, as far as the requests so far decide it. */
  modes: Record<Key, SessionMode>;
  /** The kind of the gateway that runs now. */
  current: "inproc" | "child";
  /** Slow runs whose gate is still closed, oldest first. */
  closedGates: string[];
  /** Runs sent so far (targets of agent.wait). */
  runs: number;
}

export function initialModel(): Model {
  return { modes: { alpha: "absent", beta: "absent", main: "absent" }, current: "inproc", closedGates: [], runs: 0 };
}

type Command = fc.AsyncCommand<Model, ModelSystem>;

/** The mode a session has once a turn on it was admitted. */
function modeAfterTurn(mode: SessionMode, key: Key, workspace: boolean): SessionMode {
  if (mode !== "absent") return mode;
  if (!workspace) return "none";
  return key === "main" ? "agent" : "ephemeral";
}

/** Whether a pipelined request of the session is still unanswered: it may race anything sent now. */
function racing(system: ModelSystem, key: string): boolean {
  const conn = system.current().conn;
  return system.requests.some((request) => request.pipelined && request.key === key && request.conn === conn && !conn.client.received.some((frame) => frame.type === "res" && frame.id === request.id));
}

function summary(frame: { ok?: boolean; payload?: unknown; error?: { details?: unknown } } | undefined): string {
  if (frame === undefined) return "no answer (connection cut)";
  if (frame.ok === true) {
    const payload = frame.payload as Record<string, unknown>;
    return `ok ${JSON.stringify(payload["status"] ?? payload["runIds"] ?? payload["deleted"] ?? payload["reclaimed"] ?? "")}`;
  }
  return `error ${JSON.stringify((frame.error?.details as { code?: string } | undefined)?.code)}`;
}

async function checkStep(system: ModelSystem, command: Command): Promise<void> {
  throwIfAny(await stepViolations(system), system, `after step ${system.step} ${command.toString()}`);
}

abstract class Step implements Command {
  check(_model: Readonly<Model>): boolean {
    return true;
  }
  async run(model: Model, system: ModelSystem): Promise<void> {
    system.step += 1;
    system.trace.push(`#${system.step} ${this.toString()}`);
    const note = await this.act(model, system);
    if (note !== undefined) system.trace.push(`    → ${note}`);
    await checkStep(system, this);
  }
  protected abstract act(model: Model, system: ModelSystem): Promise<string | undefined>;
  abstract toString(): string;
}

/**
 * A turn on a key: `chat.send`, or `agent` (an accepted reply now, its final reply when the run
 * ends). `workspace: false` runs it without a workspace; pipelined: the next command is sent
 * without waiting for the first reply.
 */
export class Turn extends Step {
  readonly method: "chat.send" | "agent";
  readonly key: Key;
  readonly behaviour: Behaviour;
  readonly workspace: boolean;
  readonly pipelined: boolean;
  constructor(method: "chat.send" | "agent", key: Key, behaviour: Behaviour, workspace: boolean, pipelined: boolean) {
    super();
    this.method = method;
    this.key = key;
    this.behaviour = behaviour;
    this.workspace = workspace;
    this.pipelined = pipelined;
  }
  protected async act(model: Model, system: ModelSystem): Promise<string> {
    const runId = newRunId();
    const before = model.modes[this.key];
    // Pipelined onto an absent session, a request sent after it may create the session first.
    const mode = this.pipelined && before === "absent" ? "uncertain" : modeAfterTurn(before, this.key, this.workspace);
    const hang = this.method === "agent" ? { timeout: 1 } : { timeoutMs: HANG_TIMEOUT_MS };
    const request = system.send(
      this.method,
      {
        sessionKey: this.key,
        message: this.behaviour === "slow" ? `slow ${runId}` : this.behaviour,
        idempotencyKey: runId,
        ...(this.workspace ? {} : { workspace: false }),
        ...(this.behaviour === "hang" ? hang : {}),
      },
      { key: canonicalKey(this.key), pipelined: this.pipelined, run: { runId, kind: this.method === "agent" ? "agent" : "chat", key: canonicalKey(this.key), behaviour: this.behaviour, workspace: this.workspace, mode } },
    );
    const first = this.pipelined ? undefined : await system.response(request);
    // The session is created before the run is admitted, so also when RUN_QUEUE_FULL refuses it.
    model.modes[this.key] = mode;
    model.runs += 1;
    // A pipelined slow run's gate may be opened whether or not it is admitted: a gate nobody waits for is harmless.
    if ((this.pipelined || first?.ok === true) && this.behaviour === "slow") model.closedGates.push(runId);
    return `run ${runId}: ${this.pipelined ? "sent, not awaited" : summary(first)}`;
  }
  toString(): string {
    return `${this.method}(${this.key}, ${this.behaviour}${this.workspace ? "" : ", workspace:false"}${this.pipelined ? ", pipelined" : ""})`;
  }
}

/** chat.abort of a session's runs: all of them, or only its latest run. */
export class Abort extends Step {
  readonly key: Key;
  readonly target: "all" | "latest";
  constructor(key: Key, target: "all" | "latest") {
    super();
    this.key = key;
    this.target = target;
  }
  protected async act(_model: Model, system: ModelSystem): Promise<string> {
    const conn = system.current().conn;
    const latest = system.requests.filter((request) => request.conn === conn && request.run?.key === canonicalKey(this.key)).at(-1)?.run;
    const request = system.send("chat.abort", { sessionKey: this.key, ...(this.target === "latest" && latest !== undefined ? { runId: latest.runId } : {}) }, { key: canonicalKey(this.key) });
    return summary(await system.response(request));
  }
  toString(): string {
    return `chat.abort(${this.key}, ${this.target})`;
  }
}

/** sessions.delete or sessions.reset; pipelined: the next command is sent without waiting for the answer. */
export class EndSession extends Step {
  readonly method: "sessions.delete" | "sessions.reset";
  readonly key: Key;
  readonly pipelined: boolean;
  constructor(method: "sessions.delete" | "sessions.reset", key: Key, pipelined: boolean) {
    super();
    this.method = method;
    this.key = key;
    this.pipelined = pipelined;
  }
  protected async act(model: Model, system: ModelSystem): Promise<string> {
    const key = canonicalKey(this.key);
    const raced = racing(system, key);
    const request = system.send(this.method, { key: this.key }, { key, pipelined: this.pipelined });
    if (this.pipelined) {
      model.modes[this.key] = "uncertain";
      return "sent, not awaited";
    }
    const answer = await system.response(request);
    const before = model.modes[this.key];
    if (raced) model.modes[this.key] = "uncertain";
    else if (this.method === "sessions.delete") model.modes[this.key] = "absent";
    else if (before === "absent") model.modes[this.key] = this.key === "main" ? "agent" : "ephemeral";
    if (answer !== undefined && !raced) {
      // Every run of the session was admitted before this was sent: none holds or takes a workspace now.
      const instanceId = system.current().instanceId;
      const open = system.ledger().filter((row) => row.sessionKey === key && row.instanceId === instanceId && (row.state === "acquiring" || row.state === "live" || row.state === "releasing"));
      throwIfAny(
        open.map((row) => `${this.method} of ${key} answered, but its lease ${row.leaseId} is still ${row.state}`),
        system,
        `after step ${system.step} ${this.toString()}`,
      );
    }
    return summary(answer);
  }
  toString(): string {
    return `${this.method}(${this.key}${this.pipelined ? ", pipelined" : ""})`;
  }
}

/** Opens the gate of the oldest slow run still waiting: it then ends with "final". */
export class OpenGate extends Step {
  override check(model: Readonly<Model>): boolean {
    return model.closedGates.length > 0;
  }
  protected async act(model: Model, system: ModelSystem): Promise<string> {
    const runId = model.closedGates.shift() as string;
    await system.openGate(runId);
    return `gate of ${runId}`;
  }
  toString(): string {
    return "openGate()";
  }
}

/** Lets time pass: idle timers expire, slow and hanging runs move on. */
export class Pause extends Step {
  readonly ms: number;
  constructor(ms: number) {
    super();
    this.ms = ms;
  }
  protected async act(): Promise<undefined> {
    await sleep(this.ms);
    return undefined;
  }
  toString(): string {
    return `sleep(${this.ms}ms)`;
  }
}

/** workspaces.gc; when it ran (not WS_GC_BUSY), nothing of a stopped gateway is left. */
export class Collect extends Step {
  protected async act(_model: Model, system: ModelSystem): Promise<string> {
    const answer = await system.response(system.send("workspaces.gc", {}));
    if (answer?.ok === true) throwIfAny(afterCollectionViolations(system), system, `after step ${system.step} ${this.toString()}`);
    return summary(answer);
  }
  toString(): string {
    return "workspaces.gc()";
  }
}

/** agent.wait on one of the runs sent so far (any gateway incarnation): the latest, or `back` runs before it. */
export class WaitRun extends Step {
  readonly back: number;
  readonly timeoutMs: number;
  constructor(back: number, timeoutMs: number) {
    super();
    this.back = back;
    this.timeoutMs = timeoutMs;
  }
  override check(model: Readonly<Model>): boolean {
    return model.runs > this.back;
  }
  protected async act(_model: Model, system: ModelSystem): Promise<string> {
    const runs = system.requests.filter((request) => request.run !== undefined);
    const target = runs[runs.length - 1 - this.back]?.run;
    if (target === undefined) return "no run";
    const answer = await system.response(system.send("agent.wait", { runId: target.runId, timeoutMs: this.timeoutMs }));
    return `run ${target.runId}: ${summary(answer)}`;
  }
  toString(): string {
    return `agent.wait(${this.back === 0 ? "latest run" : `run latest-${this.back}`}, ${this.timeoutMs}ms)`;
  }
}

/** A stop of the current gateway, then a new one (`next`) on the same state dir and root. */
abstract class Relaunch extends Step {
  readonly next: "inproc" | "child";
  constructor(next: "inproc" | "child") {
    super();
    this.next = next;
  }
  /** Starts the next gateway once the current one has stopped; the model follows it. */
  protected async relaunch(model: Model, system: ModelSystem): Promise<string> {
    await system.start(this.next);
    model.current = this.next;
    model.closedGates = [];
    return `now gateway ${system.current().index} (${this.next})`;
  }
}

/** Graceful restart: close() (or SIGTERM to a child), then a new gateway on the same state dir and root. */
export class Restart extends Relaunch {
  protected async act(model: Model, system: ModelSystem): Promise<string> {
    await system.stop("graceful");
    // What the stop left, before the next gateway (and its start-up collection) can change anything.
    throwIfAny(await afterGracefulStopViolations(system, await runnerProcesses(system.gates)), system, `after the graceful stop of step ${system.step} ${this.toString()}`);
    return this.relaunch(model, system);
  }
  toString(): string {
    return `restart(graceful → ${this.next})`;
  }
}

/** SIGKILL of the child gateway by pid, then a new gateway on the same state dir and root (long form). */
export class Crash extends Relaunch {
  override check(model: Readonly<Model>): boolean {
    return model.current === "child";
  }
  protected async act(model: Model, system: ModelSystem): Promise<string> {
    await system.stop("sigkill");
    return this.relaunch(model, system);
  }
  toString(): string {
    return `crash(SIGKILL → ${this.next})`;
  }
}

const behaviour = fc.constantFrom<Behaviour>("ok", "ok", "ok", "slow", "slow", "fail", "hang", "spawn");
const key = fc.constantFrom<Key>(...KEYS, "alpha");
const workspace = fc.constantFrom(true, true, true, true, false);
const pipelined = fc.constantFrom(false, false, false, true);

/** The command generators; the long form adds child gateways and their SIGKILL. */
export function commandArbitraries(long: boolean): fc.Arbitrary<Command>[] {
  const next = long ? fc.constantFrom<"inproc" | "child">("inproc", "child") : fc.constant<"inproc" | "child">("inproc");
  const weighted: fc.WeightedArbitrary<Command>[] = [
    { weight: 8, arbitrary: fc.tuple(key, behaviour, workspace, pipelined).map(([k, b, w, p]) => new Turn("chat.send", k, b, w, p)) },
    { weight: 3, arbitrary: fc.tuple(key, behaviour, workspace, pipelined).map(([k, b, w, p]) => new Turn("agent", k, b, w, p)) },
    { weight: 2, arbitrary: fc.tuple(key, fc.constantFrom<"all" | "latest">("all", "latest")).map(([k, t]) => new Abort(k, t)) },
    { weight: 2, arbitrary: fc.tuple(key, fc.boolean()).map(([k, p]) => new EndSession("sessions.delete", k, p)) },
    { weight: 2, arbitrary: fc.tuple(key, fc.boolean()).map(([k, p]) => new EndSession("sessions.reset", k, p)) },
    { weight: 4, arbitrary: fc.constant(null).map(() => new OpenGate()) },
    { weight: 2, arbitrary: fc.constantFrom(20, 100, 250).map((ms) => new Pause(ms)) },
    { weight: 1, arbitrary: fc.constant(null).map(() => new Collect()) },
    { weight: 1, arbitrary: fc.tuple(fc.nat(4), fc.constantFrom(0, 200)).map(([back, ms]) => new WaitRun(back, ms)) },
    { weight: 1, arbitrary: next.map((kind) => new Restart(kind)) },
  ];
  if (long) weighted.push({ weight: 2, arbitrary: next.map((kind) => new Crash(kind)) });
  return [fc.oneof(...weighted)];
}

import { describe, expect, it } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { createEchoRunner, ECHO_BYTES_LINE, ECHO_MAX_BYTES } from "../../src/runners/index.ts";
import { makeInput, pause, rejection } from "./helpers.ts";

describe("echo runner", () => {
  it("replies Echo: <message> as word-sized deltas, all delivered before run returns", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "hello brave  new world" });
    const pending = runner.run(input);
    // No timer on the plain path: every delta is already there.
    expect(deltas).toEqual(["Echo:", " hello", " brave", "  new", " world"]);
    const output = await pending;
    expect(output).toEqual({ text: "Echo: hello brave  new world", stopReason: "stop" });
    expect(deltas.join("")).toBe(output.text);
    expect(runner.kind).toBe("echo");
  });

  it("keeps leading, trailing and line-break whitespace in the deltas", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "a\nb " });
    const output = await runner.run(input);
    expect(output.text).toBe("Echo: a\nb ");
    expect(deltas).toEqual(["Echo:", " a", "\nb", " "]);
  });

  it("/echo:error rejects with RUNNER_FAILED carrying the text and streams nothing", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "/echo:error the model fell over" });
    const error = await rejection(runner.run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message.startsWith("the model fell over")).toBe(true);
    expect(deltas).toEqual([]);
  });

  it("/echo:sleep waits, then replies Echo: <text>", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "/echo:sleep 30 good morning" });
    const started = Date.now();
    const pending = runner.run(input);
    expect(deltas).toEqual([]);
    const output = await pending;
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(output).toEqual({ text: "Echo: good morning", stopReason: "stop" });
    expect(deltas).toEqual(["Echo:", " good", " morning"]);
  });

  it("/echo:stream sends n ticks spaced ms apart", async () => {
    const runner = createEchoRunner();
    const arrivals: number[] = [];
    const { input, deltas } = makeInput({ message: "/echo:stream 3 20" });
    const started = Date.now();
    const output = await runner.run({ ...input, onDelta: (text) => (deltas.push(text), arrivals.push(Date.now() - started)) });
    expect(deltas).toEqual(["tick 1 ", "tick 2 ", "tick 3 "]);
    expect(output).toEqual({ text: "tick 1 tick 2 tick 3 ", stopReason: "stop" });
    expect(arrivals[2]).toBeGreaterThanOrEqual(35);
  });

  it("/echo:bytes replies exactly n bytes in chunk-sized deltas, one per turn of the event loop", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "/echo:bytes 1000 300" });
    const pending = runner.run(input);
    // Only the first chunk is delivered synchronously; each next one waits for a turn of the loop.
    expect(deltas).toHaveLength(1);
    const output = await pending;
    expect(deltas.map((d) => d.length)).toEqual([300, 300, 300, 100]);
    expect(output.text).toHaveLength(1000);
    expect(deltas.join("")).toBe(output.text);
    expect(output.text.startsWith(ECHO_BYTES_LINE)).toBe(true);
    expect(Buffer.byteLength(output.text, "utf8")).toBe(1000);
    expect(await runner.run(makeInput({ message: "/echo:bytes 0 5" }).input)).toEqual({ text: "", stopReason: "stop" });
  });

  it("/echo:bytes stops at the next chunk once aborted", async () => {
    const runner = createEchoRunner();
    const { input, deltas, controller } = makeInput({ message: "/echo:bytes 100000 10" });
    const pending = runner.run(input);
    controller.abort(new GatewayError("RUNNER_ABORTED", "stop"));
    const error = await rejection(pending);
    expect(error).toBeInstanceOf(GatewayError);
    expect(deltas).toHaveLength(1);
  });

  it("/echo:stream 0 replies with nothing", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "/echo:stream 0 5" });
    expect(await runner.run(input)).toEqual({ text: "", stopReason: "stop" });
    expect(deltas).toEqual([]);
  });

  it("rejects malformed directives with their usage, and echoes lookalikes", async () => {
    const runner = createEchoRunner();
    for (const message of ["/echo:sleep soon hi", "/echo:stream 3", `/echo:stream 10001 1`, "/echo:sleep 9999999999 x", "/echo:bytes 10 0", `/echo:bytes ${ECHO_MAX_BYTES + 1} 1`, "/echo:bytes 10"]) {
      const error = await rejection(runner.run(makeInput({ message }).input));
      expect(error.code, message).toBe("RUNNER_FAILED");
      expect(error.message).toContain("/echo:");
    }
    expect((await runner.run(makeInput({ message: "/echo:sleepy 5" }).input)).text).toBe("Echo: /echo:sleepy 5");
  });

  it("abort during sleep rejects with the reason and no delta arrives afterwards", async () => {
    const runner = createEchoRunner();
    const { input, deltas, controller } = makeInput({ message: "/echo:sleep 150 too late" });
    const pending = runner.run(input);
    await pause(20);
    const reason = new Error("user pressed stop");
    controller.abort(reason);
    expect(await rejection(pending)).toBe(reason);
    await pause(250);
    expect(deltas).toEqual([]);
  });

  it("abort mid-stream stops the ticks at once", async () => {
    const runner = createEchoRunner();
    const controller = new AbortController();
    const deltas: string[] = [];
    const { input } = makeInput({ message: "/echo:stream 5 20", signal: controller.signal });
    const error = await rejection(
      runner.run({
        ...input,
        onDelta: (text) => {
          deltas.push(text);
          if (deltas.length === 2) controller.abort("chat.abort");
        },
      }),
    );
    expect(error.code).toBe("RUNNER_ABORTED");
    expect(error.message).toContain("chat.abort");
    await pause(80);
    expect(deltas).toEqual(["tick 1 ", "tick 2 "]);
  });

  it("turns a TimeoutError reason into RUNNER_TIMEOUT", async () => {
    const runner = createEchoRunner();
    const { input, deltas } = makeInput({ message: "/echo:sleep 10000 never", signal: AbortSignal.timeout(30) });
    const error = await rejection(runner.run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_TIMEOUT");
    expect(deltas).toEqual([]);
  });

  it("rejects at once, streaming nothing, when the signal has already aborted", async () => {
    const runner = createEchoRunner();
    const controller = new AbortController();
    controller.abort();
    const { input, deltas } = makeInput({ signal: controller.signal });
    const error = await rejection(runner.run(input));
    expect(error.name).toBe("AbortError");
    expect(deltas).toEqual([]);
  });

  it("close aborts waiting runs, is idempotent and refuses later runs; killSession is a no-op", async () => {
    const runner = createEchoRunner();
    const sleeping = runner.run(makeInput({ message: "/echo:sleep 10000 x" }).input);
    await runner.killSession("agent:main:test");
    await runner.close();
    await runner.close();
    expect((await rejection(sleeping)).code).toBe("RUNNER_ABORTED");
    expect((await rejection(runner.run(makeInput().input))).code).toBe("RUNNER_ABORTED");
  });
});

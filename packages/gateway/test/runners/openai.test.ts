import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { type AgentRunner, type OpenAIRunnerOptions, createOpenAIRunner } from "../../src/runners/index.ts";
import { makeInput, pause, rejection, waitFor } from "./helpers.ts";

interface Recorded {
  method: string | undefined;
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

interface Stub {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  requests: Recorded[];
  /** How many responses the server saw closed (by either side). */
  closedResponses: () => number;
  close(): Promise<void>;
}

type Handler = (res: http.ServerResponse, request: Recorded) => void | Promise<void>;

const stubs: Stub[] = [];
const runners: AgentRunner[] = [];

afterEach(async () => {
  await Promise.all(runners.splice(0).map((runner) => runner.close()));
  await Promise.all(stubs.splice(0).map((stub) => stub.close()));
});

/** A real OpenAI-compatible stub on 127.0.0.1, an ephemeral port, recording every request. */
async function startStub(handler: Handler): Promise<Stub> {
  const requests: Recorded[] = [];
  let closed = 0;
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (chunk: Buffer) => parts.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(parts).toString("utf8");
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // recorded as text
      }
      const request: Recorded = { method: req.method, url: req.url, headers: req.headers, body };
      requests.push(request);
      res.on("close", () => (closed += 1));
      void handler(res, request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const stub: Stub = {
    origin: `http://127.0.0.1:${port}`,
    requests,
    closedResponses: () => closed,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  stubs.push(stub);
  return stub;
}

function runner(options: OpenAIRunnerOptions): AgentRunner {
  const created = createOpenAIRunner(options);
  runners.push(created);
  return created;
}

function sseHead(res: http.ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.flushHeaders();
}

function event(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

function content(text: string, finish: string | null = null): unknown {
  return { id: "chatcmpl-1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: text }, finish_reason: finish }] };
}

/** Writes `bytes` in pieces cut at `cuts` (byte offsets), pausing between writes so they travel apart. */
async function writeInPieces(res: http.ServerResponse, bytes: Buffer, cuts: readonly number[]): Promise<void> {
  let start = 0;
  for (const cut of [...new Set(cuts)].filter((at) => at > 0 && at < bytes.length).sort((a, b) => a - b)) {
    res.write(bytes.subarray(start, cut));
    start = cut;
    await pause(3);
  }
  res.write(bytes.subarray(start));
}

describe("openai runner", () => {
  it("posts the conversation and streams the SSE reply, whatever the chunking", async () => {
    const body = Buffer.from(
      [
        event({ id: "chatcmpl-1", choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
        event(content("Hello")),
        ": comment lines are ignored\n\n",
        event(content(", wörld")).replace("\n\n", "\r\n\r\n"),
        event(content(" 🦀!")),
        event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }),
        event({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 } }),
        "data: [DONE]\n\n",
      ].join(""),
    );
    const crab = body.indexOf(Buffer.from("🦀"));
    const umlaut = body.indexOf(Buffer.from("ö"));
    const cuts = [crab + 1, crab + 2, crab + 3, umlaut + 1, ...Array.from({ length: 80 }, (_, i) => i * 7)];
    const stub = await startStub(async (res) => {
      sseHead(res);
      await writeInPieces(res, body, cuts);
      res.end();
    });
    const history = [
      { role: "user", text: "Who are you?" },
      { role: "assistant", text: "A test." },
    ] as const;
    const { input, deltas } = makeInput({ message: "Say hello", history });
    const output = await runner({ baseUrl: `${stub.origin}/v1/`, model: "gpt-test", apiKey: "sk-test" }).run(input);

    expect(deltas).toEqual(["Hello", ", wörld", " 🦀!"]);
    expect(output).toEqual({ text: "Hello, wörld 🦀!", stopReason: "stop", usage: { input: 12, output: 5 } });
    expect(stub.requests).toHaveLength(1);
    const [request] = stub.requests as [Recorded];
    expect(request.method).toBe("POST");
    expect(request.url).toBe("/v1/chat/completions");
    expect(request.headers.authorization).toBe("Bearer sk-test");
    expect(request.headers["content-type"]).toContain("application/json");
    expect(request.body).toEqual({
      model: "gpt-test",
      stream: true,
      messages: [
        { role: "user", content: "Who are you?" },
        { role: "assistant", content: "A test." },
        { role: "user", content: "Say hello" },
      ],
    });
  });

  it("regression (a buffered reply decoded in one turn): a reply already waiting in the socket is decoded one body chunk per turn of the event loop", async () => {
    // 4,000 events of ~330 bytes (1.3 MB), written at once. Before the fix every chunk that the
    // socket had buffered was decoded (and, in the gateway, broadcast) before any timer, request
    // or other socket got a turn: libuv delivers up to 32 reads of 64 KiB in one poll phase.
    const piece = "x".repeat(250);
    const body = [...Array.from({ length: 4000 }, () => event(content(piece))), event(content("", "stop")), "data: [DONE]\n\n"].join("");
    const stub = await startStub((res) => {
      sseHead(res);
      res.end(body);
    });
    let delivered = 0;
    let beforeNextTurn: number | undefined;
    const { input } = makeInput({
      onDelta: () => {
        delivered += 1;
        if (delivered !== 1) return;
        // Hold the loop on the first delta so that the rest of the reply piles up in the socket
        // buffers, then count how many deltas arrive before the event loop's next turn.
        const until = Date.now() + 300;
        while (Date.now() < until);
        setImmediate(() => (beforeNextTurn = delivered));
      },
    });
    const output = await runner({ baseUrl: stub.origin, model: "m" }).run(input);
    expect(output.text).toHaveLength(4000 * 250);
    expect(delivered).toBe(4000);
    // One body chunk is at most one socket read (64 KiB): ~200 of these events.
    expect(beforeNextTurn).toBeDefined();
    expect(beforeNextTurn as number).toBeLessThanOrEqual(Math.ceil((64 * 1024) / event(content(piece)).length) + 1);
  });

  it("sends no Authorization without an apiKey and maps finish_reason length", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.end(event(content("cut", null)) + event(content(" off", "length")) + "data: [DONE]\n\n");
    });
    const output = await runner({ baseUrl: stub.origin, model: "m" }).run(makeInput().input);
    expect(stub.requests[0]?.url).toBe("/chat/completions");
    expect(stub.requests[0]?.headers.authorization).toBeUndefined();
    expect(output).toEqual({ text: "cut off", stopReason: "length" });
  });

  it("rejects HTTP 500 with RUNNER_FAILED quoting the first 500 characters of the body", async () => {
    const stub = await startStub((res) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(`upstream exploded: ${"x".repeat(600)}TAIL`);
    });
    const { input, deltas } = makeInput();
    const error = await rejection(runner({ baseUrl: stub.origin, model: "m", apiKey: "sk-secret" }).run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain("HTTP 500");
    expect(error.message).toContain("upstream exploded: xxx");
    expect(error.message).not.toContain("TAIL");
    expect(error.message).not.toContain("sk-secret");
    expect(error.details).toMatchObject({ status: 500 });
    expect((error.details?.["body"] as string).length).toBe(500);
    expect(deltas).toEqual([]);
  });

  it("abort mid-stream rejects with the reason and closes the connection", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.write(event(content("Hello")));
      // …and never ends.
    });
    const controller = new AbortController();
    const reason = new Error("chat.abort");
    const deltas: string[] = [];
    const { input } = makeInput({ signal: controller.signal });
    const error = await rejection(
      runner({ baseUrl: stub.origin, model: "m" }).run({
        ...input,
        onDelta: (text) => {
          deltas.push(text);
          controller.abort(reason);
        },
      }),
    );
    expect(error).toBe(reason);
    expect(deltas).toEqual(["Hello"]);
    await waitFor(() => stub.closedResponses() === 1, 10_000, "the server to see the connection closed");
  });

  it("stops at [DONE] without waiting for the server to end the response, ignoring what follows", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.write(event(content("done here")) + "data: [DONE]\n\n" + event(content(" and more")));
      // The connection stays open.
    });
    const { input, deltas } = makeInput();
    const output = await runner({ baseUrl: stub.origin, model: "m" }).run(input);
    expect(output).toEqual({ text: "done here", stopReason: "stop" });
    expect(deltas).toEqual(["done here"]);
    await waitFor(() => stub.closedResponses() === 1, 10_000, "the server to see the connection closed");
  });

  it("accepts a stream that ends with a finish_reason but no [DONE]", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.end(event(content("fine", "stop")));
    });
    expect((await runner({ baseUrl: stub.origin, model: "m" }).run(makeInput().input)).text).toBe("fine");
  });

  it("rejects a stream that breaks off before [DONE] and any finish_reason", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.end(event(content("half a")));
    });
    const { input, deltas } = makeInput();
    const error = await rejection(runner({ baseUrl: stub.origin, model: "m" }).run(input));
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain("[DONE]");
    expect(deltas).toEqual(["half a"]);
  });

  it("rejects an error object or malformed data in the stream", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.end(stub.requests.length === 1 ? event({ error: { message: "model overloaded", type: "server_error" } }) : "data: {not json\n\n");
    });
    const shared = runner({ baseUrl: stub.origin, model: "m" });
    const overloaded = await rejection(shared.run(makeInput().input));
    expect(overloaded.code).toBe("RUNNER_FAILED");
    expect(overloaded.message).toContain("model overloaded");
    const malformed = await rejection(shared.run(makeInput().input));
    expect(malformed.code).toBe("RUNNER_FAILED");
    expect(malformed.message).toContain("{not json");
  });

  it("accepts a non-streamed JSON completion", async () => {
    const stub = await startStub((res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: "whole reply" }, finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 2 } }));
    });
    const { input, deltas } = makeInput();
    const output = await runner({ baseUrl: stub.origin, model: "m" }).run(input);
    expect(output).toEqual({ text: "whole reply", stopReason: "stop", usage: { input: 3, output: 2 } });
    expect(deltas).toEqual(["whole reply"]);
  });

  it("turns a TimeoutError reason into RUNNER_TIMEOUT", async () => {
    const stub = await startStub(() => {
      // Never answers.
    });
    const { input } = makeInput({ signal: AbortSignal.timeout(100) });
    const error = await rejection(runner({ baseUrl: stub.origin, model: "m" }).run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_TIMEOUT");
    await waitFor(() => stub.closedResponses() === 1, 10_000, "the server to see the connection closed");
  });

  it("rejects an unreachable server with RUNNER_FAILED", async () => {
    const stub = await startStub(() => undefined);
    const origin = stub.origin;
    await stub.close();
    const error = await rejection(runner({ baseUrl: origin, model: "m" }).run(makeInput().input));
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain(`${origin}/chat/completions`);
  });

  it("close aborts requests in flight and refuses later runs", async () => {
    const stub = await startStub((res) => {
      sseHead(res);
      res.write(event(content("partial")));
    });
    const shared = runner({ baseUrl: stub.origin, model: "m" });
    const { input, deltas } = makeInput();
    const pending = rejection(shared.run(input));
    await waitFor(() => deltas.length === 1, 10_000, "the first delta");
    await shared.close();
    await shared.close();
    expect((await pending).code).toBe("RUNNER_ABORTED");
    expect((await rejection(shared.run(makeInput().input))).code).toBe("RUNNER_ABORTED");
    await shared.killSession("agent:main:test");
  });
});

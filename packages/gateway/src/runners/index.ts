export * from "./types.ts";
export { abortError, isTimeoutReason } from "./abort.ts";
export { createEchoRunner, ECHO_BYTES_LINE, ECHO_MAX_BYTES, ECHO_MAX_DELAY_MS, ECHO_MAX_TICKS } from "./echo.ts";
export { createCommandRunner, DEFAULT_KILL_GRACE_MS, STDERR_TAIL_BYTES } from "./command.ts";
export { createOpenAIRunner, ERROR_BODY_EXCERPT_CHARS } from "./openai.ts";
export { createRunner } from "./create-runner.ts";

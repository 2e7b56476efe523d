import { InvalidArgumentError, Option } from "commander";

/** A commander parser for an integer flag in [min, max]. */
export function integerIn(min: number, max: number, unit = ""): (value: string) => number {
  return (value) => {
    const parsed = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}${unit === "" ? "" : ` (${unit})`}; got ${JSON.stringify(value)}.`);
    }
    return parsed;
  };
}

/** A commander parser for a gateway URL (`ws://` or `wss://`). */
export function gatewayUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`must be a WebSocket URL such as ws://127.0.0.1:18789; got ${JSON.stringify(value)}.`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new InvalidArgumentError(`must start with ws:// or wss://; got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** `--url` and `--token`, as every gateway-talking command takes them. */
export function connectionOptions(): Option[] {
  return [
    new Option("--url <url>", "gateway WebSocket URL (default ws://127.0.0.1:<config port or 18789>, the local gateway)").argParser(gatewayUrl),
    new Option(
      "--token <token>",
      "gateway auth token (local gateway: default $OCGW_GATEWAY_TOKEN, the config's gateway.auth.token, <stateDir>/gateway.token; any other --url gets only this flag)",
    ),
  ];
}

/** `--timeout <ms>`. */
export function timeoutOption(defaultMs: number, what: string): Option {
  return new Option("--timeout <ms>", `${what}, in milliseconds`).argParser(integerIn(1, 2 ** 31 - 1, "milliseconds")).default(defaultMs);
}

/** `--state-dir` and `--config`, for commands that read a local installation. */
export function offlineOptions(): Option[] {
  return [
    new Option("--state-dir <dir>", "ocgw state directory (default $OCGW_STATE_DIR, the config's stateDir, ~/.ocgw)"),
    new Option("--config <file>", "ocgw config file (JSON5; default $OCGW_CONFIG, ~/.ocgw/ocgw.json)"),
  ];
}

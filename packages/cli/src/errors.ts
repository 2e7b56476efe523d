import { GatewayError } from "@ocgw/gateway";
import { EXIT, UsageError } from "./io.ts";

/** The exit code for an error that ended a command. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof GatewayError && (error.code === "GATEWAY_UNREACHABLE" || error.code === "HANDSHAKE_FAILED")) return EXIT.unreachable;
  return EXIT.failed;
}

/** Fixes for system errors that reach the CLI without one (they come straight from Node). */
const SYSTEM_FIXES: Readonly<Record<string, string>> = {
  EADDRINUSE: "Pass another --port (0 picks a free one), or stop the process that uses it",
  EADDRNOTAVAIL: "Bind loopback or an address of this machine (--bind)",
  EACCES: "Check the permissions of the path or port named above",
};

/** The one line printed for an error: its message (which already says how to fix it). */
export function errorLine(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | undefined)?.code;
  const fix = typeof code === "string" && Object.hasOwn(SYSTEM_FIXES, code) ? SYSTEM_FIXES[code] : undefined;
  if (fix !== undefined) message = `${message}. ${fix}`;
  return `ocgw: ${message.replace(/\s*\n\s*/g, " ")}\n`;
}

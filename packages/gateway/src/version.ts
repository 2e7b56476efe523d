/** The gateway's version: hello-ok `server.version`, `status.runtimeVersion`, the CLI's `--version` and the client's default. */
export const GATEWAY_VERSION = "0.1.0";

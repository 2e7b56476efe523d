import { BlockList, isIP } from "node:net";

/** The address `gateway.bind: "loopback"` listens on. */
export const LOOPBACK_HOST = "127.0.0.1";
/** The address `gateway.bind: "lan"` listens on (every IPv4 interface). */
export const LAN_HOST = "0.0.0.0";

const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");
loopback.addSubnet("::ffff:127.0.0.0", 104, "ipv6"); // IPv4-mapped 127.0.0.0/8

/** True for the values `gateway.bind` accepts: `"loopback"`, `"lan"`, or an IPv4/IPv6 literal (no brackets, no port). */
export function isValidBind(bind: string): boolean {
  return bind === "loopback" || bind === "lan" || isIP(bind) !== 0;
}

/** The host address to listen on for a valid `gateway.bind` value. */
export function bindHost(bind: string): string {
  if (bind === "loopback") return LOOPBACK_HOST;
  if (bind === "lan") return LAN_HOST;
  return bind;
}

/**
 * True when `bind` only accepts connections from this machine: `"loopback"`, an address in
 * 127.0.0.0/8, `::1`, or an IPv4-mapped 127.x address. `"lan"`, `0.0.0.0`, `::` and every other
 * address are not loopback and are refused with `gateway.auth.mode: "none"`.
 */
export function isLoopbackBind(bind: string): boolean {
  return bind === "loopback" || isLoopbackAddress(bind);
}

/** True for an IP address in 127.0.0.0/8, `::1` or an IPv4-mapped 127.x address. */
export function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && loopback.check(address, family === 4 ? "ipv4" : "ipv6");
}

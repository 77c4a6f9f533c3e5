import { isIPv4, isIPv6 } from "node:net";

// An IP address or CIDR block, as --trusted-proxy takes them: checked when
// the configuration is read, and turned into a node:net BlockList by the
// front door (door/client-address.ts).

export interface IpBlock {
  address: string;
  type: "ipv4" | "ipv6";
  /** The prefix length of a CIDR block; undefined for one address. */
  prefix: number | undefined;
}

/** Throws an Error saying what is wrong with `entry`. */
export function parseIpBlock(entry: string): IpBlock {
  const [address = "", bits] = entry.trim().split("/");
  const type = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (type === undefined) throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR block`);
  if (bits === undefined) return { address, type, prefix: undefined };
  const prefix = Number(bits);
  if (!/^\d+$/.test(bits) || prefix > (type === "ipv4" ? 32 : 128)) {
    throw new Error(`${JSON.stringify(entry)} has no valid prefix length`);
  }
  return { address, type, prefix };
}

import { BlockList, isIPv4, isIPv6 } from "node:net";
import { parseIpBlock } from "../config/ip-blocks.js";

// Which client a connection or a request counts as, for the limits per
// client (--max-streams-per-client, --max-connections-per-client), as
// nginx's limit_conn counts $binary_remote_addr. Behind a proxy every
// connection comes from the proxy's address: with --trusted-proxy naming it,
// a request counts as the address the proxy forwarded (X-Forwarded-For, read
// from the right, past every trusted hop), and the proxy's own connections
// are not counted per client at all. An IPv6 client counts by its /64: one
// host is given a /64 as a rule, and would otherwise have 2^64 addresses to
// spread its streams over.

export class ClientAddresses {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  /** `trustedProxies`: addresses and CIDR blocks ("10.0.0.0/8", "::1"), as the configuration checked them. */
  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const block = parseIpBlock(entry);
      if (block.prefix === undefined) this.trusted.addAddress(block.address, block.type);
      else this.trusted.addSubnet(block.address, block.prefix, block.type);
    }
    this.any = trustedProxies.length > 0;
  }

  /** Whether `address` is one of the trusted proxies. */
  isTrusted(address: string | undefined): boolean {
    if (!this.any || address === undefined) return false;
    const plain = unmapped(address);
    return this.trusted.check(plain, isIPv6(plain) ? "ipv6" : "ipv4");
  }

  /** The key a connection from `peer` counts under, or undefined for a trusted proxy's (not counted per client). */
  ofConnection(peer: string | undefined): string | undefined {
    if (this.isTrusted(peer)) return undefined;
    return clientKey(peer);
  }

  /** The key a request counts under: its peer's, or, through a trusted proxy, the address the proxy forwarded. */
  ofRequest(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    if (forwardedFor === undefined || !this.isTrusted(peer)) return clientKey(peer);
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] ?? "").trim();
      if (!isIPv4(unmapped(hop)) && !isIPv6(hop)) break;
      if (!this.isTrusted(hop) || i === 0) return clientKey(hop);
    }
    return clientKey(peer);
  }
}

/** "::ffff:10.0.0.7", as a dual-stack socket reports an IPv4 peer, is 10.0.0.7. */
function unmapped(address: string): string {
  return address.startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** An IPv4 address as it is; an IPv6 address by its first 64 bits. */
export function clientKey(address: string | undefined): string {
  if (address === undefined) return "unknown";
  const plain = unmapped(address);
  // Every address here was checked (a socket's, or a forwarded hop that passed isIP): a colon
  // is IPv6. Node's isIPv6 is a long regular expression, once per request.
  if (!plain.includes(":")) return plain;
  return `${expandIPv6(plain).slice(0, 4).join(":")}::/64`;
}

function expandIPv6(address: string): string[] {
  const [head = "", tail] = address.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  return [...left, ...Array(Math.max(0, missing)).fill("0"), ...right].map((h) => h.replace(/^0+(?=.)/, ""));
}

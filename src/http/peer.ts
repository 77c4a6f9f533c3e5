// How a connection's far end is written, the same in every log line: the
// stream lines, the session guard's, the connection refusals.

export type PeerSocket = { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined;

/** "10.0.0.7:51234", "[::1]:51234". */
export function peerOf(socket: PeerSocket): string {
  const addr = socket?.remoteAddress ?? "unknown";
  return addr.includes(":") ? `[${addr}]:${socket?.remotePort}` : `${addr}:${socket?.remotePort}`;
}

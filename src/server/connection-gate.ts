import type * as net from "node:net";
import type { ClientAddresses } from "../door/client-address.js";
import type { Logger } from "../ops/log.js";
import { notSentLowat } from "./socket-options.js";

// Every accepted connection passes here first, before it costs more than
// the accept: one client address may hold --max-connections-per-client of
// them (a trusted proxy's are not counted per client: they carry everyone's
// calls), and each gets its kernel send bound (socket-options.ts). The
// total, --max-connections, is Node's own maxConnections on the listener.

export interface ConnectionGateOptions {
  maxPerClient: number;
  clients: ClientAddresses;
  /** TCP_NOTSENT_LOWAT in bytes; 0 leaves the kernel's default. */
  notSentLowat: number;
  logger: Logger;
}

/** Returns false (and closes the socket) when its client holds its share already. */
export type ConnectionGate = (socket: net.Socket) => boolean;

export function createConnectionGate(options: ConnectionGateOptions): ConnectionGate {
  const { clients, maxPerClient, logger } = options;
  const open = new Map<string, number>();
  const bound = notSentLowat(options.notSentLowat, (why) =>
    logger.warn("a client that stops reading may hold the kernel's whole send buffer", { reason: why }),
  );
  const refused = throttledLog(logger, "connections refused: --max-connections-per-client reached", {
    max_connections_per_client: maxPerClient,
  });
  return (socket) => {
    const key = clients.ofConnection(socket.remoteAddress);
    if (key !== undefined) {
      const n = open.get(key) ?? 0;
      if (n >= maxPerClient) {
        socket.destroy();
        refused(key);
        return false;
      }
      open.set(key, n + 1);
      socket.once("close", () => {
        const left = (open.get(key) ?? 1) - 1;
        if (left === 0) open.delete(key);
        else open.set(key, left);
      });
    }
    bound(socket);
    return true;
  };
}

/**
 * One warning when connections start being refused, then at most one every
 * 10 s with how many: a flood must not become a flood of log lines.
 */
export function throttledLog(
  logger: Logger,
  message: string,
  fields: Record<string, number>,
): (client?: string) => void {
  let dropped = 0;
  let last: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const report = () => {
    timer = undefined;
    if (dropped === 0) return;
    logger.warn(message, { ...fields, refused: dropped, ...(last === undefined ? {} : { client: last }) });
    dropped = 0;
    timer = setTimeout(report, 10_000).unref();
  };
  return (client) => {
    dropped++;
    last = client;
    if (timer === undefined) report();
  };
}

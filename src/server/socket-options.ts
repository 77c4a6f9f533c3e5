import { createRequire } from "node:module";
import type * as net from "node:net";

// What one connection may make the kernel hold. Linux grows a TCP socket's
// send buffer up to net.ipv4.tcp_wmem's maximum (4 MiB by default) and lets a
// writer fill it whether or not the peer reads: a thousand clients that
// stopped reading held 3.8 MiB each, and the server spent its CPU making the
// messages to fill them. TCP_NOTSENT_LOWAT bounds the bytes the kernel
// accepts beyond what is in flight: a peer that stops reading then holds at
// most that much unsent, and a write beyond it waits ('drain'), as it would
// for a slow peer. What is in flight is still the congestion window's, so a
// fast reader far away loses nothing. Node has no API for socket options:
// the `sockopt` package sets them on the descriptor, from a prebuilt binary.
// Where it cannot load (not Linux, no prebuilt binary), the kernel's default
// stays and the server says so once.

const IPPROTO_TCP = 6;
/** Linux's value (include/uapi/linux/tcp.h). */
const TCP_NOTSENT_LOWAT = 25;

type SetSockOpt = (socket: net.Socket, level: number, option: number, value: number) => void;

/** Sets TCP_NOTSENT_LOWAT on accepted sockets, or explains once why it cannot. */
export function notSentLowat(bytes: number, onUnavailable: (why: string) => void): (socket: net.Socket) => void {
  if (bytes <= 0) return () => {};
  if (process.platform !== "linux") {
    onUnavailable(`TCP_NOTSENT_LOWAT is set on Linux only (this is ${process.platform})`);
    return () => {};
  }
  let setsockopt: SetSockOpt;
  try {
    setsockopt = (createRequire(import.meta.url)("sockopt") as { setsockopt: SetSockOpt }).setsockopt;
  } catch (e) {
    onUnavailable(`the sockopt package did not load: ${(e as Error).message}`);
    return () => {};
  }
  let failed = false;
  return (socket) => {
    try {
      setsockopt(socket, IPPROTO_TCP, TCP_NOTSENT_LOWAT, bytes);
    } catch (e) {
      // A socket that is already gone has no descriptor; anything else is worth one line.
      if (!failed && !socket.destroyed) {
        failed = true;
        onUnavailable(`setsockopt failed: ${(e as Error).message}`);
      }
    }
  };
}

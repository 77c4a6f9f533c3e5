import type { EventEmitter } from "node:events";

// Pull-based backpressure, shared by every entry that writes messages itself
// (the gRPC fast path, GET /stream): after a write() that returned false, the
// generator is not asked for the next message until the peer has read this
// one, or has gone.

/** Resolves on 'drain' or 'close', whichever comes first; at once if already destroyed. */
export function drainedOrClosed(stream: EventEmitter & { readonly destroyed: boolean }): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve();
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

import { drainedOrClosed } from "./drain.js";

// The loop every road that writes its own messages runs (the gRPC lean path,
// GET /stream; connect-node runs its own): pull the first message, and only
// then commit the status and headers, because a bad request fails on the
// first pull and its status is still ours to choose; then write each message
// and pull the next only once the peer has read what was sent (pull-based
// backpressure: nothing queues up for a slow client).

export interface MessageSink<M> {
  /** The first message is ready: send the status and headers. Called at most once, before any write. */
  open(): void;
  /** Writes one message; false when the peer must read before the next. */
  write(message: M): boolean;
  /** True once the peer went away: stop pulling. */
  gone(): boolean;
  /** What 'drain' and 'close' come from. */
  readonly socket: Parameters<typeof drainedOrClosed>[0];
}

export type PumpEnd =
  /** Every message sent; the stream ended well. */
  | { kind: "done" }
  /** The peer went away. */
  | { kind: "gone" }
  /** The stream failed; `opened` says whether the headers left already. The error is as thrown: each road maps it. */
  | { kind: "failed"; error: unknown; opened: boolean };

export async function pump<M>(messages: AsyncGenerator<M, void>, sink: MessageSink<M>): Promise<PumpEnd> {
  let opened = false;
  try {
    let next = await messages.next();
    if (sink.gone()) return { kind: "gone" };
    sink.open();
    opened = true;
    while (next.done !== true) {
      if (!sink.write(next.value) && !sink.gone()) await drainedOrClosed(sink.socket);
      if (sink.gone()) return { kind: "gone" };
      next = await messages.next();
    }
    return { kind: "done" };
  } catch (e) {
    return { kind: "failed", error: e, opened };
  } finally {
    // Stopping early (the peer went while the generator sat at a yield) ends
    // the stream at once: its registry slot, its log line, its metrics.
    void messages.return(undefined).catch(() => {});
  }
}

import type { EventEmitter } from "node:events";

// A call's signal, aborted when its stream or response closes before the
// road says it is done: the client went away, and the stream must end now,
// not at its next wake-up. A call that ends normally aborts nothing.

export interface CallAbort {
  readonly signal: AbortSignal;
  /** True once the stream or response closed. */
  readonly closed: boolean;
  /** Aborts for another reason (a deadline). */
  abort(reason: unknown): void;
  /** The road is done: a later close is no abort. */
  finish(): void;
}

export function abortOnClose(target: EventEmitter, reason: () => unknown): CallAbort {
  const controller = new AbortController();
  let closed = false;
  let finished = false;
  const onClose = () => {
    closed = true;
    if (!finished && !controller.signal.aborted) controller.abort(reason());
  };
  target.once("close", onClose);
  return {
    signal: controller.signal,
    get closed() {
      return closed;
    },
    abort(why) {
      if (!controller.signal.aborted) controller.abort(why);
    },
    finish() {
      finished = true;
      target.off("close", onClose);
    },
  };
}

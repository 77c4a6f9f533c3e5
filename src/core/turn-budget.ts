// Fairness between streams, and between streams and everything else the
// process does. A stream whose client reads fast never waits: over HTTP/1.1
// write() keeps returning true, so a write loop only ever awaits settled
// promises and never gives the event loop back. One such client used to
// freeze the process (no /healthz, no new connection, no other stream).
//
// Every stream asks the one budget before each message. The streams together
// may run for `sliceMs` in a turn of the event loop; past it, each one that
// asks waits for the next turn (setImmediate: after the poll phase, so I/O,
// timers and new connections run in between). The bound is per turn, not per
// stream: a thousand fast streams share the same slice. Streams resumed
// together continue in the order they stopped, one message each per microtask
// round, so none is starved by another.

export class TurnBudget {
  private sliceStart = 0;
  private inSlice = false;
  private taken = 0;
  private nextTurn: Promise<void> | undefined;
  private release: (() => void) | undefined;

  /** `sliceMs`: how long streams together may run in one turn of the event loop. */
  constructor(readonly sliceMs = 10) {}

  /**
   * Before each message: undefined when the stream may go on now, else a
   * promise that resolves in a later turn (shared by every stream that waits).
   */
  take(): Promise<void> | undefined {
    if (this.nextTurn !== undefined) return this.nextTurn;
    if (!this.inSlice) {
      // The first stream to run in this turn opens the slice; it closes at the
      // end of the turn, whether or not the budget ran out.
      this.inSlice = true;
      this.sliceStart = performance.now();
      setImmediate(this.endSlice);
      return undefined;
    }
    // The clock is read every few messages only: a message costs about a
    // microsecond, so the slice overruns by a few at most.
    if ((++this.taken & 7) !== 0 || performance.now() - this.sliceStart < this.sliceMs) return undefined;
    this.nextTurn = new Promise<void>((resolve) => {
      this.release = resolve;
    });
    return this.nextTurn;
  }

  private readonly endSlice = (): void => {
    this.inSlice = false;
    const release = this.release;
    this.nextTurn = undefined;
    this.release = undefined;
    release?.();
  };
}

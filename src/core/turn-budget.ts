// Fairness between streams, and between streams and everything else the
// process does. A stream whose client reads fast never waits: over HTTP/1.1
// write() keeps returning true, so a write loop never gives the event loop
// back. One such client used to freeze the process (no /healthz, no new
// connection, no other stream).
//
// Every stream asks the one budget before each message. The streams together
// may run for `sliceMs` in a turn of the event loop; past it, a stream that
// asks is deferred to the next turn (setImmediate: after the poll phase, so
// I/O, timers and new connections run in between). The bound is per turn,
// not per stream: a thousand fast streams share the same slice. Deferred
// streams resume in the order they stopped, and while others wait a stream
// goes back to the end of the line after each message, so none starves
// another, and a paced stream waits behind a thousand fast ones for less
// than a turn.
//
// New connections need short turns too: Node's event loop accepts one
// connection per turn (libuv stopped accepting in a loop in 1.45), so a
// client that connects behind a burst of a thousand waits a thousand turns.
// With turns of 3 ms it waited over a second; while connections keep
// arriving (press()), the slice is a quarter of a millisecond, and the loop
// turns, and accepts, some five times as often (measured: the next client's
// wait behind 1,000 connections that each started a stream fell from 1.1 s
// to 0.1 s).

/** What the budget can resume in a later turn. */
export interface Deferred {
  /** Runs again (or does nothing if it ended meanwhile); asks before each message, defers itself again when refused. */
  resumeTurn(): void;
  /** Set while the task waits in the budget's line (undefined otherwise); the budget owns it. */
  deferredNext: Deferred | undefined;
}

/** The slice while connections arrive, and how long after the last one it stays that short. */
const PRESSED_SLICE_MS = 0.25;
const PRESSED_FOR_MS = 50;

export class TurnBudget {
  private sliceStart = 0;
  private inSlice = false;
  private asked = 0;
  private exhausted = false;
  /** Streams already running, and work of the process's own (a cut pacer pass, queued log lines). */
  private readonly running = new Line();
  /** Streams that start or end (a first message, the bookkeeping of a peer gone), waiting for a slice. */
  private readonly changing = new Line();
  private pressedUntil = 0;

  /**
   * `sliceMs`: how long streams together may run in one turn of the event
   * loop. `onError`: a task that throws (a bug) is told here, and the line goes on.
   */
  constructor(
    readonly sliceMs = 10,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  /** Streams waiting for a later turn. */
  get deferred(): number {
    return this.running.length + this.changing.length;
  }

  /** A connection was just accepted: more may wait in the kernel's queue, one a turn. Keeps turns short for a while. */
  press(): void {
    this.pressedUntil = performance.now() + PRESSED_FOR_MS;
  }

  /** Before each message: true when the stream may go on now; false when it must defer(). */
  allows(): boolean {
    if (!this.inSlice) {
      // The first stream to run in this turn opens the slice; it closes at the
      // end of the turn, whether or not the budget ran out.
      this.inSlice = true;
      this.exhausted = false;
      this.sliceStart = performance.now();
      setImmediate(this.endSlice);
      return true;
    }
    if (this.exhausted) return false;
    // The clock is read every few messages only: a message costs a few
    // microseconds, so the slice overruns by a few at most.
    if ((++this.asked & 7) !== 0) return true;
    const now = performance.now();
    if (now - this.sliceStart < this.currentSliceMs()) return true;
    this.exhausted = true;
    return false;
  }

  /** Runs `task.resumeTurn()` in a later turn, after the tasks deferred before it; once, if it waits already. */
  defer(task: Deferred): void {
    this.running.push(task);
    this.endSliceLater();
  }

  /**
   * Runs `task`, a stream that starts or ends, in a later turn. Those wait in
   * a line of their own, which gets half of each slice while running streams
   * wait: ten thousand streams arriving at once cost a good deal each (Node's
   * response, a first message), and so do fifty thousand whose connections
   * dropped (a log line, counters); a running stream waiting behind all of
   * them would miss its pace by seconds, beside them it waits half a slice.
   */
  deferChange(task: Deferred): void {
    this.changing.push(task);
    this.endSliceLater();
  }

  private endSliceLater(): void {
    // A slice that was never opened in this turn has no endSlice coming.
    if (!this.inSlice) {
      this.inSlice = true;
      this.exhausted = true;
      setImmediate(this.endSlice);
    }
  }

  private readonly endSlice = (): void => {
    this.inSlice = false;
    if (this.running.length + this.changing.length === 0 || !this.allows()) return;
    // Streams that start or end go first, for half the slice at most while
    // running ones wait, then the running ones in order, then starts and ends
    // again while the slice lasts. Shared by time, not by task: a pacer's
    // pass is one task that takes a whole slice, and taking one task from each
    // line in turn left an overloaded server one new stream a turn (4,000 of
    // 10,000 streams never started in two minutes). A task that goes on
    // defers itself again after one message when others wait, to the back of
    // its line.
    const changesUntil = this.sliceStart + this.currentSliceMs() / 2;
    while (this.changing.length > 0 && (this.running.length === 0 || performance.now() < changesUntil)) {
      if (!this.allows()) return;
      this.runNext(this.changing);
    }
    while (this.running.length > 0) {
      if (!this.allows()) return;
      this.runNext(this.running);
    }
    while (this.changing.length > 0) {
      if (!this.allows()) return;
      this.runNext(this.changing);
    }
  };

  private currentSliceMs(): number {
    return this.sliceStart < this.pressedUntil ? PRESSED_SLICE_MS : this.sliceMs;
  }

  private runNext(line: Line): void {
    const task = line.shift();
    try {
      task.resumeTurn();
    } catch (e) {
      this.onError(e);
    }
  }
}

/**
 * The link of the last task in a line: `deferredNext` is undefined only on a
 * task that waits in no line, so a task deferred again while it waits keeps
 * its place instead of being linked in twice (which cut the line short and
 * ended the process on the next shift).
 */
const LAST: Deferred = { deferredNext: undefined, resumeTurn() {} };

/** Tasks in the order they were deferred, linked through `deferredNext`. A task waits in one line at most, once. */
class Line {
  private head: Deferred | undefined;
  private tail: Deferred | undefined;
  length = 0;

  push(task: Deferred): void {
    if (task.deferredNext !== undefined) return;
    task.deferredNext = LAST;
    if (this.tail === undefined) this.head = task;
    else this.tail.deferredNext = task;
    this.tail = task;
    this.length++;
  }

  /** The oldest task; only when length > 0. */
  shift(): Deferred {
    const task = this.head as Deferred;
    const next = task.deferredNext;
    this.head = next === LAST ? undefined : next;
    if (this.head === undefined) this.tail = undefined;
    task.deferredNext = undefined;
    this.length--;
    return task;
  }
}

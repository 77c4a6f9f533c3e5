import type { Deferred, TurnBudget } from "./turn-budget.js";

// Waits between two messages of many streams, cheaply.
//
// Streams that share an interval share one timer: their due times arrive in
// nearly the order they were scheduled, so each interval keeps a list sorted
// by due time (inserted from the tail, which is O(1) in the common case) and
// one setTimeout armed for its head. Ten thousand idle streams at 2 s then
// cost a handful of timers instead of ten thousand. When a timer fires, one
// pass wakes every stream that is due, by a plain call (no promise per
// message), within the turn budget: what the budget refuses is woken in the
// next turn, still in due order.

/** A stream as the pacer sees it: a node of one interval's list. The pacer owns these fields. */
export interface Waiter {
  /** Writes the stream's next message. */
  wake(): void;
  due: number;
  prevWaiter: Waiter | undefined;
  nextWaiter: Waiter | undefined;
  queue: unknown;
}

interface Queue {
  readonly intervalMs: number;
  head: Waiter | undefined;
  tail: Waiter | undefined;
  timer: NodeJS.Timeout | undefined;
  timerDue: number;
  /** A pass was cut short by the budget and waits in the budget's line to go on. */
  resuming: boolean;
  /** The rest of a cut pass, as the budget's line holds it: served in turn with the streams waiting there. */
  readonly rest: Deferred;
}

/** A timer fires up to this early, so that streams due within the same millisecond go together. */
const SLACK_MS = 1;

export class Pacer {
  private readonly queues = new Map<number, Queue>();
  private waiting = 0;

  /** `onError`: a stream whose wake() throws (a bug) is told here, and the pass goes on. */
  constructor(
    private readonly budget: TurnBudget,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  /** Waits in progress; 0 when every stream is sending or gone. */
  get pending(): number {
    return this.waiting;
  }

  /** Timers armed; 0 when nothing waits. */
  get timers(): number {
    let n = 0;
    for (const q of this.queues.values()) {
      if (q.timer !== undefined) n++;
    }
    return n;
  }

  /** Calls `w.wake()` at `due` (a performance.now() time). `w` must not be waiting already. */
  wakeAt(w: Waiter, intervalMs: number, due: number): void {
    let q = this.queues.get(intervalMs);
    if (q === undefined) {
      const queue: Queue = {
        intervalMs,
        head: undefined,
        tail: undefined,
        timer: undefined,
        timerDue: 0,
        resuming: false,
        rest: { deferredNext: undefined, resumeTurn: () => this.fire(queue) },
      };
      q = queue;
      this.queues.set(intervalMs, q);
    }
    w.due = due;
    let after = q.tail;
    while (after !== undefined && after.due > due) after = after.prevWaiter;
    w.queue = q;
    w.prevWaiter = after;
    w.nextWaiter = after === undefined ? q.head : after.nextWaiter;
    if (w.nextWaiter === undefined) q.tail = w;
    else w.nextWaiter.prevWaiter = w;
    if (after === undefined) q.head = w;
    else after.nextWaiter = w;
    this.waiting++;
    if (q.head === w) this.arm(q);
  }

  /** Stops `w`'s wait, if it waits. */
  cancel(w: Waiter): void {
    const q = w.queue as Queue | undefined;
    if (q === undefined) return;
    if (w.prevWaiter === undefined) q.head = w.nextWaiter;
    else w.prevWaiter.nextWaiter = w.nextWaiter;
    if (w.nextWaiter === undefined) q.tail = w.prevWaiter;
    else w.nextWaiter.prevWaiter = w.prevWaiter;
    w.prevWaiter = w.nextWaiter = undefined;
    w.queue = undefined;
    this.waiting--;
    if (q.head === undefined) this.disarm(q);
  }

  private arm(q: Queue): void {
    const head = q.head;
    if (head === undefined || q.resuming) return;
    if (q.timer !== undefined) {
      if (q.timerDue <= head.due) return;
      clearTimeout(q.timer);
    }
    q.timerDue = head.due;
    q.timer = setTimeout(() => this.fire(q), Math.max(0, head.due - performance.now()));
  }

  private disarm(q: Queue): void {
    if (q.timer !== undefined) clearTimeout(q.timer);
    q.timer = undefined;
    if (!q.resuming) this.forget(q);
  }

  private forget(q: Queue): void {
    if (this.queues.get(q.intervalMs) === q) this.queues.delete(q.intervalMs);
  }

  private fire(q: Queue): void {
    q.timer = undefined;
    q.resuming = false;
    const now = performance.now() + SLACK_MS;
    while (q.head !== undefined && q.head.due <= now) {
      if (!this.budget.allows()) {
        // The rest of the pass waits in the budget's line, in due order, like
        // any stream that was cut short: behind a thousand fast streams it
        // still comes within a turn. Nothing re-arms meanwhile.
        q.resuming = true;
        this.budget.defer(q.rest);
        return;
      }
      const w = q.head;
      this.cancel(w);
      try {
        w.wake();
      } catch (e) {
        this.onError(e);
      }
    }
    if (q.head !== undefined) this.arm(q);
    else this.forget(q);
  }
}

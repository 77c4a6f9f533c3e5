// Waits between two messages of many streams, cheaply.
//
// Streams that share an interval share one timer: their due times arrive in
// nearly the order they were scheduled, so each interval keeps a list sorted by
// due time (inserted from the tail, which is O(1) in the common case) and one
// setTimeout armed for its head. Ten thousand idle streams at 2 s then cost a
// handful of timers instead of ten thousand, and no wait adds an abort
// listener: the stream cancels its own ticket when its signal aborts.

/** A timer fires up to this early, so that streams due within the same millisecond go together. */
const SLACK_MS = 1;

interface Waiter {
  due: number;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  queue: Queue | undefined;
  resolve: (() => void) | undefined;
  reject: ((reason: unknown) => void) | undefined;
}

interface Queue {
  readonly intervalMs: number;
  head: Waiter | undefined;
  tail: Waiter | undefined;
  timer: NodeJS.Timeout | undefined;
  timerDue: number;
}

/** One stream's handle on the pacer: at most one wait at a time. */
export interface Ticket {
  /** Resolves at `due` (a performance.now() time); rejects with the reason given to cancel(). */
  sleepUntil(intervalMs: number, due: number): Promise<void>;
  /** Ends the pending wait, if any, by rejecting it with `reason`. */
  cancel(reason: unknown): void;
}

export class Pacer {
  private readonly queues = new Map<number, Queue>();
  private waiting = 0;

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

  ticket(): Ticket {
    const waiter: Waiter = {
      due: 0,
      prev: undefined,
      next: undefined,
      queue: undefined,
      resolve: undefined,
      reject: undefined,
    };
    return {
      sleepUntil: (intervalMs, due) =>
        new Promise<void>((resolve, reject) => {
          waiter.due = due;
          waiter.resolve = resolve;
          waiter.reject = reject;
          this.insert(this.queueFor(intervalMs), waiter);
        }),
      cancel: (reason) => {
        const reject = waiter.reject;
        if (reject === undefined) return;
        this.remove(waiter);
        reject(reason);
      },
    };
  }

  private queueFor(intervalMs: number): Queue {
    let q = this.queues.get(intervalMs);
    if (q === undefined) {
      q = { intervalMs, head: undefined, tail: undefined, timer: undefined, timerDue: 0 };
      this.queues.set(intervalMs, q);
    }
    return q;
  }

  private insert(q: Queue, w: Waiter): void {
    let after = q.tail;
    while (after !== undefined && after.due > w.due) {
      after = after.prev;
    }
    w.queue = q;
    w.prev = after;
    w.next = after === undefined ? q.head : after.next;
    if (w.next === undefined) q.tail = w;
    else w.next.prev = w;
    if (after === undefined) q.head = w;
    else after.next = w;
    this.waiting++;
    if (q.head === w) this.arm(q);
  }

  private remove(w: Waiter): void {
    const q = w.queue;
    if (q === undefined) return;
    if (w.prev === undefined) q.head = w.next;
    else w.prev.next = w.next;
    if (w.next === undefined) q.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = w.next = w.queue = undefined;
    w.resolve = w.reject = undefined;
    this.waiting--;
    if (q.head === undefined) this.disarm(q);
  }

  private arm(q: Queue): void {
    const head = q.head;
    if (head === undefined) return;
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
    this.queues.delete(q.intervalMs);
  }

  private fire(q: Queue): void {
    q.timer = undefined;
    const now = performance.now() + SLACK_MS;
    while (q.head !== undefined && q.head.due <= now) {
      const w = q.head;
      const resolve = w.resolve;
      this.remove(w);
      resolve?.();
    }
    if (q.head !== undefined) this.arm(q);
  }
}

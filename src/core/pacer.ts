import type { Deferred, TurnBudget } from "./turn-budget.js";

// Waits between two messages of many streams, cheaply.
//
// Streams that share an interval share one timer. Each interval keeps its
// waits in slots of a millisecond (streams due within the same millisecond
// go together), a slot's streams in the order they came, and the slots'
// times in a heap, with one setTimeout armed for the earliest: ten thousand
// idle streams at 2 s cost a handful of timers instead of ten thousand, and a
// wait costs the same however many others there are. (A list sorted by due
// time cost that only while streams came in due order; a fleet of 100,000
// opening at once starts its streams a second or two after they were
// admitted, out of that order, and each insertion walked tens of thousands
// of nodes: the first messages of new streams came at a few hundred a second.)
// When a timer fires, one pass wakes every stream that is due, by a plain
// call (no promise per message), within the turn budget: what the budget
// refuses is woken in the next turn, still in due order.

/** A stream as the pacer sees it: a node of one slot's list. The pacer owns these fields. */
export interface Waiter {
  /** Writes the stream's next message. */
  wake(): void;
  due: number;
  prevWaiter: Waiter | undefined;
  nextWaiter: Waiter | undefined;
  /** The slot it waits in, while it waits. */
  queue: unknown;
}

/** The waits of one interval due within one millisecond, in the order they came. */
interface Slot {
  readonly ms: number;
  readonly queue: Queue;
  head: Waiter | undefined;
  tail: Waiter | undefined;
}

interface Queue {
  readonly intervalMs: number;
  readonly slots: Map<number, Slot>;
  /** A min-heap of the slots' times; a time whose slot emptied stays until it is reached. */
  readonly times: number[];
  /** Waits in this queue. */
  size: number;
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

  /** Calls `w.wake()` at `due` (a performance.now() time), up to SLACK_MS early. `w` must not be waiting already. */
  wakeAt(w: Waiter, intervalMs: number, due: number): void {
    let q = this.queues.get(intervalMs);
    if (q === undefined) {
      const queue: Queue = {
        intervalMs,
        slots: new Map(),
        times: [],
        size: 0,
        timer: undefined,
        timerDue: 0,
        resuming: false,
        rest: { deferredNext: undefined, resumeTurn: () => this.fire(queue) },
      };
      q = queue;
      this.queues.set(intervalMs, q);
    }
    const ms = Math.ceil(due);
    let slot = q.slots.get(ms);
    if (slot === undefined) {
      slot = { ms, queue: q, head: undefined, tail: undefined };
      q.slots.set(ms, slot);
      pushTime(q.times, ms);
    }
    w.due = due;
    w.queue = slot;
    w.nextWaiter = undefined;
    w.prevWaiter = slot.tail;
    if (slot.tail === undefined) slot.head = w;
    else slot.tail.nextWaiter = w;
    slot.tail = w;
    q.size++;
    this.waiting++;
    this.arm(q);
  }

  /** Stops `w`'s wait, if it waits. */
  cancel(w: Waiter): void {
    const slot = w.queue as Slot | undefined;
    if (slot === undefined) return;
    if (w.prevWaiter === undefined) slot.head = w.nextWaiter;
    else w.prevWaiter.nextWaiter = w.nextWaiter;
    if (w.nextWaiter === undefined) slot.tail = w.prevWaiter;
    else w.nextWaiter.prevWaiter = w.prevWaiter;
    w.prevWaiter = w.nextWaiter = undefined;
    w.queue = undefined;
    this.waiting--;
    const q = slot.queue;
    if (slot.head === undefined && q.slots.get(slot.ms) === slot) q.slots.delete(slot.ms);
    if (--q.size === 0) this.disarm(q);
  }

  private arm(q: Queue): void {
    const first = q.times[0];
    if (first === undefined || q.resuming) return;
    if (q.timer !== undefined) {
      if (q.timerDue <= first) return;
      clearTimeout(q.timer);
    }
    q.timerDue = first;
    q.timer = setTimeout(() => this.fire(q), Math.max(0, first - SLACK_MS - performance.now()));
  }

  private disarm(q: Queue): void {
    this.disarmTimer(q);
    if (!q.resuming) this.forget(q);
  }

  private disarmTimer(q: Queue): void {
    if (q.timer !== undefined) clearTimeout(q.timer);
    q.timer = undefined;
  }

  private forget(q: Queue): void {
    if (this.queues.get(q.intervalMs) === q) this.queues.delete(q.intervalMs);
  }

  private fire(q: Queue): void {
    q.timer = undefined;
    q.resuming = false;
    const now = performance.now() + SLACK_MS;
    for (let slot = dueSlot(q, now); slot !== undefined; slot = dueSlot(q, now)) {
      while (slot.head !== undefined) {
        if (!this.budget.allows()) {
          // The rest of the pass waits in the budget's line, in due order, like
          // any stream that was cut short: behind a thousand fast streams it
          // still comes within a turn. Nothing re-arms meanwhile.
          // A stream woken in this pass that waits again re-armed the
          // timer: it must not fire while the rest waits in line, or the
          // pass would run twice and defer itself twice.
          this.disarmTimer(q);
          q.resuming = true;
          this.budget.defer(q.rest);
          return;
        }
        const w = slot.head;
        this.cancel(w);
        try {
          w.wake();
        } catch (e) {
          this.onError(e);
        }
      }
    }
    if (q.size > 0) this.arm(q);
    else this.forget(q);
  }
}

/** The earliest slot of `q` due by `now` that still holds waits; drops the times of slots that emptied. */
function dueSlot(q: Queue, now: number): Slot | undefined {
  for (;;) {
    const ms = q.times[0];
    if (ms === undefined || ms > now) return undefined;
    const slot = q.slots.get(ms);
    if (slot !== undefined && slot.head !== undefined) return slot;
    popTime(q.times);
  }
}

function pushTime(heap: number[], t: number): void {
  let i = heap.push(t) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const p = heap[parent] as number;
    if (p <= t) break;
    heap[i] = p;
    i = parent;
  }
  heap[i] = t;
}

function popTime(heap: number[]): void {
  const last = heap.pop() as number;
  if (heap.length === 0) return;
  let i = 0;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const child = right < heap.length && (heap[right] as number) < (heap[left] as number) ? right : left;
    if ((heap[child] as number) >= last) break;
    heap[i] = heap[child] as number;
    i = child;
  }
  heap[i] = last;
}

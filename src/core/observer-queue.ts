import type { ConnectError } from "@connectrpc/connect";
import type { Asked, CallInfo, StreamEnd, StreamObserver } from "./stream-service.js";
import type { Deferred, TurnBudget } from "./turn-budget.js";

// What happens around a stream (its log lines, its metrics, its span) happens
// after its messages are on their way, in the turn budget's line like any
// stream. A call's first message used to wait behind its "stream started"
// line, its gauges and its span; and 50,000 streams that ended at once (a
// fleet of connections gone) made 50,000 log lines and span ends in one turn,
// seconds in which no other stream wrote. Here each event is queued with the
// time it happened, and delivered in order a few turns later at most, within
// the same slice of the event loop that every stream shares.

type Event =
  | { kind: "opened"; call: CallInfo; name: string; at: number }
  | { kind: "ended"; call: CallInfo; name: string; end: StreamEnd; at: number }
  | { kind: "rejected"; call: CallInfo; asked: Asked; error: ConnectError; at: number };

/** Events delivered in one go before the queue lets a waiting stream have the slice. */
const EVENTS_PER_TURN_WHEN_OTHERS_WAIT = 64;

export class ObserverQueue implements Deferred {
  deferredNext: Deferred | undefined = undefined;
  private events: Event[] = [];
  private next = 0;
  private waiting = false;

  constructor(
    private readonly observers: readonly StreamObserver[],
    private readonly budget: TurnBudget,
    /** An observer that throws: told here, and the other observers still hear of the event. */
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Events not delivered yet. */
  get pending(): number {
    return this.events.length - this.next;
  }

  opened(call: CallInfo, name: string): void {
    this.push({ kind: "opened", call, name, at: Date.now() });
  }

  ended(call: CallInfo, name: string, end: StreamEnd): void {
    this.push({ kind: "ended", call, name, end, at: Date.now() });
  }

  rejected(call: CallInfo, asked: Asked, error: ConnectError): void {
    this.push({ kind: "rejected", call, asked, error, at: Date.now() });
  }

  /** Delivers everything now: before /metrics answers, and when the server stops. */
  flush(): void {
    while (this.next < this.events.length) this.deliverNext();
    this.reset();
  }

  /** The budget's call: deliver in order while this turn's slice lasts. */
  resumeTurn(): void {
    this.waiting = false;
    for (let n = 0; this.next < this.events.length; n++) {
      if (!this.budget.allows() || (n >= EVENTS_PER_TURN_WHEN_OTHERS_WAIT && this.budget.deferred > 0)) {
        this.wait();
        return;
      }
      this.deliverNext();
    }
    this.reset();
  }

  private push(event: Event): void {
    if (this.observers.length === 0) return;
    this.events.push(event);
    this.wait();
  }

  private wait(): void {
    if (this.waiting) return;
    this.waiting = true;
    this.budget.defer(this);
  }

  private reset(): void {
    this.events = [];
    this.next = 0;
  }

  private deliverNext(): void {
    const event = this.events[this.next] as Event;
    this.events[this.next++] = undefined as unknown as Event;
    for (const o of this.observers) {
      try {
        if (event.kind === "opened") o.opened?.(event.call, event.name, event.at);
        else if (event.kind === "ended") o.ended?.(event.call, event.name, event.end, event.at);
        else o.rejected?.(event.call, event.asked, event.error, event.at);
      } catch (e) {
        this.onError(e);
      }
    }
  }
}

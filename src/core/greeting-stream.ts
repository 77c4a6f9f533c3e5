import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamPlan } from "./greeting.js";
import type { Waiter } from "./pacer.js";
import type { CallInfo, EndReason, StreamEnd } from "./stream-service.js";
import type { Deferred } from "./turn-budget.js";

// One call's stream: a small state machine that pushes its messages into the
// road's sink, as fast as the sink takes them (interval 0) or one per
// interval, and stops when the sink says the peer must read first. Every
// road drives the same machine: the lean roads with their own sink, the
// connect-node road through GreetingStreams.open()'s async generator, whose
// sink holds one message. So validation, pacing, fairness, limits and the
// end of a stream are the same on every road, and a message costs a plain
// call, not a chain of promises.

/** Where a stream's messages go: the road's encoder and socket. */
export interface GreetingSink {
  /**
   * Writes message `counter` of the stream, sent at `millis` (Date.now()).
   * Returns false when the peer must read before the next: the road then
   * calls resume() once it has (its 'drain').
   */
  write(counter: bigint, millis: number): boolean;
  /**
   * The stream stops writing for now (it waits for its next message, or for
   * a later turn): what the sink holds back to write in one piece goes out
   * now. False, like write(), when the peer must read first. Optional: a
   * sink that writes each message at once needs none.
   */
  flush?(): boolean;
  /** The stream is over: undefined when every message was sent, else the error to send. Never after cancel(). */
  end(error: ConnectError | undefined): void;
  /**
   * The peer took nothing for --send-timeout: drop what is queued for it and
   * close (its stream, or its HTTP/1.1 connection), instead of end(), whose
   * last words it would never read. Returns true when the whole connection
   * went with it (the peer reads nothing at all). Optional: a sink without it gets end().
   */
  abort?(): boolean;
}

/** What a stream needs of the GreetingStreams that owns it. */
export interface StreamOwner {
  readonly budget: {
    allows(): boolean;
    defer(task: Deferred): void;
    deferChange(task: Deferred): void;
    readonly deferred: number;
  };
  readonly pacer: { wakeAt(w: Waiter, intervalMs: number, due: number): void; cancel(w: Waiter): void };
  /** Called once, when the stream ends however it ends. */
  ended(stream: GreetingStream, end: StreamEnd): void;
  /** Counts a message sent, on every road. */
  counted(): void;
  /** The stream waits for its peer to read (its sink said so); unblocked() when it goes on or ends. */
  blocked(stream: GreetingStream): void;
  unblocked(stream: GreetingStream): void;
}

type State = "new" | "running" | "blocked" | "waiting" | "deferred" | "cancelling" | "done";

// A client that gives up at its own deadline often closes the call a moment
// before the server's deadline timer fires; count that as the deadline.
const DEADLINE_SLACK_MS = 50;

export class GreetingStream implements Waiter, Deferred {
  // The pacer's and the budget's list links: a stream is its own list node.
  due = 0;
  prevWaiter: Waiter | undefined = undefined;
  nextWaiter: Waiter | undefined = undefined;
  queue: unknown = undefined;
  deferredNext: Deferred | undefined = undefined;

  /** The name greeted, after defaults ("Anonymous"). */
  readonly name: string;
  /** Messages written so far. */
  sent = 0;
  private counter: bigint;
  private readonly last: bigint;
  private readonly intervalMs: number;
  /** When the next message is due, on the schedule (no drift). */
  private nextDue: number;
  private readonly started: number;
  private state: State = "new";
  /** While cancelling: the state it left, and why its peer went. */
  private left: State = "new";
  private cancelReason: unknown;
  private cutTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly owner: StreamOwner,
    plan: StreamPlan,
    readonly call: CallInfo,
    private readonly sink: GreetingSink,
  ) {
    this.name = plan.name;
    this.counter = plan.first;
    this.last = plan.last;
    this.intervalMs = plan.intervalMs;
    this.started = this.nextDue = performance.now();
  }

  /** True once the stream ended, however it ended. */
  get done(): boolean {
    return this.state === "done";
  }

  /**
   * Ends the stream `ms` from now, for a reason of the server's own: `error`
   * gets the counter of the next message, so its text can say where to
   * resume. One timer per stream, but Node keeps timers of one duration in one
   * list under one libuv timer: arming and clearing cost O(1).
   */
  stopAfter(ms: number, error: (next: bigint) => ConnectError): void {
    this.cutTimer = setTimeout(() => this.stop(error(this.counter), "max_duration"), ms);
  }

  /** Writes the first message at once (response headers leave with it), and goes on from there. */
  begin(): void {
    if (this.state !== "new") return;
    this.state = "running";
    this.run();
  }

  /** The peer read what was written: go on. */
  resume(): void {
    if (this.state !== "blocked") return;
    this.owner.unblocked(this);
    if (this.intervalMs > 0) this.waitForNext();
    else {
      this.state = "running";
      this.run();
    }
  }

  /** The pacer's call: the next message is due. */
  wake(): void {
    if (this.state !== "waiting") return;
    this.state = "running";
    this.run();
  }

  /** The budget's call: a new turn has a slice for us. */
  resumeTurn(): void {
    if (this.state === "cancelling") {
      this.state = this.left;
      this.cancelNow(this.cancelReason);
      return;
    }
    if (this.state !== "deferred") return;
    this.state = "running";
    this.run();
  }

  /** The peer went away (`reason`: why its stream closed). Frees the stream at once; nothing more is written. */
  cancel(reason: unknown): void {
    if (this.state === "done" || this.state === "cancelling") return;
    if (this.owner.budget.allows()) {
      this.cancelNow(reason);
      return;
    }
    // Past the turn's slice the bookkeeping (log line, counters, span) waits
    // in line like a message: a connection that drops 1,000 streams has Node
    // close all of them in one call, and 56 such connections at once would
    // add ours to Node's in a single turn. Nothing is written meanwhile: the
    // sink's stream is closed.
    this.left = this.state;
    this.cancelReason = reason;
    this.state = "cancelling";
    // Already in the budget's line (deferred), it finishes when its turn comes.
    if (this.left !== "deferred") this.owner.budget.deferChange(this);
  }

  private cancelNow(reason: unknown): void {
    const deadlineAt = this.call.deadlineAt;
    const late = deadlineAt !== undefined && performance.now() >= deadlineAt - DEADLINE_SLACK_MS;
    const error = ConnectError.from(reason);
    this.finish(late || error.code === Code.DeadlineExceeded ? "deadline" : "cancelled", error);
  }

  /** Ends the stream with `error` sent to the peer: its deadline passed, or something failed. */
  fail(error: ConnectError): void {
    if (this.state === "done" || this.state === "cancelling") return;
    this.finish(error.code === Code.DeadlineExceeded ? "deadline" : "error", error);
    this.sink.end(error);
  }

  /** Ends the stream with `error` sent to the peer, for a reason of the server's own (shutdown). */
  stop(error: ConnectError, reason: EndReason = "shutdown"): void {
    if (this.state === "done" || this.state === "cancelling") return;
    this.finish(reason, error);
    this.sink.end(error);
  }

  /**
   * The peer took nothing for --send-timeout (`error` says so in the log):
   * closed, nothing more is written. True when its connection was closed too.
   */
  stall(error: ConnectError): boolean {
    if (this.state === "done" || this.state === "cancelling") return false;
    this.finish("send_timeout", error);
    if (this.sink.abort !== undefined) return this.sink.abort();
    this.sink.end(error);
    return false;
  }

  private run(): void {
    const { owner, sink } = this;
    for (let burst = 0; ; burst++) {
      // After one message, others waiting for the slice go first.
      if (!owner.budget.allows() || (burst > 0 && owner.budget.deferred > 0)) {
        // What the sink holds back stays there until the next turn adds to it:
        // one write per turn each would leave a peer that reads nothing with
        // a hundred small writes queued per stream in Node, and when it went,
        // Node would make an error for each (1,000 such streams: 0.6 s in one
        // turn). A full batch goes out, and says whether the peer is behind.
        this.state = "deferred";
        // A stream that has sent nothing yet is still arriving: it waits with
        // the new streams, not ahead of the running ones it would hold up.
        if (this.sent === 0) owner.budget.deferChange(this);
        else owner.budget.defer(this);
        return;
      }
      const counter = this.counter;
      // The schedule counts from the first message as it leaves, not from the
      // call's arrival: a first message that waited its turn behind a
      // thousand new streams must not have the second follow it at once.
      if (this.sent === 0) this.nextDue = performance.now();
      let ok: boolean;
      try {
        ok = sink.write(counter, Date.now());
      } catch (e) {
        this.fail(new ConnectError("internal error", Code.Internal, undefined, undefined, e));
        return;
      }
      // The write may have found the peer gone, and cancelled us (or put that in line).
      if (this.state !== "running") return;
      this.sent++;
      owner.counted();
      if (counter === this.last) {
        this.finish("limit", undefined);
        sink.end(undefined);
        return;
      }
      this.counter = counter + 1n;
      if (!ok) {
        this.block();
        return;
      }
      if (this.intervalMs > 0) {
        if (sink.flush?.() === false) {
          this.block();
          return;
        }
        this.waitForNext();
        return;
      }
    }
  }

  private block(): void {
    this.state = "blocked";
    this.owner.blocked(this);
  }

  private waitForNext(): void {
    // Keep to the schedule (no drift), but do not burst to catch up after a stall.
    this.nextDue = Math.max(this.nextDue + this.intervalMs, performance.now());
    this.state = "waiting";
    this.owner.pacer.wakeAt(this, this.intervalMs, this.nextDue);
  }

  private finish(reason: EndReason, error: ConnectError | undefined): void {
    const was = this.state;
    this.state = "done";
    clearTimeout(this.cutTimer);
    if (was === "waiting") this.owner.pacer.cancel(this);
    else if (was === "blocked") this.owner.unblocked(this);
    const end: StreamEnd = {
      reason,
      sent: this.sent,
      durationMs: Math.round(performance.now() - this.started),
    };
    if (error !== undefined) end.error = error;
    this.owner.ended(this, end);
  }
}

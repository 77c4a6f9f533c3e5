// Streams whose peer has stopped reading. A stream that has written what
// the peer's window (or its socket) can take waits for the peer to read; a
// peer that never does would hold it, its buffers and its connection for
// good. Like nginx's send_timeout, a stream that takes nothing for timeoutMs
// is handed to onStall() to be ended. One timer for all of them: streams
// are kept in the order they stopped, so a check looks only at those due.

export class StallWatch<T> {
  /** Each waiting stream and since when (performance.now()), oldest first. */
  private readonly since = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: (stream: T) => void,
  ) {}

  /** Streams waiting for their peer to read. */
  get size(): number {
    return this.since.size;
  }

  /** `stream` waits for its peer from now. */
  block(stream: T): void {
    this.since.delete(stream);
    this.since.set(stream, performance.now());
    if (this.timer === undefined) this.arm(this.timeoutMs);
  }

  /** `stream`'s peer read, or the stream ended. */
  unblock(stream: T): void {
    this.since.delete(stream);
  }

  private arm(inMs: number): void {
    this.timer = setTimeout(this.check, Math.max(0, inMs));
    // A stalled stream keeps nothing alive that its connection does not.
    this.timer.unref();
  }

  private readonly check = (): void => {
    this.timer = undefined;
    const now = performance.now();
    for (const [stream, since] of this.since) {
      const dueIn = since + this.timeoutMs - now;
      if (dueIn > 0) {
        this.arm(dueIn);
        return;
      }
      this.since.delete(stream);
      this.onStall(stream);
    }
  };
}

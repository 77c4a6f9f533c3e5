import type { ConnectError } from "@connectrpc/connect";
import { envelopeTooLarge, incompleteEnvelope } from "../../connect-internals/protocol.js";

// Request bodies split into envelopes the way connect's handler splits them.

export interface Envelope {
  flags: number;
  data: Buffer;
}

/**
 * Splits a request body into envelopes as connect's transformSplitEnvelope
 * does: every chunk is decoded as far as it goes before any envelope of it is
 * looked at, so an oversize length prefix fails the call even when an earlier
 * envelope in the same chunk was complete. Holds at most one envelope plus a
 * header: an envelope may announce at most readMaxBytes.
 */
export class EnvelopeSplitter {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private pending: { flags: number; length: number } | undefined;

  /** `checkFirst`: the first envelope's flags byte is looked at before its length (kit/envelope-check.ts). */
  constructor(
    private readonly readMaxBytes: number,
    private checkFirst?: (flags: number) => ConnectError | undefined,
  ) {}

  /** The envelopes this chunk completes; throws RESOURCE_EXHAUSTED for an oversize one. */
  push(chunk: Buffer): Envelope[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Envelope[] = [];
    for (;;) {
      if (this.pending === undefined) {
        if (this.buffered < 5) break;
        const head = this.take(5);
        const problem = this.checkFirst?.(head[0] ?? 0);
        if (problem !== undefined) throw problem;
        this.checkFirst = undefined;
        const length = head.readUInt32BE(1);
        if (length > this.readMaxBytes) throw envelopeTooLarge(length, this.readMaxBytes);
        this.pending = { flags: head[0] ?? 0, length };
      }
      if (this.buffered < this.pending.length) break;
      out.push({ flags: this.pending.flags, data: this.take(this.pending.length) });
      this.pending = undefined;
    }
    return out;
  }

  /**
   * At the end of the body: throws INVALID_ARGUMENT if bytes are left over.
   * Like connect, a length prefix whose payload never came is no error here
   * (nothing is buffered): the call then fails for the missing message.
   */
  end(): void {
    if (this.buffered > 0) throw incompleteEnvelope();
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks.length = 0;
    this.buffered -= n;
    if (this.buffered > 0) this.chunks.push(all.subarray(n));
    return all.subarray(0, n);
  }
}

import { MAX_MESSAGE_BYTES } from "./greeting-wire.js";

// Messages a stream writes in a row (interval 0) go out together: one write
// per 8 KiB instead of one per message, encoded straight into the batch's
// buffer, so that a message costs no object of its own (strings joined per
// batch were a fifth of a fast stream's CPU, and most of its garbage). A
// write is a JavaScript object, a buffer entry and a call into Node's
// stream on each; on a peer that reads nothing (a zero window, a stalled
// socket) Node holds what was written up to its 16 KiB high-water mark, and
// in a hundred small writes that costs four times the bytes. A stream that
// waits between messages flushes after each, so a message is never held back.

/** Bytes gathered before they go out in one write. */
const BATCH_BYTES = 8 * 1024;

export class WriteBatch {
  /** Where the next message is written, from `used` on; MAX_MESSAGE_BYTES are always free there. */
  buffer = Buffer.allocUnsafe(BATCH_BYTES + MAX_MESSAGE_BYTES);
  used = 0;

  /** `send` writes one chunk and says whether the peer can take more (Node's write()). */
  constructor(private readonly send: (chunk: Buffer) => boolean) {}

  /** A message was written into the buffer up to `end`; false when the batch went out and the peer must read first. */
  commit(end: number): boolean {
    this.used = end;
    return end < BATCH_BYTES || this.flush();
  }

  /** Writes what is gathered; false when the peer must read before more. */
  flush(): boolean {
    if (this.used === 0) return true;
    // The chunk is Node's until it is written: the next messages go into a buffer of their own.
    const chunk = this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafe(BATCH_BYTES + MAX_MESSAGE_BYTES);
    this.used = 0;
    return this.send(chunk);
  }
}

// Messages a stream writes in a row (interval 0) go out together: one write
// per 8 KiB instead of one per message. A write is a JavaScript object, a
// buffer entry and a call into Node's stream on each; on a peer that reads
// nothing (a zero window, a stalled socket) Node holds what was written up to
// its 16 KiB high-water mark, and in a hundred small writes that costs four
// times the bytes. A stream that waits between messages flushes after each,
// so a message is never held back.

/** Bytes gathered before they go out in one write. */
const BATCH_BYTES = 8 * 1024;

export class WriteBatch<T extends string | Buffer> {
  private parts: T[] = [];
  private bytes = 0;

  /** `send` writes one chunk and says whether the peer can take more (Node's write()). */
  constructor(
    private readonly send: (chunk: T) => boolean,
    private readonly join: (parts: T[]) => T,
  ) {}

  /** Adds a message; false when it had to flush and the peer must read before more. */
  add(part: T): boolean {
    this.parts.push(part);
    this.bytes += part.length;
    return this.bytes < BATCH_BYTES || this.flush();
  }

  /** Writes what is gathered; false when the peer must read before more. */
  flush(): boolean {
    const parts = this.parts;
    if (parts.length === 0) return true;
    this.parts = [];
    this.bytes = 0;
    return this.send(parts.length === 1 ? (parts[0] as T) : this.join(parts));
  }
}

export const joinBuffers = (parts: Buffer[]): Buffer => Buffer.concat(parts);
export const joinStrings = (parts: string[]): string => parts.join("");

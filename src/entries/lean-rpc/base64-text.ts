import { Code, ConnectError } from "@connectrpc/connect";

// gRPC-Web's text mode (application/grpc-web-text), which Google's grpc-web
// client needs to stream: the same frames as binary gRPC-Web, base64-encoded
// on the wire both ways (the gRPC-Web protocol, "text format"). A response is
// written as base64 chunk by chunk, each padded, as Envoy's gRPC-Web filter
// writes it: a client decodes four characters at a time, so a message never
// waits for the bytes of the next one. A request may arrive cut anywhere,
// and a client may send several padded pieces one after the other.

const group = /^[A-Za-z0-9+/]{2}(?:[A-Za-z0-9+/]{2}|[A-Za-z0-9+/]=|==)$/;

/** One chunk of a response, as base64 text. */
export function base64Chunk(chunk: Buffer): Buffer {
  return Buffer.from(chunk.toString("base64"), "latin1");
}

/** A request body in base64, decoded as it arrives. */
export class Base64Reader {
  private rest = "";

  /** The bytes of every whole group of four characters so far; throws INVALID_ARGUMENT on what is no base64. */
  push(chunk: Buffer): Buffer {
    const text = this.rest + chunk.toString("latin1").replace(/\s+/g, "");
    const whole = text.length - (text.length % 4);
    this.rest = text.slice(whole);
    if (whole === 0) return Buffer.alloc(0);
    const block = text.slice(0, whole);
    // Node's decoder stops at the first "=": pieces padded apart are decoded piece by piece.
    if (!block.includes("=")) {
      if (!/^[A-Za-z0-9+/]*$/.test(block)) throw invalid();
      return Buffer.from(block, "base64");
    }
    const parts: Buffer[] = [];
    for (let i = 0; i < block.length; i += 4) {
      const g = block.slice(i, i + 4);
      if (!group.test(g)) throw invalid();
      parts.push(Buffer.from(g, "base64"));
    }
    return Buffer.concat(parts);
  }

  /** At the end of the body: characters that make no whole group are an error. */
  end(): void {
    if (this.rest !== "") throw invalid();
  }
}

function invalid(): ConnectError {
  return new ConnectError("the gRPC-Web text body is not base64", Code.InvalidArgument);
}

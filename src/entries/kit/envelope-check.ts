import { Code, ConnectError } from "@connectrpc/connect";

// A careless call: a Connect streaming POST of bare JSON, as for a unary
// call. Read as an envelope, its "{" is the flags byte and the next four
// characters its length, so connect's answer was RESOURCE_EXHAUSTED, message
// size 577659245: true, and no help. Both roads that read Connect streaming
// bodies look at the first byte first, and say what a streaming body is.

/** The flags a Connect streaming request envelope may carry: compressed (1), end of stream (2). */
const connectFlags = 0x03;

/** The error for a Connect streaming body whose first byte is no envelope's flags, or undefined when it may be one. */
export function connectEnvelopeProblem(firstByte: number | undefined): ConnectError | undefined {
  if (firstByte === undefined || (firstByte & ~connectFlags) === 0) return undefined;
  return new ConnectError(
    "a streaming call's body is a series of envelopes, each a flags byte (0 to 3), a 4-byte big-endian length " +
      `and the message, and this one starts with 0x${firstByte.toString(16).padStart(2, "0")} (for the framing ` +
      "see the curl recipe in docs/clients.md of this service)",
    Code.InvalidArgument,
  );
}

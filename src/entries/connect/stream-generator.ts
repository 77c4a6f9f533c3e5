import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type StreamResponse, StreamResponseSchema } from "../../../gen/stream/v1/stream_pb.js";
import { greetingText, type StreamParams } from "../../core/greeting.js";
import type { CallInfo, GreetingStreams } from "../../core/stream-service.js";

// connect-node pulls a stream: here the core's push-based stream becomes the
// async generator a connect-node handler returns. Its sink holds one message
// at a time, and says "wait" until connect-node pulls again, which it does
// once its write drained: backpressure stays connect-node's, pull-based.

/** The greetings for one call: validated and admitted on the first next(); ends when `signal` aborts. */
export async function* openStream(
  streams: GreetingStreams,
  params: StreamParams,
  call: CallInfo,
  signal: AbortSignal,
  /** Closes the call's stream or connection: its peer took nothing for --send-timeout. True when the connection went. */
  abort: () => boolean,
): AsyncGenerator<StreamResponse, void> {
  const admission = streams.admit(params, call);
  const name = admission.plan.name;
  let message: StreamResponse | undefined;
  let ended = false;
  let endError: ConnectError | undefined;
  let wake: (() => void) | undefined;
  const stream = streams.start(admission, {
    write(counter, millis) {
      message = greetingMessage(name, counter, millis);
      wake?.();
      return false;
    },
    end(error) {
      ended = true;
      endError = error;
      wake?.();
    },
    abort,
  });
  const onAbort = () => {
    const reason = ConnectError.from(signal.reason);
    if (reason.code === Code.DeadlineExceeded) {
      stream.fail(reason);
      return;
    }
    // The client went away. Suspended at a yield, the generator runs again
    // only when its consumer pulls, and a consumer may never: connect-node
    // waits for 'drain' or 'error' after a write that filled the window, and
    // a reset HTTP/2 response emits neither. Free the stream now.
    stream.cancel(signal.reason);
    ended = true;
    endError = reason;
    wake?.();
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort);
  try {
    stream.begin();
    for (;;) {
      if (message === undefined && !ended) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      if (message !== undefined) {
        const m = message;
        message = undefined;
        yield m;
        stream.resume();
        continue;
      }
      if (endError !== undefined) throw endError;
      return;
    }
  } catch (e) {
    // The consumer threw into us (a write failed), or the end we throw ourselves.
    stream.fail(ConnectError.from(e));
    throw e;
  } finally {
    signal.removeEventListener("abort", onAbort);
    // A consumer that stops pulling (client gone mid-write) ends us through return().
    stream.cancel(signal.aborted ? signal.reason : new ConnectError("the consumer stopped", Code.Canceled));
  }
}

/** A greeting as the generated message type, for the road that serializes with protobuf-es. */
export function greetingMessage(name: string, counter: bigint, millis: number): StreamResponse {
  const seconds = Math.floor(millis / 1000);
  return create(StreamResponseSchema, {
    message: greetingText(name, counter),
    counter,
    timestamp: create(TimestampSchema, { seconds: BigInt(seconds), nanos: (millis - seconds * 1000) * 1_000_000 }),
  });
}

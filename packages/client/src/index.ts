// The browser-safe entry ("."): the generated stream.v1 code, the typed
// client factory and the resuming stream. Nothing here imports a Node module
// or a transport: the caller brings the transport ("./node" has a helper).

export { createStreamClient, type StreamClient } from "./create-stream-client.js";
export * from "./gen/stream/v1/stream_pb.js";
export {
  type ResumeOptions,
  type ResumeState,
  type ResumeStatus,
  resumeStream,
  type StreamCaller,
  type StreamRequestInit,
} from "./resume-stream.js";

import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import {
  createFileRegistry,
  type DescMessage,
  fromBinary,
  fromJson,
  type Message,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  ServerReflection as ReflectionV1,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_stream_v1_stream } from "../gen/stream/v1/stream_pb.js";
import { startServer, type TestServer } from "./support/server.js";

type Request = Omit<ServerReflectionRequest, "$typeName" | "host"> & { host?: string };

const allServices = [
  "stream.v1.StreamService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

/** Sends `requests` on one reflection stream and returns every answer, in order. */
async function ask(
  url: string,
  requests: Request[],
  version: typeof ReflectionV1 | typeof ReflectionV1alpha = ReflectionV1,
): Promise<ServerReflectionResponse[]> {
  // v1alpha has the same messages under another package: typed as v1, it still calls the v1alpha path.
  const client = createClient(version as typeof ReflectionV1, createGrpcTransport({ baseUrl: url }));
  const out: ServerReflectionResponse[] = [];
  async function* send() {
    for (const r of requests) yield { host: "", ...r };
  }
  for await (const res of client.serverReflectionInfo(send())) out.push(res as ServerReflectionResponse);
  return out;
}

/** The file names in a file_descriptor_response, decoded from the bytes on the wire. */
function fileNames(res: ServerReflectionResponse | undefined): string[] {
  assert.equal(res?.messageResponse.case, "fileDescriptorResponse");
  return res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
}

function errorOf(res: ServerReflectionResponse | undefined): { errorCode: number; errorMessage: string } {
  assert.equal(res?.messageResponse.case, "errorResponse");
  return res.messageResponse.value;
}

const streamFiles = ["stream/v1/stream.proto", "google/protobuf/duration.proto", "google/protobuf/timestamp.proto"];

describe("gRPC server reflection", () => {
  let srv: TestServer;

  describe("while the server is up", () => {
    before(async () => {
      srv = await startServer();
    });
    after(() => srv.close());

    for (const [name, version] of [
      ["v1", ReflectionV1],
      ["v1alpha", ReflectionV1alpha],
    ] as const) {
      it(`should list every service it serves over ${name}`, async () => {
        const [res] = await ask(srv.url, [{ messageRequest: { case: "listServices", value: "" } }], version);
        assert.equal(res?.messageResponse.case, "listServicesResponse");
        assert.deepEqual(
          res.messageResponse.value.service.map((s) => s.name),
          allServices,
        );
      });
    }

    it("should send a file by name with its imports, each the generated descriptor byte for byte", async () => {
      const [res] = await ask(srv.url, [
        { messageRequest: { case: "fileByFilename", value: "stream/v1/stream.proto" } },
      ]);
      assert.deepEqual(fileNames(res), streamFiles);
      assert.equal(res?.messageResponse.case, "fileDescriptorResponse");
      assert.deepEqual(res.messageResponse.value.fileDescriptorProto, [
        toBinary(FileDescriptorProtoSchema, file_stream_v1_stream.proto),
        toBinary(FileDescriptorProtoSchema, file_google_protobuf_duration.proto),
        toBinary(FileDescriptorProtoSchema, file_google_protobuf_timestamp.proto),
      ]);
    });

    const symbols: [string, string][] = [
      ["stream.v1.StreamService", "stream/v1/stream.proto"],
      ["stream.v1.StreamService.Stream", "stream/v1/stream.proto"],
      ["stream.v1.StreamRequest", "stream/v1/stream.proto"],
      ["stream.v1.StreamRequest.start_at", "stream/v1/stream.proto"],
      ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
      ["grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"],
      ["grpc.reflection.v1alpha.ServerReflectionRequest.message_request", "grpc/reflection/v1alpha/reflection.proto"],
    ];
    for (const [symbol, file] of symbols) {
      it(`should find the file containing ${symbol}`, async () => {
        const [res] = await ask(srv.url, [{ messageRequest: { case: "fileContainingSymbol", value: symbol } }]);
        assert.equal(fileNames(res)[0], file);
      });
    }

    it("should answer NOT_FOUND in the response and keep the stream going", async () => {
      const answers = await ask(srv.url, [
        { messageRequest: { case: "fileContainingSymbol", value: "no.such.Thing" } },
        { messageRequest: { case: "fileByFilename", value: "no/such.proto" } },
        {
          messageRequest: {
            case: "fileContainingExtension",
            value: {
              $typeName: "grpc.reflection.v1.ExtensionRequest",
              containingType: "stream.v1.StreamRequest",
              extensionNumber: 100,
            },
          },
        },
        { messageRequest: { case: "allExtensionNumbersOfType", value: "no.such.Type" } },
        { messageRequest: { case: "listServices", value: "" } },
      ]);
      assert.equal(answers.length, 5);
      for (const res of answers.slice(0, 4)) assert.equal(errorOf(res).errorCode, 5);
      assert.match(errorOf(answers[0]).errorMessage, /no\.such\.Thing/);
      assert.equal(answers[4]?.messageResponse.case, "listServicesResponse");
    });

    it("should answer all_extension_numbers_of_type for a known message with no extensions", async () => {
      const [res] = await ask(srv.url, [
        { messageRequest: { case: "allExtensionNumbersOfType", value: "stream.v1.StreamRequest" } },
      ]);
      assert.equal(res?.messageResponse.case, "allExtensionNumbersResponse");
      assert.equal(res.messageResponse.value.baseTypeName, "stream.v1.StreamRequest");
      assert.deepEqual(res.messageResponse.value.extensionNumber, []);
    });

    it("should echo the original request and the host", async () => {
      const [res] = await ask(srv.url, [{ host: "example", messageRequest: { case: "listServices", value: "*" } }]);
      assert.equal(res?.validHost, "example");
      assert.equal(res?.originalRequest?.messageRequest.case, "listServices");
    });

    it("should let @grpc/grpc-js discover StreamService by reflection alone, then call it", async () => {
      // The client knows only the reflection proto; the stream schema comes from the server.
      const def = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", {
        includeDirs: ["proto"],
        keepCase: true,
      });
      const pkg = grpc.loadPackageDefinition(def) as unknown as {
        grpc: { reflection: { v1: { ServerReflection: typeof grpc.Client } } };
      };
      const reflection = new pkg.grpc.reflection.v1.ServerReflection(
        `127.0.0.1:${srv.port}`,
        grpc.credentials.createInsecure(),
      ) as grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<object, RawResponse> };
      interface RawResponse {
        list_services_response?: { service: { name: string }[] };
        file_descriptor_response?: { file_descriptor_proto: Buffer[] };
      }
      const call = reflection.ServerReflectionInfo();
      const answers: RawResponse[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on("data", (m: RawResponse) => {
          answers.push(m);
          if (answers.length === 1) {
            const name = m.list_services_response?.service.find((s) => s.name.startsWith("stream."))?.name;
            call.write({ file_containing_symbol: name });
            call.end();
          }
        });
        call.on("end", resolve);
        call.on("error", reject);
      });
      call.write({ list_services: "" });
      await done;
      reflection.close();

      const files = answers[1]?.file_descriptor_response?.file_descriptor_proto ?? [];
      // The requested file comes first, then its imports: resolve the imports by name.
      const protos = files.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      assert.ok(protos[0]);
      const registry = createFileRegistry(protos[0], (name) => protos.find((p) => p.name === name));
      const service = registry.getService("stream.v1.StreamService");
      const method = service?.methods.find((m) => m.name === "Stream");
      assert.ok(method, "discovered stream.v1.StreamService/Stream");
      assert.equal(method.methodKind, "server_streaming");

      const messages = await callDiscovered(
        srv.port,
        `/${service?.typeName}/${method.name}`,
        method.input,
        method.output,
      );
      assert.deepEqual(messages, [
        "Hello Reflector, this is 0 time stream message.",
        "Hello Reflector, this is 1 time stream message.",
      ]);
    });
  });

  describe("when shutdown starts", () => {
    beforeEach(async () => {
      srv = await startServer();
    });
    afterEach(() => srv.close());

    it("should end an open reflection stream at once instead of holding shutdown to its grace period", async () => {
      const client = createClient(ReflectionV1, createGrpcTransport({ baseUrl: srv.url }));
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      async function* send() {
        yield { host: "", messageRequest: { case: "listServices" as const, value: "" } };
        await held; // the client never half-closes on its own
      }
      const got: string[] = [];
      const ended = (async () => {
        try {
          for await (const res of client.serverReflectionInfo(send())) {
            got.push(res.messageResponse.case ?? "");
          }
          return "ok";
        } catch (e) {
          return String(e);
        }
      })();
      while (got.length === 0) await new Promise((r) => setImmediate(r));
      const started = performance.now();
      const closing = srv.server.shutdown();
      assert.match(await ended, /unavailable.*shutting down/i);
      assert.ok(performance.now() - started < 1000, "the call ended before the grace period");
      release(); // a client whose call ended stops sending, and the connection can close
      assert.equal(await closing, true);
    });
  });
});

/** Calls a server-streaming method with messages built from descriptors that came over the wire. */
function callDiscovered(port: number, path: string, input: DescMessage, output: DescMessage): Promise<string[]> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const request = fromJson(input, { name: "Reflector", limit: "2", interval: "0s" });
  const call = client.makeServerStreamRequest(
    path,
    (m: Message) => Buffer.from(toBinary(input, m)),
    (b: Buffer) => toJson(output, fromBinary(output, b)),
    request,
  );
  const got: string[] = [];
  return new Promise((resolve, reject) => {
    call.on("data", (m: { message?: unknown }) => got.push(String(m.message)));
    call.on("end", () => {
      client.close();
      resolve(got);
    });
    call.on("error", (e: Error) => {
      client.close();
      reject(e);
    });
  });
}

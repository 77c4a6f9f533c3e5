import type { DescEnum, DescFile, DescMessage } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

// gRPC server reflection (v1 and the older v1alpha that many tools still ask
// for first), answered from the file descriptors protoc-gen-es embedded in
// gen/. The bytes on the wire are toBinary() of those descriptors, so they
// cannot drift from the code that serves the calls. Errors are answers
// (error_response), never a broken stream: tools such as grpcurl probe
// symbols that may not exist and carry on.

/** Every file the given ones need, each once, each file before its dependencies. */
function withDependencies(files: readonly DescFile[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(f);
    for (const d of f.dependencies) visit(d);
  };
  for (const f of files) visit(f);
  return out;
}

/** What reflection can find: files by name, files by symbol, extensions, service names. */
export class DescriptorIndex {
  /** Full names of the services the files define, as list_services reports them. */
  readonly services: readonly string[];
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();
  /** Extendee full name -> extension number -> declaring file. */
  private readonly extensions = new Map<string, Map<number, DescFile>>();
  private readonly messages = new Set<string>();
  private readonly bytes = new Map<DescFile, Uint8Array>();

  /** `files` are the files whose services the server serves; their imports are found on their own. */
  constructor(files: readonly DescFile[]) {
    for (const file of withDependencies(files)) this.addFile(file);
    this.services = files.flatMap((f) => f.services.map((s) => s.typeName));
  }

  fileByName(name: string): DescFile | undefined {
    return this.files.get(name);
  }

  /** The file declaring a package-qualified message, enum, enum value, field, service, method or extension. */
  fileContainingSymbol(symbol: string): DescFile | undefined {
    return this.symbols.get(symbol.startsWith(".") ? symbol.slice(1) : symbol);
  }

  fileContainingExtension(extendee: string, number: number): DescFile | undefined {
    return this.extensions.get(extendee)?.get(number);
  }

  /** Extension numbers of a known message (none here, but known), or undefined for an unknown type. */
  extensionNumbersOf(typeName: string): number[] | undefined {
    if (!this.messages.has(typeName)) return undefined;
    return [...(this.extensions.get(typeName)?.keys() ?? [])];
  }

  /** The serialized FileDescriptorProto of `file` followed by those of all it imports, transitively. */
  serialized(file: DescFile): Uint8Array[] {
    return withDependencies([file]).map((f) => {
      let b = this.bytes.get(f);
      if (b === undefined) {
        b = toBinary(FileDescriptorProtoSchema, f.proto);
        this.bytes.set(f, b);
      }
      return b;
    });
  }

  private addFile(file: DescFile): void {
    this.files.set(file.proto.name, file);
    const add = (name: string) => this.symbols.set(name, file);
    const addEnum = (e: DescEnum) => {
      add(e.typeName);
      // Enum values are scoped like their enum's siblings (C++ scoping rules).
      const scope = e.typeName.slice(0, e.typeName.length - e.name.length);
      for (const v of e.values) add(scope + v.name);
    };
    const addMessage = (m: DescMessage) => {
      add(m.typeName);
      this.messages.add(m.typeName);
      for (const f of m.fields) add(`${m.typeName}.${f.name}`);
      for (const o of m.oneofs) add(`${m.typeName}.${o.name}`);
      m.nestedEnums.forEach(addEnum);
      m.nestedMessages.forEach(addMessage);
      for (const x of m.nestedExtensions) this.addExtension(file, x.typeName, x.extendee.typeName, x.number);
    };
    file.enums.forEach(addEnum);
    file.messages.forEach(addMessage);
    for (const s of file.services) {
      add(s.typeName);
      for (const m of s.methods) add(`${s.typeName}.${m.name}`);
    }
    for (const x of file.extensions) this.addExtension(file, x.typeName, x.extendee.typeName, x.number);
  }

  private addExtension(file: DescFile, name: string, extendee: string, number: number): void {
    this.symbols.set(name, file);
    let byNumber = this.extensions.get(extendee);
    if (byNumber === undefined) {
      byNumber = new Map();
      this.extensions.set(extendee, byNumber);
    }
    byNumber.set(number, file);
  }
}

/** A reflection request as v1 and v1alpha both shape it. */
interface Question {
  messageRequest:
    | { case: "fileByFilename"; value: string }
    | { case: "fileContainingSymbol"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: "allExtensionNumbersOfType"; value: string }
    | { case: "listServices"; value: string }
    | { case: undefined; value?: undefined };
}

/** The message_response oneof, as v1 and v1alpha both shape it. */
type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** The answer to one request: pure, so v1 and v1alpha share it. */
function answer(index: DescriptorIndex, q: Question): Answer {
  const r = q.messageRequest;
  const files = (file: DescFile | undefined, what: string): Answer =>
    file === undefined
      ? notFound(what)
      : { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.serialized(file) } };
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } };
    case "fileByFilename":
      return files(index.fileByName(r.value), `file ${r.value}`);
    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(r.value), `symbol ${r.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = r.value;
      return files(
        index.fileContainingExtension(containingType, extensionNumber),
        `extension ${extensionNumber} of ${containingType}`,
      );
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbersOf(r.value);
      if (numbers === undefined) return notFound(`type ${r.value}`);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: numbers } };
    }
    default:
      return {
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "no message_request set" },
      };
  }
}

function notFound(what: string): Answer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } };
}

export interface ReflectionRoutesOptions {
  /** Aborts when the server starts draining: open reflection streams end then, not at the grace deadline. */
  stopping?: AbortSignal;
}

/** grpc.reflection.v1.ServerReflection and grpc.reflection.v1alpha.ServerReflection on the connect router. */
export function createReflectionRoutes(index: DescriptorIndex, options: ReflectionRoutesOptions = {}) {
  return (router: ConnectRouter) =>
    router
      .service(ReflectionV1, {
        async *serverReflectionInfo(requests, ctx) {
          for await (const req of untilAborted(requests, signalOf(ctx.signal, options.stopping))) {
            yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
          }
        },
      })
      .service(ReflectionV1alpha, {
        async *serverReflectionInfo(requests, ctx) {
          for await (const req of untilAborted(requests, signalOf(ctx.signal, options.stopping))) {
            yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
          }
        },
      });
}

function signalOf(call: AbortSignal, stopping: AbortSignal | undefined): AbortSignal {
  return stopping === undefined ? call : AbortSignal.any([call, stopping]);
}

/**
 * The items of `iterable` until `signal` aborts, then a rejection with its
 * reason: a client that keeps a reflection stream open without writing would
 * otherwise hold it open through shutdown. One listener per wait, removed
 * when the wait ends, so a long stream collects nothing.
 */
async function* untilAborted<T>(iterable: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T, void> {
  const it = iterable[Symbol.asyncIterator]();
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const r = await new Promise<IteratorResult<T>>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      it.next().then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      );
    });
    if (r.done) return;
    yield r.value;
  }
}

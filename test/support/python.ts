import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

// Python grpcio (Debian's python3-grpcio) as a client of the real server:
// stubs generated from proto/ at test time with python3-grpc-tools, and
// test/python/interop_client.py to make one call and report what grpcio saw.

const run = promisify(execFile);
/** Debian's interpreter, where apt put grpcio; a pyenv or venv python3 first on PATH would not have it. */
export const python = process.env.PYTHON ?? "/usr/bin/python3";
const driver = join(import.meta.dirname, "..", "python", "interop_client.py");

export interface PythonOutcome {
  messages: { message: string; counter: number }[];
  code: string;
  details: string;
  status?: string;
}

export interface PythonStubs {
  /** One call: {"op": "stream" | "check", ...}, as interop_client.py reads it. */
  call(target: string, spec: Record<string, unknown>): Promise<PythonOutcome>;
  remove(): void;
}

export async function generatePythonStubs(): Promise<PythonStubs> {
  const stubs = mkdtempSync(join(tmpdir(), "py-stubs-"));
  // Health goes in under another import path: a generated top-level "grpc" package would shadow grpcio.
  const protos = join(stubs, "protos");
  mkdirSync(join(protos, "grpc_health_v1"), { recursive: true });
  copyFileSync("proto/grpc/health/v1/health.proto", join(protos, "grpc_health_v1", "health.proto"));
  const protoc = ["-m", "grpc_tools.protoc", `--python_out=${stubs}`, `--grpc_python_out=${stubs}`];
  await run(python, [...protoc, "-I", "proto", "stream/v1/stream.proto"]);
  await run(python, [...protoc, "-I", protos, "grpc_health_v1/health.proto"]);
  return {
    async call(target, spec) {
      const { stdout } = await run(python, [driver, target, JSON.stringify(spec)], {
        env: { ...process.env, PYTHONPATH: stubs },
        timeout: 20_000,
      });
      const lines = stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const last = lines.pop() as { code: string; details: string; status?: string };
      return { messages: lines as PythonOutcome["messages"], ...last };
    },
    remove: () => rmSync(stubs, { recursive: true, force: true }),
  };
}

import type { Code } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";

// The two spellings of a code that the rest of the server shares: the
// Connect protocol's name ("invalid_argument"), which logs, metrics, spans
// and JSON bodies use, and the HTTP status the Connect protocol maps it to
// (400, 429, 503...), for every plain HTTP answer. Both are connect's own
// tables, private API, so they are borrowed here and nowhere else.

/** "invalid_argument", "resource_exhausted", ...: the Connect protocol's name of a code. */
export function codeName(code: Code): string {
  return codeToString(code);
}

/** The HTTP status of a plain answer with this code, as the Connect protocol maps it. */
export function httpStatusOf(code: Code): number {
  return codeToHttpStatus(code);
}

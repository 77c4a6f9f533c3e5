import { codeName, httpStatusOf } from "../connect-internals/codes.js";
import { type NodeRequest, type NodeResponse, sendJsonError } from "./exchange.js";
import type { Road, Route } from "./road.js";

// Roads that are plain HTTP rather than RPC (the ops endpoints, the web
// page): a table of exact paths, each with its handler and the methods it
// answers. A refusal of the front door's (no token for /metrics) is a JSON
// error with the HTTP status the Connect protocol gives its code.

export type PlainHandler = (req: NodeRequest, res: NodeResponse) => void;

export interface PlainRoute {
  path: string;
  handler: PlainHandler;
  /** Any other method gets 405 and an Allow header before the handler sees it. Default: every method. */
  methods?: readonly string[];
  /** Default "open". */
  auth?: "open" | "bearer";
}

export function plainRoad(name: string, table: readonly PlainRoute[]): Road {
  const routes = new Map<string, Route>();
  for (const entry of table) routes.set(entry.path, plainRoute(entry));
  return { name, route: (head) => routes.get(head.path) };
}

/** The last road: what no other road takes is a 404, in the JSON error shape. */
export const notFoundRoad: Road = {
  name: "not found",
  route: () => notFound,
};

const notFound: Route = plainRoute({
  path: "",
  handler: (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    sendJsonError(res, 404, "unimplemented", `no route for ${req.method} ${path}`);
  },
});

function plainRoute({ path, handler, methods, auth = "open" }: PlainRoute): Route {
  const allow = methods?.join(", ");
  return {
    auth,
    stream: false,
    raw: false,
    serve(x) {
      const t = x.transport;
      if (t.kind !== "node") return;
      if (methods === undefined || methods.includes(x.head.method)) return handler(t.req, t.res);
      sendJsonError(t.res, 405, "unimplemented", `method ${x.head.method} not allowed on ${path}; use ${allow}`, {
        allow: allow ?? "",
      });
    },
    refuse(x, error) {
      const t = x.transport;
      if (t.kind === "node") sendJsonError(t.res, httpStatusOf(error.code), codeName(error.code), error.rawMessage);
    },
  };
}

import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { sendJsonError } from "../../http/exchange.js";
import { type PlainRoute, plainRoad } from "../../http/plain-routes.js";
import type { Road } from "../../http/road.js";

// Serves the web page that `npm run build:web` writes to web/dist/. Files are
// read on each request (three small files), so a rebuild shows without a
// restart and a missing build is a clear 503 rather than a crash at start.

/** Where the built page lives. */
const webDist = fileURLToPath(new URL("../../../web/dist/", import.meta.url));

/** URL path to file in web/dist/ and its content type. */
const files: ReadonlyArray<[path: string, file: string, type: string]> = [
  ["/", "index.html", "text/html; charset=utf-8"],
  ["/app.js", "app.js", "text/javascript; charset=utf-8"],
  ["/style.css", "style.css", "text/css; charset=utf-8"],
];

// Everything the page needs comes from this origin; the stream goes over fetch to it.
const csp = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** The page's road: its three files, GET and HEAD only. */
export function createStaticPageRoad(dir: string = webDist): Road {
  return plainRoad(
    "the web page",
    files.map(([path, file, type]) => pageFile(dir, path, file, type)),
  );
}

function pageFile(dir: string, path: string, file: string, type: string): PlainRoute {
  return {
    path,
    methods: ["GET", "HEAD"],
    handler: (req, res) => {
      readFile(`${dir}/${file}`).then(
        (body) => {
          res.writeHead(200, {
            "content-type": type,
            "content-length": body.length,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
            "content-security-policy": csp,
          });
          if (req.method === "HEAD") res.end();
          else res.end(body);
        },
        () => sendJsonError(res, 503, "unavailable", "the web page is not built: run `npm run build:web`"),
      );
    },
  };
}

import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type PlainHandler, sendJsonError } from "../../http/plain-routes.js";

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

/** [path, handler] pairs for PlainRoutes.add(). */
export function createStaticPageRoutes(dir: string = webDist): Array<[string, PlainHandler]> {
  return files.map(([path, file, type]) => [
    path,
    (req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        sendJsonError(res, 405, "unimplemented", `method ${req.method} not allowed on ${path}`, { allow: "GET, HEAD" });
        return;
      }
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
  ]);
}

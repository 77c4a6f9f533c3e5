import * as http from "node:http";

// Reading the Prometheus text format of GET /metrics, for tests that watch a
// server from outside its process.

/** GET /metrics; rejects on a status other than 200 or after `timeoutMs`. */
export function scrapeMetrics(url: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/metrics`, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`)),
      );
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`/metrics did not answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

/** One series' value (`name{labels}` exactly as exposed); 0 when it is absent. */
export function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** The sum of every sample of one metric, over all its label values; 0 when it has none. */
export function total(text: string, name: string): number {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

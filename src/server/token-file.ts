import { readFileSync } from "node:fs";
import { ConfigError } from "../config/config.js";
import { isBearerToken } from "../door/auth.js";

// --auth-token-file: one token a line; blank lines and lines starting with #
// are skipped. Read at start (a file that cannot be read, or holds no token,
// stops the server before it listens) and again on SIGHUP. Messages name the
// file and the line, never a token.

export function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "unreadable";
    throw new ConfigError(`--auth-token-file: cannot read ${path} (${code})`);
  }
  const tokens: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!isBearerToken(line)) {
      throw new ConfigError(
        `--auth-token-file: line ${i + 1} of ${path} is not a bearer token (letters, digits and -._~+/, then = padding)`,
      );
    }
    tokens.push(line);
  }
  if (tokens.length === 0) throw new ConfigError(`--auth-token-file: ${path} holds no token`);
  return tokens;
}

import { createConnectTransport } from "@connectrpc/connect-web";
import {
  createStreamClient,
  type ResumeStatus,
  resumeStream,
  type StreamResponse,
} from "../packages/client/src/index.js";
import { durationFromMs } from "../src/shared/duration.js";

// The page: the client package over the Connect protocol (fetch), with the
// same resuming stream as the Node CLI, so a server restart shows as
// "reconnecting" and then carries on at the next counter.

/** Messages kept on the page; older ones go, so a long stream cannot grow the page without bound. */
const MAX_SHOWN = 200;

const client = createStreamClient(createConnectTransport({ baseUrl: location.origin }));

const form = element("controls", HTMLFormElement);
const nameInput = element("name", HTMLInputElement);
const intervalInput = element("interval", HTMLInputElement);
const startButton = element("start", HTMLButtonElement);
const stopButton = element("stop", HTMLButtonElement);
const statusOutput = element("status", HTMLOutputElement);
const list = element("messages", HTMLOListElement);

let running: AbortController | undefined;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  running?.abort();
  const controller = new AbortController();
  running = controller;
  list.replaceChildren();
  setRunning(true);
  const seconds = Number(intervalInput.value);
  const request = {
    name: nameInput.value,
    interval: durationFromMs(Math.round((Number.isFinite(seconds) ? seconds : 1) * 1000)),
  };
  const messages = resumeStream(client, request, {
    onStatus: (status) => {
      // Only the current run may touch the status line: a stopped one still reports "stopped" late.
      if (running === controller) showStatus(status);
    },
    signal: controller.signal,
    maxBackoffMs: 5000,
  });
  (async () => {
    for await (const message of messages) show(message);
  })()
    .catch(() => {}) // already shown through onStatus as "error"
    .finally(() => {
      if (running === controller) setRunning(false);
    });
});

stopButton.addEventListener("click", () => running?.abort());

function show(message: StreamResponse): void {
  const item = document.createElement("li");
  item.dataset.counter = String(message.counter);
  const ms = message.timestamp ? Number(message.timestamp.seconds) * 1000 + message.timestamp.nanos / 1e6 : Date.now();
  item.append(
    span("counter", `#${message.counter}`),
    span("time", new Date(ms).toLocaleTimeString()),
    span("text", message.message),
  );
  list.append(item);
  while (list.childElementCount > MAX_SHOWN) list.firstElementChild?.remove();
}

function showStatus(status: ResumeStatus): void {
  statusOutput.dataset.state = status.state;
  let text: string = status.state;
  if (status.state === "reconnecting") {
    text = `reconnecting (attempt ${status.attempt}, in ${status.delayMs} ms): ${status.error?.rawMessage ?? ""}`;
  } else if (status.state === "error") {
    text = `error: ${status.error?.rawMessage ?? "unknown"}`;
  }
  statusOutput.textContent = text;
  // For people with devtools open, and for the browser test, which records the sequence.
  console.info(`stream status: ${status.state}`);
}

function setRunning(on: boolean): void {
  startButton.disabled = on;
  stopButton.disabled = !on;
}

function span(className: string, text: string): HTMLSpanElement {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`page is missing #${id}`);
  return found;
}

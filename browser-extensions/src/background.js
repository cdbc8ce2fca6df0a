// One connection to the helper (through agent-helper-bridge, the
// native-messaging host), shared by every Agent Desktop tab: requests are
// renumbered so answers find their tab, events go to every tab, and the
// connection comes back by itself when the helper restarts.

import { isAllowed, originOf } from "./origins.js";

const api = globalThis.browser ?? globalThis.chrome;
const HOST = "org.agent_helper.bridge";
/** The helper and the bridge refuse bigger messages; say so with the request's own id. */
const MAX_MESSAGE_BYTES = 1024 * 1024;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 10_000;

/** Content-script ports of allowed tabs. */
const tabs = new Set();
/** Native request id → { port, id } of the tab that asked. */
const pending = new Map();
let native = null;
let nextId = 1;
let retryMs = RETRY_FIRST_MS;
let retryTimer = null;
/** `connecting`, `connected` or `helper-missing` (+ `message`). */
let link = { state: "connecting" };

function tell(port, message) {
  try {
    port.postMessage(message);
  } catch {
    tabs.delete(port);
  }
}

function setLink(next) {
  link = next;
  for (const port of tabs) tell(port, { type: "link", ...link });
}

function connect() {
  if (native || tabs.size === 0) return;
  clearTimeout(retryTimer);
  retryTimer = null;
  setLink({ state: "connecting" });
  let port;
  try {
    port = api.runtime.connectNative(HOST);
  } catch (e) {
    lost(null, String(e?.message ?? e), false);
    return;
  }
  native = port;
  let heard = false;
  // A first request: its answer proves the host and the helper are there.
  const probe = nextId++;
  port.onMessage.addListener((message) => {
    if (message?.id === probe) {
      heard = true;
      retryMs = RETRY_FIRST_MS;
      setLink({ state: "connected" });
      return;
    }
    // The bridge could not start the helper: one error frame, then it exits.
    if (message?.id === null && message?.error?.code === "helper-unavailable") {
      link = { state: "helper-missing", message: message.error.message };
      return;
    }
    fromHelper(message);
  });
  port.onDisconnect.addListener(() => {
    const message = api.runtime.lastError?.message ?? port.error?.message ?? "the helper disconnected";
    lost(port, message, heard);
  });
  port.postMessage({ id: probe, method: "getStatus", params: {} });
}

function lost(port, message, wasConnected) {
  if (port && native !== port) return;
  native = null;
  for (const [id, waiter] of pending) {
    tell(waiter.port, {
      type: "response",
      id: waiter.id,
      error: { code: "helper-unavailable", message: `the connection to the helper was lost: ${message}` },
    });
    pending.delete(id);
  }
  if (wasConnected) {
    setLink({ state: "connecting", message });
  } else if (link.state === "helper-missing" && link.message) {
    setLink(link);
  } else {
    setLink({ state: "helper-missing", message });
  }
  if (tabs.size > 0 && !retryTimer) {
    retryTimer = setTimeout(() => {
      retryTimer = null;
      connect();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

function fromHelper(message) {
  if (message && typeof message.event === "string") {
    for (const port of tabs) tell(port, { type: "event", event: message.event, data: message.data });
    return;
  }
  const waiter = pending.get(message?.id);
  if (!waiter) return;
  pending.delete(message.id);
  tell(waiter.port, { type: "response", id: waiter.id, result: message.result, error: message.error });
}

function fromTab(port, message) {
  if (message?.type === "retry") {
    retryMs = RETRY_FIRST_MS;
    connect();
    return;
  }
  if (message?.type !== "request") return;
  const answer = (error) => tell(port, { type: "response", id: message.id, error });
  let size;
  try {
    size = JSON.stringify(message).length;
  } catch {
    return answer({ code: "invalid-request", message: "the request cannot be written as JSON" });
  }
  if (size > MAX_MESSAGE_BYTES) {
    return answer({
      code: "frame-too-large",
      message: `request of ${size} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit`,
    });
  }
  if (!native || link.state !== "connected") {
    return answer({ code: "helper-unavailable", message: "not connected to the helper" });
  }
  const id = nextId++;
  pending.set(id, { port, id: message.id });
  native.postMessage({ id, method: message.method, params: message.params ?? {} });
}

api.runtime.onConnect.addListener(async (port) => {
  // The tab's origin as the browser saw it, never the page's own claim.
  const origin = originOf(port.sender?.url ?? "");
  if (port.name !== "agent-desktop" || !(await isAllowed(origin))) {
    port.disconnect();
    return;
  }
  tabs.add(port);
  port.onMessage.addListener((message) => fromTab(port, message));
  port.onDisconnect.addListener(() => {
    tabs.delete(port);
    for (const [id, waiter] of pending) if (waiter.port === port) pending.delete(id);
  });
  tell(port, { type: "link", ...link });
  connect();
});

// The content script asks before it shows itself to a page.
api.runtime.onMessage.addListener((message, sender, reply) => {
  if (message?.type !== "is-allowed") return false;
  isAllowed(originOf(sender.url ?? "")).then(reply);
  return true;
});

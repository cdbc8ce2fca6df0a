// The demo page: status, calls and every event, through the SDK's plain
// script build. Tests drive it through `window.demo`.
"use strict";

const query = new URLSearchParams(location.search);
const helper = new AgentHelper({
  client: "demo page",
  minHelperVersion: query.get("minHelperVersion") ?? "0.1.0",
  extensionTimeoutMs: Number(query.get("extensionTimeoutMs") ?? 2000),
});
const $ = (id) => document.getElementById(id);
/** Every event and status change, in order: { kind, name, data, at }. */
const seen = [];
/** Calls by id as this page knows them (from hello/getStatus, then events). */
const calls = new Map();

function log(kind, name, data) {
  const entry = { kind, name, data, at: performance.now() };
  seen.push(entry);
  const line = `${new Date().toISOString().slice(11, 23)} ${kind} ${name} ${JSON.stringify(data ?? {})}\n`;
  $("log").textContent = line + $("log").textContent;
  for (const w of [...waiters]) if (w.test(entry)) { waiters.delete(w); w.resolve(entry); }
}

const waiters = new Set();
/** Resolves with the first entry (already seen or to come) that passes `test`. */
function waitFor(test, timeoutMs = 20000, from = 0) {
  const hit = seen.slice(from).find(test);
  if (hit) return Promise.resolve(hit);
  return new Promise((resolve, reject) => {
    const w = { test, resolve };
    waiters.add(w);
    setTimeout(() => { if (waiters.delete(w)) reject(new Error(`timed out; seen: ${JSON.stringify(seen.map((e) => e.name))}`)); }, timeoutMs);
  });
}

function render() {
  const s = helper.status;
  $("status").dataset.state = s.state;
  $("status").textContent = s.state === "ready" ? `ready (helper ${s.hello.helperVersion})`
    : s.state === "helper-outdated" ? `helper outdated: ${s.installed} installed, ${s.required} needed`
    : s.message ? `${s.state}: ${s.message}` : s.state;
  const rows = [...calls.values()].map((c) => {
    const tr = document.createElement("tr");
    for (const v of [c.callId, c.direction, c.state, c.remote]) {
      const td = document.createElement("td");
      td.textContent = v ?? "";
      tr.append(td);
    }
    const td = document.createElement("td");
    if (c.state === "incoming") td.append(button("Answer", () => helper.answerCall({ callId: c.callId })));
    td.append(button("End", () => helper.endCall({ callId: c.callId })));
    tr.append(td);
    return tr;
  });
  $("calls").replaceChildren(...rows);
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => action().catch((e) => log("error", e.code, { message: e.message })));
  return b;
}

function adopt(list) {
  calls.clear();
  for (const c of list) calls.set(c.callId, c);
  render();
}

helper.addEventListener("status", () => {
  const s = helper.status;
  log("status", s.state, s);
  if (s.state === "ready") adopt(s.hello.status.calls);
  render();
});

const callEvents = {
  "call-incoming": (d) => calls.set(d.callId, { callId: d.callId, direction: "inbound", state: "incoming", remote: d.from }),
  "call-started": (d) => calls.set(d.callId, { callId: d.callId, direction: "outbound", state: "calling", remote: d.remote }),
  "call-in-progress": (d) => calls.has(d.callId) && (calls.get(d.callId).state = "ringing"),
  "call-confirmed": (d) => calls.has(d.callId) && (calls.get(d.callId).state = "connected"),
  "call-ended": (d) => calls.delete(d.callId),
};
for (const name of ["registration-changed", "phone-error", "call-incoming", "call-started", "call-in-progress",
  "call-answered", "call-confirmed", "call-ended", "call-held", "call-resumed", "call-muted", "call-unmuted",
  "call-dtmf", "devices-changed", "quality-report", "log-level-changed", "account-changed", "config-changed"]) {
  helper.on(name, (data) => {
    callEvents[name]?.(data);
    log("event", name, data);
    render();
  });
}

$("dial").addEventListener("submit", (e) => {
  e.preventDefault();
  helper.call({ target: $("target").value.trim() }).catch((err) => log("error", err.code, { message: err.message }));
});
$("retry").addEventListener("click", () => helper.retry());

window.demo = { helper, seen, calls, waitFor };
helper.start();

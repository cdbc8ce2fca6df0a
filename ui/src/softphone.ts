// The softphone window: dial, the calls in progress with their controls, a
// DTMF keypad for the selected call, and the call history.
import { listen } from "@tauri-apps/api/event";
import { $, act, button, command, onAnyEvent, request, shortUri } from "./engine";
import { apply, follow, t } from "./i18n";
import type { CallStatus } from "./protocol";

let selected: string | undefined;
/** Calls whose consulted transfer is under way: the original call → the consultation call. */
const consulting = new Map<string, string>();


function callItem(call: CallStatus): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.callId = call.callId;
  li.className = call.callId === selected ? "call selected" : "call";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = shortUri(call.remote);
  const state = document.createElement("span");
  state.className = "state";
  const held = call.hold === "local" || call.hold === "both";
  state.dataset.i18n = held ? "state.held" : `state.${call.state}`;
  li.append(who, state);
  const callId = call.callId;
  const controls = document.createElement("div");
  controls.className = "controls";
  if (call.state === "incoming") {
    controls.append(
      button(t("answer"), "answer", () => void act(request("answerCall", { callId }))),
      button(t("reject"), "reject", () => void act(request("rejectCall", { callId }))),
    );
  } else {
    if (call.state === "connected") {
      controls.append(
        held
          ? button(t("resume"), "resume", () => void act(request("resumeCall", { callId })))
          : button(t("hold"), "hold", () => void act(request("holdCall", { callId }))),
        call.muted
          ? button(t("unmute"), "unmute", () => void act(request("unmuteCall", { callId })))
          : button(t("mute"), "mute", () => void act(request("muteCall", { callId }))),
        button(t("transfer"), "transfer", () => {
          const target = ($("target") as HTMLInputElement).value.trim() || prompt(t("transfer.prompt"));
          if (target) void act(request("transferCall", { callId, type: "direct", target }));
        }),
        button(t("consult"), "consult", () => {
          const target = ($("target") as HTMLInputElement).value.trim() || prompt(t("transfer.prompt"));
          if (!target) return;
          void act(
            request("transferCall", { callId, type: "consulted", target }).then((r) => {
              if (r.consultCallId) consulting.set(callId, r.consultCallId);
              // The call events may all have come before this answer: draw
              // the "complete transfer" button now.
              return refresh();
            }),
          );
        }),
      );
      if (consulting.has(callId)) {
        controls.append(
          button(t("complete-transfer"), "complete-transfer", () =>
            void act(request("confirmTransfer", { callId }).then(() => consulting.delete(callId))),
          ),
        );
      }
    }
    controls.append(button(t("hangup"), "hangup", () => void act(request("endCall", { callId }))));
  }
  li.append(controls);
  li.addEventListener("click", () => {
    selected = callId;
    void refresh();
  });
  return li;
}

/** Each refresh's number: an answer overtaken by a later refresh is dropped. */
let refreshes = 0;

async function refresh(): Promise<void> {
  const mine = ++refreshes;
  const status = await request("getStatus", {});
  if (mine !== refreshes) return;
  const list = $("calls");
  list.replaceChildren();
  if (!status.calls.some((c) => c.callId === selected)) selected = status.calls[0]?.callId;
  for (const call of status.calls) list.append(callItem(call));
  if (status.calls.length === 0) {
    const li = document.createElement("li");
    li.dataset.i18n = "calls.none";
    list.append(li);
  }
  apply(list);
}

async function refreshHistory(): Promise<void> {
  const entries = await command("call_history");
  const list = $("history");
  list.replaceChildren();
  for (const e of entries.slice(0, 100)) {
    const li = document.createElement("li");
    const when = new Date(e.startedAt).toLocaleString();
    const talk = e.talkSeconds !== undefined ? ` · ${e.talkSeconds} s` : "";
    li.textContent = `${e.direction === "inbound" ? "←" : "→"} ${e.displayName ?? shortUri(e.remote)} · ${when}${talk} · ${e.outcome}`;
    li.tabIndex = 0;
    li.addEventListener("dblclick", () => (($("target") as HTMLInputElement).value = shortUri(e.remote)));
    list.append(li);
  }
  if (entries.length === 0) {
    const li = document.createElement("li");
    li.dataset.i18n = "history.none";
    list.append(li);
    apply(list);
  }
}

function showLook(look: string): void {
  const el = $("look");
  el.dataset.look = look;
  el.dataset.i18n = `look.${look}`;
  el.textContent = t(`look.${look}`);
}

function keypad(): void {
  for (const digit of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
    const b = button(digit, "digit", () => {
      if (selected) void act(request("sendDtmf", { callId: selected, tones: digit }));
      else ($("target") as HTMLInputElement).value += digit;
    });
    b.removeAttribute("data-i18n");
    b.setAttribute("aria-label", `DTMF ${digit}`);
    $("keypad").append(b);
  }
}

async function main(): Promise<void> {
  const info = await command("window_info");
  follow(info.language, () => void refresh());
  showLook(info.look);
  keypad();
  $("open-settings").addEventListener("click", () => void act(command("open_window", { name: "settings" })));
  $("open-diagnostics").addEventListener("click", () => void act(command("open_window", { name: "diagnostics" })));
  $("dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const target = ($("target") as HTMLInputElement).value.trim();
    if (target) void act(request("call", { target }));
  });
  await listen<string>("look-changed", (e) => showLook(e.payload));
  await listen("history-changed", () => void refreshHistory());
  await listen<number>("confirm-quit", async (e) => {
    if (confirm(t("quit.confirm", { count: e.payload }))) {
      const status = await request("getStatus", {});
      for (const c of status.calls) await request("endCall", { callId: c.callId }).catch(() => {});
    }
  });
  await onAnyEvent((name) => {
    if (name.startsWith("call-")) void refresh();
  });
  await refresh();
  await refreshHistory();
  document.body.dataset.ready = "true";
}

void main();

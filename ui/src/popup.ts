// The inbound-call popup: who calls and what the contact center sent, with
// Answer and Reject. The shell closes the window when the call is answered
// (here, in the page or through the API) or ends.
import { $, act, command, request } from "./engine";
import { follow, t } from "./i18n";

async function main(): Promise<void> {
  const info = await command("window_info");
  const call = await command("incoming_call");
  // The title names the caller: how the agent (and a screen reader) finds the window.
  const title = () => {
    document.title = call.name
      ? `${t("popup.title")} — ${call.name} (${call.number})`
      : `${t("popup.title")} — ${call.number}`;
  };
  follow(info.language, title);
  title();
  $("name").textContent = call.name ?? t("popup.unknown");
  $("caller").textContent = call.number;
  if (call.queue) {
    $("queue").textContent = call.queue;
    $("queue-line").hidden = false;
  }
  const fields = $("fields");
  for (const f of call.fields) {
    const dt = document.createElement("dt");
    dt.textContent = f.label;
    const dd = document.createElement("dd");
    dd.textContent = f.value;
    fields.append(dt, dd);
  }
  $("answer").addEventListener("click", () => void act(request("answerCall", { callId: call.callId })));
  $("reject").addEventListener("click", () => void act(request("rejectCall", { callId: call.callId })));
  document.body.dataset.ready = "true";
  // When the caller was first drawn (the benchmark's INVITE-to-popup time).
  requestAnimationFrame(() => {
    document.body.dataset.shownAt = String(Date.now());
  });
}

void main();

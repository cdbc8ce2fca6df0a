// Diagnostics: version, registration and server, devices, the last call's
// quality, and "collect diagnostics" (the engine's zip of logs and settings).
import { $, command, errorText, onEvent, request } from "./engine";
import { follow, t } from "./i18n";

async function show(): Promise<void> {
  const status = await request("getStatus", {});
  $("version").textContent = status.helperVersion;
  $("registration").textContent = status.registration.state;
  $("server").textContent = status.registration.server ?? "—";
  $("log-file").textContent = status.logFile;
  const { devices } = await request("listDevices", {});
  const list = $("devices");
  list.replaceChildren();
  for (const d of devices) {
    const li = document.createElement("li");
    li.textContent = `${d.direction === "input" ? "🎤" : "🔈"} ${d.name}${d.default ? " ✓" : ""}`;
    list.append(li);
  }
}

async function main(): Promise<void> {
  const info = await command("window_info");
  follow(info.language, () => void show());
  await onEvent("quality-report", (q) => {
    const el = $("quality");
    el.removeAttribute("data-i18n");
    el.textContent = `MOS ${q.mos.toFixed(2)} · R ${q.rFactor.toFixed(0)} · ${q.lossPercent.toFixed(1)} % · ${q.jitterMs.toFixed(0)} ms`;
  });
  await onEvent("registration-changed", () => void show());
  await onEvent("devices-changed", () => void show());
  $("collect").addEventListener("click", async () => {
    try {
      const bundle = await request("collectDiagnostics", {});
      $("collected").textContent = t("diag.collected", { path: bundle.path });
    } catch (e) {
      $("error").textContent = errorText(e);
    }
  });
  await show();
  document.body.dataset.ready = "true";
}

void main();

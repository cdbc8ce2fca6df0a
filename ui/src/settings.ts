// Settings: account login (the password goes to the engine, which keeps it in
// the OS keyring), audio devices with a test tone per output and a live
// microphone meter, codec order, auto-answer, log level and language.
// Settings the administrator's policy fixes are shown disabled and marked.
import { $, act, button, command, onEvent, request } from "./engine";
import { apply, follow, t } from "./i18n";
import type { AudioDevice } from "./protocol";

let locked: string[] = [];
/** Test tones by output device: kept apart from the list, which is redrawn when devices change. */
const tones = new Map<string, "playing" | "played">();

function showTone(device: string): void {
  const b = document.querySelector<HTMLButtonElement>(`#outputs li[data-device-id="${CSS.escape(device)}"] button`);
  if (!b) return;
  const state = tones.get(device);
  b.disabled = state === "playing";
  b.dataset.i18n = state === "playing" ? "devices.testing" : "devices.test";
  b.textContent = t(b.dataset.i18n);
  if (state === "played") b.dataset.played = "true";
}


function setConfig(key: string, value: unknown): Promise<void> {
  return act(request("setConfig", { key, value: value as never }));
}

function markLocked(): void {
  document.querySelectorAll<HTMLElement>("[data-key]").forEach((el) => {
    const isLocked = locked.includes(el.dataset.key!);
    (el as HTMLInputElement).disabled = isLocked;
    el.closest("label")?.classList.toggle("locked", isLocked);
    if (isLocked) el.setAttribute("title", t("locked"));
  });
}

async function showAccount(): Promise<void> {
  const status = await request("getStatus", {});
  locked = status.lockedKeys;
  $("account-state").textContent = status.account ? t("account.as", { user: status.account.username }) : t("account.none");
  const r = status.registration;
  $("registration-state").dataset.state = r.state;
  $("registration-state").textContent =
    r.state === "registered" ? t("registration.registered", { server: r.server ?? "" }) : t("registration.other", { state: r.state });
  markLocked();
}

function option(value: string, label: string): HTMLOptionElement {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

async function showDevices(): Promise<void> {
  const [{ devices }, view] = await Promise.all([request("listDevices", {}), request("getConfig", {})]);
  const audio = (view.config as { audio?: Record<string, unknown> }).audio ?? {};
  const fill = (id: string, direction: string, chosen: unknown) => {
    const select = $(id) as HTMLSelectElement;
    select.replaceChildren(option("", t("devices.default")));
    for (const d of devices.filter((d: AudioDevice) => d.direction === direction)) select.append(option(d.id, d.name));
    select.value = typeof chosen === "string" ? chosen : "";
  };
  fill("microphone", "input", audio.microphone);
  fill("speaker", "output", audio.speaker);
  fill("ringer", "output", Array.isArray(audio.ringer) ? audio.ringer[0] : undefined);
  ($("ring-all") as HTMLInputElement).checked = audio.ring_on_all_devices === true;
  const outputs = $("outputs");
  outputs.replaceChildren();
  for (const d of devices.filter((d: AudioDevice) => d.direction === "output")) {
    const li = document.createElement("li");
    li.dataset.deviceId = d.id;
    const name = document.createElement("span");
    name.textContent = d.name;
    const test = button(t("devices.test"), "test-tone", () => {
      tones.set(d.id, "playing");
      showTone(d.id);
      void act(command("test_tone", { device: d.id })).finally(() => {
        tones.set(d.id, "played");
        showTone(d.id);
      });
    });
    test.setAttribute("aria-label", `${t("devices.test")}: ${d.name}`);
    li.append(name, test);
    outputs.append(li);
    showTone(d.id);
  }
  markLocked();
}

async function saveDevices(): Promise<void> {
  const value = (id: string) => ($(id) as HTMLSelectElement).value;
  const ringer = value("ringer");
  await act(
    request("setDevices", {
      microphone: value("microphone"),
      speaker: value("speaker"),
      ringer: ringer ? [ringer] : [],
      ringOnAllDevices: ($("ring-all") as HTMLInputElement).checked,
    }).then(() => {
      $("devices-state").textContent = t("devices.saved");
    }),
  );
}

async function showCallSettings(): Promise<void> {
  const view = await request("getConfig", {});
  const c = view.config as {
    calls?: { auto_answer?: boolean };
    codecs?: { allow?: string[] };
    log?: { level?: string };
    desktop?: { language?: string; call_popup?: boolean; autostart?: boolean };
  };
  ($("auto-answer") as HTMLInputElement).checked = c.calls?.auto_answer === true;
  ($("log-level") as HTMLSelectElement).value = c.log?.level ?? "info";
  ($("language") as HTMLSelectElement).value = c.desktop?.language ?? "en";
  ($("call-popup") as HTMLInputElement).checked = c.desktop?.call_popup !== false;
  ($("autostart") as HTMLInputElement).checked = c.desktop?.autostart === true;
  const list = $("codecs");
  list.replaceChildren();
  const codecs = c.codecs?.allow ?? [];
  codecs.forEach((codec, i) => {
    const li = document.createElement("li");
    li.textContent = codec;
    if (i > 0) {
      const up = button(t("codecs.up"), "codec-up", () => {
        const order = [...codecs];
        [order[i - 1], order[i]] = [order[i]!, order[i - 1]!];
        void setConfig("codecs.allow", order);
      });
      up.dataset.i18n = "codecs.up";
      up.setAttribute("aria-label", `${t("codecs.up")}: ${codec}`);
      li.append(" ", up);
    }
    list.append(li);
  });
  locked = view.lockedKeys;
  markLocked();
}

/** The meter reads the microphone ten times a second while the window is shown. */
async function meter(): Promise<void> {
  for (;;) {
    if (document.visibilityState === "visible") {
      const device = ($("microphone") as HTMLSelectElement).value || undefined;
      try {
        const level = await command("mic_level", { device });
        const meterElement = $("mic-meter") as HTMLMeterElement;
        meterElement.value = Math.max(-60, level.peakDbfs);
        // Counted for the tests (and anyone checking that the meter runs).
        meterElement.dataset.readings = String(Number(meterElement.dataset.readings ?? 0) + 1);
      } catch {
        ($("mic-meter") as HTMLMeterElement).value = -60;
        await new Promise((r) => setTimeout(r, 1000));
      }
    } else {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function main(): Promise<void> {
  const info = await command("window_info");
  follow(info.language, () => {
    void showAccount();
    void showDevices();
  });
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void act(
      request("login", {
        username: ($("username") as HTMLInputElement).value.trim(),
        password: ($("password") as HTMLInputElement).value,
        remember: ($("remember") as HTMLInputElement).checked,
      }).then(() => {
        ($("password") as HTMLInputElement).value = "";
      }),
    );
  });
  $("logout").addEventListener("click", () => void act(request("logout", {})));
  for (const id of ["microphone", "speaker", "ringer", "ring-all"]) $(id).addEventListener("change", () => void saveDevices());
  $("auto-answer").addEventListener("change", (e) => void setConfig("calls.auto_answer", (e.target as HTMLInputElement).checked));
  $("log-level").addEventListener("change", (e) => void act(request("setLogLevel", { level: (e.target as HTMLSelectElement).value as never, persist: true })));
  $("call-popup").addEventListener("change", (e) => void setConfig("desktop.call_popup", (e.target as HTMLInputElement).checked));
  $("autostart").addEventListener("change", (e) => void setConfig("desktop.autostart", (e.target as HTMLInputElement).checked));
  $("language").addEventListener("change", (e) => void setConfig("desktop.language", (e.target as HTMLSelectElement).value));
  await onEvent("account-changed", () => void showAccount());
  await onEvent("registration-changed", () => void showAccount());
  await onEvent("devices-changed", () => void showDevices());
  await onEvent("config-changed", (c) => {
    if (["codecs.", "calls.", "log.", "desktop."].some((p) => c.key.startsWith(p))) void showCallSettings();
  });
  await Promise.all([showAccount(), showDevices(), showCallSettings()]);
  apply();
  document.body.dataset.ready = "true";
  void meter();
}

void main();

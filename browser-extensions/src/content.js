// Runs on candidate pages; shows itself only on Agent Desktop origins that
// are allowed (the background decides). On any other page it does nothing
// at all, so the page cannot even tell the extension is installed.
// Page ↔ here: window.postMessage on the page's own origin, tagged with
// CHANNEL; here ↔ background: one runtime port per page.

(() => {
  const api = globalThis.browser ?? globalThis.chrome;
  const CHANNEL = "agent-helper";
  const origin = location.origin;
  const version = api.runtime.getManifest().version;

  api.runtime.sendMessage({ type: "is-allowed" }).then((allowed) => {
    if (allowed !== true) return;
    const port = api.runtime.connect({ name: "agent-desktop" });
    const toPage = (message) => window.postMessage({ channel: CHANNEL, dir: "from-extension", ...message }, origin);

    port.onMessage.addListener(toPage);
    // The extension was updated or disabled: this page has lost it.
    port.onDisconnect.addListener(() => toPage({ type: "link", state: "extension-missing" }));

    window.addEventListener("message", (e) => {
      if (e.source !== window || e.origin !== origin) return;
      const m = e.data;
      if (!m || typeof m !== "object" || m.channel !== CHANNEL || m.dir !== "to-extension") return;
      if (m.type === "ping") {
        toPage({ type: "present", version });
      } else if (m.type === "request" || m.type === "retry") {
        port.postMessage({ type: m.type, id: m.id, method: m.method, params: m.params });
      }
    });
    // An SDK loaded before us learns we are here without asking again.
    toPage({ type: "present", version });
  });
})();

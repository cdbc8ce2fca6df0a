#!/usr/bin/env bash
# Smoke test of the desktop app (src-tauri) under Xvfb: it starts with its tray,
# serves the same local API as the headless helper, and stops cleanly on SIGTERM.
# Not part of scripts/test.sh: building Tauri needs webkit2gtk and ~10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev xvfb xauth dbus)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; fi

# Built from its folder so that src-tauri/.cargo/config.toml (shared ../target) applies.
(cd src-tauri && cargo build --locked)
cargo build --locked -p agent-helper
profile=$(mktemp -d)
out=$(mktemp)
trap 'rm -rf "$profile" "$out"' EXIT

export WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1
xvfb-run -a dbus-run-session -- target/debug/agent-helper-desktop --profile "$profile" >"$out" 2>&1 &
runner=$!
for _ in $(seq 600); do grep -q "agent-helper ready:" "$out" && break; kill -0 $runner 2>/dev/null || break; sleep 0.1; done
grep "agent-helper ready:" "$out" || { echo "desktop app did not become ready:"; cat "$out"; exit 1; }
pid=$(grep "agent-helper ready:" "$out" | sed -n 's/.* pid=\([0-9]*\).*/\1/p')

status=$(target/debug/agent-helper ctl --profile "$profile" getStatus)
echo "$status" | grep -q "\"pid\": $pid" || { echo "getStatus did not come from the desktop app: $status"; exit 1; }
target/debug/agent-helper ctl --profile "$profile" collectDiagnostics >/dev/null
kill -TERM "$pid"
wait $runner || true
[[ ! -e "$profile/agent-helper.sock" ]] || { echo "socket left behind"; exit 1; }
grep -q "stopped" "$profile/logs/BPClient.log" || { echo "no clean stop in BPClient.log"; cat "$profile/logs/BPClient.log"; exit 1; }
echo "desktop smoke test passed (pid $pid)"

#!/usr/bin/env bash
# Builds and starts the helper on the user's default profile: the desktop app
# when there is a display and it is installed, otherwise headless.
# Stop it with Ctrl+C. Extra arguments go to agent-helper (e.g. --profile DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh run
cargo build --release --locked -p agent-helper
args=()
if [[ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]]; then
  args+=(--headless)
fi
exec target/release/agent-helper "${args[@]}" "$@"

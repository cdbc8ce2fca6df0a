#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end tests that start the
# real helper, against a real Secret Service inside a private D-Bus session.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p agent-helper-config).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --tests --locked
# The desktop app: its pages (ui/, type-checked against the generated API
# types), then the Tauri shell, linted like the rest (tests/desktop.rs drives it).
(cd ui && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && node build.mjs)
(cd src-tauri && cargo clippy --locked --all-targets -- -D warnings && cargo build --locked)
# dbus-daemon warns when it cannot raise its fd limit in containers; harmless.
dbus-run-session -- scripts/with-keyring.sh cargo test --workspace --locked --no-fail-fast "$@"
# The optional G.729 build (feature g729, libbcg729): its codec and a call.
if [[ $# -eq 0 ]]; then
  cargo clippy -p agent-helper --features g729 --all-targets --locked -- -D warnings
  dbus-run-session -- cargo test --locked -p agent-helper-media --features g729 --lib codec
  dbus-run-session -- cargo test --locked -p agent-helper --features g729 --test g729
fi

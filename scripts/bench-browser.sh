#!/usr/bin/env bash
# Browser bridge benchmark in headless Chromium and Firefox ESR: getStatus round trips
# page → SDK → extension → agent-helper-bridge → helper → page (p50/p99 over
# 1000 requests) and events per second delivered to the page. Debug build of
# the helper and the bridge, as the tests run them. Prints one BENCH line per run.
#   scripts/bench-browser.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test >/dev/null
for _ in $(seq "${1:-3}"); do
  cargo test -q -p agent-helper --test browser -- --ignored --nocapture --test-threads=1 benchmark 2>/dev/null | grep -o 'BENCH.*'
done

#!/usr/bin/env bash
# Desktop app benchmark (issue 6): idle RSS of the app and its WebKit
# processes, idle CPU over 60 s (BENCH_IDLE_SECS), and INVITE-to-popup time
# over ten calls. Debug build, as the tests run it; `--release` for the
# release build agents run. Figures in target/desktop-benchmark.md (copy
# them to docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test
if [ "${1:-}" = "--release" ]; then export DESKTOP_BUILD=release; fi
dbus-run-session -- cargo test --locked -p agent-helper --test desktop -- --ignored --nocapture desktop_benchmark
cat target/desktop-benchmark.md

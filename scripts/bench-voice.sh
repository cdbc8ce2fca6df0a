#!/usr/bin/env bash
# The voice benchmark of issue 4, side by side with baresip: PESQ (clean, 5 %
# and 10 % random loss), CPU per call and peak RSS, helper → helper latency.
# Release build; about 15 minutes with 3 runs each (BENCH_RUNS=1 for a quick look).
# The table goes to target/voice-benchmark.md (figures kept in docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test
exec dbus-run-session -- cargo test --release --locked -p agent-helper --test voice_benchmark -- --ignored --nocapture "$@"

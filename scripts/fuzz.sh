#!/usr/bin/env bash
# Fuzzes the SIP core with cargo-fuzz (libFuzzer + AddressSanitizer), starting
# from the hand-written seeds in crates/sip/fuzz/seeds/. Not part of the test
# command (it wants minutes per target); the deterministic mutation test
# crates/sip/tests/hostile_input.rs runs in CI instead.
#   scripts/fuzz.sh [TARGET …] [-t SECONDS]   targets: sip_message sdp framing challenge rtp (default: all, 60 s each)
set -euo pipefail
cd "$(dirname "$0")/../crates/sip/fuzz"
secs=60
targets=()
while (($#)); do
  case "$1" in
    -t) secs=$2; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(sip_message sdp framing challenge rtp)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes -Z flags (sanitizers); the only toolchain here is stable.
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -max_len=70000
done

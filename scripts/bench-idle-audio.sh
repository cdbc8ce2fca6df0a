#!/usr/bin/env bash
# Idle cost of a helper beside a sound server: a private PulseAudio with two
# null sinks, a headless helper on a fresh profile (no account), then over
# SECONDS the helper's and the server's CPU ticks and wake-ups (context
# switches of all their threads) and the helper's RSS.
# Usage: scripts/bench-idle-audio.sh [BINARY] [SECONDS]   (figures: docs/benchmarks.md)
set -euo pipefail
bin=${1:-target/debug/agent-helper}
secs=${2:-60}
d=$(mktemp -d /dev/shm/agent-helper-idle.XXXX)
trap 'kill $helper $server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"' EXIT
mkdir -p "$d/runtime" "$d/profile"
touch "$d/profile/config.toml"
cat >"$d/pulse.pa" <<PA
load-module module-native-protocol-unix auth-anonymous=1 socket=$d/native
load-module module-null-sink sink_name=headset
load-module module-null-sink sink_name=ringer
set-default-sink headset
PA
XDG_RUNTIME_DIR=$d/runtime HOME=$d pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no \
  --system=no -F "$d/pulse.pa" --log-target=file:"$d/pulse.log" &
server=$!
export PULSE_SERVER=unix:$d/native
until pactl info >/dev/null 2>&1; do sleep 0.05; done
"$bin" --headless --profile "$d/profile" >"$d/out" 2>&1 &
helper=$!
until grep -q . "$d/out" 2>/dev/null; do sleep 0.05; done
sleep 3 # start-up settles: its first listing is not idle time
ticks() { local t=0; for s in /proc/$1/task/*/stat; do read -r -a f <"$s"; t=$((t + f[13] + f[14])); done; echo $t; }
switches() { awk '/ctxt_switches/ {n += $2} END {print n}' /proc/"$1"/task/*/status; }
h0=$(ticks $helper) s0=$(ticks $server) hw0=$(switches $helper) sw0=$(switches $server)
sleep "$secs"
h1=$(ticks $helper) s1=$(ticks $server) hw1=$(switches $helper) sw1=$(switches $server)
echo "$(basename "$bin") over ${secs} s: helper $((h1 - h0)) ticks, $((hw1 - hw0)) wake-ups, RSS $(awk '/VmRSS/ {print $2}' /proc/$helper/status) KiB;" \
  "sound server $((s1 - s0)) ticks, $((sw1 - sw0)) wake-ups"

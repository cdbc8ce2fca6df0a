#!/usr/bin/env bash
# Try the softphone in two minutes: starts a local kamailio (registrar/proxy
# with digest auth), a baresip "customer" that answers every call and plays a
# tone, and a helper logged in as "agent" — then tells you what to type.
#   scripts/demo.sh            (Ctrl+C stops everything)
# Environment: DEMO_PORT (kamailio, default 5060), DEMO_DIR (default /tmp/agent-helper-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test >/dev/null
cargo build -q -p agent-helper

port=${DEMO_PORT:-5060}
dir=${DEMO_DIR:-/tmp/agent-helper-demo}
password=demo-secret
rm -rf "$dir" && mkdir -p "$dir/kamailio" "$dir/customer" "$dir/agent"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# kamailio: the same configuration the tests use.
sed -e "s/@PORT@/$port/g" -e "s/@PASSWORD@/$password/g" -e "s/@TLS_LISTEN@//" -e "s/@TLS_MODULE@//" \
  tests/rigs/kamailio.cfg >"$dir/kamailio/kamailio.cfg"
kamailio -f "$dir/kamailio/kamailio.cfg" -P "$dir/kamailio/pid" -w "$dir/kamailio" -DD -E >"$dir/kamailio/log" 2>&1 &
pids+=($!)

# The customer: baresip answering at once, playing a 440 Hz tone (8 kHz WAV made here).
python3 - "$dir/customer/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * n / 8000))) for n in range(8000 * 600)))
PY
cat >"$dir/customer/config" <<CFG
sip_listen 127.0.0.1:$((port + 20))
audio_player aufile,$dir/customer/heard.wav
audio_source aufile,$dir/customer/tone.wav
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module account.so
module menu.so
CFG
echo "<sip:customer@127.0.0.1:$port;transport=udp>;auth_pass=$password;regint=600;audio_codecs=PCMU,PCMA;answermode=auto" >"$dir/customer/accounts"
baresip -f "$dir/customer" >"$dir/customer/log" 2>&1 </dev/null &
pids+=($!)

# The agent's helper.
cat >"$dir/agent/config.toml" <<CFG
[sip]
domain = "127.0.0.1"
servers = [{ host = "127.0.0.1", port = $port, transport = "udp" }]

[codecs]
allow = ["pcmu", "pcma"]
CFG
ctl() { target/debug/agent-helper ctl --profile "$dir/agent" "$@"; }
target/debug/agent-helper --headless --profile "$dir/agent" >"$dir/agent/stdout" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "ready" "$dir/agent/stdout" 2>/dev/null && break; sleep 0.1; done
ctl login "{\"username\":\"agent\",\"password\":\"$password\"}" >/dev/null
for _ in $(seq 100); do ctl getStatus | grep -q '"state": "registered"' && break; sleep 0.1; done
ctl getStatus | grep -q '"state": "registered"' || { echo "the helper did not register; see $dir/agent/logs/BPClient.log"; exit 1; }

cat <<TXT

Agent Helper demo is running (kamailio on 127.0.0.1:$port, customer answers every call).
In another terminal:

  target/debug/agent-helper ctl --profile $dir/agent events                      # watch events
  target/debug/agent-helper ctl --profile $dir/agent call '{"target":"customer"}'
  target/debug/agent-helper ctl --profile $dir/agent holdCall
  target/debug/agent-helper ctl --profile $dir/agent sendDtmf '{"tones":"123#"}'
  target/debug/agent-helper ctl --profile $dir/agent endCall
  target/debug/agent-helper ctl --profile $dir/agent getStatus

Logs: $dir/agent/logs/BPClient.log. Ctrl+C stops everything.
TXT
wait

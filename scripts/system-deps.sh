#!/usr/bin/env bash
# Installs the Debian 12 packages the helper and its tests need, and only those
# that are missing (idempotent; apt-get update only when something is missing).
#   scripts/system-deps.sh run    what running the helper needs
#   scripts/system-deps.sh test   plus the test rigs (Secret Service, D-Bus, secret-tool)
set -euo pipefail

# libasound2-dev: cpal links ALSA on Linux. libpulse-dev: call streams go
# through libpulse (crates/audio/src/pulse.rs).
# cmake: the opus crate builds libopus from its bundled source.
run_pkgs=(ca-certificates pkg-config gcc libc6-dev libasound2-dev libpulse-dev cmake)
# Browsers for the bridge tests: Chromium + chromedriver, Firefox ESR
# (geckodriver is not packaged for Debian 12: built from crates.io below).
# Audio rig: a private PulseAudio server with null sinks, speech from
# espeak-ng resampled by sox, PESQ scoring in Python. libbcg729-dev: the
# suite also tests the optional G.729 build (feature g729, GPL-3).
# The desktop app (src-tauri, Tauri 2 on WebKitGTK) and its WebDriver tests
# on Xvfb: webkit2gtk-driver (WebKitWebDriver) behind tauri-driver;
# imagemagick shoots the display for the screenshots; trayer is the tray
# (the app's icon falls back to XEmbed there), xdotool clicks it.
# libasound2-plugins: baresip's ALSA output through PulseAudio (the voice
# benchmark's latency reference). lame: MP3 ring tones for the sound-file tests.
test_pkgs=(dbus dbus-daemon gnome-keyring libsecret-tools python3 python3-pip passwd util-linux openssl kamailio
  kamailio-tls-modules baresip sip-tester pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox lame nftables libbcg729-dev
  chromium chromium-driver firefox-esr
  libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev xvfb xauth webkit2gtk-driver imagemagick trayer xdotool)

pkgs=("${run_pkgs[@]}")
[[ "${1:-run}" == test ]] && pkgs+=("${test_pkgs[@]}")
[[ "${1:-run}" == test ]] && ! command -v npm >/dev/null && pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PESQ (ITU-T P.862) for the voice-quality tests, into whichever python3 the tests run.
if [[ "${1:-run}" == test ]] && ! python3 -c "import pesq, numpy, scipy, soundfile" 2>/dev/null; then
  echo "installing Python packages: numpy scipy soundfile pesq"
  python3 -m pip install -q numpy scipy soundfile pesq 2>/dev/null \
    || python3 -m pip install -q --break-system-packages numpy scipy soundfile pesq
fi

if ! command -v cargo >/dev/null; then
  echo "Rust is not installed: get it with https://rustup.rs (stable, 1.89 or newer), then run this again." >&2
  exit 1
fi

# geckodriver drives Firefox ESR in the browser tests; pinned to the version
# the suite was proven with.
if [[ "${1:-run}" == test ]] && ! command -v geckodriver >/dev/null && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver" ]]; then
  echo "installing geckodriver (cargo install)"
  cargo install -q --locked geckodriver --version 0.37.1
fi

# tauri-driver: the WebDriver front for the desktop app's tests.
if [[ "${1:-run}" == test ]] && ! command -v tauri-driver >/dev/null && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]]; then
  echo "installing tauri-driver (cargo install)"
  cargo install -q --locked tauri-driver --version 2.1.0
fi

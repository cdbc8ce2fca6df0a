#!/usr/bin/env bash
# Installs the Debian 12 packages the helper and its tests need, and only those
# that are missing (idempotent; apt-get update only when something is missing).
#   scripts/system-deps.sh run    what running the helper needs
#   scripts/system-deps.sh test   plus the test rigs (Secret Service, D-Bus, secret-tool)
set -euo pipefail

run_pkgs=(ca-certificates pkg-config gcc libc6-dev)
test_pkgs=(dbus dbus-daemon gnome-keyring libsecret-tools python3 passwd util-linux openssl kamailio kamailio-tls-modules baresip sip-tester)

pkgs=("${run_pkgs[@]}")
[[ "${1:-run}" == test ]] && pkgs+=("${test_pkgs[@]}")

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

if ! command -v cargo >/dev/null; then
  echo "Rust is not installed: get it with https://rustup.rs (stable, 1.89 or newer), then run this again." >&2
  exit 1
fi

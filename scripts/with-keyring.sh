#!/usr/bin/env bash
# Runs a command with a private, unlocked Secret Service (gnome-keyring) on the
# current D-Bus session. Use inside dbus-run-session; the keyring files live in
# a temporary folder that is removed afterwards.
set -euo pipefail
keyring_home=$(mktemp -d)
trap 'rm -rf "$keyring_home"' EXIT
export XDG_DATA_HOME="$keyring_home"
# A non-empty password makes gnome-keyring create and unlock the "login"
# collection without a prompt (there is no display to prompt on).
eval "$(printf 'agent-helper-test-keyring' | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
"$@"

#!/usr/bin/env bash
# Installs Valkey 8 (valkey-server, valkey-cli) from Debian bookworm-backports when
# valkey-server is not already on PATH. Idempotent: a second run only prints the version.
# Stops the packaged systemd service if the install started one: tests start their own.
set -euo pipefail

if command -v valkey-server >/dev/null 2>&1 && command -v valkey-cli >/dev/null 2>&1; then
  valkey-server --version
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-valkey: valkey-server is missing and apt-get is not available; install Valkey 8 by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-valkey: need root (or sudo) to install valkey-server" >&2
    exit 1
  fi
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" = "bookworm" ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "install-valkey: adding Debian bookworm-backports"
    $SUDO tee "$list" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  target=(-t bookworm-backports)
else
  target=()
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "install-valkey: apt-get update failed" >&2; exit 1; }
if ! $SUDO apt-get install -y -q "${target[@]}" valkey-server valkey-tools >/dev/null; then
  echo "install-valkey: apt-get could not install valkey-server valkey-tools" >&2
  exit 1
fi

# The package may start a system service on port 6379; our tests run their own servers.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl stop valkey-server >/dev/null 2>&1 || true
  $SUDO systemctl disable valkey-server >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
  $SUDO service valkey-server stop >/dev/null 2>&1 || true
fi
pkill -u valkey -x valkey-server >/dev/null 2>&1 || true  # only the packaged service (runs as user valkey)

if ! command -v valkey-server >/dev/null 2>&1; then
  echo "install-valkey: install finished but valkey-server is not on PATH" >&2
  exit 1
fi
valkey-server --version

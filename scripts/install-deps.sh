#!/usr/bin/env bash
# Install the system packages Tollway needs, only those missing (Debian/Ubuntu).
# Used by `make demo` and `make test`; .ci/run installs the same list.
set -euo pipefail

# The one list of system packages (CI reads it from here too).
PACKAGES=(clang libbpf-dev iproute2 procps make gcc pkg-config iptables nftables chromium containernetworking-plugins)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]}; run as root (sudo make ...) so they can be installed" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs), stable 1.95 or newer" >&2
  exit 1
fi

#!/usr/bin/env bash
# Install every Debian 12 package imarotd needs to build, test and benchmark.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git
  clang llvm libclang-rt-14-dev libbpf-dev bpftool linux-libc-dev
  libssl-dev libtss2-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libsystemd-dev libcli11-dev libfuse3-dev libcbor-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # tests: real components
  swtpm swtpm-tools tpm2-tools ima-evm-utils dbus dbus-bin systemd fuse3 util-linux
  coreutils openssl xxd python3 attr
  # packaging: dpkg-shlibdeps computes the .deb's library dependencies
  dpkg-dev
  # guest end-to-end tests
  qemu-system-x86 qemu-utils mmdebstrap cpio zstd e2fsprogs
)

# --check: exit 0 when every package is installed, 1 (listing them) when not.
if [ "${1:-}" = "--check" ]; then
  missing=()
  for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing packages: ${missing[*]}"
    exit 1
  fi
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root to install packages (try: sudo $0)" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"

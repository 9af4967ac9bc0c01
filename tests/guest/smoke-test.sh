#!/usr/bin/env bash
# guest_boot_smoke: boots the guest image once and checks that it has the
# BPF LSM, kernel IMA and the vTPM, and that results come back.
# Usage: smoke-test.sh GUEST_DIR
set -euo pipefail
here=$(dirname "$(realpath "$0")")
guest=$(realpath "$1")
results=$(mktemp -d /var/tmp/imarot-smoke.XXXXXX)
trap 'rm -rf "$results"' EXIT

status=0
"$here/run-guest.sh" --kernel "$guest/vmlinuz" --rootfs "$guest/rootfs.img" \
  --payload "$here/smoke" --results "$results" --log "$guest/smoke-console.log" \
  --timeout 300 --append "ima_policy=critical_data ima_hash=sha256" || status=$?
cat "$results/console.log" 2>/dev/null || true
if [ "$status" -ne 0 ]; then
  echo "guest_boot_smoke: the guest payload failed with status $status (console: $guest/smoke-console.log)" >&2
  exit 1
fi
if [ ! -s "$results/binary_runtime_measurements" ]; then
  echo "guest_boot_smoke: the kernel's measurement list did not come back from the guest" >&2
  exit 1
fi
echo "guest_boot_smoke: passed"

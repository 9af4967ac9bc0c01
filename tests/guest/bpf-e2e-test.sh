#!/usr/bin/env bash
# guest_bpf_lsm_e2e: kernel IMA (PCR 10) and imarotd on the eBPF LSM source
# (PCR 11) measure the same events in one guest. Their lists must agree
# byte for byte on every file both measured, and each must replay to its
# PCR with rotctl verify and evmctl.
# Usage: bpf-e2e-test.sh GUEST_DIR IMAROTD PLUGIN_DIR ROTCTL
set -euo pipefail
here=$(dirname "$(realpath "$0")")
guest=$(realpath "$1")
imarotd=$(realpath "$2")
plugins=$(realpath "$3")
rotctl=$(realpath "$4")

work=$(mktemp -d /var/tmp/imarot-bpf-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
payload=$work/payload
results=$guest/bpf-e2e-results
rm -rf "$results"
mkdir -p "$payload/bin" "$payload/lib/rot" "$results"

install -m 0755 "$here/bpf/run" "$payload/run"
install -m 0755 "$imarotd" "$payload/bin/imarotd"
install -m 0644 "$plugins/imarot-rot-tpm2.so" "$payload/lib/rot/"
gcc -static -O2 -Wall -Wextra -Werror -o "$payload/bin/helper" "$here/bpf/helper.c"

# The kernel reference policy, with one rule ahead of it so that both
# measure programs run from a memfd: memfds live on the internal tmpfs
# mount, which the reference policy excludes by fsmagic.
{
  echo "measure func=BPRM_CHECK mask=MAY_EXEC fsmagic=0x01021994 template=ima-ng"
  cat "$here/../data/kernel-ima-sha256/policy"
} >"$payload/policy"

write_config() {  # FILE NAME REGISTER [EXTRA]
  cat >"$1" <<JSON
{
  "policy": "/payload/policy",
  "template": "ima-ng",
  "hash_algorithm": "sha256",
  "state_directory": "/var/lib/imarotd-$2",
  "runtime_directory": "/run/imarotd-$2",
  "event_source": "bpf",
  "plugin_directory": "/payload/lib/rot",
  "backends": [ { "name": "tpm2", "register": $3, "config": { "tcti": "device:/dev/tpmrm0" } } ],
  "log_level": "info",
  $4
  "dbus": "none"
}
JSON
}
write_config "$payload/imarotd.json" e2e 11 ""
write_config "$payload/imarotd-burst.json" burst 12 '"bpf_ring_buffer_kib": 16,'
write_config "$payload/imarotd-bench.json" bench 13 ""

status=0
"$here/run-guest.sh" --kernel "$guest/vmlinuz" --rootfs "$guest/rootfs.img" \
  --payload "$payload" --results "$results" --log "$guest/bpf-e2e-console.log" \
  --timeout 900 --append "ima_policy=critical_data ima_hash=sha256" || status=$?
if [ "$status" -ne 0 ]; then
  echo "guest_bpf_lsm_e2e: the guest payload failed with status $status (console: $guest/bpf-e2e-console.log," \
    "results: $results)" >&2
  tail -n 40 "$results/imarotd.log" 2>/dev/null >&2 || true
  exit 1
fi

cat "$results/exec-bench.txt" || true
grep -h "eBPF LSM source stopped" "$results/imarotd.log" "$results/imarotd-burst.log" || true

failures=0
python3 "$here/bpf/compare.py" "$results" || failures=$((failures + 1))

# tpm2_pcrread prints "    10: 0xHEX" under "  sha256:", and rotctl and
# evmctl read "PCR-10: hex".
awk '/^ *[0-9]+ *: *0x/ { gsub(/[ :]/, " "); printf "PCR-%02d: %s\n", $1, tolower(substr($2, 3)) }' \
  "$results/pcrs.txt" >"$results/pcrs-evmctl.txt"
for list in kernel imarotd imarotd-burst; do
  if "$rotctl" verify --input "$results/$list.bin" --pcrs "sha256,$results/pcrs-evmctl.txt" \
      >"$results/rotctl-$list.txt" 2>&1; then
    echo "ok: rotctl verify of $list.bin"
  else
    echo "FAILED: rotctl verify of $list.bin:"
    cat "$results/rotctl-$list.txt"
    failures=$((failures + 1))
  fi
  if evmctl ima_measurement --ignore-violations --pcrs "sha256,$results/pcrs-evmctl.txt" "$results/$list.bin" \
      >"$results/evmctl-$list.txt" 2>&1; then
    echo "ok: evmctl ima_measurement of $list.bin"
  else
    echo "FAILED: evmctl ima_measurement of $list.bin:"
    tail -n 20 "$results/evmctl-$list.txt"
    failures=$((failures + 1))
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "guest_bpf_lsm_e2e: $failures check groups failed (results: $results)" >&2
  exit 1
fi
echo "guest_bpf_lsm_e2e: passed"

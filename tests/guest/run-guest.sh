#!/usr/bin/env bash
# Boot the guest under qemu with software emulation and a swtpm vTPM, run a
# test payload in it, and bring its results back.
#
# Usage: run-guest.sh --kernel VMLINUZ --rootfs IMAGE --payload DIR --results DIR
#                     [--mode init|systemd] [--append ARGS] [--timeout SECONDS]
#                     [--log FILE] [--memory MIB] [--cpus N] [--tpm-state DIR]
#   --payload DIR   becomes an ext4 disk mounted at /payload in the guest;
#                   DIR/run (executable) is what the guest runs
#   --results DIR   receives what the guest wrote to /payload/out
#   --mode          init: the payload runs as PID 1's child right after the
#                   kernel (fast); systemd: after a full systemd boot
#   --append ARGS   extra kernel command-line arguments (ima_policy=, ...)
#   --timeout       seconds before the guest is stopped as hung (default 900)
#   --tpm-state DIR swtpm state to reuse; default: a new TPM with the banks
#                   sha1, sha256, sha384 and sha512
# The root image is opened with snapshot=on, so a run never changes it.
# Exit status: the payload's exit status; 124 when the guest timed out;
# 125 when the guest failed before the payload ran.
set -euo pipefail

kernel="" rootfs="" payload="" results="" mode=init append="" timeout=900
log="" memory=1536 cpus=2 tpm_state=""

usage() {
  sed -n '5,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$(realpath "$2"); shift 2 ;;
    --rootfs) rootfs=$(realpath "$2"); shift 2 ;;
    --payload) payload=$(realpath "$2"); shift 2 ;;
    --results) results=$(realpath -m "$2"); shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --log) log=$(realpath -m "$2"); shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --tpm-state) tpm_state=$(realpath -m "$2"); shift 2 ;;
    *) echo "$0: unknown argument '$1'" >&2; usage ;;
  esac
done
for required in kernel rootfs payload results; do
  [ -n "${!required}" ] || { echo "$0: --$required is required" >&2; usage; }
done
[ -f "$kernel" ] || { echo "$0: --kernel $kernel: no such file" >&2; exit 2; }
[ -f "$rootfs" ] || { echo "$0: --rootfs $rootfs: no such file" >&2; exit 2; }
[ -x "$payload/run" ] || { echo "$0: --payload $payload: run is missing or not executable" >&2; exit 2; }
case "$mode" in
  init) init_arg="init=/usr/local/sbin/imarot-guest-run" ;;
  systemd) init_arg="" ;;
  *) echo "$0: --mode '$mode': expected init or systemd" >&2; exit 2 ;;
esac
[[ "$timeout" =~ ^[0-9]+$ ]] || { echo "$0: --timeout '$timeout': expected seconds" >&2; exit 2; }

work=$(mktemp -d /var/tmp/imarot-guest.XXXXXX)
swtpm_pid="" qemu_pid=""
cleanup() {
  [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
  [ -z "$swtpm_pid" ] || kill "$swtpm_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log=${log:-$work/console.log}
mkdir -p "$(dirname "$log")" "$results"

# The payload disk: the payload tree plus room for results.
payload_mb=$(( $(du -sm "$payload" | cut -f1) * 2 + 256 ))
mkfs.ext4 -q -L imarot-payload -d "$payload" "$work/payload.img" "${payload_mb}M" >/dev/null

if [ -z "$tpm_state" ]; then
  tpm_state="$work/tpm"
  mkdir -p "$tpm_state"
  swtpm_setup --tpm2 --tpmstate "$tpm_state" --pcr-banks sha1,sha256,sha384,sha512 >/dev/null
fi
start_swtpm() {
  rm -f "$work/swtpm.sock"
  swtpm socket --tpm2 --tpmstate dir="$tpm_state" \
    --ctrl type=unixio,path="$work/swtpm.sock" --log file="$work/swtpm.log" &
  swtpm_pid=$!
  for _ in $(seq 50); do [ -S "$work/swtpm.sock" ] && break; sleep 0.1; done
  [ -S "$work/swtpm.sock" ] || { echo "$0: swtpm did not create its socket" >&2; exit 125; }
}

# Returns true when the kernel reports a soft lockup or an RCU stall and the
# payload has not started. Under TCG a boot sometimes hangs that way in udev's
# workers. Only one retry is allowed, because imarotd may already run at boot.
stalled_before_payload() {
  grep -a -q 'soft lockup\|rcu_preempt detected stalls' "$log" &&
    ! grep -a -q 'imarot-guest: running /payload/run' "$log"
}

# KVM is present on the build machines but fails, so the guest always runs
# under TCG. NVMe and ext4 are built into Debian's cloud kernel, so neither
# an initramfs nor modules are needed.
boot_guest() {
  : > "$log"
  qemu-system-x86_64 -accel tcg -m "$memory" -smp "$cpus" \
    -display none -monitor none -serial file:"$log" -no-reboot \
    -kernel "$kernel" \
    -append "root=/dev/nvme0n1 rw rootfstype=ext4 console=ttyS0 panic=-1 quiet $init_arg $append" \
    -drive file="$rootfs",if=none,id=root,format=raw,snapshot=on \
    -device nvme,drive=root,serial=imarot-root \
    -drive file="$work/payload.img",if=none,id=payload,format=raw \
    -device nvme,drive=payload,serial=imarot-payload \
    -chardev socket,id=chrtpm,path="$work/swtpm.sock" \
    -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
    -nic none &
  qemu_pid=$!

  start=$SECONDS
  timed_out=0
  stalled=0
  while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      timed_out=1
      kill "$qemu_pid" 2>/dev/null || true
      break
    fi
    # A stalled boot is given 60 s to recover.
    if [ $((SECONDS - start)) -ge 60 ] && stalled_before_payload; then
      stalled=1
      kill "$qemu_pid" 2>/dev/null || true
      break
    fi
    sleep 1
  done
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=""
  echo "guest ran for $((SECONDS - start)) s; console log: $log" >&2
}

start_swtpm
boot_guest
if [ "$stalled" -eq 1 ]; then
  echo "$0: the guest kernel stalled before the payload started (soft lockup or RCU stall under TCG);" \
    "booting once more. First console lines of the stalled boot:" >&2
  head -n 15 "$log" >&2
  kill "$swtpm_pid" 2>/dev/null || true
  wait "$swtpm_pid" 2>/dev/null || true
  start_swtpm
  boot_guest
  if [ "$stalled" -eq 1 ]; then
    echo "$0: the guest kernel stalled again before the payload started; last console lines:" >&2
    tail -n 30 "$log" >&2
    exit 125
  fi
fi

if [ "$timed_out" -eq 1 ]; then
  echo "$0: the guest did not finish within $timeout s; last console lines:" >&2
  tail -n 30 "$log" >&2
  exit 124
fi

# Copy /out from the payload disk without mounting it.
debugfs -R "rdump /out $work" "$work/payload.img" >/dev/null 2>&1 || true
if [ -d "$work/out" ]; then
  cp -a "$work/out"/. "$results"/
fi

marker=$(grep -a -o 'IMAROT-GUEST-RESULT rc=[0-9]*' "$log" | tail -n1 || true)
if [ -z "$marker" ]; then
  echo "$0: the guest stopped without reporting a result; last console lines:" >&2
  tail -n 30 "$log" >&2
  exit 125
fi
exit "${marker##*rc=}"

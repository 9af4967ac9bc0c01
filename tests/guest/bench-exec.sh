#!/usr/bin/env bash
# Exec overhead of imarotd on the eBPF LSM source and on the fanotify
# source, in the qemu guest (software emulation), where the BPF LSM is
# active. A benchmark: it prints its figures and fails only when the guest
# or a daemon does.
#
# Usage: bench-exec.sh BUILD_DIR [ROUNDS] [EXECS]   (needs root)
#   BUILD_DIR  a build with imarotd, the tpm2 plugin and the eBPF source.
#              The guest kernel and root image come from BUILD_DIR/guest, where
#              the guest_image test fixture builds them, or are built there.
#   ROUNDS     rounds of one block per case (default 8)
#   EXECS      fork+exec+wait of a copy of /bin/true per block (default 300)
# Policy: measure func=BPRM_CHECK mask=MAY_EXEC and
# measure func=FILE_CHECK mask=^MAY_READ uid=0, as in bench_daemon.
# The daemons' logs and results.txt are kept in BUILD_DIR/guest/bench-exec-results;
# IMAROTD_LOG_LEVEL (default info) sets the daemons' log_level.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  sed -n '7,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
build=$(realpath "$1")
rounds=${2:-8}
execs=${3:-300}
for number in "$rounds" "$execs"; do
  [[ "$number" =~ ^[1-9][0-9]*$ ]] || { echo "$0: '$number' is not a positive number" >&2; exit 2; }
done
imarotd=$build/src/daemon/imarotd
plugin=$build/lib/imarotd/rot/imarot-rot-tpm2.so
for file in "$imarotd" "$plugin"; do
  [ -f "$file" ] || { echo "$0: $file is missing; build the targets imarotd and imarot-rot-tpm2 first" >&2; exit 2; }
done
guest=$build/guest
if [ ! -f "$guest/vmlinuz" ] || [ ! -f "$guest/rootfs.img" ]; then
  mkdir -p "$guest"
  "$here/guest-kernel.sh" "$guest"
  "$here/build-rootfs.sh" --out "$guest/rootfs.img"
fi

work=$(mktemp -d /var/tmp/imarot-bench-exec.XXXXXX)
trap 'rm -rf "$work"' EXIT
payload=$work/payload
results=$guest/bench-exec-results
rm -rf "$results"
mkdir -p "$payload/bin" "$payload/lib/rot" "$results"
install -m 0755 "$here/bench/run" "$payload/run"
install -m 0755 "$imarotd" "$payload/bin/imarotd"
install -m 0644 "$plugin" "$payload/lib/rot/"
gcc -static -O2 -Wall -Wextra -Werror -o "$payload/bin/execloop" "$here/bench/execloop.c"
printf 'measure func=BPRM_CHECK mask=MAY_EXEC\nmeasure func=FILE_CHECK mask=^MAY_READ uid=0\n' >"$payload/policy"
echo "$rounds" >"$payload/rounds"
echo "$execs" >"$payload/execs"
for source in bpf fanotify; do
  cat >"$payload/$source.json" <<JSON
{
  "policy": "/payload/policy",
  "state_directory": "/var/lib/imarotd-$source",
  "runtime_directory": "/run/imarotd-$source",
  "event_source": "$source",
  "filesystems": ["/"],
  "plugin_directory": "/payload/lib/rot",
  "backends": [ { "name": "tpm2", "register": 11, "config": { "tcti": "device:/dev/tpmrm0" } } ],
  "log_level": "${IMAROTD_LOG_LEVEL:-info}",
  "dbus": "none"
}
JSON
done

status=0
"$here/run-guest.sh" --kernel "$guest/vmlinuz" --rootfs "$guest/rootfs.img" \
  --payload "$payload" --results "$results" --log "$work/console.log" \
  --timeout 1800 --append "ima_hash=sha256" || status=$?
if [ "$status" -ne 0 ]; then
  echo "bench-exec: the guest payload failed with status $status" >&2
  tail -n 30 "$work/console.log" >&2 || true
  for log in "$results"/*.log; do [ -f "$log" ] && tail -n 10 "$log" >&2; done
  exit 1
fi
grep -h "bench-exec:\|stopped" "$work/console.log" | grep -v "bench-exec: done" || true
sed 's/^/  round, case, us per exec, daemon CPU ticks in the block, and idle: /' "$results/results.txt"
python3 - "$results/results.txt" "$execs" "$(getconf CLK_TCK)" <<'PY'
import collections, statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
execs, tick_us = int(sys.argv[2]), 1e6 / int(sys.argv[3])
by_round = collections.defaultdict(dict)
cpu = collections.defaultdict(float)
idle = collections.defaultdict(float)
for round_, case, us, ticks, idle_ticks in rows:
    by_round[round_][case] = float(us)
    cpu[case] += int(ticks) * tick_us / execs
    idle[case] += int(idle_ticks) * tick_us / 3e6 * 100
print(f"exec overhead in the guest, {len(by_round)} rounds of {sys.argv[2]} fork+exec+wait per case:")
for case, label in (("off", "imarotd off"), ("bpf", "imarotd on, eBPF LSM source"),
                    ("fanotify", "imarotd on, fanotify source")):
    times = [r[case] for r in by_round.values() if case in r]
    line = f"  {label:30} median {statistics.median(times):8.1f} us/exec"
    if case != "off":
        ratios = [r[case] / r["off"] for r in by_round.values() if case in r and "off" in r]
        median_ratio = statistics.median(ratios)
        line += (f", median of per-round ratios to off {median_ratio:.3f} (overhead {100 * (median_ratio - 1):+.1f}%),"
                 f" range {min(ratios):.3f}-{max(ratios):.3f}, daemon CPU {cpu[case] / len(times):.0f} us/exec,"
                 f" {idle[case] / len(times):.1f}% of a CPU while idle")
    print(line)
print("  target: overhead <= 2% in steady state")
PY

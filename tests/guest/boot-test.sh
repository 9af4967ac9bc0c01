#!/usr/bin/env bash
# guest_imarotd_boot: boots the root image with the imarotd .deb installed
# and systemd.wants=imarotd.service on the kernel command line, so systemd
# starts the unit at boot as it does when the unit is enabled. The ordering
# that matters comes from the unit itself (DefaultDependencies=no,
# Before=sysinit.target), not from which target wants it. boot/run records
# the units' timestamps, the list and the PCRs after multi-user.target.
# The checks below run on the host: imarotd was ready before sysinit.target,
# the services started after it are in the list, and the list replays to
# the vTPM's PCR.
#
# Usage: boot-test.sh GUEST_DIR ROTCTL
#   GUEST_DIR  contains vmlinuz (from guest-kernel.sh) and rootfs-imarotd.img
#              (from imarotd-image.sh); the console log and the results are
#              written there
#   ROTCTL     a rotctl binary of the build, for the host-side verify
set -euo pipefail

here=$(dirname "$(realpath "$0")")
[ $# -eq 2 ] || { echo "usage: boot-test.sh GUEST_DIR ROTCTL" >&2; exit 2; }
guest=$(realpath "$1")
rotctl=$(realpath "$2")
if [ ! -f "$guest/rootfs-imarotd.img" ]; then
  echo "boot-test.sh: $guest/rootfs-imarotd.img not found; build it with" \
    "imarotd-image.sh $guest DEB (the guest_imarotd_image test)" >&2
  exit 1
fi

results=$guest/boot-results
console=$guest/boot-console.log
rm -rf "$results"
mkdir -p "$results"

echo "== booting the guest with systemd.wants=imarotd.service (systemd, TCG)"
status=0
"$here/run-guest.sh" --kernel "$guest/vmlinuz" --rootfs "$guest/rootfs-imarotd.img" --mode systemd \
  --append "systemd.wants=imarotd.service" \
  --payload "$here/boot" --results "$results" --log "$console" --timeout 600 || status=$?
cat "$results/console.log" 2>/dev/null || true

# shellcheck source=host-checks.sh
. "$here/host-checks.sh"
check_guest_status "$status" "$console"

check_steps "$results" cmdline_wants enabled_for_boot_only show_unit is_active timestamps service_starts \
            no_ordering_cycle bus_name digests entries rotctl_log rotctl_verify rotctl_status \
            stop pcrread evmctl_exported evmctl_state

# A restart at boot means the first start failed, for example because the
# TPM device or /var/lib/imarotd was not ready yet. The journal shows why.
grep -qx 'NRestarts=0' "$results/show_unit.txt" 2>/dev/null ||
  fail "imarotd.service was restarted during boot ($(grep '^NRestarts=' "$results/show_unit.txt" 2>/dev/null));" \
    "see $results/journal.txt"

# timestamps.txt: "UNIT READY STARTED", monotonic microseconds, "-" where a
# unit has no such time.
# Prints nothing when the guest wrote no timestamps.
timestamp() {  # UNIT FIELD (2 = ready, 3 = started)
  awk -v unit="$1" -v field="$2" '$1 == unit { print $field }' "$results/timestamps.txt" 2>/dev/null || true
}
seconds() { awk -v usec="$1" 'BEGIN { printf "%.3f s", usec / 1e6 }'; }
is_usec() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

imarotd_started=$(timestamp imarotd.service 3)
imarotd_ready=$(timestamp imarotd.service 2)
sysinit_ready=$(timestamp sysinit.target 2)
if ! is_usec "$imarotd_ready"; then
  fail "imarotd.service has no ready time: '${imarotd_ready}'"
elif ! is_usec "$sysinit_ready"; then
  fail "sysinit.target has no ready time: '${sysinit_ready}'"
else
  echo "imarotd.service started at $(seconds "$imarotd_started"), ready at $(seconds "$imarotd_ready");" \
    "sysinit.target reached at $(seconds "$sysinit_ready")"
  [ "$imarotd_ready" -lt "$sysinit_ready" ] ||
    fail "imarotd.service was ready at $(seconds "$imarotd_ready"), not before sysinit.target at $(seconds "$sysinit_ready")"

  # Services that the list must cover: systemd executed each after imarotd
  # was ready.
  for unit in dbus.service systemd-logind.service imarot-guest-run.service; do
    started=$(timestamp "$unit" 3)
    ready=$(timestamp "$unit" 2)
    if ! is_usec "$started"; then
      fail "$unit has no start time: '${started}'"
      continue
    fi
    if is_usec "$ready"; then
      echo "$unit started at $(seconds "$started"), ready at $(seconds "$ready")"
    else
      echo "$unit started at $(seconds "$started"), not yet ready"
    fi
    [ "$imarotd_ready" -lt "$started" ] ||
      fail "$unit started at $(seconds "$started"), before imarotd.service was ready at $(seconds "$imarotd_ready")"
  done
fi

# Printed, not checked: the services whose main process systemd executed
# before imarotd was ready. Those still running when imarotd started are
# measured by its scan of running programs; journald and udevd are checked
# below.
if is_usec "$imarotd_ready" && [ -s "$results/service_starts.txt" ]; then
  before=$(awk -v ready="$imarotd_ready" '$2 < ready { print $1 }' "$results/service_starts.txt" | grep -vx imarotd.service || true)
  after=$(awk -v ready="$imarotd_ready" '$2 >= ready { print $1 }' "$results/service_starts.txt")
  echo "services executed before imarotd was ready ($(echo "$before" | grep -c . || true)): $(echo $before)"
  echo "services executed after imarotd was ready ($(echo "$after" | grep -c . || true)): $(echo $after)"
fi

# Those services' programs are in the list with the digests the guest
# computed of the files.
while read -r digest path; do
  grep -qE "^[0-9]+ [0-9a-f]{40} ima-ng sha256:$digest $path\$" "$results/rotctl_log.txt" 2>/dev/null ||
    fail "the list has no ima-ng entry 'sha256:$digest $path'"
done < <(cat "$results/digests.txt" 2>/dev/null || true)
[ -s "$results/digests.txt" ] || fail "the guest wrote no digests of the programs to look for"

# One boot_aggregate, and it is the first entry.
aggregates=$(grep -c ' boot_aggregate$' "$results/rotctl_log.txt" 2>/dev/null || true)
[ "$aggregates" = 1 ] || fail "the list has ${aggregates:-no} boot_aggregate entries, expected 1"
head -n 1 "$results/rotctl_log.txt" 2>/dev/null | grep -q ' boot_aggregate$' ||
  fail "the first entry of the list is not boot_aggregate: $(head -n 1 "$results/rotctl_log.txt" 2>/dev/null)"

# The host replays the durable and the exported list, copied when the PCRs
# were read, against them too.
for list in current.bin exported.bin; do
  if ! "$rotctl" verify --input "$results/$list" --pcrs "sha256,$results/pcrs.txt"; then
    fail "rotctl verify on the host rejects the guest's $list against $(grep '^PCR-11' "$results/pcrs.txt" 2>/dev/null)"
  fi
done

entries=$(grep -c '' "$results/rotctl_log.txt" 2>/dev/null || true)
echo "guest: ${entries:-0} entries in the list after boot"
if [ "$failures" -ne 0 ]; then
  echo "guest_imarotd_boot: $failures checks failed (console: $console, results: $results)" >&2
  exit 1
fi
echo "guest_imarotd_boot: passed"

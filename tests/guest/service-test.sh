#!/usr/bin/env bash
# guest_imarotd_service: installs the imarotd .deb into the guest root, boots
# it with systemd as PID 1, and runs service/run there. That payload starts,
# queries, reloads, restarts and kills imarotd.service with its installed
# default configuration, then runs it once on the fanotify source. The checks
# below run on the host, on what the guest wrote.
#
# Usage: service-test.sh GUEST_DIR DEB ROTCTL
#   GUEST_DIR  contains vmlinuz (from guest-kernel.sh) and rootfs-imarotd.img,
#              the root image with the package (from imarotd-image.sh)
#   DEB        the imarotd package to install, or a directory with one
#              imarotd_*.deb in it
#   ROTCTL     a rotctl binary of the build, for the host-side verify
set -euo pipefail

here=$(dirname "$(realpath "$0")")
guest=$(realpath "$1")
deb=$(realpath "$2")
if [ -d "$deb" ]; then
  deb=$(ls "$deb"/imarotd_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { echo "service-test.sh: no imarotd_*.deb in $2" >&2; exit 1; }
fi
rotctl=$(realpath "$3")
# The payload is service/ plus the package, which the guest installs again
# and removes to run the maintainer scripts under a running systemd.
payload=$(mktemp -d /var/tmp/imarot-service-payload.XXXXXX)
results=$(mktemp -d /var/tmp/imarot-service.XXXXXX)
trap 'rm -rf "$payload" "$results"' EXIT
cp -a "$here/service"/. "$payload"/
cp "$deb" "$payload/imarotd.deb"

if [ ! -f "$guest/rootfs-imarotd.img" ]; then
  echo "service-test.sh: $guest/rootfs-imarotd.img not found; build it with" \
    "imarotd-image.sh $guest $2 (the guest_imarotd_image test)" >&2
  exit 1
fi

echo "== booting the guest (systemd, TCG)"
console=$guest/service-console.log
status=0
"$here/run-guest.sh" --kernel "$guest/vmlinuz" --rootfs "$guest/rootfs-imarotd.img" --mode systemd \
  --payload "$payload" --results "$results" --log "$console" --timeout 600 || status=$?
cat "$results/console.log" 2>/dev/null || true
# Keep the guest's results next to its console log for a failed run.
rm -rf "$guest/service-results"
cp -a "$results" "$guest/service-results"

# shellcheck source=host-checks.sh
. "$here/host-checks.sh"
check_guest_status "$status" "$console"

# Every step must have run and succeeded; a missing line means the payload
# stopped early.
check_steps "$results" unit_verify unit_security start is_active bus_name status show_start \
            run_root run_user run_env read_root entries_start \
            busctl_introspect busctl_entry_count busctl_event_source busctl_read_entries \
            rotctl_status rotctl_pcrs rotctl_log_1 rotctl_verify_1 reload is_active_reload \
            restart is_active_restart bus_name_restart run_restart entries_restart rotctl_log_2 rotctl_verify_2 \
            kill restarted_after_kill bus_name_kill show_kill run_kill entries_kill rotctl_log_3 rotctl_verify_3 \
            rotctl_status_end stop pcrread evmctl_exported evmctl_state \
            fanotify_start fanotify_bus_name fanotify_event_source fanotify_run fanotify_entries fanotify_log \
            fanotify_verify fanotify_stop enable verify_enabled \
            reinstall_start reinstall restarted_by_postinst remove removed_inactive removed_disabled \
            lists_kept

# systemctl status: active, with the daemon's status line.
grep -q 'Active: active (running)' "$results/status.txt" 2>/dev/null ||
  fail "systemctl status does not show 'active (running)'"
grep -q 'Status: "Measuring on ' "$results/status.txt" 2>/dev/null ||
  fail "systemctl status does not show the daemon's 'Measuring on ...' status line"

# The probes are in the list with the SHA-256 of their contents.
check_entry() {
  local log=$1 path=$2 source=$3
  local digest
  digest=$(sha256sum "$source" | cut -d' ' -f1)
  grep -qE "^[0-9]+ [0-9a-f]{40} ima-ng sha256:$digest $path\$" "$results/$log" 2>/dev/null ||
    fail "$log has no ima-ng entry 'sha256:$digest $path'"
}
check_entry rotctl_log_1.txt /root/imarot-probe-start.sh "$payload/probe-start.sh"
check_entry rotctl_log_1.txt /var/tmp/imarot-probe-user.sh "$payload/probe-user.sh"
check_entry rotctl_log_1.txt /root/imarot-data.txt "$payload/data.txt"
check_entry rotctl_log_2.txt /root/imarot-probe-restart.sh "$payload/probe-restart.sh"
check_entry rotctl_log_3.txt /root/imarot-probe-kill.sh "$payload/probe-kill.sh"
check_entry fanotify_log.txt /root/imarot-probe-fanotify.sh "$payload/probe-fanotify.sh"
grep -qE ' /usr/bin/env$' "$results/rotctl_log_1.txt" 2>/dev/null || fail "rotctl_log_1.txt has no entry for /usr/bin/env"
grep -q '"fanotify"' "$results/fanotify_event_source.txt" 2>/dev/null ||
  fail "the fanotify configuration did not run on fanotify: $(cat "$results/fanotify_event_source.txt" 2>/dev/null)"

# The list continues across the restart and the SIGKILL: each later list
# starts with the earlier one, and there is one boot_aggregate.
is_prefix() { cmp -s -n "$(stat -c %s "$1")" "$1" "$2"; }
is_prefix "$results/rotctl_log_1.txt" "$results/rotctl_log_2.txt" ||
  fail "the list after the restart does not start with the list before it"
is_prefix "$results/rotctl_log_2.txt" "$results/rotctl_log_3.txt" ||
  fail "the list after the SIGKILL does not start with the list before it"
is_prefix "$results/rotctl_log_3.txt" "$results/fanotify_log.txt" ||
  fail "the list on the fanotify source does not start with the list before it"
aggregates=$(grep -c ' boot_aggregate$' "$results/rotctl_log_3.txt" 2>/dev/null || true)
[ "$aggregates" = 1 ] || fail "the final list has ${aggregates:-no} boot_aggregate entries, expected 1"

# systemd restarted the killed daemon once, under a new PID.
grep -qx 'NRestarts=1' "$results/show_kill.txt" 2>/dev/null ||
  fail "NRestarts after the SIGKILL is not 1: $(cat "$results/show_kill.txt" 2>/dev/null)"

# The host replays the durable and the exported list, copied when the PCRs
# were read, against them too.
for list in current.bin exported.bin; do
  if ! "$rotctl" verify --input "$results/$list" --pcrs "sha256,$results/pcrs.txt"; then
    fail "rotctl verify on the host rejects the guest's $list against $(grep '^PCR-11' "$results/pcrs.txt" 2>/dev/null)"
  fi
done

exposure=$(sed -n 's/.*Overall exposure level for imarotd.service: \([0-9.]*\).*/\1/p' \
  "$results/unit_security.txt" 2>/dev/null || true)
source=$(sed -n 's/.*"\(bpf\|fanotify\)".*/\1/p' "$results/busctl_event_source.txt" 2>/dev/null || true)
echo "guest: event source ${source:-unknown}, systemd-analyze security exposure ${exposure:-unknown}"
if [ "$failures" -ne 0 ]; then
  echo "guest_imarotd_service: $failures checks failed (console: $console, results: $guest/service-results)" >&2
  exit 1
fi
echo "guest_imarotd_service: passed"

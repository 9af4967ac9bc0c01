#!/usr/bin/env bash
# imarotd's main job, for real. The script builds, starts a software TPM
# (swtpm) and a private D-Bus bus, and runs imarotd with the default policy on
# this machine's filesystems. It then executes and reads some files and shows
# what rotctl reports: status, the measurement list, the PCR and the
# verification of the list against it. Finally evmctl checks the list
# independently. Needs root.
#
# Usage: sudo scripts/demo.sh
# Everything it starts is stopped at the end; the list and logs stay in the
# work directory it prints.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: must run as root (fanotify needs CAP_SYS_ADMIN); try: sudo $0" >&2
  exit 2
fi
if ! missing=$(scripts/install-deps.sh --check); then
  echo "demo.sh: $missing; installing them"
  scripts/install-deps.sh
fi

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target imarotd rotctl imarot-rot-tpm2
imarotd=$top/$build/src/daemon/imarotd
rotctl=$top/$build/src/rotctl/rotctl

work=$(mktemp -d /var/tmp/imarotd-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}
trap cleanup EXIT

show() {
  echo
  echo "\$ $*"
  "$@"
}

echo "== work directory: $work"

# A TPM 2.0 with sha1 and sha256 banks on a unix socket.
mkdir -p "$work/tpm"
swtpm_setup --tpm2 --tpmstate "$work/tpm" --pcr-banks sha1,sha256 --createek >/dev/null
swtpm socket --tpm2 --tpmstate dir="$work/tpm" --flags not-need-init,startup-clear \
  --server type=unixio,path="$work/swtpm.sock" --ctrl type=unixio,path="$work/swtpm.sock.ctrl" \
  --pid file="$work/swtpm.pid" --log file="$work/swtpm.log" --daemon
pids+=("$(cat "$work/swtpm.pid")")
tcti="swtpm:path=$work/swtpm.sock"

# A private bus for imarotd's D-Bus service, so the demo leaves the
# system bus alone.
cat > "$work/bus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
  "https://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=$work/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="org.imarot1"/>
    <allow send_destination="*" eavesdrop="false"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
XML
dbus-daemon --config-file="$work/bus.conf" --fork --print-pid > "$work/bus.pid"
pids+=("$(cat "$work/bus.pid")")
bus="unix:path=$work/bus.sock"

cat > "$work/imarotd.json" <<JSON
{
  "policy": "$top/config/imarotd.policy",
  "template": "ima-ng",
  "hash_algorithm": "sha256",
  "state_directory": "$work/state",
  "runtime_directory": "$work/run",
  "plugin_directory": "$top/$build/lib/imarotd/rot",
  "dbus": "$bus",
  "backends": [ { "name": "tpm2", "register": 10, "config": { "tcti": "$tcti" } } ]
}
JSON

"$imarotd" --config "$work/imarotd.json" > "$work/imarotd.log" 2>&1 &
daemon=$!
pids=("$daemon" "${pids[@]}")
for _ in $(seq 100); do
  [ -e "$work/run/status.json" ] && break
  if ! kill -0 "$daemon" 2>/dev/null; then
    echo "demo.sh: imarotd exited:" >&2
    cat "$work/imarotd.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "== imarotd is running (pid $daemon); its log:"
cat "$work/imarotd.log"

echo
echo "== executing and reading files as root"
cat > "$work/hello.sh" <<'SH'
#!/bin/sh
echo "hello from a measured script"
SH
chmod +x "$work/hello.sh"
show "$work/hello.sh"
show sha256sum /etc/os-release
show env true
echo "changed" >> "$work/hello.sh"
show cat "$work/hello.sh"
sleep 1

echo
echo "== rotctl through the daemon; each rotctl run is itself executed and measured, so the"
echo "   entry count and the PCR move on between the commands below"
show "$rotctl" status --bus "$bus"
echo
echo "\$ $rotctl log --bus $bus | grep -e boot_aggregate -e $work -e os-release"
"$rotctl" log --bus "$bus" | grep -e boot_aggregate -e "$work" -e os-release
show "$rotctl" pcrs --bus "$bus" --pcr 10
show "$rotctl" verify --bus "$bus"

echo
echo "== stopping imarotd, then checking the list with evmctl against tpm2_pcrread"
kill -TERM "$daemon"
wait "$daemon" || true
tpm2_pcrread -T "$tcti" sha1:10+sha256:10 > "$work/pcrs.out"
cat "$work/pcrs.out"
# evmctl reads 'PCR-NN: HEX' lines from PCR 00 on; only PCR 10 is extended.
for bank in sha1 sha256; do
  hex=$(awk -v bank="$bank:" '$1 == bank { getline; sub("0x", "", $2); print tolower($2) }' "$work/pcrs.out")
  zeros=$(printf '%0*d' "${#hex}" 0)
  for i in $(seq 0 23); do
    if [ "$i" -eq 10 ]; then printf 'PCR-%02d: %s\n' "$i" "$hex"; else printf 'PCR-%02d: %s\n' "$i" "$zeros"; fi
  done > "$work/pcrs.$bank"
done
show evmctl ima_measurement --ignore-violations --pcrs sha1,"$work/pcrs.sha1" --pcrs sha256,"$work/pcrs.sha256" \
  "$work/state/current.bin"
echo
echo "== done: the list is $work/state/current.bin, the daemon's log $work/imarotd.log"

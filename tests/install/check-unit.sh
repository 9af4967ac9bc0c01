#!/usr/bin/env bash
# Installs the build into a scratch root with DESTDIR and checks the installed
# imarotd.service with systemd-analyze: "verify" must pass, and the offline
# "security" review must rate its exposure at MAX_EXPOSURE or lower.
# Needs no running systemd.
#
# Usage: check-unit.sh BUILD_DIR MAX_EXPOSURE UNIT_DIR
#   MAX_EXPOSURE such as 3.0; UNIT_DIR is where the build installs the unit.
set -euo pipefail

build=$1
max_exposure=$2
unit_dir=$3
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

DESTDIR=$root cmake --install "$build" >/dev/null
unit=$root$unit_dir/imarotd.service
if [ ! -f "$unit" ]; then
  echo "FAIL: imarotd.service was not installed into $unit_dir" >&2
  exit 1
fi

# ExecReload= runs /bin/kill, which the package takes from procps (a declared
# dependency), so the scratch root gets the build machine's copy.
install -D /bin/kill "$root/bin/kill"

echo "== systemd-analyze verify $unit_dir/imarotd.service"
if ! systemd-analyze verify --man=no --root="$root" "$unit"; then
  echo "FAIL: systemd-analyze verify reported errors for imarotd.service" >&2
  exit 1
fi

echo "== systemd-analyze security --offline=true $unit_dir/imarotd.service"
report=$(systemd-analyze security --offline=true --root="$root" --no-pager "$unit" 2>&1 || true)
echo "$report" | grep -v '✓' || true
exposure=$(echo "$report" | sed -n 's/.*Overall exposure level for imarotd.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
  echo "FAIL: no overall exposure level in the systemd-analyze security output" >&2
  exit 1
fi
if ! awk -v e="$exposure" -v max="$max_exposure" 'BEGIN { exit !(e <= max) }'; then
  echo "FAIL: exposure $exposure is above $max_exposure" >&2
  exit 1
fi
echo "PASS: exposure $exposure (at most $max_exposure)"

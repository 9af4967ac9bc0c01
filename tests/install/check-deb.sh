#!/usr/bin/env bash
# Builds the .deb with CPack from a configured and built tree and checks its
# control fields, conffiles, maintainer scripts and file list with dpkg-deb.
# Prints the path of the package it built on the last line.
#
# Usage: check-deb.sh BUILD_DIR OUTPUT_DIR PLUGIN_DIR UNIT_DIR
#   PLUGIN_DIR  the plugin directory compiled into imarotd and rotctl
#   UNIT_DIR    the systemd unit directory of the build
# Exits 77 (skipped) when the build was not configured for /usr.
set -euo pipefail

build=$1
output=$2
plugin_dir=$3
unit_dir=$4

prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ "$prefix" != "/usr" ]; then
  echo "SKIP: the .deb is built from a tree configured with -DCMAKE_INSTALL_PREFIX=/usr; this one has $prefix"
  exit 77
fi

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

rm -rf "$output"
mkdir -p "$output"
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$output" >"$output/cpack.log" 2>&1; then
  cat "$output/cpack.log" >&2
  echo "FAIL: cpack -G DEB failed" >&2
  exit 1
fi
deb=$(ls "$output"/imarotd_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
  cat "$output/cpack.log" >&2
  echo "FAIL: cpack wrote no imarotd_*.deb into $output" >&2
  exit 1
fi
echo "== $deb"
dpkg-deb --info "$deb"

# Control fields.
[ "$(dpkg-deb --field "$deb" Package)" = "imarotd" ] || fail "Package is not imarotd"
[ "$(dpkg-deb --field "$deb" Architecture)" = "$(dpkg --print-architecture)" ] ||
  fail "Architecture is not $(dpkg --print-architecture)"
[ -n "$(dpkg-deb --field "$deb" Version)" ] || fail "Version is empty"
[ -n "$(dpkg-deb --field "$deb" Maintainer)" ] || fail "Maintainer is empty"
depends=$(dpkg-deb --field "$deb" Depends)
depends_names=$(echo "$depends" | tr ',' '\n' | awk '{ print $1 }')
# dpkg-shlibdeps finds the libraries the binaries and plugins link; the rest
# are declared by hand.
for package in libc6 libstdc++6 libssl3 libsystemd0 libtss2-esys-3.0.2-0 libtss2-tctildr0 libcbor0.8 \
               libtss2-tcti-device0 tpm-udev procps; do
  echo "$depends_names" | grep -qxF "$package" || fail "Depends does not list $package: $depends"
done

# Conffiles and maintainer scripts.
control=$output/control
dpkg-deb --control "$deb" "$control"
for conffile in /etc/imarotd/imarotd.json /etc/imarotd/imarotd.policy; do
  grep -qx "$conffile" "$control/conffiles" || fail "conffiles does not list $conffile"
done
for script in postinst prerm postrm; do
  [ -x "$control/$script" ] || fail "maintainer script $script is missing or not executable"
  sh -n "$control/$script" || fail "maintainer script $script has a syntax error"
done

# Files: each installed where systemd, dbus-daemon, man and bash-completion
# look for it, and the plugins where imarotd looks for them.
contents=$(dpkg-deb --contents "$deb" | awk '{ print $NF }' | sed 's|^\./|/|')
for file in /usr/sbin/imarotd /usr/bin/rotctl \
            "$plugin_dir/imarot-rot-tpm2.so" \
            "$unit_dir/imarotd.service" /usr/lib/tmpfiles.d/imarotd.conf /usr/lib/sysusers.d/imarotd.conf \
            /usr/share/dbus-1/system.d/org.imarot1.conf /usr/share/dbus-1/system-services/org.imarot1.service \
            /etc/imarotd/imarotd.json /etc/imarotd/imarotd.policy \
            /usr/share/man/man8/imarotd.8 /usr/share/man/man1/rotctl.1 /usr/share/man/man5/imarotd.json.5 \
            /usr/share/bash-completion/completions/rotctl; do
  echo "$contents" | grep -qx "$file" || fail "the package does not contain $file"
done
if echo "$contents" | grep -q '^/usr/local/'; then
  fail "the package installs under /usr/local: $(echo "$contents" | grep '^/usr/local/' | head -n 3)"
fi
# The malformed plugins of the integration tests must stay out.
if echo "$contents" | grep -Eq 'imarot-rot-(wrongabi|misnamed|shorttable|noentry)'; then
  fail "the package contains a test plugin"
fi

# imarotd looks for plugins in the directory the package fills. "--check"
# names the directory it searched when the plugin is not there, as on a
# build machine without the package.
extracted=$output/root
dpkg-deb --extract "$deb" "$extracted"
printf '{ "policy": "%s", "backends": [{ "name": "tpm2" }] }\n' "$extracted/etc/imarotd/imarotd.policy" \
  >"$output/check.json"
check_status=0
env -u IMAROTD_PLUGIN_DIR "$extracted/usr/sbin/imarotd" --check --config "$output/check.json" \
  >"$output/check.txt" 2>&1 || check_status=$?
if [ "$check_status" -ne 0 ] && ! grep -qF "in '$plugin_dir'" "$output/check.txt"; then
  fail "the packaged imarotd does not search $plugin_dir for plugins: $(cat "$output/check.txt")"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures checks failed" >&2
  exit 1
fi
echo "PASS: $deb"
echo "$deb"

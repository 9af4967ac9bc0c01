#!/usr/bin/env bash
# Build the guest's root filesystem: a minimal Debian 12 with systemd and
# dbus, the libraries imarotd links against, tpm2-tools and evmctl, as an
# ext4 image that run-guest.sh attaches as an NVMe disk.
#
# Usage: build-rootfs.sh --out IMAGE [--deb FILE]... [--tree DIR]... [--include PKG,...]
#   --deb FILE      install this package with apt inside the root, so its
#                   dependencies come from the Debian archive (repeatable)
#   --tree DIR      copy DIR's contents over the root, e.g. a DESTDIR of
#                   `cmake --install` (repeatable)
#   --include PKGS  further Debian packages, comma-separated
#   --mirror URL    Debian mirror (default: the first deb.debian.org-style
#                   URI in this machine's apt sources)
set -euo pipefail

here=$(dirname "$(realpath "$0")")
out=""
debs=()
trees=()
extra=""
mirror=""

usage() {
  sed -n '6,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --deb) debs+=("$(realpath "$2")"); shift 2 ;;
    --tree) trees+=("$(realpath "$2")"); shift 2 ;;
    --include) extra="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    *) echo "$0: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -n "$out" ] || { echo "$0: --out IMAGE is required" >&2; usage; }
for deb in ${debs[@]+"${debs[@]}"}; do
  [ -f "$deb" ] || { echo "$0: --deb $deb: no such file" >&2; exit 2; }
done
for tree in ${trees[@]+"${trees[@]}"}; do
  [ -d "$tree" ] || { echo "$0: --tree $tree: not a directory" >&2; exit 2; }
done

if [ -z "$mirror" ]; then
  mirror=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources |
    grep -v security | grep -oE 'https?://[^ ]+' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

# Runtime libraries of imarotd, rotctl and the plugins, and the tools the
# guest tests run.
packages=systemd,systemd-sysv,dbus,udev,kmod,util-linux,procps,e2fsprogs,attr,busybox
packages+=,tpm2-tools,ima-evm-utils,openssl,libssl3,libspdlog1.10,libfmt9,libbpf1,libcbor0.8,libsystemd0
packages+=,libtss2-esys-3.0.2-0,libtss2-tctildr0,libtss2-tcti-device0,libtss2-rc0,libtss2-mu0
[ -z "$extra" ] || packages+=",$extra"

work=$(mktemp -d "$(dirname "$out")/rootfs.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root="$work/root"

hooks=()
for deb in ${debs[@]+"${debs[@]}"}; do
  name=$(basename "$deb")
  hooks+=(--customize-hook="upload '$deb' /tmp/$name")
  hooks+=(--customize-hook="chroot \"\$1\" apt-get install -y -q --no-install-recommends /tmp/$name")
  hooks+=(--customize-hook="rm -f \"\$1/tmp/$name\"")
done

mmdebstrap --variant=minbase --include="$packages" --quiet \
  --customize-hook='echo imarot-guest > "$1/etc/hostname"' \
  --customize-hook='passwd --root "$1" --delete root' \
  ${hooks[@]+"${hooks[@]}"} \
  bookworm "$root" "$mirror"

for tree in ${trees[@]+"${trees[@]}"}; do
  cp -a "$tree"/. "$root"/
done

# The test runner: booted as init= or started by systemd, it runs
# /payload/run and powers the guest off.
install -D -m 0755 "$here/guest-init" "$root/usr/local/sbin/imarot-guest-run"
install -D -m 0644 "$here/imarot-guest-run.service" "$root/etc/systemd/system/imarot-guest-run.service"
ln -sf /etc/systemd/system/imarot-guest-run.service \
  "$root/etc/systemd/system/multi-user.target.wants/imarot-guest-run.service"
# A login prompt on the serial console would only interleave with the
# test's output.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
printf '/dev/root / ext4 rw 0 1\n' > "$root/etc/fstab"

size_mb=$(( $(du -sm "$root" | cut -f1) + 384 ))
rm -f "$out"
mkfs.ext4 -q -L imarot-root -d "$root" "$out" "${size_mb}M" >/dev/null
echo "built $out (${size_mb} MiB)"

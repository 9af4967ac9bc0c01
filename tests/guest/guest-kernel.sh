#!/usr/bin/env bash
# Fetch Debian 12's cloud kernel package and extract the kernel image.
#
# Usage: guest-kernel.sh OUTDIR
# Writes OUTDIR/vmlinuz and OUTDIR/kernel-version. The cloud flavour has the
# BPF LSM, kernel IMA, the TPM TIS driver, NVMe and ext4 built in, so the
# guest boots from an NVMe disk without an initramfs or modules.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$(realpath -m "$1")
mkdir -p "$out"

if [ -s "$out/vmlinuz" ] && [ -s "$out/kernel-version" ]; then
  exit 0
fi

# linux-image-cloud-amd64 is a metapackage; its Depends names the versioned
# kernel package that contains the image.
package=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$package" ]; then
  echo "$0: no linux-image-*-cloud-amd64 package found in the apt cache; run apt-get update" >&2
  exit 1
fi

work=$(mktemp -d "$out/kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current directory; _apt cannot write
# into a root-owned temporary directory, so the download runs as root.
(cd "$work" && apt-get download -o APT::Sandbox::User=root "$package" >/dev/null)
dpkg-deb -x "$work"/"$package"_*.deb "$work/root"
image=$(ls "$work"/root/boot/vmlinuz-* | head -n1)
install -m 0644 "$image" "$out/vmlinuz"
basename "$image" | sed 's/^vmlinuz-//' > "$out/kernel-version"

#!/usr/bin/env bash
# guest_imarotd_image: builds the guest root with the imarotd .deb installed
# (GUEST_DIR/rootfs-imarotd.img). guest_imarotd_service and guest_imarotd_boot
# both boot this image. run-guest.sh opens it with snapshot=on, so neither
# test changes it.
#
# Usage: imarotd-image.sh GUEST_DIR DEB
#   GUEST_DIR  where the image is written
#   DEB        the imarotd package, or a directory with one imarotd_*.deb in it
set -euo pipefail

here=$(dirname "$(realpath "$0")")
[ $# -eq 2 ] || { echo "usage: imarotd-image.sh GUEST_DIR DEB" >&2; exit 2; }
guest=$(realpath -m "$1")
deb=$(realpath "$2")
if [ -d "$deb" ]; then
  deb=$(ls "$deb"/imarotd_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { echo "imarotd-image.sh: no imarotd_*.deb in $2" >&2; exit 1; }
fi

mkdir -p "$guest"
echo "== building $guest/rootfs-imarotd.img with $(basename "$deb")"
"$here/build-rootfs.sh" --out "$guest/rootfs-imarotd.img" --deb "$deb"

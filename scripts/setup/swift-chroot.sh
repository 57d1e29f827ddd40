#!/usr/bin/env bash
# Sets up Swift 6.0.3 with XCTest in a Debian 13 (trixie) debootstrap chroot, cached.
# Debian 12 has no Swift package; trixie's `swiftlang` has Swift 6.0.3 and XCTest. The chroot
# lives in APOYO_SWIFT_CHROOT (default /var/cache/apoyo/swift-chroot, ≈3.3 GB, ≈6 min to build);
# a completion marker makes a second run instant. Run Swift there with in-swift-chroot.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

dir="${APOYO_SWIFT_CHROOT:-/var/cache/apoyo/swift-chroot}"
marker="$dir/.apoyo-swift-ready"
suite="${APOYO_SWIFT_SUITE:-trixie}"
mirror="${APOYO_SWIFT_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$marker" ]; then
    setup_log "swift chroot ready (cached) at $dir: $(cat "$marker")"
    exit 0
fi
setup_require_root "the Swift chroot (debootstrap, chroot, mount)"
setup_apt_install debootstrap

# A half-built chroot (no marker) from an interrupted run is started over.
if [ -e "$dir" ]; then
    setup_log "removing incomplete chroot at $dir"
    for m in proc dev/pts dev; do mountpoint -q "$dir/$m" && umount -l "$dir/$m"; done
    rm -rf --one-file-system "$dir"
fi
mkdir -p "$(dirname "$dir")"

setup_log "debootstrap --variant=minbase $suite $dir $mirror (a few minutes)"
debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 \
    || { tail -20 "$dir.debootstrap.log" >&2; setup_die "debootstrap $suite (log: $dir.debootstrap.log)"; }

cleanup() { mountpoint -q "$dir/proc" && umount -l "$dir/proc" || true; }
trap cleanup EXIT
mount -t proc proc "$dir/proc"
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true

setup_log "in chroot: apt-get install swiftlang libc6-dev gcc (≈3 GB)"
chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends swiftlang libc6-dev gcc && apt-get clean' \
    </dev/null >"$dir.apt.log" 2>&1 \
    || { tail -20 "$dir.apt.log" >&2; setup_die "apt-get install swiftlang in the chroot (log: $dir.apt.log)"; }

version="$(chroot "$dir" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root swift --version 2>&1 | head -1)" \
    || setup_die "swift --version in the chroot"
case "$version" in
    *"Swift version 6."*) ;;
    *) setup_die "unexpected swift version in the chroot: $version" ;;
esac
printf '%s\n' "$version" >"$marker"
setup_log "swift chroot ready at $dir: $version"

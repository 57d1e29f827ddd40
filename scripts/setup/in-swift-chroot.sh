#!/usr/bin/env bash
# Runs a command inside the Swift chroot (scripts/setup/swift-chroot.sh) with a project folder
# bind-mounted at the same absolute path, as the working directory:
#
#   scripts/setup/in-swift-chroot.sh <dir> <cmd...>     e.g.  ... bindings/swift swift test
#
# /proc, /dev (with /dev/pts, /dev/shm) and <dir> are mounted in a private mount namespace
# (unshare -m), so nothing leaks to the host or to a concurrent run; a trap unmounts them anyway.
# The environment is cleared except PATH, HOME, LANG, TERM, CI and APOYO_*/DATABASE_URL.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

chroot_dir="${APOYO_SWIFT_CHROOT:-/var/cache/apoyo/swift-chroot}"
[ "$#" -ge 2 ] || setup_die "usage: in-swift-chroot.sh <dir> <cmd...>"
project="$(cd "$1" && pwd)" || setup_die "no such folder: $1"
shift
[ -f "$chroot_dir/.apoyo-swift-ready" ] || setup_die "no Swift chroot at $chroot_dir: run scripts/setup/swift-chroot.sh"
setup_require_root "running in the Swift chroot (mount, chroot)"

if [ "${APOYO_IN_SWIFT_NS:-}" != 1 ]; then
    # Re-run this script in its own mount namespace; mounts die with it.
    exec env APOYO_IN_SWIFT_NS=1 unshare --mount --propagation private -- "$0" "$project" "$@"
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # bind SRC DEST [--rbind]
    mkdir -p "$2"
    mount "${3:---bind}" "$1" "$2" || setup_die "mount $1 on $2"
    mounted+=("$2")
}
mount -t proc proc "$chroot_dir/proc" || setup_die "mount /proc in the chroot"
mounted+=("$chroot_dir/proc")
bind /dev "$chroot_dir/dev" --rbind
bind "$project" "$chroot_dir$project"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true

pass=()
while IFS='=' read -r name _; do
    case "$name" in APOYO_IN_SWIFT_NS) ;; APOYO_*|DATABASE_URL|CI) pass+=("$name=${!name}") ;; esac
done < <(env)
set +e
chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "${pass[@]}" \
    sh -c 'cd "$1" && shift && exec "$@"' in-swift-chroot "$project" "$@"
rc=$?
set -e
exit "$rc"

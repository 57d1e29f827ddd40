# Shared helpers for the setup scripts: loud logging, failure and a once-per-run apt-get update.
# Sourced, not run. Every setup script prints what it does and exits non-zero with a reason.

setup_log() { printf '[setup] %s\n' "$*" >&2; }
setup_die() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }

# setup_require_root WHAT: installing packages needs root; say which setup needs it.
setup_require_root() {
    [ "$(id -u)" -eq 0 ] || setup_die "$1 needs root (apt-get install); run as root or install it by hand"
}

# setup_apt_update: runs `apt-get update` at most once per hour (stamp file), so scripts
# called one after another do not refresh the package lists several times.
setup_apt_update() {
    local stamp=/var/lib/apt/periodic/apoyo-update-stamp
    if [ -f "$stamp" ] && [ -n "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        return 0
    fi
    setup_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || setup_die "apt-get update"
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
}

# setup_apt_install PKG...: installs the Debian packages that are not installed yet.
setup_apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && { setup_log "already installed: $*"; return 0; }
    setup_require_root "installing ${missing[*]}"
    setup_apt_update
    setup_log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        </dev/null >/dev/null || setup_die "apt-get install ${missing[*]}"
}

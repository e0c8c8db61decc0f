# Shell functions shared by the CI scripts; sourced, never run.  Callers
# use bash with "set -Eeuo pipefail" and run as root.
#
#   installed PKG             is the Debian package installed?
#   readme_command KEY        the README's quick-start line containing KEY
#                             ("demo" or "pytest"), verbatim
#   dovecot_dialect VERSION   2.3 or 2.4: which configuration dialect a
#                             Dovecot version speaks (2.4 and 2.5 share one)
#   host_debian_mirror        the Debian mirror the host's apt uses (what
#                             debian_chroot takes unless
#                             CPOPLIB_DEBIAN_MIRROR says otherwise)
#   debian_chroot SUITE PKG...
#                             builds a minimal Debian chroot in $CHROOT
#                             (debootstrap --variant=minbase, then apt-get
#                             install PKG... inside it) and registers
#                             chroot_cleanup as the EXIT trap
#   chroot_copy_checkout      the checkout's tracked files into $CHROOT/src
#   chroot_run SCRIPT [NAME=VALUE...]
#                             bash -euo pipefail -c SCRIPT inside the chroot,
#                             in a clean environment plus NAME=VALUE...
#   chroot_cleanup            kills what still runs inside (by PID),
#                             unmounts, removes the tree
#
# This is the one place that knows how to build a chroot: the CPython
# 3.14/3.15 job (.ci/sid-pythons) and the Dovecot job (.ci/dovecot-other-
# version) both use it.

# Under pipefail, "producer | grep -q" can fail at random: grep exits at
# the first match and the producer may die of SIGPIPE.  Capture first.
installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

# The README's quick start, taken from README.rst itself so the two can
# never drift apart: the line with "demo" installs cpoplib and runs the
# demo, the line with "pytest" installs the test extras and runs the tests.
readme_command() {
    local section
    section=$(sed -n '/^Quick start/,/^Usage/p' "${CPOPLIB_ROOT:-.}/README.rst")
    printf '%s\n' "$section" \
        | awk -v key="$1" '/^    pip install/ && index($0, key) && !done { sub(/^ +/, ""); print; done = 1 }'
}

dovecot_dialect() {
    case "$1" in
        2.3.*) echo 2.3 ;;
        2.4.*|2.5.*) echo 2.4 ;;
        *) echo "unknown" ;;
    esac
}

CHROOT=
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The Debian mirror the host's apt already uses (deb822 .sources files,
# then one-line sources.list entries): the first URI ending in /debian.
host_debian_mirror() {
    local uris
    uris=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | sed -n 's/^URIs:[[:space:]]*//p'; \
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
           | sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p')
    printf '%s\n' $uris | awk '/\/debian\/?$/ { print; exit }'
}

debian_chroot() {
    local suite=$1
    shift
    local mirror=${CPOPLIB_DEBIAN_MIRROR:-$(host_debian_mirror)}
    mirror=${mirror:-http://deb.debian.org/debian}
    CHROOT=$(mktemp -d "/tmp/cpoplib-chroot-$suite.XXXXXX")
    chmod 755 "$CHROOT"    # it becomes "/": Dovecot's unprivileged users need it
    trap chroot_cleanup EXIT
    trap 'exit 130' INT TERM

    # debootstrap checks the Release file's signature, not its Valid-Until
    # date (checked in debootstrap 1.0.128 and 1.0.145), so an expired sid
    # Release only matters to apt, below.
    echo "debootstrap $suite (minbase) from $mirror"
    if ! debootstrap --variant=minbase "$suite" "$CHROOT" "$mirror" \
            > "$CHROOT.log" 2>&1; then
        tail -n 30 "$CHROOT.log" >&2
        return 1
    fi

    mount -t proc proc "$CHROOT/proc"
    # pseudo-terminals, for the tests that drive a program through one: a
    # private devpts instance, and /dev/ptmx pointing into it
    mkdir -p "$CHROOT/dev/pts"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts \
        "$CHROOT/dev/pts"
    rm -f "$CHROOT/dev/ptmx"
    ln -s pts/ptmx "$CHROOT/dev/ptmx"
    cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
    # the tests connect to "localhost"; a minbase tree has no /etc/hosts
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        > "$CHROOT/etc/hosts"
    # sid's Release file may be past its Valid-Until date on the mirror;
    # nothing is installed from it that its signature does not cover
    cat > "$CHROOT/etc/apt/apt.conf.d/90cpoplib-ci" <<'EOF'
Acquire::Check-Valid-Until "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
EOF
    # packages must not start services (Dovecot's postinst would)
    printf '#!/bin/sh\nexit 101\n' > "$CHROOT/usr/sbin/policy-rc.d"
    chmod 755 "$CHROOT/usr/sbin/policy-rc.d"

    echo "apt-get install (in the chroot): $*"
    if ! chroot "$CHROOT" env -i PATH="$CHROOT_PATH" DEBIAN_FRONTEND=noninteractive \
            sh -c 'apt-get update -q && apt-get install -y -q "$@"' sh "$@" \
            >> "$CHROOT.log" 2>&1; then
        tail -n 30 "$CHROOT.log" >&2
        return 1
    fi
    rm -f "$CHROOT.log"

    # the host's CA bundle, so pip in the chroot trusts what the host
    # trusts (a TLS-inspecting proxy's CA, say); else the chroot's own
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$CHROOT/root/host-ca.crt"
    else
        cp "$CHROOT/etc/ssl/certs/ca-certificates.crt" "$CHROOT/root/host-ca.crt"
    fi
}

chroot_copy_checkout() {
    local root=${CPOPLIB_ROOT:-$PWD}
    mkdir -p "$CHROOT/src"
    # the checkout's tracked files as they are in the work tree
    git -C "$root" ls-files -z | tar -C "$root" --null -T - -cf - \
        | tar -xf - -C "$CHROOT/src"
}

# A clean environment: the host's PIP_* settings name paths (wheel
# directories, a local index) the chroot does not have.
chroot_run() {
    local script=$1
    shift
    chroot "$CHROOT" env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
        PIP_CERT=/root/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@" \
        bash -euo pipefail -c "$script"
}

chroot_cleanup() {
    local rc=$?
    [ -n "$CHROOT" ] && [ -d "$CHROOT" ] || return "$rc"
    # anything a failed test left running inside (a Dovecot, say), by PID
    local p root
    for p in /proc/[0-9]*; do
        root=$(readlink "$p/root" 2>/dev/null) || continue
        if [ "$root" = "$CHROOT" ]; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    # unmount whatever is mounted below it, deepest first
    local mounts m
    mounts=$(awk -v r="$CHROOT" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r)
    for m in $mounts; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    mounts=$(awk -v r="$CHROOT" 'index($2, r "/") == 1 { print $2 }' /proc/mounts)
    if [ -n "${CPOPLIB_CHROOT_KEEP:-}" ]; then
        echo "kept $CHROOT" >&2
    elif [ -n "$mounts" ]; then
        # never remove a tree while anything is still mounted inside it
        echo "leaving $CHROOT in place: still mounted: $mounts" >&2
    else
        rm -rf "$CHROOT"
    fi
    rm -f "$CHROOT.log"
    return "$rc"
}

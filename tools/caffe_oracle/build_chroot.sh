#!/usr/bin/env bash
# Build (idempotently) a Debian bullseye chroot that holds BVLC Caffe (python3-caffe, CPU, OpenBLAS).
#
# Bullseye is the last Debian release that packages Caffe (1.0.0+git20180821.99bd997-8); the host may be
# newer. Needs root and the host's Debian mirror, which is read from the host's apt sources, so no host
# name is written into the repository.
#
# Usage: tools/caffe_oracle/build_chroot.sh [CHROOT_DIR]     (default: <repo>/.oracle/chroot, git-ignored)
# Measured: about 1 minute and about 830 MB.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chroot_dir="${1:-${ORACLE_CHROOT:-$repo/.oracle/chroot}}"
stamp="$chroot_dir/.caffe-oracle-ready"

if [ "$(id -u)" -ne 0 ]; then
    echo "build_chroot.sh: must run as root (debootstrap and chroot need it)" >&2
    exit 1
fi

if [ -f "$stamp" ] && chroot "$chroot_dir" python3 -c 'import caffe' 2>/dev/null; then
    echo "caffe oracle chroot already built at $chroot_dir"
    exit 0
fi

# The first Debian archive URI found in the host's apt sources (deb822 *.sources or one-line *.list);
# security, updates and backports archives are skipped since debootstrap needs the main archive.
host_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" \
               | grep -v -e security -e backports | grep -E '/debian/?$' | head -n 1)" || true
        if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' "$f" \
               | grep -v -e security -e backports | grep -E '/debian/?$' | head -n 1)" || true
        if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
    done
    return 1
}

mirror="${ORACLE_MIRROR:-}"
if [ -z "$mirror" ]; then
    if ! mirror="$(host_mirror)"; then
        echo "build_chroot.sh: no Debian archive URI found in /etc/apt/sources.list{,.d/*}; set ORACLE_MIRROR" >&2
        exit 1
    fi
fi
echo "debian mirror (from host apt sources): $mirror"

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

start=$(date +%s)
mkdir -p "$(dirname "$chroot_dir")"
if [ ! -x "$chroot_dir/usr/bin/apt-get" ]; then
    # A half-made chroot from an interrupted run is started over; never while something (the repository
    # bind mount of run.sh) is mounted below it.
    if grep -q " $chroot_dir/" /proc/mounts; then
        echo "build_chroot.sh: something is mounted under $chroot_dir; unmount it first" >&2
        exit 1
    fi
    rm -rf "$chroot_dir"
    debootstrap --variant=minbase bullseye "$chroot_dir" "$mirror"
fi

# Mirror for bullseye itself (debootstrap wrote one; keep it in step with the host's).
echo "deb $mirror bullseye main" > "$chroot_dir/etc/apt/sources.list"
chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get update -q
chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends python3-caffe python3-numpy libopenblas0-pthread
chroot "$chroot_dir" apt-get clean

chroot "$chroot_dir" python3 -c 'import caffe, numpy; print("caffe", caffe.__version__, "numpy", numpy.__version__)'
touch "$stamp"
echo "built $chroot_dir in $(( $(date +%s) - start )) s, $(du -sh --one-file-system "$chroot_dir" | cut -f1)"

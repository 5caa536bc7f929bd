#!/usr/bin/env bash
# Run a Python script with the Caffe of the oracle chroot (see build_chroot.sh).
#
# The repository is bind-mounted at /repo inside the chroot, together with /proc and /dev, in a private
# mount namespace (unshare), so every mount disappears with the process, even when it is killed.
# The script runs with /repo as working directory; paths given to it are relative to the repository root.
#
# Usage: tools/caffe_oracle/run.sh SCRIPT.py [ARGS...]
#   ORACLE_CHROOT   chroot directory (default <repo>/.oracle/chroot)
#   OPENBLAS_NUM_THREADS  BLAS threads inside Caffe (default 1: reproducible goldens)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chroot_dir="${ORACLE_CHROOT:-$repo/.oracle/chroot}"

if [ $# -lt 1 ]; then
    echo "usage: $0 SCRIPT.py [ARGS...]" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (mount and chroot need it)" >&2
    exit 1
fi
if [ ! -f "$chroot_dir/.caffe-oracle-ready" ]; then
    echo "run.sh: no Caffe chroot at $chroot_dir; build it with tools/caffe_oracle/build_chroot.sh" >&2
    exit 1
fi

mkdir -p "$chroot_dir/repo"
exec unshare --mount --propagation private /bin/bash -euc '
    chroot_dir="$1"; repo="$2"; shift 2
    mount --bind "$repo" "$chroot_dir/repo"
    mount -t proc proc "$chroot_dir/proc"
    mount --bind /dev "$chroot_dir/dev"
    exec chroot "$chroot_dir" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PYTHONPATH=/repo PYTHONDONTWRITEBYTECODE=1 GLOG_minloglevel="${GLOG_minloglevel:-2}" \
        OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" \
        /bin/sh -c "cd /repo && exec python3 \"\$@\"" python3 "$@"
' oracle "$chroot_dir" "$repo" "$@"

#!/usr/bin/env bash
# Undo setup.sh: unmount $MFS_BASE/mnt, stop the chunkservers and the master with their own
# "stop" command (it reads the pid from the lock file in DATA_PATH and waits for a clean exit),
# then the pid setup.sh recorded if that process is still there. No pkill, no killall.
#   MFS_BASE=/tmp/mfs bash teardown.sh           # stop, keep the data
#   MFS_BASE=/tmp/mfs bash teardown.sh --purge   # stop, then delete $MFS_BASE
set -uo pipefail

MFS_BASE=${MFS_BASE:-/tmp/pydfs-bench-moosefs}
MNT=$MFS_BASE/mnt

if mountpoint -q "$MNT"; then  # mfsmount is a FUSE daemon: unmounting makes it exit
    fusermount3 -u "$MNT" 2>/dev/null || fusermount -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null \
        || { sleep 2; umount -l "$MNT"; }
    echo "unmounted $MNT"
fi

stop_daemon() {  # name binary cfg
    local name=$1 bin=$2 cfg=$3
    [ -f "$cfg" ] || return 0
    if "$bin" -c "$cfg" test >/dev/null 2>&1; then
        "$bin" -c "$cfg" stop >/dev/null 2>&1 && echo "$name stopped"
    fi
    local pidf=$MFS_BASE/log/$name.pid
    if [ -f "$pidf" ]; then
        local pid; pid=$(cat "$pidf")
        if kill -0 "$pid" 2>/dev/null && grep -q "$bin" "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            echo "$name killed (pid $pid)"
        fi
        rm -f "$pidf"
    fi
}
stop_daemon cs1 mfschunkserver "$MFS_BASE/cs1/etc/mfschunkserver.cfg"
stop_daemon cs2 mfschunkserver "$MFS_BASE/cs2/etc/mfschunkserver.cfg"
stop_daemon master mfsmaster "$MFS_BASE/etc/mfsmaster.cfg"

if [ "${1:-}" = "--purge" ]; then
    rm -rf --one-file-system "$MFS_BASE"
    echo "removed $MFS_BASE"
fi
exit 0

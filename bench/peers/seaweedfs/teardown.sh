#!/usr/bin/env bash
# Undo setup.sh: unmount, stop every process by the pid it recorded (SIGTERM, then SIGKILL after
# 25 s), and with SW_WIPE=1 delete $SW_ROOT. No pkill, no killall.
set -uo pipefail
R=${SW_ROOT:-/tmp/pydfs-bench-seaweedfs}; RUN=$R/run
if mountpoint -q "$R/mnt" 2>/dev/null; then
  fusermount3 -u "$R/mnt" 2>/dev/null || fusermount3 -uz "$R/mnt"
fi
stop() {  # SIGTERM to each named process at once, then wait; SIGKILL whatever is left after 25 s
  local pids=() p n
  for n in "$@"; do
    [ -e "$RUN/$n.pid" ] || continue; p=$(cat "$RUN/$n.pid"); rm -f "$RUN/$n.pid"
    grep -q weed "/proc/$p/cmdline" 2>/dev/null || continue  # gone, or the pid is another's now
    kill -TERM "$p" 2>/dev/null && pids+=("$p")
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 125); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  done
  return 0
}
stop mount
stop filer volume1 volume2 master  # the filer takes up to ~15 s (graceful gRPC stop)
rm -f "$RUN"/*.sock
[ "${SW_WIPE:-0}" = 1 ] && rm -rf --one-file-system "$R"
exit 0

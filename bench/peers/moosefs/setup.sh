#!/usr/bin/env bash
# MooseFS for the side-by-side benchmark (bench/run.py --peers): 1 master + 2 chunkservers on
# 127.0.0.1, mounted with mfsmount at $MFS_BASE/mnt, replication goal 2. Installs Debian's
# moosefs-* packages if missing (needs root). Undo with teardown.sh.
#
#   MFS_BASE=/tmp/mfs MFS_PORT0=19419 bash setup.sh
#
# Knobs (defaults in brackets):
#   MFS_BASE [/tmp/pydfs-bench-moosefs]  everything lives here (configs, metadata, chunks, logs, mnt)
#   MFS_PORT0 [19419]    the master uses PORT0..PORT0+2, the chunkservers PORT0+3 and PORT0+4
#   MFS_CS_LIMIT [-5GiB] mfshdd.cfg space limit; negative = space to leave free on the file system
#   MFS_CS_FSYNC [0]     HDD_FSYNC_BEFORE_CLOSE of the chunkservers (MooseFS's default: 0, no fsync)
#   MFS_NICE [0]         nice level of every daemon and of the mount (MooseFS's default: -19)
#   MFS_GOAL [2]         replication goal, set recursively on the mount's root
set -euo pipefail

MFS_BASE=${MFS_BASE:-/tmp/pydfs-bench-moosefs}
P0=${MFS_PORT0:-19419}
ML_PORT=$P0              # master <- metaloggers and tools
CS_PORT=$((P0 + 1))      # master <- chunkservers
CL_PORT=$((P0 + 2))      # master <- clients (mfsmount)
CS1_PORT=$((P0 + 3))     # chunkserver 1 <- clients
CS2_PORT=$((P0 + 4))     # chunkserver 2 <- clients
CS_LIMIT=${MFS_CS_LIMIT:--5GiB}
CS_FSYNC=${MFS_CS_FSYNC:-0}
NICE=${MFS_NICE:-0}
GOAL=${MFS_GOAL:-2}
MNT=$MFS_BASE/mnt

# --- 1. packages (the packaged services are not started: the daemons below have their own configs)
need=()
for p in moosefs-master moosefs-chunkserver moosefs-client moosefs-cli; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}" ||
        { apt-get -q update && apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}"; } ||
        { echo "ERROR: apt-get could not install ${need[*]}" >&2; exit 1; }
fi

# --- 2. directories and configs
mkdir -p "$MFS_BASE"/{etc,master,log,mnt} "$MFS_BASE"/cs{1,2}/{etc,data,hdd}
chown -R mfs:mfs "$MFS_BASE/master" "$MFS_BASE"/cs{1,2}/{data,hdd}

cat >"$MFS_BASE/etc/mfsmaster.cfg" <<CFG
WORKING_USER = mfs
SYSLOG_IDENT = mfsbench-master
NICE_LEVEL = $NICE
DATA_PATH = $MFS_BASE/master
EXPORTS_FILENAME = $MFS_BASE/etc/mfsexports.cfg
TOPOLOGY_FILENAME = $MFS_BASE/etc/mfstopology.cfg
MATOML_LISTEN_HOST = 127.0.0.1
MATOML_LISTEN_PORT = $ML_PORT
MATOCS_LISTEN_HOST = 127.0.0.1
MATOCS_LISTEN_PORT = $CS_PORT
MATOCL_LISTEN_HOST = 127.0.0.1
MATOCL_LISTEN_PORT = $CL_PORT
# MooseFS refuses 127.x.x.x between chunkservers and the master (both sides check). Every packet
# still stays on loopback: the master rewrites a chunkserver's address 127.0.0.1 -> 0.0.0.0
# (REMAP_*) and the chunkservers reach the master at 0.0.0.0, which Linux routes over lo.
REMAP_BITS = 32
REMAP_SOURCE_IP_CLASS = 127.0.0.1
REMAP_DESTINATION_IP_CLASS = 0.0.0.0
CFG
# loopback clients only; root stays root (the benchmark runs as root)
echo "127.0.0.1  /  rw,alldirs,admin,maproot=0:0" >"$MFS_BASE/etc/mfsexports.cfg"
echo "127.0.0.1  1" >"$MFS_BASE/etc/mfstopology.cfg"
# a new master starts from an empty metadata file
if ! ls "$MFS_BASE"/master/metadata.mfs* >/dev/null 2>&1; then
    install -o mfs -g mfs -m 644 /var/lib/mfs/metadata.mfs.empty "$MFS_BASE/master/metadata.mfs"
fi

for i in 1 2; do
    port_var=CS${i}_PORT
    cat >"$MFS_BASE/cs$i/etc/mfschunkserver.cfg" <<CFG
WORKING_USER = mfs
SYSLOG_IDENT = mfsbench-cs$i
NICE_LEVEL = $NICE
DATA_PATH = $MFS_BASE/cs$i/data
HDD_CONF_FILENAME = $MFS_BASE/cs$i/etc/mfshdd.cfg
HDD_FSYNC_BEFORE_CLOSE = $CS_FSYNC
MASTER_HOST = 0.0.0.0
MASTER_PORT = $CS_PORT
BIND_HOST = 127.0.0.1
CSSERV_LISTEN_HOST = 127.0.0.1
CSSERV_LISTEN_PORT = ${!port_var}
CFG
    echo "$MFS_BASE/cs$i/hdd $CS_LIMIT" >"$MFS_BASE/cs$i/etc/mfshdd.cfg"  # a directory as the disk
done

# --- 3. daemons: in the foreground (-f), in the background, so that their logs land in
# $MFS_BASE/log; each also writes its pid into a lock file that its own "stop" command reads.
start_daemon() {  # name binary cfg [extra args]
    local name=$1 bin=$2 cfg=$3; shift 3
    if "$bin" -c "$cfg" test >/dev/null 2>&1; then
        echo "$name already running"
        return
    fi
    setsid nohup "$bin" "$@" -f -c "$cfg" start >>"$MFS_BASE/log/$name.log" 2>&1 </dev/null &
    echo $! >"$MFS_BASE/log/$name.pid"
    for _ in $(seq 50); do
        "$bin" -c "$cfg" test >/dev/null 2>&1 && { echo "$name started (pid $(cat "$MFS_BASE/log/$name.pid"))"; return; }
        sleep 0.2
    done
    echo "ERROR: $name did not start: $(tail -1 "$MFS_BASE/log/$name.log")" >&2
    exit 1
}
start_daemon master mfsmaster "$MFS_BASE/etc/mfsmaster.cfg" -a
start_daemon cs1 mfschunkserver "$MFS_BASE/cs1/etc/mfschunkserver.cfg"
start_daemon cs2 mfschunkserver "$MFS_BASE/cs2/etc/mfschunkserver.cfg"

# wait until the master sees both chunkservers with their space (reported a few seconds after
# they register; until then a write could fail or land on one only)
n=0
for _ in $(seq 60); do
    # -p: a tab-separated line per chunkserver: ... ip port id labels version load maintenance
    # chunks used_bytes total_bytes ...
    n=$(mfscli -H 127.0.0.1 -P "$CL_PORT" -SCS -p 2>/dev/null |
        awk -F'\t' -v a="$CS1_PORT" -v b="$CS2_PORT" '($3 == a || $3 == b) && $11 > 0' | wc -l)
    [ "$n" -ge 2 ] && break
    sleep 1
done
[ "$n" -ge 2 ] || { echo "ERROR: the master sees $n chunkservers with space, not 2" >&2; exit 1; }
echo "the master sees $n chunkservers with space"

# --- 4. mount
if mountpoint -q "$MNT"; then
    echo "already mounted: $MNT"
else
    mfsmount "$MNT" -H 127.0.0.1 -P "$CL_PORT" -o "mfsnice=$NICE" >>"$MFS_BASE/log/mfsmount.log" 2>&1
    for _ in $(seq 50); do mountpoint -q "$MNT" && break; sleep 0.2; done
    mountpoint -q "$MNT" || { echo "ERROR: mfsmount failed: $(tail -1 "$MFS_BASE/log/mfsmount.log")" >&2; exit 1; }
    echo "mounted $MNT"
fi

# the master's totals (statfs) lag the per-chunkserver figures; wait until df shows both
want=$(mfscli -H 127.0.0.1 -P "$CL_PORT" -SCS -p 2>/dev/null |
       awk -F'\t' -v a="$CS1_PORT" -v b="$CS2_PORT" '$3 == a || $3 == b { s += $11 } END { printf "%.0f", s }')
for _ in $(seq 60); do
    [ "$(df -B1 --output=size "$MNT" | tail -1)" -ge "$want" ] && break
    sleep 1
done

# --- 5. replication goal 2 (every chunk on 2 chunkservers); trash time 0, so that deleted
# files skip the trash (MooseFS keeps them a day by default)
mfssetgoal -r "$GOAL" "$MNT" >/dev/null
mfssettrashtime -r 0 "$MNT" >/dev/null
echo "version MooseFS $(dpkg-query -W -f='${Version}' moosefs-master)"
echo "goal $GOAL, chunkserver fsync $CS_FSYNC, nice $NICE"

#!/usr/bin/env bash
# A one-node Slurm cluster on localhost for the Slurm tests (Debian: slurm-wlm + munge, run as root, no systemd).
#   .ci/slurm-up.sh up     install if needed, write slurm.conf, start munged, slurmctld, slurmd; wait for idle
#   .ci/slurm-up.sh down   stop the daemons this script started
# State, spool, logs and pid files live under $BENCH_SLURM_DIR (default /tmp/bench-slurm). The configuration is
# written to /etc/slurm/slurm.conf only when that file is missing or was written by this script.
set -euo pipefail
DIR="${BENCH_SLURM_DIR:-/tmp/bench-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by bench .ci/slurm-up.sh"

down() {
    for name in slurmd slurmctld; do
        if [ -f "$DIR/$name.pid" ]; then
            kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
            rm -f "$DIR/$name.pid"
        fi
    done
}

up() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    fi
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        echo "slurm-up: $CONF exists and was not written by this script; using the cluster it describes" >&2
        sinfo >/dev/null && exit 0
        exit 1
    fi
    # munge: a key (owner munge, 0400) and its run folder, then the daemon as the munge user
    if [ ! -f /etc/munge/munge.key ]; then
        mungekey -c 2>/dev/null || /usr/sbin/mungekey -c
    fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    fi
    down
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    local host node mem
    host="$(hostname)"
    # slurmd -C prints "NodeName=... CPUs=... RealMemory=..."; keep the CPU layout, a little less memory
    node="$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' -e 's/ UpTime=.*//')"
    mem="$(slurmd -C | head -1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mem=$(( mem * 9 / 10 ))
    mkdir -p /etc/slurm
    cat > "$CONF" <<CONFEOF
$MARK
ClusterName=benchci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
MinJobAge=600
KillWait=10
NodeName=localhost NodeHostname=$host $node RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONFEOF
    slurmctld -c
    slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "slurm-up: node idle ($(sinfo -h -o '%c CPUs'))" >&2
            return 0
        fi
        sleep 1
    done
    echo "slurm-up: the node did not become idle; see $DIR/log" >&2
    sinfo >&2 || true
    return 1
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

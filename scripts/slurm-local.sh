#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests (tests/test_slurm.py), without systemd.
#
#   apt-get install -y slurm-wlm munge      # Debian bookworm: Slurm 22.05
#   bash scripts/slurm-local.sh start       # munged, slurmctld, slurmd; waits until the node is idle
#   bash scripts/slurm-local.sh stop
#
# Needs root. State, spool and logs live in $SLURM_LOCAL_DIR (default /tmp/reorder-slurm); the
# config is written there and linked to /etc/slurm/slurm.conf so that sbatch, squeue and
# scontrol find it. NodeName=localhost with this machine's CPUs and memory; proctrack/linuxproc,
# task/none, no accounting.
set -euo pipefail
DIR="${SLURM_LOCAL_DIR:-/tmp/reorder-slurm}"
CONF=/etc/slurm/slurm.conf

stop() {
    for name in slurmd slurmctld; do
        if [[ -f "$DIR/$name.pid" ]]; then
            kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
            rm -f "$DIR/$name.pid"
        fi
    done
    if [[ -f "$DIR/munged.pid" ]]; then
        kill "$(cat "$DIR/munged.pid")" 2>/dev/null || true
        rm -f "$DIR/munged.pid"
    fi
}

start() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "slurm-local.sh: needs root" >&2
        exit 1
    fi
    for tool in munged slurmctld slurmd sbatch; do
        command -v "$tool" >/dev/null || { echo "slurm-local.sh: $tool not found (apt-get install -y slurm-wlm munge)" >&2; exit 1; }
    done
    stop
    mkdir -p "$DIR"/{state,spool,log} /etc/slurm /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R root:root /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
    munged --force --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log"
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=reorder-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MinJobAge=30
MaxArraySize=1001
DefMemPerCPU=1024
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    ln -sf "$DIR/slurm.conf" "$CONF"
    slurmctld -c -i
    slurmd -N localhost
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
            echo "slurm-local: up ($cpus CPUs, ${mem} MB; $DIR)"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm-local.sh: the node did not come up; see $DIR/log" >&2
    sinfo >&2 || true
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

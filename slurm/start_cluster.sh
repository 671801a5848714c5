#!/usr/bin/env bash
# start_cluster.sh - a real one-node SLURM cluster on this machine, for rcs's SLURM tests and CI.
#
#   sudo bash slurm/start_cluster.sh          # idempotent: safe to run again at any time
#   bash slurm/stop_cluster.sh                # stops the daemons started here (by PID file)
#
# Daemons: munged (authentication), MariaDB + slurmdbd (accounting: submitit reads job states
# with `sacct`; without it a cancelled or killed job is never seen as finished and
# job.result() waits forever), slurmctld (controller) and slurmd (the node "localhost").
# No systemd (daemons are started directly) and no cgroups (proctrack/linuxproc, task/none),
# so it also works in containers. Debian/Ubuntu packages are installed with apt when missing.
#
# Settings (environment):
#   RCS_SLURM_PARTITION   partition name (default: debug)
#   RCS_SLURM_CLUSTER     ClusterName (default: rcslocal)
#   RCS_SLURM_NO_APT=1    never run apt-get; fail when a package is missing
#   RCS_SLURM_TIMEOUT     seconds to wait for each daemon (default: 60)
set -euo pipefail

PARTITION="${RCS_SLURM_PARTITION:-debug}"
CLUSTER="${RCS_SLURM_CLUSTER:-rcslocal}"
WAIT="${RCS_SLURM_TIMEOUT:-60}"
NODE=localhost
PIDS=/run/slurm                     # PID files of slurmctld, slurmd, slurmdbd
LOGS=/var/log/slurm
SLURM_CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_SOCK=/run/mysqld/mysqld.sock
DB_PID=/run/mysqld/mysqld.pid
DB_USER_PASS=rcs-local-accounting   # MariaDB account reachable only through the local socket

say() { echo "[start_cluster] $*"; }
fail() { echo "[start_cluster] ERROR: $*" >&2; exit 1; }

running() {  # running PIDFILE: the file names a live process
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

until_ok() {  # until_ok WHAT CMD...: retry CMD for $WAIT seconds
    local what=$1; shift
    local deadline=$((SECONDS + WAIT))
    while ! "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            fail "$what did not come up within ${WAIT}s (logs in $LOGS)"
        fi
        sleep 0.5
    done
}

[ "$(id -u)" -eq 0 ] || fail "run as root (the daemons need it)"

# ------------------------------------------------------------------------------ packages
need=()
for pkg in munge slurm-client slurmctld slurmd slurmdbd mariadb-server; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        need+=("$pkg")
    fi
done
if [ ${#need[@]} -gt 0 ]; then
    [ "${RCS_SLURM_NO_APT:-0}" = 1 ] && fail "missing packages: ${need[*]} (RCS_SLURM_NO_APT=1)"
    command -v apt-get >/dev/null || fail "missing packages ${need[*]} and no apt-get"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$PIDS" "$LOGS" /etc/slurm /var/spool/slurmctld /var/spool/slurmd

# ------------------------------------------------------------------------------ munge
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    head -c 1024 /dev/urandom > /etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
chmod 0711 /var/lib/munge
if ! running /run/munge/munged.pid; then
    rm -f /run/munge/munge.socket.2*
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
until_ok "munged" bash -c 'munge -n | unmunge'

# ------------------------------------------------------------------------------ slurm.conf
cpus=$(nproc)
# slurmd drains a node that reports less memory than RealMemory: announce 90% of it.
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
conf=$(cat <<EOF
# Written by rcs slurm/start_cluster.sh: one node (localhost), no systemd, no cgroups.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
JobRequeue=1
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=300
Waittime=0
NodeName=$NODE NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ ! -f "$SLURM_CONF" ] || [ "$(cat "$SLURM_CONF")" != "$conf" ]; then
    printf '%s\n' "$conf" > "$SLURM_CONF"
    chmod 0644 "$SLURM_CONF"
    changed=1
    say "wrote $SLURM_CONF ($cpus CPUs, ${mem_mb} MB, partition $PARTITION)"
fi

# ------------------------------------------------------------------------------ MariaDB
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    say "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! running "$DB_PID"; then
    say "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket="$DB_SOCK" \
        --pid-file="$DB_PID" --bind-address=127.0.0.1 </dev/null >>"$LOGS/mariadbd.log" 2>&1 &
fi
until_ok "mariadbd" mariadb-admin --socket="$DB_SOCK" ping
mariadb --socket="$DB_SOCK" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_USER_PASS';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# ------------------------------------------------------------------------------ slurmdbd
dbd=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$PIDS/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_USER_PASS
EOF
)
if [ ! -f "$DBD_CONF" ] || [ "$(cat "$DBD_CONF")" != "$dbd" ]; then
    printf '%s\n' "$dbd" > "$DBD_CONF"
fi
chmod 0600 "$DBD_CONF"   # slurmdbd refuses a config others can read
if ! running "$PIDS/slurmdbd.pid"; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd
fi
until_ok "slurmdbd" sacctmgr -n list cluster

# ------------------------------------------------------------------------------ slurmctld, slurmd
restart_on_change() {  # restart_on_change NAME PIDFILE: stop a daemon whose config changed
    local pid
    if [ $changed = 1 ] && running "$2"; then
        pid=$(cat "$2")
        say "slurm.conf changed: stopping $1 (pid $pid) to restart it"
        kill "$pid"
        until_ok "$1 to stop" bash -c "! kill -0 $pid"
    fi
}
restart_on_change slurmctld "$PIDS/slurmctld.pid"
if ! running "$PIDS/slurmctld.pid"; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
until_ok "slurmctld" scontrol ping
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

restart_on_change slurmd "$PIDS/slurmd.pid"
if ! running "$PIDS/slurmd.pid"; then
    say "starting slurmd (node $NODE)"
    /usr/sbin/slurmd -N "$NODE"   # -N: the host's own name need not be "localhost"
fi
node_ready() { sinfo -h -n "$NODE" -o %t | grep -qE '^(idle|mix|alloc)'; }
for _ in $(seq 1 20); do node_ready && break; sleep 0.5; done
if ! node_ready; then   # drained or down after an earlier unclean stop
    say "node state is '$(sinfo -h -n "$NODE" -o %t)': resuming it"
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
fi
until_ok "node $NODE" node_ready
say "ready: $(sinfo -h -o '%P %a nodes=%D state=%t cpus=%c mem=%mMB')"

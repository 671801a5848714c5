#!/usr/bin/env bash
# stop_cluster.sh - stop the local cluster of start_cluster.sh, each daemon by its PID file
# (never by process name): slurmd, slurmctld, slurmdbd, mariadbd, munged. Idempotent.
# RCS_SLURM_WIPE=1 also removes the controller's saved state (queued jobs, job ids).
set -uo pipefail

say() { echo "[stop_cluster] $*"; }

stop() {  # stop NAME PIDFILE
    local pid
    if [ ! -s "$2" ]; then say "$1: not running (no $2)"; return 0; fi
    pid=$(cat "$2")
    if ! kill -0 "$pid" 2>/dev/null; then
        say "$1: not running (stale pid $pid)"; rm -f "$2"; return 0
    fi
    say "$1: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$1: still running after 30 s, sending SIGKILL to $pid"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$2"
}

stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd /run/slurm/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
if [ "${RCS_SLURM_WIPE:-0}" = 1 ]; then
    say "removing controller and node state"
    rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
fi
say "stopped"

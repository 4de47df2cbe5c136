#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for integration tests that submit real `sbatch` job
# arrays. Uses Debian 12's packages (slurm-wlm 22.05, munge):
#   sudo apt-get install -y slurm-wlm munge
# No systemd needed (the daemons are started directly, so this works in containers), no database,
# no cgroups.
#
#   scripts/slurm-local.sh start    # write the config, start munged, slurmctld and slurmd, wait
#                                   # until the node is idle (idempotent: does nothing when up)
#   scripts/slurm-local.sh stop     # cancel leftover jobs, stop the three daemons
#   scripts/slurm-local.sh status   # "up" (exit 0) or "down" (exit 1), with the node's state
#   scripts/slurm-local.sh clean    # stop, then delete the cluster's state, logs and job records
#
# The config goes to the default location, /etc/slurm/slurm.conf, so clients (sbatch, squeue,
# scontrol, sinfo) need no environment. An existing slurm.conf not written by this script is left
# alone unless FORCE=1.
#
# Everything else lives under $SLURM_LOCAL_DIR (default /var/spool/slurm-local):
#   ctld/ (slurmctld's state), d/ (slurmd's spool), log/{slurmctld,slurmd}.log, run/*.pid and
#   jobcomp.txt, one line per finished job or array task (see "Job states" below).
#
# Job states (tested with slurm-wlm 22.05.8): without an accounting database `sacct` fails
# (exit 1, "Slurm accounting storage is disabled"); `sacct -c` reads jobcomp.txt but only as root
# (it opens the file for appending), lists raw job ids (43, not 42_2) and warns "Unknown type
# ArrayJobId". What works:
#   - pending and running tasks:  squeue -h -r -j JOBID -o '%i %T'
#                                   42_2 PENDING / 42_0 RUNNING  (without -r: 42_[2-3%2] PENDING)
#   - finished tasks as well:     squeue -h -r -t all -j JOBID -o '%i %T'
#                                   42_0 COMPLETED / 42_2 FAILED / 42_1 CANCELLED
#                                 or scontrol -o show job JOBID (one line per task: JobId=43
#                                 ArrayJobId=42 ArrayTaskId=2 ... JobState=FAILED ... ExitCode=3:0)
#                                 Both know a job until MinJobAge ($MIN_JOB_AGE, default 3600 s)
#                                 after it ends, across restarts (slurmctld saves its state);
#                                 after that: "slurm_load_jobs error: Invalid job id specified",
#                                 exit 1. A pending task cancelled before it started vanishes.
#   - any time later:             jobcomp.txt, a line per finished task, space-separated Key=Value:
#                                 JobId=43 UserId=root(0) GroupId=root(0) Name=NAME JobState=FAILED
#                                 Partition=debug TimeLimit=... StartTime=... EndTime=... NodeList=
#                                 NodeCnt= ProcCnt= WorkDir= ReservationName= Tres= Account= QOS=
#                                 WcKey= Cluster=unknown SubmitTime= EligibleTime= ArrayJobId=42
#                                 ArrayTaskId=2 DerivedExitCode=0:0 ExitCode=3:0
#                                 (Array* only for array tasks; Name and WorkDir are not escaped).
#
# Run as root, or as a user with sudo (then only the privileged steps use sudo).
set -euo pipefail

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

DIR=${SLURM_LOCAL_DIR:-/var/spool/slurm-local}
CONF=/etc/slurm/slurm.conf
MARKER="# Written by dynlab scripts/slurm-local.sh"
MIN_JOB_AGE=${MIN_JOB_AGE:-3600}
START_TIMEOUT=${START_TIMEOUT:-60}
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_LOG=/var/log/munge/munged.log
CTLD_PID=$DIR/run/slurmctld.pid
SLURMD_PID=$DIR/run/slurmd.pid

# The node is this machine under its short hostname (what slurmd looks for in the config when
# started without -N), reached over loopback so that the name needs no DNS or /etc/hosts entry.
NODE=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)

die() { echo "slurm-local: $*" >&2; exit 1; }
log() { echo "slurm-local: $*" >&2; }

# Processes are looked up in /proc: procps (ps, pgrep) is not in a bare Debian image, and a
# container's init may never reap a dead daemon, whose zombie would pass `kill -0`.

# The state letter (R, S, D, Z, ...) of process $1, empty if there is none.
proc_state() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; st=${st##*) }; echo "${st%% *}"; }

# Whether process $1 exists and is not a zombie.
pid_alive() { local st; st=$(proc_state "$1"); [ -n "$st" ] && [ "$st" != Z ]; }

# Whether the process in pid file $1 is alive.
alive() { local pid; pid=$($sudo cat "$1" 2>/dev/null) && [ -n "$pid" ] && pid_alive "$pid"; }

# Live processes whose name (comm) is $1.
pids_named() {
    local f pid
    for f in /proc/[0-9]*/comm; do
        pid=${f#/proc/}
        pid=${pid%/comm}
        if [ "$(cat "$f" 2>/dev/null)" = "$1" ] && pid_alive "$pid"; then echo "$pid"; fi
    done
}

# The children of process $1.
children() {
    local f pid st ppid
    for f in /proc/[0-9]*/stat; do
        st=$(cat "$f" 2>/dev/null) || continue
        read -r _ ppid _ <<<"${st##*) }"
        pid=${f#/proc/}
        [ "$ppid" = "$1" ] && echo "${pid%/stat}"
    done
    return 0
}

# The node's state as sinfo reports it ("idle", "mix", "alloc", "down*", ...), empty if slurmctld
# does not answer.
node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true; }

write_config() {
    local cpus mem tmp
    cpus=$(nproc)
    # RealMemory: 90% of the machine's memory in MiB. Memory is not a scheduled resource here
    # (CR_CPU, not CR_CPU_Memory), so this only has to be plausible.
    mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
$MARKER; rerunning it overwrites this file.
# One node ($NODE, this machine), one partition (debug); no accounting database, no cgroups.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)

# Daemons run as root (no slurm user setup needed; jobs still run as their submitter).
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge

StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups (containers rarely have a writable cgroup tree): track a job's processes through
# /proc, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true

# Schedule single CPUs (CR_CPU rather than CR_Core, which would hand out whole cores, i.e. both
# hyperthreads), so that on a 2-CPU machine two 1-CPU array tasks run at once.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1

# Short timeouts, so that a test sees failures and state changes quickly.
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
KillWait=5
Waittime=0
# A node that was down (e.g. slurmd restarted late) comes back by itself when slurmd registers.
ReturnToService=2
# Finished jobs (and array tasks) stay known to squeue -t all and scontrol show job this long
# (seconds; Slurm's default is 300).
MinJobAge=$MIN_JOB_AGE

# No accounting database (sacct does not work); the final state of every job and array task is
# appended to a text file instead.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt

# The node: trust these numbers rather than what slurmd detects (config_overrides), so a mismatch
# (e.g. a container's memory limit) never drains it.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ "${FORCE:-0}" != 1 ]; then
        rm -f "$tmp"
        die "$CONF exists and was not written by this script; move it away or rerun with FORCE=1"
    fi
    if $sudo cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1 # unchanged
    fi
    $sudo install -D -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    return 0
}

start_munge() {
    alive "$MUNGE_PID" && return 0
    # The key: Debian's munge package creates one when it is installed; make one if it did not.
    if ! $sudo test -s "$MUNGE_KEY"; then
        log "creating $MUNGE_KEY"
        $sudo install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        $sudo mungekey --create --keyfile="$MUNGE_KEY"
        $sudo chown munge:munge "$MUNGE_KEY"
        $sudo chmod 0400 "$MUNGE_KEY"
    fi
    # munged runs as the munge user (as under systemd); these directories are what systemd and
    # the package would otherwise provide. /run is often empty in a fresh container.
    $sudo install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    $sudo install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    # --origin: munged otherwise looks up the hostname and warns when it does not resolve.
    $sudo runuser -u munge -- /usr/sbin/munged --origin=127.0.0.1 ||
        die "munged failed to start; see $MUNGE_LOG"
    # munged forks after its socket is ready; check that a credential round-trips.
    munge -n </dev/null | unmunge >/dev/null || die "munge does not work; see $MUNGE_LOG"
}

start_slurm() {
    $sudo install -d -m 0755 "$DIR" "$DIR/ctld" "$DIR/d" "$DIR/log" "$DIR/run"
    $sudo touch "$DIR/jobcomp.txt"
    $sudo chmod 0644 "$DIR/jobcomp.txt"
    # slurmctld recovers the jobs it saved in $DIR/ctld when it last stopped.
    if ! alive "$CTLD_PID" && ! $sudo /usr/sbin/slurmctld; then print_logs; die "slurmctld failed to start"; fi
    if ! alive "$SLURMD_PID" && ! $sudo /usr/sbin/slurmd; then print_logs; die "slurmd failed to start"; fi
}

print_logs() {
    local f
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$MUNGE_LOG"; do
        echo "----- last lines of $f -----" >&2
        $sudo tail -n 40 "$f" >&2 2>/dev/null || echo "(none)" >&2
    done
}

# When slurmd (re)started at or after epoch second $1 (0: any time) has registered with slurmctld.
slurmd_registered() {
    local t
    [ "$1" = 0 ] && return 0
    t=$(scontrol -o show node "$NODE" 2>/dev/null | grep -oE 'SlurmdStartTime=[^ ]+' | cut -d= -f2)
    t=$(date -d "$t" +%s 2>/dev/null) || return 1
    [ "$t" -ge "$1" ]
}

# Wait until the node is usable: its slurmd (started at or after epoch second $1, 0: any time)
# registered and the node is idle (or running jobs).
wait_idle() {
    local t0=$SECONDS state="" pidfile
    while [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ]; do
        state=$(node_state)
        case $state in
            # Without the registration check, a node recovered from saved state reads idle before
            # the new slurmd has said hello.
            idle | mix | alloc) slurmd_registered "$1" && return 0 ;;
            # Down or drained from an earlier run: ReturnToService=2 usually clears this, force it.
            down* | drain* | fail*) $sudo scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        # Daemons that died at start (bad config, port in use) will not come up.
        for pidfile in "$CTLD_PID" "$SLURMD_PID"; do
            if [ $((SECONDS - t0)) -ge 3 ] && ! alive "$pidfile"; then
                print_logs
                die "$(basename "$pidfile" .pid) is not running"
            fi
        done
        sleep 0.5
    done
    print_logs
    die "node $NODE not ready after ${START_TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
}

# Stop the process in pid file $1: SIGTERM, then SIGKILL after 10 s.
stop_pidfile() {
    local pid
    pid=$($sudo cat "$1" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    if pid_alive "$pid" && $sudo kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 50); do
            pid_alive "$pid" || break
            sleep 0.2
        done
        if pid_alive "$pid"; then
            log "$(basename "$1" .pid) ($pid) did not stop; killing it"
            $sudo kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    $sudo rm -f "$1"
}

# Jobs that slurmctld recovered from its saved state as running, though they started before
# epoch second $1 (when this slurmctld started) and no slurmstepd is left to run them: left over
# by a slurmctld that died without `stop`. Slurm would notice after about a minute and requeue
# them; cancel them instead.
cancel_ghosts() {
    local id start ghosts=""
    [ -z "$(pids_named slurmstepd)" ] || return 0
    while read -r id start; do
        [ -n "$id" ] || continue
        start=$(date -d "$start" +%s 2>/dev/null) || continue
        [ "$start" -lt "$1" ] && ghosts="$ghosts $id"
    done < <(squeue -h -t R,CG,S -o '%A %S' 2>/dev/null)
    if [ -n "$ghosts" ]; then
        log "cancelling jobs left running by an earlier slurmctld:$ghosts"
        # shellcheck disable=SC2086 # one id per word
        $sudo scancel $ghosts || true
    fi
}

cmd_start() {
    local t0=$SECONDS changed=0 since ctld_since
    write_config && changed=1
    if [ "$changed" = 1 ] && { alive "$CTLD_PID" || alive "$SLURMD_PID"; }; then
        log "config changed; restarting slurmctld and slurmd"
        stop_pidfile "$SLURMD_PID"
        stop_pidfile "$CTLD_PID"
    fi
    start_munge
    since=0 ctld_since=0
    alive "$SLURMD_PID" || since=$(date +%s)
    alive "$CTLD_PID" || ctld_since=$(date +%s)
    start_slurm
    wait_idle "$since"
    [ "$ctld_since" = 0 ] || cancel_ghosts "$ctld_since"
    log "up in $((SECONDS - t0)) s: node $NODE ($(node_state)), partition debug, config $CONF"
    # Clients need no environment: the config is at the default location. Printed for the record.
    echo "SLURM_CONF=$CONF"
}

# Kill process $1 and all its descendants (children first stopped, then killed).
kill_tree() {
    local child
    $sudo kill -STOP "$1" 2>/dev/null || true
    for child in $(children "$1"); do kill_tree "$child"; done
    $sudo kill -KILL "$1" 2>/dev/null || true
}

cmd_stop() {
    local ids pid
    # Cancel what is still queued or running (job ids, or array job ids for arrays), and wait
    # until the jobs' processes are gone (no job COMPLETING), so that nothing outlives slurmd.
    if alive "$CTLD_PID"; then
        ids=$(squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ')
        if [ -n "${ids// /}" ]; then
            log "cancelling jobs $ids"
            # shellcheck disable=SC2086 # one id per word
            $sudo scancel $ids || true
            for _ in $(seq 40); do
                [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.25
            done
        fi
    fi
    stop_pidfile "$SLURMD_PID"
    stop_pidfile "$CTLD_PID"
    stop_pidfile "$MUNGE_PID"
    # A job's slurmstepd outlives slurmd; if one is left (cancelling failed), kill it and the job's
    # processes. This node's slurmd is gone, so every slurmstepd on the machine is taken for ours.
    for pid in $(pids_named slurmstepd); do
        log "killing leftover slurmstepd (pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)) and its processes"
        kill_tree "$pid"
    done
    log "stopped"
}

cmd_status() {
    local d state up=1
    for d in "$MUNGE_PID" "$CTLD_PID" "$SLURMD_PID"; do
        if alive "$d"; then
            echo "$(basename "$d" .pid): running (pid $($sudo cat "$d"))"
        else
            echo "$(basename "$d" .pid): not running"
            up=0
        fi
    done
    state=$(node_state)
    echo "node $NODE: ${state:-no answer from slurmctld}"
    case $state in idle | mix | alloc) ;; *) up=0 ;; esac
    if [ "$up" = 1 ]; then echo up; else echo down; return 1; fi
}

cmd_clean() {
    cmd_stop
    $sudo rm -rf "$DIR"
    if [ -e "$CONF" ] && grep -qF "$MARKER" "$CONF"; then $sudo rm -f "$CONF"; fi
    log "removed $DIR and $CONF"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac

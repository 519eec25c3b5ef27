#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian's packages, for tests and local runs.
#
#   scripts/local-slurm.sh up      install (apt-get, when missing), configure and start munged, slurmctld and slurmd;
#                                  wait (≤ 60 s) until the node takes jobs. Idempotent: a running cluster is left as is.
#   scripts/local-slurm.sh down    stop the three daemons (the configuration and state stay).
#   scripts/local-slurm.sh status  exit 0 when the node is idle/mixed/allocated and `sbatch --wrap true` would be
#                                  accepted, 1 otherwise.
#
# When it cannot start Slurm (not root and no sudo, apt-get fails, a daemon dies, another slurm.conf is in the way)
# `up` prints ONE line "local-slurm: cannot start Slurm: <reason>" and exits 3 (tests skip on exactly that).
#
# The cluster: one node with this machine's CPUs and memory (`slurmd -C`), partition "debug" (the default),
# proctrack/linuxproc + task/none (no cgroups needed, so it runs in containers), select/cons_tres (CR_Core),
# JobRequeue=1 (submitit's preemption/timeout requeue; `scancel --signal=USR2 JOBID` simulates a preemption),
# no accounting database (sacct is unavailable: pwmbench's slurm executor uses squeue and its own result files).
# Tuned for tests: a requeued job may start again after 11 s (AuthInfo=cred_expire=10; Slurm's default is 120 s),
# the scheduler looks every 2 s, finished jobs stay visible to squeue for an hour (MinJobAge). When `up` (re)starts
# the controller, jobs saved from its previous life that would run again are cancelled.
# Files: /etc/slurm/slurm.conf (where the daemons and commands look; marked as ours, never overwritten when it is not),
# state under /var/lib/pwmbench-slurm, logs under /var/log/pwmbench-slurm.
set -uo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by pwmbench scripts/local-slurm.sh"
STATE=/var/lib/pwmbench-slurm
LOGS=/var/log/pwmbench-slurm
LOCK=/tmp/pwmbench-local-slurm.lock
PACKAGES=(munge slurmctld slurmd slurm-client)
WAIT_S=${LOCAL_SLURM_WAIT_S:-60}

die() { echo "local-slurm: cannot start Slurm: $*"; exit 3; }
log() { echo "local-slurm: $*" >&2; }

SUDO=()
need_root() {
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); return 0; fi
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then SUDO=(sudo -n); return 0; fi
    return 1
}
as_root() { "${SUDO[@]}" "$@"; }

node_name() { hostname -s 2>/dev/null || hostname; }

# 0 when the node takes jobs: sinfo shows it idle/mixed/allocated and sbatch --test-only accepts a job.
usable() {
    command -v sinfo >/dev/null 2>&1 || return 1
    pid_alive "$STATE/slurmctld.pid" || return 1  # sinfo would retry for 10 s without a controller
    local states
    states=$(timeout 10 sinfo -h -N -p debug -o "%T" 2>/dev/null) || return 1
    echo "$states" | grep -Eq '^(idle|mixed|allocated|completing)$' || return 1
    timeout 10 sbatch --test-only -p debug --wrap true >/dev/null 2>&1
}

pid_alive() {  # a pidfile's process exists and is not a zombie (root's kill -0 is not needed to see it)
    local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

install_packages() {
    local missing=0
    for cmd in munged slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "Slurm is not installed and there is no apt-get to install it"
    log "installing ${PACKAGES[*]} with apt-get (log: /tmp/local-slurm-apt.log)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } \
           >/tmp/local-slurm-apt.log 2>&1; then
        die "apt-get install ${PACKAGES[*]} failed: $(tail -n 1 /tmp/local-slurm-apt.log)"
    fi
}

render_config() {  # the configuration this machine gets, on stdout
    local node_line
    node_line=$(/usr/sbin/slurmd -C 2>/dev/null | grep '^NodeName=') || return 1
    # The node is named after the host (slurmd finds itself by its hostname) and reached on the loopback address.
    node_line=$(echo "$node_line" | sed -E "s/^NodeName=[^ ]+/NodeName=$(node_name) NodeAddr=127.0.0.1/")
    cat <<CONF
$MARK (a single-node test cluster; \`scripts/local-slurm.sh down\` stops it)
ClusterName=pwmbench-local
SlurmctldHost=$(node_name)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
MailProg=/bin/true
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$node_line State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

config_current() { [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$(render_config)" ]; }

write_config() {  # 0 when it wrote a new or changed configuration, 1 when it was already in place
    local text
    text=$(render_config) || die "slurmd -C could not describe this machine"
    as_root mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" || die "cannot create $CONF_DIR, $STATE or $LOGS"
    if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARK"; then
        die "$CONF exists and was not written by this script (a real cluster's configuration?): not touching it"
    fi
    if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$text" ]; then return 1; fi  # unchanged
    echo "$text" | as_root tee "$CONF" >/dev/null || die "cannot write $CONF"
    return 0
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null
    as_root chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        as_root mkdir -p /etc/munge
        as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none || die "cannot create /etc/munge/munge.key"
        as_root chown munge:munge /etc/munge/munge.key; as_root chmod 0400 /etc/munge/munge.key
    fi
    if id munge >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1 && [ -z "${SUDO[*]}" ]; then
        runuser -u munge -- /usr/sbin/munged >/dev/null 2>&1 9>&-
    else
        as_root /usr/sbin/munged --force >/dev/null 2>&1 9>&-
    fi
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not start ($(as_root tail -n 1 /var/log/munge/munged.log 2>/dev/null || echo 'no log'))"
}

stop_daemon() {  # pidfile name
    local pidfile=$1 name=$2
    if pid_alive "$pidfile"; then
        as_root kill "$(cat "$pidfile")" 2>/dev/null
        for _ in $(seq 100); do pid_alive "$pidfile" || break; sleep 0.1; done
        pid_alive "$pidfile" && as_root kill -9 "$(cat "$pidfile")" 2>/dev/null
    fi
    as_root rm -f "$pidfile"
    log "$name stopped"
}

start_daemon() {  # binary pidfile logfile
    local bin=$1 pidfile=$2 logfile=$3
    pid_alive "$pidfile" && return 0
    as_root "/usr/sbin/$bin" >/dev/null 2>&1 9>&- || die "$bin did not start: $(as_root tail -n 1 "$logfile" 2>/dev/null || echo 'no log')"
    for _ in $(seq 50); do pid_alive "$pidfile" && return 0; sleep 0.1; done
    die "$bin died at start: $(as_root tail -n 1 "$logfile" 2>/dev/null || echo 'no log')"
}

up() {
    if usable && config_current; then log "up: node $(node_name) is $(sinfo -h -N -p debug -o %T | head -n 1)"; return 0; fi
    need_root || die "not root and no password-less sudo"
    install_packages
    if write_config; then  # a new or changed configuration: restart what runs with the old one
        pid_alive "$STATE/slurmd.pid" && stop_daemon "$STATE/slurmd.pid" slurmd
        pid_alive "$STATE/slurmctld.pid" && stop_daemon "$STATE/slurmctld.pid" slurmctld
    fi
    start_munge
    local fresh=0
    pid_alive "$STATE/slurmctld.pid" || fresh=1
    start_daemon slurmctld "$STATE/slurmctld.pid" "$LOGS/slurmctld.log"
    start_daemon slurmd "$STATE/slurmd.pid" "$LOGS/slurmd.log"
    local deadline=$((SECONDS + WAIT_S)) resumed=0 state=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        if usable; then
            if [ "$fresh" -eq 1 ]; then  # jobs saved from the controller's last life would run again: cancel them
                local left
                left=$(squeue -h -t PENDING,RUNNING,SUSPENDED,REQUEUED -o %i 2>/dev/null | wc -l)
                if [ "$left" -gt 0 ]; then
                    for state in PENDING RUNNING SUSPENDED REQUEUED; do as_root scancel --state="$state" >/dev/null 2>&1; done
                    log "cancelled $left job(s) left from before this start"
                fi
            fi
            log "up: node $(node_name) is $(sinfo -h -N -p debug -o %T | head -n 1)"
            return 0
        fi
        pid_alive "$STATE/slurmctld.pid" || die "slurmctld died: $(as_root tail -n 1 "$LOGS/slurmctld.log" 2>/dev/null)"
        pid_alive "$STATE/slurmd.pid" || die "slurmd died: $(as_root tail -n 1 "$LOGS/slurmd.log" 2>/dev/null)"
        state=$(sinfo -h -N -p debug -o "%T" 2>/dev/null | head -n 1)
        if [ "$resumed" -eq 0 ] && echo "$state" | grep -Eq '^(down|drain|drained|draining)'; then
            as_root scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 && resumed=1
        fi
        sleep 1
    done
    die "the node did not become usable within ${WAIT_S} s (state: ${state:-none}; logs in $LOGS)"
}

down() {
    need_root || { echo "local-slurm: cannot stop Slurm: not root and no password-less sudo"; exit 3; }
    stop_daemon "$STATE/slurmd.pid" slurmd
    stop_daemon "$STATE/slurmctld.pid" slurmctld
    if [ -f /run/munge/munged.pid ]; then
        as_root /usr/sbin/munged --stop >/dev/null 2>&1 || as_root kill "$(cat /run/munge/munged.pid)" 2>/dev/null
        log "munged stopped"
    fi
}

status() {
    if usable; then
        echo "local-slurm: node $(node_name) is $(sinfo -h -N -p debug -o %T | head -n 1); jobs are accepted"
        return 0
    fi
    if ! command -v sinfo >/dev/null 2>&1; then echo "local-slurm: Slurm is not installed"; return 1; fi
    if ! pid_alive "$STATE/slurmctld.pid"; then echo "local-slurm: slurmctld is not running"; return 1; fi
    echo "local-slurm: not usable (sinfo: $(timeout 10 sinfo -h -N -o '%N %T' 2>&1 | head -n 1))"
    return 1
}

cmd=${1:-}
case "$cmd" in
    up|down)
        if [ "$cmd" = up ] && usable && config_current; then up; exit 0; fi  # already up: no lock needed
        # one up/down at a time (parallel test workers call up together); a lock that cannot be opened is skipped
        if { exec 9>>"$LOCK"; } 2>/dev/null; then
            chmod 0666 "$LOCK" 2>/dev/null
            flock -w 120 9 || die "another local-slurm.sh held $LOCK for 2 minutes"
        fi
        "$cmd" ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

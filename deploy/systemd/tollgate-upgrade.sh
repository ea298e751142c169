#!/bin/bash
# tollgate-upgrade: zero-downtime binary upgrade of a running tollgate (Pingora's fd hand-off).
#
# The hand-off itself (Pingora docs/user_guide/graceful.md):
#   1. start the NEW binary with `-u`: it binds upgrade_sock and waits for the listening sockets;
#   2. send SIGQUIT to the OLD process: it passes its listening sockets over upgrade_sock, keeps
#      serving for 5 s, stops accepting, drains for grace_period_seconds and exits.
# No connection is refused meanwhile: the listening sockets never close. Redis-backed limit
# counters are unaffected; the in-process store (no `redis:` section, or on_error: local) restarts
# from zero in the new process.
#
# Usage
#   install the new binary over the old path first (install(1) replaces the file, the running
#   process keeps its own copy), then:
#
#   tollgate-upgrade                      as root, with tollgate.service running (the normal case):
#                                         asks the unit to upgrade itself, see "systemd" below.
#   tollgate-upgrade --standalone [PID]   without systemd: do the hand-off from this shell. PID
#                                         defaults to the one in pid_file. The new process is
#                                         started with -d (daemon) so it outlives this script.
#   tollgate-upgrade --from-systemd PID   internal: run by the unit's ExecReload= line.
#
# Environment (defaults in brackets)
#   TOLLGATE_BIN [/usr/local/bin/tollgate]  TOLLGATE_CONFIG [/etc/tollgate/tollgate.yaml]
#   PINGORA_CONF [/etc/tollgate/pingora.yaml]  TOLLGATE_UNIT [tollgate.service]
#
# systemd
#   The new process must end up inside tollgate.service, or systemd loses track of it: with
#   Type=simple the unit ends (and its cgroup is killed) when the old main process exits after
#   draining; and a process started from an admin shell is outside the unit's cgroup, so systemd
#   would refuse it as the new main PID (the pid file is not root's), would not stop it on
#   `systemctl stop`, and would not run it with the unit's user and sandbox.
#   So the unit is Type=forking with PIDFile= and `-d`, and the hand-off runs as a reload step
#   (ExecReload=), which systemd executes inside the unit (same cgroup, user and sandbox). The new
#   `tollgate -u -d` writes pid_file; when the old main process exits, systemd re-reads PIDFile=
#   and adopts the new PID as MainPID. Plain `systemctl reload` must stay a SIGHUP config reload,
#   so this script, run by an operator, drops a request flag in /run/tollgate and then calls
#   `systemctl reload`; the ExecReload= step acts only when that flag is there.
#
# Exit status: 0 when the new process took over the sockets (the old one is draining), 1 otherwise.
# If the new process fails before the old one was signalled, the old one keeps serving untouched.

set -euo pipefail

BIN=${TOLLGATE_BIN:-/usr/local/bin/tollgate}
CONF=${TOLLGATE_CONFIG:-/etc/tollgate/tollgate.yaml}
PCONF=${PINGORA_CONF:-/etc/tollgate/pingora.yaml}
UNIT=${TOLLGATE_UNIT:-tollgate.service}
FLAG=/run/tollgate/upgrade-requested

log() { echo "tollgate-upgrade: $*" >&2; }
die() { log "$*"; exit 1; }

# A top-level scalar of pingora.yaml, or a default (Pingora's own defaults).
pingora_setting() {
    local v
    v=$(sed -n -E "s/^$1:[[:space:]]*['\"]?([^'\"#[:space:]]+)['\"]?.*$/\\1/p" "$PCONF" 2>/dev/null | tail -n 1)
    echo "${v:-$2}"
}
SOCK=$(pingora_setting upgrade_sock /tmp/pingora_upgrade.sock)
PIDFILE=$(pingora_setting pid_file /tmp/pingora.pid)

alive() { kill -0 "$1" 2>/dev/null; }

# The hand-off. $1 = old pid. Starts `tollgate -u -d`, waits for it to listen on upgrade_sock,
# SIGQUITs the old process, then waits for the new daemon's pid in pid_file.
handoff() {
    local old=$1 launcher launcher_rc="" i new=""
    alive "$old" || die "old process $old is not running"
    "$BIN" --config "$CONF" -c "$PCONF" -t >/dev/null || die "the new binary rejects the configuration; nothing changed"

    # A stale socket from an earlier failed attempt would look like a listening new process.
    rm -f -- "$SOCK"
    # When tollgate bootstraps (receives the sockets) before Pingora daemonizes, this launcher stays
    # in the foreground until the old process has handed the sockets over, then forks the daemon
    # and exits 0; on a failed hand-off it exits 1.
    "$BIN" --config "$CONF" -c "$PCONF" -u -d &
    launcher=$!

    for ((i = 0; i < 100; i++)); do
        [ -S "$SOCK" ] && break
        if [ -z "$launcher_rc" ] && ! alive "$launcher"; then
            launcher_rc=0
            wait "$launcher" || launcher_rc=$?
            [ "$launcher_rc" -eq 0 ] || die "the new process exited ($launcher_rc) before listening on $SOCK; the old one ($old) is untouched"
        fi
        sleep 0.1
    done
    if [ ! -S "$SOCK" ]; then
        [ -n "$launcher_rc" ] || kill "$launcher" 2>/dev/null || true
        die "nothing listens on $SOCK after 10 s; the old process ($old) is untouched"
    fi

    log "new process is waiting on $SOCK; sending SIGQUIT to $old"
    kill -QUIT "$old"

    if [ -z "$launcher_rc" ]; then
        launcher_rc=0
        wait "$launcher" || launcher_rc=$?
    fi
    # A failed hand-off: the old process drains and exits anyway (cleanly, so Restart=on-failure
    # does not bring it back): check the log and start the service again.
    [ "$launcher_rc" -eq 0 ] || die "the new process failed to take over the sockets (see its log); old process $old is draining"

    for ((i = 0; i < 100; i++)); do
        new=$(cat "$PIDFILE" 2>/dev/null || true)
        if [ -n "$new" ] && [ "$new" != "$old" ] && alive "$new"; then
            log "upgrade done: new pid $new serves; old pid $old drains for grace_period_seconds, then exits"
            return 0
        fi
        sleep 0.1
    done
    die "the new process did not write $PIDFILE"
}

case "${1:-}" in
    --from-systemd)
        [ $# -ge 2 ] || die "usage: $0 --from-systemd MAINPID"
        # A plain `systemctl reload`: the ExecReload= line before this one already sent SIGHUP.
        [ -e "$FLAG" ] || exit 0
        rm -f -- "$FLAG"
        handoff "$2"
        ;;
    --standalone)
        old=${2:-$(cat "$PIDFILE" 2>/dev/null || true)}
        [ -n "$old" ] || die "no pid given and none in $PIDFILE"
        handoff "$old"
        ;;
    "")
        [ "$(id -u)" -eq 0 ] || die "run as root (it talks to systemd)"
        systemctl is-active --quiet "$UNIT" || die "$UNIT is not active; start it instead (systemctl start $UNIT)"
        old=$(systemctl show --property MainPID --value "$UNIT")
        # Check the new binary against the configuration before anything is touched.
        "$BIN" --config "$CONF" -c "$PCONF" -t >/dev/null || die "the new binary rejects the configuration; nothing changed"
        touch "$FLAG"
        # Blocks until ExecReload= has finished; fails if the hand-off failed.
        if ! systemctl reload "$UNIT"; then
            rm -f -- "$FLAG"
            die "upgrade failed: journalctl -u $UNIT"
        fi
        log "MainPID $old is draining; systemd switches MainPID to the new process when it exits"
        log "check: systemctl status $UNIT"
        ;;
    -h | --help)
        sed -n '2,40p' "$0"
        ;;
    *)
        die "unknown argument '$1' (see --help)"
        ;;
esac

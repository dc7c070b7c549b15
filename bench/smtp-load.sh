#!/usr/bin/env bash
# SMTP load harness: the same smtp-source load against three targets on
# 127.0.0.1, measured in the same run on the same machine:
#   postern   target/release/postern serve, archive-everything rule set
#   postfix   a private Postfix instance (smtpd -> cleanup -> qmgr -> discard:),
#             Postfix's default fsync of each queue file before its 250
#   smtp-sink Postfix's no-op SMTP server: the limit of the client and the
#             loopback for small messages (it is one single-threaded process,
#             so for 1 MiB messages it is bound by one core)
# Loads: 20,000 messages of 4 KiB over 20 sessions, then 2,000 messages of
# 1 MiB over 10 sessions, one message per connection (smtp-source without -d).
# Each run is repeated (REPEATS_SMALL, REPEATS_LARGE; default 3) and the
# median is reported. Then Postern's memory with 1,000 idle connections.
#
# Usage: bench/smtp-load.sh            (from anywhere; needs root for apt and Postfix)
# Environment:
#   REPEATS_SMALL=3 REPEATS_LARGE=3     repeats of the 4 KiB and 1 MiB loads
#   SMALL_MSGS=20000 LARGE_MSGS=2000    message counts
#   IDLE_CONNS=1000                     connections of the memory test
#   SKIP_BUILD=1                        use the existing target/release/postern
#   KEEP_TMP=1                          keep the temp dir (logs, data) for a look
set -euo pipefail

REPEATS_SMALL=${REPEATS_SMALL:-3}
REPEATS_LARGE=${REPEATS_LARGE:-3}
SMALL_MSGS=${SMALL_MSGS:-20000}
LARGE_MSGS=${LARGE_MSGS:-2000}
SMALL_SESS=20
LARGE_SESS=10
SMALL_LEN=4096
LARGE_LEN=1048576
IDLE_CONNS=${IDLE_CONNS:-1000}
DRAIN_TIMEOUT=900      # seconds to wait for a target to empty its queue after a run
RUN_TIMEOUT=1800       # seconds one smtp-source run may take

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POSTERN=$ROOT/target/release/postern

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- install
need_install=0
for cmd in smtp-source smtp-sink postfix postconf postqueue; do
    command -v "$cmd" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "postfix is not installed and this is not root"
    log "installing postfix (smtp-source, smtp-sink, smtpd)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq postfix >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed for the idle-connection test"
[ "$(id -u)" = 0 ] || die "run as root: the private Postfix instance needs it"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building postern (release)"
    (cd "$ROOT" && cargo build --release -p postern --quiet) ||
        die "cargo build failed (SKIP_BUILD=1 runs the binary already in target/release)"
fi
[ -x "$POSTERN" ] || die "$POSTERN is missing"

# 1,000 idle connections and the servers' sockets need descriptors.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
[ "$(ulimit -n)" -ge $((IDLE_CONNS + 200)) ] || die "ulimit -n is $(ulimit -n), too low for $IDLE_CONNS connections"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/smtp-load.XXXXXX")
chmod 755 "$TMP"             # the postfix user must reach its queue and data dirs
PIDS=()
PF_CONF=""
SRC_PID=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$SRC_PID" ] && kill "$SRC_PID" 2>/dev/null
    if [ -n "$PF_CONF" ] && [ -f "$PF_CONF/main.cf" ]; then
        postfix -c "$PF_CONF" stop >/dev/null 2>&1
        local pf_pid_file=$TMP/postfix/queue/pid/master.pid
        for _ in $(seq 1 50); do
            [ -f "$pf_pid_file" ] && kill -0 "$(tr -d ' ' <"$pf_pid_file")" 2>/dev/null || break
            sleep 0.2
        done
        [ -f "$pf_pid_file" ] && kill -9 "$(tr -d ' ' <"$pf_pid_file")" 2>/dev/null
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port seconds
    local i
    for i in $(seq 1 $(($2 * 5))); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

median() { # values... -> the middle one (lower middle for an even count)
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

cpu_ticks() { # pid -> "utime stime" in clock ticks (threads that ended included)
    awk '{print $14, $15}' "/proc/$1/stat"
}

busy_ticks() { # -> "busy total" of the whole machine from /proc/stat
    awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t - $5 - $6, t}' /proc/stat
}

status_kb() { # pid field -> value in kB from /proc/PID/status
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

# ---------------------------------------------------------------- postern
PT_DIR=$TMP/postern
PT_PORT=$(free_port)
PT_HTTP=$(free_port)
PT_PID=""
mkdir -p "$PT_DIR"

write_postern_config() { # dir smtp-port http-port
    cat >"$1/postern.yaml" <<EOF
Server:
  DataDir: $1/data
  HttpListen: "127.0.0.1:$3"
  Workers: 4
  Smtp:
    MaxConnections: 5000
    MaxConnectionsPerIp: 2000
TrafficPolicies:
  - TrafficPolicyName: allow-all
    DefaultAction: ALLOW
    PolicyStatements: []
RuleSets:
  - RuleSetName: archive-everything
    Rules:
      - Name: archive-all
        Actions:
          - Archive: {TargetArchive: default}
IngressPoints:
  - IngressPointName: default
    Type: OPEN
    TrafficPolicyId: allow-all
    RuleSetId: archive-everything
    Listen: ["127.0.0.1:$2"]
Archives:
  - ArchiveName: default
EOF
}

start_postern() { # dir smtp-port -> sets PT_PID
    NO_COLOR=1 "$POSTERN" serve -c "$1/postern.yaml" >"$1/stdout.log" 2>"$1/server.log" &
    PT_PID=$!
    PIDS+=("$PT_PID")
    if ! wait_port "$2" 30; then
        tail -20 "$1/server.log" >&2
        die "postern did not listen on 127.0.0.1:$2"
    fi
}

stop_postern() { # pid
    kill -TERM "$1" 2>/dev/null || return 0
    local i
    for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$1" 2>/dev/null || true
}

write_postern_config "$PT_DIR" "$PT_PORT" "$PT_HTTP"
log "starting postern on 127.0.0.1:$PT_PORT (data in $PT_DIR/data)"
start_postern "$PT_DIR" "$PT_PORT"

# (find fails on a directory not made yet: count what it printed.)
postern_queue_depth() { { find "$PT_DIR/data/spool/queue" -maxdepth 1 -type f 2>/dev/null || true; } | wc -l; }
postern_archived() { { find "$PT_DIR/data/archives" -name '*.eml' -type f 2>/dev/null || true; } | wc -l; }

# ---------------------------------------------------------------- postfix
PF=$TMP/postfix
PF_CONF=$PF/etc
PF_PORT=$(free_port)
mkdir -p "$PF_CONF" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = bench.localdomain
mydomain = localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains = example.com
mynetworks = 127.0.0.0/8
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
biff = no
EOF
# No chroot (column 5 = n): the instance lives in a temp dir.
cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
log "starting a private postfix on 127.0.0.1:$PF_PORT (config $PF_CONF)"
if ! postfix -c "$PF_CONF" start >/dev/null 2>&1; then
    # postfix writes its errors to stderr only on a tty; show them.
    script -qec "postfix -c $PF_CONF start" /dev/null >&2 || true
    tail -5 "$PF/maillog" >&2 2>/dev/null || true
    die "postfix did not start"
fi
wait_port "$PF_PORT" 30 || die "postfix did not listen on 127.0.0.1:$PF_PORT"

postfix_queue_depth() {
    { find "$PF/queue/maildrop" "$PF/queue/incoming" "$PF/queue/active" \
        "$PF/queue/deferred" "$PF/queue/hold" -type f 2>/dev/null || true; } | wc -l
}
postfix_discarded() { grep -c 'postfix/discard\[.*status=sent' "$PF/maillog" 2>/dev/null || true; }

# ---------------------------------------------------------------- smtp-sink
SK_PORT=$(free_port)
log "starting smtp-sink on 127.0.0.1:$SK_PORT"
(cd "$TMP" && exec smtp-sink -u nobody -c "127.0.0.1:$SK_PORT" 1000 >"$TMP/sink.out" 2>&1) &
PIDS+=("$!")
wait_port "$SK_PORT" 30 || die "smtp-sink did not listen on 127.0.0.1:$SK_PORT"
sink_count() { tr '\r' '\n' <"$TMP/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || true; }

# ---------------------------------------------------------------- runs
RESULTS=$TMP/results.tsv   # target load rep accept_rate drain_rate verified cpu busy_pct backlog
: >"$RESULTS"
NOTES=()

threadsnap() { # pid file: where the process's CPU went over two seconds, by thread
    # (read from /proc: top -H puts the whole process's time on the main thread's line;
    # tick-based, so a few % either way)
    local hz before
    hz=$(getconf CLK_TCK)
    before=$(snap_ticks "$1")
    sleep 2
    { echo "$before" | sed 's/^/0 /'; snap_ticks "$1" | sed 's/^/1 /'; } |
        awk -v hz="$hz" '
            $1 == 0 {u[$2] = $4; s[$2] = $5; next}
            ($2 in u) {du = ($4 - u[$2]) * 50 / hz; ds = ($5 - s[$2]) * 50 / hz
                       if ($2 == "all") printf "999999 process, with threads that ended: user %.0f%%, sys %.0f%%\n", du, ds
                       else if (du + ds > 0) printf "%d   thread %s (%s): user %.0f%%, sys %.0f%%\n", du + ds, $2, $3, du, ds}' |
        sort -rn | head -10 | cut -d' ' -f2- >"$2" || true
    { for t in /proc/"$1"/task/*; do cat "$t/comm"; done 2>/dev/null || true; } | sort | uniq -c |
        awk '{printf "  threads named %s: %d\n", $2, $1}' >>"$2"
}

snap_ticks() { # pid -> "tid name utime stime" per thread, and "all process ..." for the process
    awk '{print "all process", $14, $15}' "/proc/$1/stat"
    local t
    for t in /proc/"$1"/task/*; do
        awk -v tid="${t##*/}" -v name="$(cat "$t/comm" 2>/dev/null)" \
            '{sub(/^.*\) /, ""); print tid, name, $12, $13}' "$t/stat" 2>/dev/null || true
    done
}

run_one() { # target load msgs sessions len rep
    local target=$1 load=$2 msgs=$3 sess=$4 len=$5 rep=$6 port before
    case $target in
        postern) port=$PT_PORT; before=$(postern_archived) ;;
        postfix) port=$PF_PORT; before=$(postfix_discarded) ;;
        smtp-sink) port=$SK_PORT; before=$(sink_count); before=${before:-0} ;;
    esac
    local out=$TMP/source-$target-$load-$rep.log
    local cpu0="0 0" cpu1="0 0"
    if [ "$target" = postern ]; then cpu0=$(cpu_ticks "$PT_PID"); fi
    read -r busy0 total0 < <(busy_ticks)
    local t0 t1 t2 rc=0
    t0=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" smtp-source -s "$sess" -m "$msgs" -l "$len" \
        -f sender@example.com -t rcpt@example.com "127.0.0.1:$port" >"$out" 2>&1 &
    local src=$! snap=""
    SRC_PID=$src
    if [ "$target" = postern ] && [ "$rep" = 1 ]; then
        # One look at postern's threads 2-4 s into the run, beside the timing.
        (sleep 2; if kill -0 "$src" 2>/dev/null; then threadsnap "$PT_PID" "$TMP/threads-$load.txt"; fi) &
        snap=$!
    fi
    wait "$src" || rc=$?
    t1=$(date +%s.%N)
    SRC_PID=""
    read -r busy1 total1 < <(busy_ticks)
    if [ "$target" = postern ]; then cpu1=$(cpu_ticks "$PT_PID"); fi
    local backlog=0   # messages accepted but not yet processed when the client finished
    if [ "$target" = postern ]; then backlog=$(postern_queue_depth); fi
    if [ "$target" = postfix ]; then backlog=$(postfix_queue_depth); fi
    if [ "$rc" != 0 ]; then
        log "smtp-source against $target ($load, run $rep) exited $rc:"
        tail -5 "$out" >&2
        NOTES+=("$target $load run $rep: smtp-source exited $rc: $(tail -1 "$out")")
    fi

    # Wait until the target has nothing queued (bounded), then verify counts.
    local i depth=0
    for i in $(seq 1 $((DRAIN_TIMEOUT * 5))); do
        case $target in
            postern) depth=$(postern_queue_depth) ;;
            postfix) depth=$(postfix_queue_depth) ;;
            smtp-sink) depth=0 ;;
        esac
        [ "$depth" = 0 ] && break
        sleep 0.2
    done
    t2=$(date +%s.%N)
    if [ -n "$snap" ]; then wait "$snap" || true; fi
    local got verified
    case $target in
        postern)
            got=$(( $(postern_archived) - before ))
            ;;
        postfix)
            # postlogd may lag a little behind the discard agent.
            for i in $(seq 1 50); do
                got=$(( $(postfix_discarded) - before ))
                [ "$got" -ge "$msgs" ] && break
                sleep 0.2
            done
            ;;
        smtp-sink)
            sleep 0.3
            local now; now=$(sink_count); got=$(( ${now:-0} - before ))
            ;;
    esac
    if [ "$rc" = 0 ] && [ "$depth" = 0 ] && [ "$got" = "$msgs" ]; then
        verified=ok
    else
        verified="FAIL(rc=$rc,queued=$depth,counted=$got)"
        NOTES+=("$target $load run $rep: sent $msgs, smtp-source rc $rc, still queued $depth, counted $got")
    fi
    local accept drain cpu_pct busy_pct u0 s0 u1 s1
    read -r u0 s0 <<<"$cpu0"
    read -r u1 s1 <<<"$cpu1"
    accept=$(awk -v n="$msgs" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n / (b - a)}')
    drain=$(awk -v n="$msgs" -v a="$t0" -v b="$t2" 'BEGIN {printf "%.1f", n / (b - a)}')
    cpu_pct=$(awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$(getconf CLK_TCK)" -v a="$t0" -v b="$t1" \
        'BEGIN {printf "%.0f%%(user:%.0f,sys:%.0f)", 100 * (u + s) / hz / (b - a), 100 * u / hz / (b - a), 100 * s / hz / (b - a)}')
    busy_pct=$(awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" \
        'BEGIN {printf "%.0f", (t > 0 ? 100 * b / t : 0)}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$load" "$rep" "$accept" "$drain" \
        "$verified" "$cpu_pct" "$busy_pct" "$backlog" >>"$RESULTS"
    log "$(printf '%-9s %-5s run %s: %8s msgs/s accepted (%6.2f s), %8s msgs/s until queue empty, %s, queued at the end %s, postern cpu %s, machine busy %s%%' \
        "$target" "$load" "$rep" "$accept" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
        "$drain" "$verified" "$backlog" "$cpu_pct" "$busy_pct")"

    # Keep the disk small: drop what the run archived (nothing is in flight now).
    if [ "$target" = postern ] && [ "$verified" = ok ]; then
        find "$PT_DIR/data/archives" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    fi
}

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores, load average $LOADAVG_START"
START=$(date +%s)
for spec in "4k $SMALL_MSGS $SMALL_SESS $SMALL_LEN $REPEATS_SMALL" \
            "1m $LARGE_MSGS $LARGE_SESS $LARGE_LEN $REPEATS_LARGE"; do
    read -r load msgs sess len reps <<<"$spec"
    for rep in $(seq 1 "$reps"); do
        # Targets interleaved, so a slow spell of the machine is shared.
        for target in postern postfix smtp-sink; do
            run_one "$target" "$load" "$msgs" "$sess" "$len" "$rep"
        done
    done
done
LOAD_SECONDS=$(( $(date +%s) - START ))
PT_LOAD_HWM=$(status_kb "$PT_PID" VmHWM)
PT_LOAD_RSS=$(status_kb "$PT_PID" VmRSS)
PT_ERRORS=$(sed 's/\x1b\[[0-9;]*m//g' "$PT_DIR/server.log" | grep -c -E ' (ERROR|WARN) ' || true)

# ---------------------------------------------------------------- idle connections
log "memory: a fresh postern with $IDLE_CONNS idle connections"
stop_postern "$PT_PID"
IDLE_DIR=$TMP/postern-idle
IDLE_PORT=$(free_port)
IDLE_HTTP=$(free_port)
mkdir -p "$IDLE_DIR"
write_postern_config "$IDLE_DIR" "$IDLE_PORT" "$IDLE_HTTP"
start_postern "$IDLE_DIR" "$IDLE_PORT"
IDLE_PID=$PT_PID
sleep 1
IDLE_RSS0=$(status_kb "$IDLE_PID" VmRSS)

cat >"$TMP/idle.py" <<'EOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks, greeted, other = [], 0, []
deadline = time.time() + 120
for i in range(n):
    if time.time() > deadline:
        break
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = b""
    while b"\n" not in data:
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"220"):
        greeted += 1
    else:
        other.append(data[:80])
    socks.append(s)
print("READY %d greeted of %d opened; other replies: %r" % (greeted, len(socks), other[:3]), flush=True)
time.sleep(300)   # held open until killed
EOF
python3 "$TMP/idle.py" "$IDLE_PORT" "$IDLE_CONNS" >"$TMP/idle.out" 2>&1 &
HOLDER=$!
PIDS+=("$HOLDER")
for _ in $(seq 1 750); do
    grep -q READY "$TMP/idle.out" 2>/dev/null && break
    kill -0 "$HOLDER" 2>/dev/null || break
    sleep 0.2
done
sleep 1
IDLE_REPORT=$(head -3 "$TMP/idle.out")
IDLE_RSS1=$(status_kb "$IDLE_PID" VmRSS)
IDLE_HWM=$(status_kb "$IDLE_PID" VmHWM)
IDLE_THREADS=$(status_kb "$IDLE_PID" Threads)
IDLE_FDS=$(find "/proc/$IDLE_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
kill "$HOLDER" 2>/dev/null || true

# ---------------------------------------------------------------- report
summ() { # target load column -> median of that column over verified runs
    awk -F'\t' -v t="$1" -v l="$2" -v c="$3" '$1 == t && $2 == l && $6 == "ok" {print $c}' "$RESULTS"
}
runs() { # target load -> the accept rates of all runs, comma-separated
    awk -F'\t' -v t="$1" -v l="$2" '$1 == t && $2 == l {printf "%s%s", (n++ ? ", " : ""), $4}' "$RESULTS"
}
med_text() { # like med, for "N%(...)" values: the run whose leading number is the median
    awk -F'\t' -v t="$1" -v l="$2" -v c="$3" '$1 == t && $2 == l && $6 == "ok" {print $c}' "$RESULTS" |
        sort -g | awk '{v[NR]=$0} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'
}
med() { local v; v=$(summ "$@"); [ -n "$v" ] && median $v || echo "n/a"; }
mib() { awk -v r="$1" -v l="$2" 'BEGIN {if (r == "n/a") print "n/a"; else printf "%.1f", r * l / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b}'; }

echo
echo "SMTP load: $(nproc) cores, $(date -u +%Y-%m-%d), postern $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted'), Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
echo "load runs took ${LOAD_SECONDS} s; repeats: 4k x$REPEATS_SMALL, 1m x$REPEATS_LARGE; one message per connection"
echo
printf '| %-9s | %-28s | %-26s | %-14s | %-9s | %-15s |\n' target load "accepted msgs/s (runs)" "median msgs/s" "MiB/s" "until drained"
printf '|%s|%s|%s|%s|%s|%s|\n' ----------- ------------------------------ ---------------------------- ---------------- ----------- -----------------
declare -A M
for load in 4k 1m; do
    if [ "$load" = 4k ]; then desc="$SMALL_MSGS x 4 KiB, $SMALL_SESS sessions"; len=$SMALL_LEN
    else desc="$LARGE_MSGS x 1 MiB, $LARGE_SESS sessions"; len=$LARGE_LEN; fi
    for target in postern postfix smtp-sink; do
        M[$target,$load]=$(med "$target" "$load" 4)
        drain=$(med "$target" "$load" 5)
        if [ "$target" = smtp-sink ]; then drain="-"; fi
        printf '| %-9s | %-28s | %-26s | %-14s | %-9s | %-15s |\n' "$target" "$desc" "$(runs "$target" "$load")" \
            "${M[$target,$load]}" "$(mib "${M[$target,$load]}" "$len")" "$drain"
    done
done
echo
for load in 4k 1m; do
    echo "$load: accepted, postern/postfix $(ratio "${M[postern,$load]}" "${M[postfix,$load]}")x," \
        "postern/smtp-sink $(ratio "${M[postern,$load]}" "${M[smtp-sink,$load]}")x;" \
        "until drained, postern/postfix $(ratio "$(med postern "$load" 5)" "$(med postfix "$load" 5)")x"
    echo "    queued when the client finished (median): postern $(med postern "$load" 9), postfix $(med postfix "$load" 9) messages"
    echo "    postern CPU while the client ran (median; 100% = one core): $(med_text postern "$load" 7)"
    echo "    machine busy while the client ran (median): postern runs $(med postern "$load" 8)%," \
        "postfix runs $(med postfix "$load" 8)%, smtp-sink runs $(med smtp-sink "$load" 8)%"
done
echo "load average: $LOADAVG_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "postern after the load: VmHWM $((PT_LOAD_HWM / 1024)) MiB, VmRSS $((PT_LOAD_RSS / 1024)) MiB; WARN/ERROR lines in its log: $PT_ERRORS"
echo "postern idle test: $IDLE_REPORT"
echo "  VmRSS before $((IDLE_RSS0 / 1024)) MiB, with the connections $((IDLE_RSS1 / 1024)) MiB ($IDLE_RSS1 kB), VmHWM $((IDLE_HWM / 1024)) MiB; threads $IDLE_THREADS, open fds $IDLE_FDS (target: under 100 MB)"
echo
echo "verified: smtp-source exits non-zero on any reply other than 2xx/3xx (no -A);"
echo "  postern: spool queue/ empty after the run and archived .eml files == messages sent;"
echo "  postfix: queue dirs (maildrop, incoming, active, deferred, hold) empty and discard 'status=sent' log lines == messages sent;"
echo "  smtp-sink: its message counter (-c) advanced by the messages sent."
echo "'until drained' = messages / (time from the start of the run until the target's queue was empty)."
if [ "${#NOTES[@]}" -gt 0 ]; then
    echo
    echo "PROBLEMS:"
    printf '  %s\n' "${NOTES[@]}"
fi
for f in "$TMP"/threads-*.txt; do
    [ -f "$f" ] || continue
    echo
    echo "postern's CPU 2-4 s into the first $(basename "$f" .txt | cut -d- -f2) run (100% = one core):"
    sed 's/^/  /' "$f"
done
if [ "$PT_ERRORS" != 0 ]; then
    echo
    echo "postern log, WARN/ERROR lines (first 10):"
    sed 's/\x1b\[[0-9;]*m//g' "$PT_DIR/server.log" | grep -E ' (ERROR|WARN) ' | head -10 | sed 's/^/  /'
fi
grep -q FAIL "$RESULTS" && exit 1
exit 0

#!/usr/bin/env bash
# WebSocket fan-out bench on this machine. Starts its OWN redis-server and
# secantusd-py (free ports, a temp dir; the Redis on 6379 and .data/ are never
# touched) and, for each watcher count, a FRESH release flashsale server (so
# each memory reading starts from a clean process), then runs
#
#   flashsale-load ws --watchers N --server-pid PID
#
# which opens N WebSocket connections from 127.0.0.1 (at most
# CONNECT_CONCURRENCY handshakes at once), has each join one sale, reads the
# server's VmRSS before and after (idle), then makes PURCHASES purchases
# INTERVAL seconds apart and times each watcher's stockUpdate. It prints a
# table: watchers, held, handshake p50/p99, purchase-to-stockUpdate delay
# p50/p99/max, server RSS per idle connection, missed updates. Every process it
# started is stopped on exit.
#
# The server runs with the defaults except: IP_ALLOW=127.0.0.1/32 (every
# request comes from one address, as in scripts/bench.sh),
# WS_MAX_CONNECTIONS_PER_IP=30000, WS_MAX_CONNECTIONS=30000 and
# MAX_CONNECTIONS=40000 (all watchers
# share that address). The open-files limit is raised to 65536, or to the
# hard limit when that is lower; it is reported.
#
# Environment:
#   WATCHERS             watcher counts, space-separated (default "1000 10000"; each at most 20000)
#   PURCHASES            purchases per run (default 20)
#   INTERVAL             seconds between purchases (default 0.5)
#   JITTER               each purchase is delayed by a random 0..JITTER s more, so purchases
#                        sample every phase of the server's 100 ms coalescing tick (default 0.1)
#   CONNECT_CONCURRENCY  handshakes in flight at once (default 500)
#   CONNECT_RATE         new connections per second (default: unpaced)
#   MAX_TIME             bound on each flashsale-load ws run, seconds (default 300, the cap)
#   SKIP_BUILD=1         use the existing target/release binaries
#   WS_BENCH_OUT         also copy the table to this file
#   CARGO_TARGET_DIR     honoured as usual
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init ws-bench 2 # stdout is the table
stop_timeout=30

WATCHERS="${WATCHERS:-1000 10000}"
PURCHASES="${PURCHASES:-20}"
INTERVAL="${INTERVAL:-0.5}"
JITTER="${JITTER:-0.1}"
CONNECT_CONCURRENCY="${CONNECT_CONCURRENCY:-500}"
CONNECT_RATE="${CONNECT_RATE:-}"
MAX_TIME="${MAX_TIME:-300}"
read -r -a watcher_counts <<<"$WATCHERS"
((${#watcher_counts[@]} >= 1)) || die "WATCHERS is empty"
for w in "${watcher_counts[@]}"; do
  if ! [[ "$w" =~ ^[0-9]+$ ]] || ((w < 1 || w > 20000)); then
    die "each of WATCHERS must be from 1 to 20000, got '$w'"
  fi
done
for v in PURCHASES CONNECT_CONCURRENCY MAX_TIME; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ "$INTERVAL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "INTERVAL must be a number of seconds, got '$INTERVAL'"
[[ "$JITTER" =~ ^[0-9]*\.?[0-9]+$ ]] || die "JITTER must be a number of seconds, got '$JITTER'"
[[ -z "$CONNECT_RATE" || "$CONNECT_RATE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "CONNECT_RATE must be a number, got '$CONNECT_RATE'"
((MAX_TIME >= 1 && MAX_TIME <= 300)) || die "MAX_TIME must be from 1 to 300"

require redis-server redis-cli jq curl python3 timeout

# --- open files: every watcher is one socket in the generator and one in the server
want_fds=65536
if ! ulimit -n "$want_fds" 2>/dev/null; then
  hard="$(ulimit -Hn)"
  if [[ "$hard" == unlimited ]]; then
    die "cannot raise the open-files limit to $want_fds"
  fi
  ulimit -n "$hard" || die "cannot raise the open-files limit to the hard limit $hard"
fi
fds="$(ulimit -n)"
fd_note="open files: ulimit -n $fds (asked for $want_fds; hard limit $(ulimit -Hn)), inherited by the server and the generator"
log "$fd_note"
for w in "${watcher_counts[@]}"; do
  if [[ "$fds" != unlimited ]] && ((w + 64 > fds)); then
    die "WATCHERS $w needs about $((w + 64)) open files per process; the limit here is $fds"
  fi
done

# --- what the machine looked like before we started ---------------------------
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
cores="$(nproc)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
clk_tck="$(getconf CLK_TCK 2>/dev/null || echo 100)"

make_temp_dir flashsale-ws-bench

# --- set-up and build ------------------------------------------------------------
prepare_binaries

# --- the stores: one redis-server and one secantusd-py for every run --------------
redis_port="$(free_port)"
start_redis "redis-server" "$redis_port" "$tmp/redis" "$tmp/redis/redis.log"
log "redis on 127.0.0.1:$redis_port"

mongo_port="$(free_port)"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo" "$tmp/secantusd.log"
log "secantusd-py on 127.0.0.1:$mongo_port"

secret="$(random_token 48)"
admin_email="ws-bench-admin@flashsale.local"
admin_password="$(random_token 24)"
export SECRET_KEY="$secret" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password"

# start_server LOG: a fresh server on a fresh port; sets server_pid, http_port.
start_server() {
  http_port="$(free_port)"
  start_flashsale "flashsale server" "$1" "$server_bin" \
    "$http_port" "$redis_port" "$mongo_port" flashsale_ws_bench \
    SECRET_KEY="$secret" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
    PASSWORD_ITERATIONS=600000 RUST_LOG="${RUST_LOG:-warn}" \
    IP_ALLOW=127.0.0.1/32 WS_MAX_CONNECTIONS_PER_IP=30000 WS_MAX_CONNECTIONS=30000 MAX_CONNECTIONS=40000
  server_pid="$last_pid"
}

# CPU seconds (user + system) a process has used so far.
cpu_secs() {
  awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo "?"
}

# The kernel's count of connections dropped because a listen queue was full
# (system-wide: other processes' listeners count too).
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 } else { print $col["ListenOverflows"] } }' \
    /proc/net/netstat 2>/dev/null || echo "?"
}

failures=0
rate_args=()
if [[ -n "$CONNECT_RATE" ]]; then
  rate_args=(--connect-rate "$CONNECT_RATE")
fi

for i in "${!watcher_counts[@]}"; do
  w="${watcher_counts[$i]}" k="$i-${watcher_counts[$i]}"
  start_server "$tmp/server-$k.log"
  log "run $w watchers: server pid $server_pid on 127.0.0.1:$http_port"
  cpu0="$(cpu_secs "$server_pid")"
  lo0="$(listen_overflows)"
  status=0
  timeout $((MAX_TIME + 30)) "$load_bin" ws --target "127.0.0.1:$http_port" --watchers "$w" \
    --server-pid "$server_pid" --purchases "$PURCHASES" --interval "$INTERVAL" --jitter "$JITTER" \
    --connect-concurrency "$CONNECT_CONCURRENCY" "${rate_args[@]}" --max-time "$MAX_TIME" \
    --json >"$tmp/ws-$k.json" 2>"$tmp/ws-$k.log" || status=$?
  sed 's/^/  | /' "$tmp/ws-$k.log" >&2
  cpu1="$(cpu_secs "$server_pid")"
  lo1="$(listen_overflows)"
  printf '%s\n' "$cpu0 $cpu1 $lo0 $lo1" >"$tmp/cpu-$k.txt"
  if ((status != 0)); then
    log "run $w: flashsale-load exited with status $status"
    failures=$((failures + 1))
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    log "run $w: the server died; last lines of its log:"
    tail -n 30 "$tmp/server-$k.log" >&2 || true
    failures=$((failures + 1))
  else
    stop_pid "flashsale server" "$server_pid"
  fi
  # Warnings and errors, timestamps cut, counted by message.
  grep -E ' (WARN|ERROR) ' "$tmp/server-$k.log" | cut -d' ' -f2- | sort | uniq -c |
    sort -rn | head -n 5 >"$tmp/warn-$k.txt" || true
done

# --- the table ---------------------------------------------------------------------
row() { # INDEX-WATCHERS (a run; WATCHERS may repeat a count)
  local w="${1#*-}" f="$tmp/ws-$1.json"
  if ! jq -e . "$f" >/dev/null 2>&1; then
    printf '%8s  %s\n' "$w" "no result (see the log above)"
    return
  fi
  jq -r --arg w "$w" '[
      $w,
      "\(.held_end)/\(.attempted)",
      "\(.handshake_ms.p50)/\(.handshake_ms.p99)",
      "\(.delay_ms.p50)/\(.delay_ms.p99)/\(.delay_ms.max)",
      (if .server_kib_per_conn == null then "n/a" else "\(.server_kib_per_conn)" end),
      "\(.missed_updates) (\(.watchers_missing) watchers)"
    ] | @tsv' "$f" |
    awk -F'\t' '{ printf "%8s  %13s  %18s  %26s  %19s  %s\n", $1, $2, $3, $4, $5, $6 }'
}

detail() { # WATCHERS
  local k="$1" w="${1#*-}" f="$tmp/ws-$1.json" cpu c0 c1 l0 l1 lo
  jq -e . "$f" >/dev/null 2>&1 || return 0
  read -r c0 c1 l0 l1 <"$tmp/cpu-$k.txt"
  cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { if (a == "?" || b == "?") print "?"; else printf "%.1f", b - a }')"
  lo="$(awk -v a="$l0" -v b="$l1" 'BEGIN { if (a == "?" || b == "?") print "?"; else print b - a }')"
  jq -r --arg w "$w" --arg cpu "$cpu" --arg lo "$lo" '
    "  \($w): connected in \(.connect_s) s; TCP connect p50/p99/max \(.connect_ms.p50)/\(.connect_ms.p99)/\(.connect_ms.max) ms; join p50/p99 \(.join_ms.p50)/\(.join_ms.p99) ms; kernel listen-queue overflows during the run \($lo)",
    "      server RSS KiB before \(.server_rss_kib.before), idle \(.server_rss_kib.idle), after purchases \(.server_rss_kib.after), peak \(.server_rss_kib.peak); generator \(.client_kib_per_conn) KiB/conn",
    "      purchases \(.purchases_ok)/\(.purchases) answered 201; \(.updates_received) stockUpdates received (\(.delivered) watcher x purchase deliveries); other events \(.other_events | tojson); server CPU during the run \($cpu) s",
    (if (.failures | length) > 0 then "      failed: \(.failures | tojson)" else empty end),
    (if (.ended_early | length) > 0 then "      ended early: \(.ended_early | tojson)" else empty end),
    "      checks: \([.checks[] | "\(.name) \(if .pass then "PASS" else "FAIL" end)"] | join(", "))"
  ' "$f"
  if [[ -s "$tmp/warn-$k.txt" ]]; then
    echo "      server warnings/errors (count, message):"
    sed 's/^/        /' "$tmp/warn-$k.txt"
  fi
}

{
  echo
  echo "flashsale WebSocket bench, $started_at (UTC)"
  echo "machine: nproc $cores; load average before start: $load_before; $fd_note"
  echo "sharing: redis-server, secantusd-py, the flashsale server (tokio, one worker per core) and"
  echo "  flashsale-load ws (tokio, one worker per core) all run unpinned on the same $cores cores; the"
  echo "  watchers' receive times include the generator's own wake-up of N tasks on those cores."
  echo "settings: a fresh server per row (defaults + IP_ALLOW=127.0.0.1/32 WS_MAX_CONNECTIONS_PER_IP=30000 WS_MAX_CONNECTIONS=30000"
  echo "  MAX_CONNECTIONS=40000; WS_TICK_MS 100 by default); $PURCHASES purchases ${INTERVAL}s apart (+ 0-${JITTER}s jitter), quantity 1, each by a fresh"
  echo "  customer; at most $CONNECT_CONCURRENCY handshakes in flight, connect rate ${CONNECT_RATE:-unpaced}"
  echo "  delay = purchase sent -> first stockUpdate with availableUnits <= that purchase's remainingUnits,"
  echo "  over every watcher x purchase; RSS/conn = (server VmRSS idle with all joined - before) / held"
  echo
  printf '%8s  %13s  %18s  %26s  %19s  %s\n' "watchers" "held" "handshake p50/p99" "delay ms p50/p99/max" "server KiB/idle conn" "missed updates"
  printf '%8s  %13s  %18s  %26s  %19s  %s\n' "" "" "ms" "" "" ""
  for i in "${!watcher_counts[@]}"; do row "$i-${watcher_counts[$i]}"; done
  echo
  for i in "${!watcher_counts[@]}"; do detail "$i-${watcher_counts[$i]}"; done
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$tmp/table.txt"

if [[ -n "${WS_BENCH_OUT:-}" ]]; then
  cp "$tmp/table.txt" "$WS_BENCH_OUT"
fi

if ((failures > 0)); then
  log "$failures run(s) failed a check or did not finish"
  exit 1
fi

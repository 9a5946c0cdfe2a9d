#!/usr/bin/env bash
# End-to-end throughput bench on this machine. Starts its OWN redis-server,
# secantusd-py and release flashsale server (free ports, a temp dir; the Redis
# on 6379 and .data/ are never touched; the server trusts 127.0.0.1 through
# IP_ALLOW so per-IP limits do not cap the single load address), then
# measures RUNS times each:
#
#   a. the limit: redis-benchmark running lua/purchase.lua directly (EVALSHA)
#      at the same concurrency, on a separate redis-server;
#   b. the service buy path: flashsale-load purchase, closed model, a sale too
#      large to sell out;
#   c. the rejection path: flashsale-load purchase --mode sold-out;
#   d. the HTTP floor: flashsale-load get --path /healthz;
#   e. the buy path in the open model at half of b's rate;
#   h. as e, while flashsale-load signin-flood sends FLOOD_RATE made-up
#      sign-ins per second (open model) from 300 loopback addresses at a time,
#      each run from addresses no earlier run used (runs alternate with e's);
#   g. as b, against a second server on a replicated Redis with
#      REDIS_ACK_REPLICAS=1 (runs alternate with b's);
#   k. as g, against a server on the same replicated Redis with
#      REDIS_ACK_REPLICAS=0 (runs alternate with g's): g/k is what the
#      confirmation itself costs, with the replica's CPU on both sides;
#   i. overload: the buy path with 10x the connections, against a third
#      server (on the service's stores) admitting at most CONNECTIONS
#      requests at once (MAX_IN_FLIGHT); a refused client waits out the
#      Retry-After as the web console does;
#   j. as i, but a refused client asks again at once (the harshest client:
#      the load generator then spends its CPU on refusals);
#   f. a leaderboard page in the open model;
#   w. the write-behind: a STORM-second storm as b, then the seconds until
#      MongoDB holds every order and the server's CPU per order meanwhile,
#      beside the store's own insert rate through pymongo (same batches and
#      write concern; runs alternate);
#   m. memory: the server's RSS per idle WebSocket (flashsale-load ws);
#
# and prints a table of min/median/max req/s, median p50/p99, the ratios
# b/a, c/d, g/b, i/b and h/e (from medians), and a CPU table: for every part,
# the CPU time (user + system, /proc) of the server, its Redis, the load
# generator and the store over the measured window, per request, with
# Redis's own usec_per_call for EVALSHA (INFO commandstats). The runs of a and b alternate, as do those of c
# and d, so a drift in the shared machine's speed lands on both sides of a
# ratio. Every process it started is stopped on exit.
#
# Environment:
#   RUNS           repetitions of each part (default 3)
#   CONNECTIONS    concurrent connections/clients in every part (default 64)
#   DURATION       measured seconds per run (default 10, at most 300)
#   WARMUP         unmeasured seconds before each flashsale-load run (default 1)
#   DRAIN_TIMEOUT  seconds flashsale-load waits for the write-behind to reach
#                  secantusd-py after each purchase run (default 300, the cap;
#                  the Python Mongo-wire server absorbs ~1,500 orders/s here)
#   LEADERBOARD_RATE  open-model rate of part f (default 1000 req/s)
#   FLOOD_RATE     sign-ins per second of part h's flood (default 700, the rate the
#                  earlier closed-loop flood sent at against the 2026-12-07 server)
#   STORM          seconds of part w's storm (default 30)
#   BUYERS         distinct customers in b and c (default 100000; with fewer, the
#                  per-user limit of 5 purchases/s starts answering 429)
#   STORE_SCHED    idle (default): secantusd-py runs under SCHED_IDLE (chrt --idle 0),
#                  so it only gets CPU time no other process wants, as a store
#                  on its own host would take none of the service's; normal:
#                  it shares the cores like every other process
#   PARTS          the parts to run, e.g. "g k" or "e h" (default: every part,
#                  "a b c d e f g h i j k w m"); the table shows "-" for the rest
#   E_RATE         open-model rate of e and h (default half of b's median; required
#                  when PARTS runs e or h without b)
#   SKIP_BUILD=1   use the existing target/release binaries
#   CARGO_TARGET_DIR  honoured as usual
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init bench 2 # stdout is the table
stop_timeout=15

RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300}"
BUYERS="${BUYERS:-100000}"
FLOOD_RATE="${FLOOD_RATE:-700}"
STORM="${STORM:-30}"
for v in RUNS CONNECTIONS DURATION WARMUP DRAIN_TIMEOUT BUYERS FLOOD_RATE STORM; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((RUNS >= 1 && RUNS <= 20)) || die "RUNS must be from 1 to 20"
((CONNECTIONS >= 1 && CONNECTIONS <= 4096)) || die "CONNECTIONS must be from 1 to 4096"
((DURATION >= 1 && WARMUP + DURATION <= 300)) || die "DURATION must be >= 1 and WARMUP + DURATION <= 300"
((DRAIN_TIMEOUT <= 300)) || die "DRAIN_TIMEOUT must be at most 300"
((FLOOD_RATE >= 1 && FLOOD_RATE <= 100000)) || die "FLOOD_RATE must be from 1 to 100000"
((STORM >= 1 && WARMUP + STORM <= 300)) || die "STORM must be >= 1 and WARMUP + STORM <= 300"
((CONNECTIONS * 10 <= 4096)) || die "CONNECTIONS must be at most 409 (part i opens 10x as many)"
all_parts="a b c d e f g h i j k w m"
PARTS="${PARTS:-$all_parts}"
for p in $PARTS; do
  [[ " $all_parts " == *" $p "* ]] || die "PARTS may hold only the parts $all_parts, got '$p'"
done
# want PART: true when PARTS asks for it.
want() { [[ " $PARTS " == *" $1 "* ]]; }
E_RATE="${E_RATE:-}"
[[ -z "$E_RATE" || "$E_RATE" =~ ^[1-9][0-9]*$ ]] || die "E_RATE must be a positive whole number, got '$E_RATE'"
if { want e || want h; } && ! want b && [[ -z "$E_RATE" ]]; then
  die "E_RATE must be set when PARTS runs e or h without b (their rate is half of b's median)"
fi
STORE_SCHED="${STORE_SCHED:-idle}"
case "$STORE_SCHED" in
  idle) store_prefix=(chrt --idle 0) ;;
  normal) store_prefix=() ;;
  *) die "STORE_SCHED must be idle or normal, got '$STORE_SCHED'" ;;
esac

require redis-server redis-cli redis-benchmark jq curl python3 timeout chrt

# --- what the machine looked like before we started ---------------------------
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
cores="$(nproc)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

make_temp_dir flashsale-bench

# --- set-up and build ------------------------------------------------------------
prepare_binaries

# --- the service: its own redis, secantusd-py and server -------------------------
redis_port="$(free_port)"
start_redis "redis-server (service)" "$redis_port" "$tmp/redis" "$tmp/redis/redis.log"
redis_pid="$last_pid"
log "service redis on 127.0.0.1:$redis_port"

mongo_port="$(free_port)"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo" "$tmp/secantusd.log"
store_pid="$last_pid"
# spawn's setsid gives every process its own session, and with the kernel's
# autogroup scheduling (sched_autogroup_enabled) CPU is shared fairly between
# sessions first: SCHED_IDLE inside a session of its own would change
# nothing. So the store's session gets the lowest weight too (nice 19).
# Only the store's own session is changed, never this script's (which the
# load generator shares).
store_autogroup="unchanged"
if [[ "$STORE_SCHED" == idle ]]; then
  own_group="$(awk '{ print $1 }' /proc/$$/autogroup 2>/dev/null || true)"
  store_group="$(awk '{ print $1 }' "/proc/${store_pid:-0}/autogroup" 2>/dev/null || true)"
  if [[ -n "$store_group" && "$store_group" != "$own_group" ]] &&
    echo 19 >"/proc/$store_pid/autogroup" 2>/dev/null; then
    store_autogroup="$(cat "/proc/$store_pid/autogroup")"
  fi
fi
log "secantusd-py on 127.0.0.1:$mongo_port"

http_port="$(free_port)"
secret="$(random_token 48)"
admin_email="bench-admin@flashsale.local"
admin_password="$(random_token 24)"
# start_bench_server NAME LOG PORT REDIS_PORT DB [ENV...]: a release server on
# the bench's store with the settings every bench server shares (one secret
# and admin, production password hashing, all load trusted from 127.0.0.1);
# sets last_pid.
start_bench_server() {
  local name="$1" logfile="$2" port="$3" rport="$4" db="$5"
  shift 5
  start_flashsale "$name" "$logfile" "$server_bin" "$port" "$rport" "$mongo_port" "$db" \
    SECRET_KEY="$secret" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
    PASSWORD_ITERATIONS=600000 RUST_LOG="${RUST_LOG:-warn}" IP_ALLOW=127.0.0.1/32 "$@"
}
start_bench_server "flashsale server" "$tmp/server.log" "$http_port" "$redis_port" flashsale_bench \
  WS_MAX_CONNECTIONS_PER_IP=5000
server_pid="$last_pid"
log "flashsale server on 127.0.0.1:$http_port (ready)"

# --- part g: a second server on a replicated Redis with REDIS_ACK_REPLICAS=1 --------
ack_server_pid="" noack_server_pid="" ack_redis_pid=""
if want g || want k; then
  ack_port="$(free_port)"
  ack_replica_port="$(free_port)"
  start_redis "redis-server (ack primary)" "$ack_port" "$tmp/redis-ack" "$tmp/redis-ack/redis.log"
  ack_redis_pid="$last_pid"
  start_redis "redis-server (ack replica)" "$ack_replica_port" "$tmp/redis-ack-replica" \
    "$tmp/redis-ack-replica/redis.log" --replicaof 127.0.0.1 "$ack_port"
  replica_in_sync() { redis-cli -p "$ack_replica_port" INFO replication | grep -q 'master_link_status:up'; }
  wait_until "the ack replica's sync" "$last_pid" 30 replica_in_sync
  ack_http_port="$(free_port)"
  start_bench_server "flashsale server (ack)" "$tmp/server-ack.log" "$ack_http_port" "$ack_port" flashsale_bench_ack \
    REDIS_ACK_REPLICAS=1 REDIS_ACK_TIMEOUT_MS=1000
  ack_server_pid="$last_pid"
  log "flashsale server with REDIS_ACK_REPLICAS=1 on 127.0.0.1:$ack_http_port (primary $ack_port, replica $ack_replica_port)"
  # Part k's server: the same replicated Redis and database, no confirmation.
  # Both instances drain that Redis's order streams (one consumer group), as
  # two instances of one service do.
  noack_http_port="$(free_port)"
  start_bench_server "flashsale server (replicated, no ack)" "$tmp/server-noack.log" "$noack_http_port" "$ack_port" flashsale_bench_ack \
    REDIS_ACK_REPLICAS=0
  noack_server_pid="$last_pid"
  log "flashsale server with REDIS_ACK_REPLICAS=0 on 127.0.0.1:$noack_http_port (the same primary and replica)"
fi

# --- part i: a third server on the service's stores, admitting CONNECTIONS at once --
over_server_pid=""
if want i || want j; then
  over_http_port="$(free_port)"
  start_bench_server "flashsale server (overload)" "$tmp/server-over.log" "$over_http_port" "$redis_port" flashsale_bench \
    MAX_IN_FLIGHT="$CONNECTIONS"
  over_server_pid="$last_pid"
  log "flashsale server with MAX_IN_FLIGHT=$CONNECTIONS on 127.0.0.1:$over_http_port (the service's stores)"
fi

# --- helpers for results ---------------------------------------------------------
# min median max of the numbers on stdin (one per line).
mmm() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - -"; exit }
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f %.1f %.1f\n", v[1], med, v[NR] }'
}
median() { mmm | awk '{ print $2 }'; }
median3() { # median with 3 decimals
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "-"; exit }
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.3f\n", med }'
}

failures=0
declare -A verdict=([a]=PASS [b]=PASS [c]=PASS [d]=PASS [e]=PASS [f]=PASS [g]=PASS [h]=PASS [i]=PASS [j]=PASS [k]=PASS [w]=PASS [m]=PASS)

# --- a. the limit: redis-benchmark EVALSHA purchase.lua ---------------------------
bench_port="" bench_redis_pid="" sha="" bench_n=0
rc() { redis-cli -h 127.0.0.1 -p "$bench_port" "$@"; }
# The call mirrors the engine's (src/engine/mod.rs): 9 keys, 6 arguments,
# no Idempotency-Key, the attempts window at the service's defaults (30 per
# 60 s), and a sale without a per-IP account cap (as flashsale-load creates).
last_key="$(grep -oE '^KEYS\[[0-9]+\]' lua/purchase.lua | tail -n 1)"
last_arg="$(grep -oE '^ARGV\[[0-9]+\]' lua/purchase.lua | tail -n 1)"
[[ "$last_key" == "KEYS[9]" && "$last_arg" == "ARGV[6]" ]] ||
  die "lua/purchase.lua now documents up to $last_key and $last_arg; update part a of scripts/bench.sh"
keys=("{sale:bench}:meta" "{sale:bench}:stock" "{sale:bench}:buyers" "{sale:bench}:lb"
  "{sale:bench}:seq" "{sale:bench}:orders" "{sale:bench}:idem:-" "{sale:bench}:ip:127.0.0.1")
seed_bench() {
  rc FLUSHALL >/dev/null
  rc HSET "{sale:bench}:meta" start 0 end 9999999999999 maxUser 1000000000 maxTx 10 \
    price 100 total 1000000000 state open maxIpAccts 0 >/dev/null
  rc SET "{sale:bench}:stock" 1000000000 >/dev/null
  rc CONFIG RESETSTAT >/dev/null
}
# cpu_ticks PID: user + system CPU of a process in 1/100 s (USER_HZ).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# evalsha_usec PORT: Redis's own usec_per_call for EVALSHA since RESETSTAT.
evalsha_usec() {
  redis-cli -h 127.0.0.1 -p "$1" INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p'
}
if want a; then
  bench_port="$(free_port)"
  start_redis "redis-server (benchmark)" "$bench_port" "$tmp/redis-bench" "$tmp/redis-bench/redis.log"
  bench_redis_pid="$last_pid"
  sha="$(rc SCRIPT LOAD "$(cat lua/purchase.lua)")"
  [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD failed: $sha"
  seed_bench
  probe="$(rc EVALSHA "$sha" 9 "${keys[@]}" "{sale:bench}:att:user:probe" user:probe 1 127.0.0.1 0 30 60000 | head -n 1)"
  [[ "$probe" == 0 ]] || die "EVALSHA probe did not return ACCEPTED (0): $probe"
fi
# Buyers are drawn from 100,000,000 (-r), so nearly every call is a buyer's
# first purchase, as in b (a new sale each run, each buyer buying about
# once): the first purchase is the dearer branch (buyer's first-purchase
# time, leaderboard entry, attempts key).
bench_cmd=(EVALSHA "$sha" 9 "${keys[@]}" "{sale:bench}:att:user:__rand_int__"
  "user:__rand_int__" 1 127.0.0.1 0 30 60000)
# One CSV run of N requests: prints "rps p50 p99".
redis_bench() {
  timeout $((DURATION * 4 + 60)) redis-benchmark -h 127.0.0.1 -p "$bench_port" \
    -c "$CONNECTIONS" -n "$1" -r 100000000 --csv "${bench_cmd[@]}" |
    tail -n 1 | sed 's/^"//; s/"$//' | awk -F'","' '{ print $2, $5, $7 }'
}
if want a; then
  log "a: calibrating redis-benchmark"
  calib="$(redis_bench 20000)"
  calib_rps="${calib%% *}"
  [[ "$calib_rps" =~ ^[0-9.]+$ ]] || die "redis-benchmark calibration failed: '$calib'"
  bench_n="$(awk -v r="$calib_rps" -v d="$DURATION" 'BEGIN { n = int(r * d); if (n < 10000) n = 10000; if (n > 20000000) n = 20000000; print n }')"
  log "a: ${calib_rps} req/s in calibration; $bench_n requests per run (~${DURATION}s)"
fi
: >"$tmp/a.txt"
# One measured run of part a (called between b's runs, below).
run_a() {
  local r="$1" out t0 t1
  seed_bench
  t0="$(cpu_ticks "$bench_redis_pid")"
  out="$(redis_bench "$bench_n")" || true
  t1="$(cpu_ticks "$bench_redis_pid")"
  # CPU per call of the benchmark's redis-server, and its own usec_per_call.
  awk -v a="$t0" -v b="$t1" -v n="$bench_n" -v u="$(evalsha_usec "$bench_port")" \
    'BEGIN { printf "%.3f %s\n", (b - a) * 10000 / n, u }' >>"$tmp/a.cpu.txt"
  [[ "$out" =~ ^[0-9.]+\ [0-9.]+\ [0-9.]+$ ]] || {
    log "a run $r: unexpected redis-benchmark output '$out'"
    verdict[a]=FAIL
    failures=$((failures + 1))
    return 0
  }
  log "a run $r: $out (req/s p50 p99)"
  printf '%s\n' "$out" >>"$tmp/a.txt"
  # The stream must hold one entry per accepted call: the script did real work.
  local stream_len
  stream_len="$(rc XLEN "{sale:bench}:orders")"
  ((stream_len >= bench_n)) || {
    log "a run $r: stream holds $stream_len entries, expected >= $bench_n"
    verdict[a]=FAIL
    failures=$((failures + 1))
  }
}

# --- b/c/d: flashsale-load against the service -------------------------------------
export SECRET_KEY="$secret" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password"
common=(--warmup "$WARMUP" --json)
load_limit=$((WARMUP + (STORM > DURATION ? STORM : DURATION) + DRAIN_TIMEOUT + 240))

# run_load PART ARGS...: one flashsale-load run; its JSON line goes to PART.jsonl.
run_load() {
  local part="$1" status=0 line
  shift
  # TARGET_PORT: the server to load (default: the service's);
  # LOAD_CONNECTIONS, LOAD_DURATION: its connections and measured seconds
  # (default CONNECTIONS, DURATION).
  # CPU_PIDS: the processes charged with the run (default: the service's);
  # CPU_REDIS_PORT: its Redis, whose command statistics restart with the run.
  local rport="${CPU_REDIS_PORT:-$redis_port}"
  redis-cli -h 127.0.0.1 -p "$rport" CONFIG RESETSTAT >/dev/null
  line="$(timeout "$load_limit" "$load_bin" "$@" --target "127.0.0.1:${TARGET_PORT:-$http_port}" \
    --cpu-pids "${CPU_PIDS:-server=$server_pid,redis=$redis_pid,store=$store_pid}" \
    --connections "${LOAD_CONNECTIONS:-$CONNECTIONS}" --duration "${LOAD_DURATION:-$DURATION}" \
    "${common[@]}" 2>"$tmp/$part.last.log")" || status=$?
  printf '%s\n' "$(evalsha_usec "$rport")" >>"$tmp/$part.evalsha.txt"
  redis-cli -h 127.0.0.1 -p "$rport" INFO commandstats | tr -d '\r' | grep '^cmdstat_' >"$tmp/$part.cmdstats.last" || true
  cat "$tmp/$part.last.log" >>"$tmp/$part.log"
  if [[ -n "$line" ]] && jq -e . >/dev/null 2>&1 <<<"$line"; then
    printf '%s\n' "$line" >>"$tmp/$part.jsonl"
    log "$part run: $(jq -r '"\(.achieved_rps) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, outcomes \(.outcomes | tojson), invariants \(if .pass then "PASS" else "FAIL" end)"' <<<"$line")"
    jq -r '.invariants[] | "  \(if .pass then "PASS" else "FAIL" end) \(.name): \(.detail)"' <<<"$line" >&2
  fi
  if ((status != 0)); then
    log "$part run: flashsale-load exited with status $status; its report:"
    sed 's/^/  | /' "$tmp/$part.last.log" >&2
    verdict[$part]=FAIL
    failures=$((failures + 1))
  fi
}

for part in b c d e f g h i j k w; do : >"$tmp/$part.jsonl"; : >"$tmp/$part.evalsha.txt"; done
: >"$tmp/a.cpu.txt"
ack_cpu="server=$ack_server_pid,redis=$ack_redis_pid,store=$store_pid"
noack_cpu="server=$noack_server_pid,redis=$ack_redis_pid,store=$store_pid"
over_cpu="server=$over_server_pid,redis=$redis_pid,store=$store_pid"
# Each ratio's two parts alternate (a b a b ..., c d c d ...), so a drift in
# what the shared machine gives us during the bench lands on both sides.
for ((r = 1; r <= RUNS; r++)); do
  if want a; then
    log "a run $r/$RUNS: redis-benchmark EVALSHA purchase.lua (the limit)"
    run_a "$r"
  fi
  if want b; then
    log "b run $r/$RUNS: purchase (buy path)"
    run_load b purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10 \
      --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
    # Redis commands per purchase (every command the service sent, by name).
    cp "$tmp/b.cmdstats.last" "$tmp/b.cmdstats.$r"
  fi
  if want g; then
    log "g run $r/$RUNS: purchase with REDIS_ACK_REPLICAS=1 (a replica confirms each order)"
    CPU_PIDS="$ack_cpu" CPU_REDIS_PORT="$ack_port" TARGET_PORT="$ack_http_port" run_load g purchase --units 10000000 --max-per-user 1000000 \
      --max-per-tx 10 --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
    cp "$tmp/g.cmdstats.last" "$tmp/g.cmdstats.$r"
  fi
  if want k; then
    log "k run $r/$RUNS: purchase on the replicated Redis with REDIS_ACK_REPLICAS=0"
    CPU_PIDS="$noack_cpu" CPU_REDIS_PORT="$ack_port" TARGET_PORT="$noack_http_port" run_load k purchase --units 10000000 --max-per-user 1000000 \
      --max-per-tx 10 --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
  fi
done
[[ -z "$bench_redis_pid" ]] || stop_pid "redis-server (benchmark)" "$bench_redis_pid"
for ((r = 1; r <= RUNS; r++)); do
  if want c; then
    log "c run $r/$RUNS: purchase --mode sold-out (rejection path)"
    run_load c purchase --mode sold-out --units 100 --max-per-user 10 --max-per-tx 10 \
      --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
  fi
  if want d; then
    log "d run $r/$RUNS: get /healthz (HTTP floor)"
    run_load d get --path /healthz
  fi
done

# e. the buy path in the open model at half of b's median rate: latency from
#    the intended send time, so queueing is not hidden.
# How long each h run's flood lasts: past the purchase run's measured window
# (the purchase generator connects its clients before its warm-up starts),
# so the flood is still alive when the generator samples its CPU at the
# window's end. Rounds of 300 x 30 sign-ins that needs.
flood_secs=$((WARMUP + DURATION + 4))
flood_rounds=$(((FLOOD_RATE * flood_secs + 8999) / 9000))
half_rate="${E_RATE:-$(jq -r '.achieved_rps' "$tmp/b.jsonl" | median | awk '{ printf "%d", $1 / 2 }')}"
rate_source="half of b's median"
[[ -z "$E_RATE" ]] || rate_source="E_RATE"
: >"$tmp/e.jsonl"
: >"$tmp/flood.jsonl"
for ((r = 1; r <= RUNS; r++)); do
  want e || want h || break
  if want e; then
    log "e run $r/$RUNS: purchase, open model at $half_rate req/s ($rate_source)"
    run_load e purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10 \
      --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT" --rate "$half_rate"
  fi
  want h || continue
  # h. the same, while a sign-in flood runs for the whole measured run: 300
  #    addresses outside IP_ALLOW, 30 made-up sign-ins each, round after round.
  #    Each run's rounds come from addresses no earlier run used, so every
  #    run meets fresh attackers (not ones the per-address limits already
  #    refuse).
  log "h run $r/$RUNS: as e, during a sign-in flood of $FLOOD_RATE/s from 300 loopback addresses at a time"
  "$load_bin" signin-flood --target "127.0.0.1:$http_port" --addresses 300 --per-address 30 \
    --rate "$FLOOD_RATE" --duration "$flood_secs" --json \
    --first-round "$((((r - 1) * flood_rounds) % 160))" \
    >>"$tmp/flood.jsonl" 2>>"$tmp/flood.log" &
  flood_pid=$!
  CPU_PIDS="server=$server_pid,redis=$redis_pid,store=$store_pid,flood=$flood_pid" run_load h purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10 \
    --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT" --rate "$half_rate"
  wait "$flood_pid" || {
    log "h run $r: the sign-in flood failed: $(tail -n 3 "$tmp/flood.log")"
    verdict[h]=FAIL
    failures=$((failures + 1))
  }
done

# i. overload: 10x the connections of b in the closed model against the
#    server that admits CONNECTIONS requests at once; what it cannot admit
#    gets a 503 with Retry-After at once, which i's clients wait out and j's
#    ignore. Accepted purchases per second are compared with b's (i/b and
#    j/b, goal 0.9).
for ((r = 1; r <= RUNS; r++)); do
  want i || want j || break
  if want i; then
    log "i run $r/$RUNS: purchase, closed model over $((CONNECTIONS * 10)) connections honouring Retry-After, MAX_IN_FLIGHT=$CONNECTIONS"
    LOAD_CONNECTIONS="$((CONNECTIONS * 10))" CPU_PIDS="$over_cpu" TARGET_PORT="$over_http_port" \
      run_load i purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10 --quantity 1 \
      --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT" --honor-retry-after
  fi
  want j || continue
  log "j run $r/$RUNS: as i, refused clients asking again at once"
  LOAD_CONNECTIONS="$((CONNECTIONS * 10))" CPU_PIDS="$over_cpu" TARGET_PORT="$over_http_port" \
    run_load j purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10 --quantity 1 \
    --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
done

# f. a leaderboard page of 100 in the middle of 100,000 buyers (admin).
: >"$tmp/f.jsonl"
if want f; then
  admin_token="$(curl -fsS -X POST "http://127.0.0.1:$http_port/api/signin" -H 'content-type: application/json' \
    -d "{\"email\":\"$admin_email\",\"password\":\"$admin_password\"}" | jq -r .accessToken)"
  lb_product="$(curl -fsS -X POST "http://127.0.0.1:$http_port/api/products" -H "authorization: Bearer $admin_token" \
    -H 'content-type: application/json' -d '{"name":"leaderboard bench","price":1}' | jq -r .id)"
  lb_sale="$(curl -fsS -X POST "http://127.0.0.1:$http_port/api/flash-sales" -H "authorization: Bearer $admin_token" \
    -H 'content-type: application/json' \
    -d "{\"productId\":\"$lb_product\",\"startTime\":\"$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)\",\"endTime\":\"$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\",\"discount\":0,\"totalUnits\":200000,\"maxPerUser\":2,\"maxPerTransaction\":2,\"maxAccountsPerIp\":0}" | jq -r .id)"
  [[ "$lb_sale" =~ ^[0-9a-f]{24}$ ]] || die "could not create the leaderboard sale"
  # 100,000 buyers written straight into the sale's leaderboard and buyer hash,
  # exactly as the purchase script would have left them.
  redis-cli -h 127.0.0.1 -p "$redis_port" EVAL "
    for i = 1, 100000 do
      local u = string.format('%024x', i)
      redis.call('ZADD', KEYS[1], i, u)
      redis.call('HSET', KEYS[2], u, 1 + i % 2, 't:' .. u, 1700000000000 + i)
    end
    return redis.call('ZCARD', KEYS[1])" 2 "{sale:$lb_sale}:lb" "{sale:$lb_sale}:buyers" >/dev/null
  for ((r = 1; r <= RUNS; r++)); do
    log "f run $r/$RUNS: leaderboard page of 100 at offset 50000 of 100,000 buyers"
    # Open model at a fixed rate: a latency figure, not a saturation one.
    LOAD_BEARER="$admin_token" run_load f get --path "/api/leaderboard?flashSaleId=$lb_sale&offset=50000&limit=100" \
      --rate "${LEADERBOARD_RATE:-1000}"
  done
fi

# w. the write-behind after a storm, beside the store's own insert rate.
: >"$tmp/store-rate.txt"
for ((r = 1; r <= RUNS; r++)); do
  want w || break
  log "w run $r/$RUNS: the store's insert rate through pymongo (20,000 orders in batches of 500)"
  if out="$(timeout 300 "$root/.venv/bin/python" "$root/scripts/store-insert-rate.py" \
    "mongodb://127.0.0.1:$mongo_port/?directConnection=true" flashsale_bench_rate 20000 500 2>>"$tmp/store-rate.log")"; then
    log "w run $r: store: $out (orders seconds orders/s)"
    printf '%s\n' "$out" >>"$tmp/store-rate.txt"
  else
    log "w run $r: the pymongo insert run failed: $(tail -n 3 "$tmp/store-rate.log")"
    verdict[w]=FAIL
    failures=$((failures + 1))
  fi
  log "w run $r/$RUNS: a ${STORM}s storm as b, then the drain into MongoDB"
  LOAD_DURATION="$STORM" run_load w purchase --units 10000000 --max-per-user 1000000 \
    --max-per-tx 10 --quantity 1 --buyers "$BUYERS" --drain-timeout "$DRAIN_TIMEOUT"
done

# m. the server's memory per idle WebSocket.
: >"$tmp/m.jsonl"
if want m; then
  log "m: 2,000 idle WebSocket watchers of one sale"
  if ! timeout 300 "$load_bin" ws --target "127.0.0.1:$http_port" --watchers 2000 --purchases 5 \
    --interval 0.2 --server-pid "$server_pid" --json >>"$tmp/m.jsonl" 2>"$tmp/m.log"; then
    log "m: flashsale-load ws failed: $(tail -n 3 "$tmp/m.log")"
    verdict[m]=FAIL
    failures=$((failures + 1))
  fi
fi

server_rss_peak="$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo '?')"

kill -0 "$server_pid" 2>/dev/null || die "the flashsale server died during the bench"

# --- the table ---------------------------------------------------------------------
row() { # PART LABEL
  local part="$1" label="$2" rps p50 p99
  if [[ "$part" == a ]]; then
    rps="$(awk '{ print $1 }' "$tmp/a.txt" | mmm)"
    p50="$(awk '{ print $2 }' "$tmp/a.txt" | median3)"
    p99="$(awk '{ print $3 }' "$tmp/a.txt" | median3)"
  else
    rps="$(jq -r '.achieved_rps' "$tmp/$part.jsonl" | mmm)"
    p50="$(jq -r '.latency_ms.p50' "$tmp/$part.jsonl" | median3)"
    p99="$(jq -r '.latency_ms.p99' "$tmp/$part.jsonl" | median3)"
  fi
  read -r mn md mx <<<"$rps"
  printf '%-2s %-44s %10s %10s %10s %9s %9s  %s\n' "$part" "$label" "$mn" "$md" "$mx" "$p50" "$p99" "${verdict[$part]}"
}
med_of() {
  if [[ "$1" == a ]]; then
    awk '{ print $1 }' "$tmp/a.txt" | median
  else
    jq -r '.achieved_rps' "$tmp/$1.jsonl" | median
  fi
}
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y + 0 > 0 && x != "-") printf "%.3f", x / y; else print "n/a" }'; }

# cpu_of PART PROCESS: min/median/max CPU us per request of PROCESS over the runs.
cpu_of() {
  if [[ "$1" == a ]]; then
    case "$2" in
      redis) awk '{ print $1 }' "$tmp/a.cpu.txt" | mmm ;;
      *) echo "- - -" ;;
    esac
  else
    jq -r --arg p "$2" '.cpu.processes[$p].us_per_request // empty' "$tmp/$1.jsonl" | mmm
  fi
}
cpu_med() { cpu_of "$1" "$2" | awk '{ print $2 }'; }
evalsha_of() {
  if [[ "$1" == a ]]; then awk '{ print $2 }' "$tmp/a.cpu.txt" | grep . | mmm; else grep . "$tmp/$1.evalsha.txt" | mmm; fi
}
cpu_row() { # PART LABEL
  local part="$1" label="$2" out="" proc
  for proc in server redis load store; do
    out+="$(printf ' %18s' "$(cpu_of "$part" "$proc" | tr ' ' /)")"
  done
  printf '%-2s %-30s%s %18s\n' "$part" "$label" "$out" "$(evalsha_of "$part" | tr ' ' /)"
}
# accepted PART: 201s per second of each run.
accepted() { jq -r '((.outcomes["201"] // 0) / .elapsed_s)' "$tmp/$1.jsonl"; }

outcomes() { jq -rs 'map(.outcomes) | add // {} | to_entries | map("\(.key)") | unique | join(", ")' "$tmp/$1.jsonl"; }

{
  echo
  echo "flashsale bench, $started_at (UTC)"
  echo "machine: nproc $cores; load average before start: $load_before"
  echo "sharing: every process (service redis-server, benchmark redis-server, secantusd-py, the flashsale"
  echo "  server, flashsale-load, redis-benchmark) runs unpinned on the same $cores cores, so the load"
  echo "  generator and the write-behind compete with the server for CPU; numbers are for this box only."
  if [[ "$STORE_SCHED" == idle ]]; then
    echo "  secantusd-py ran under SCHED_IDLE (STORE_SCHED=idle), its session's autogroup at nice 19"
    echo "  ($store_autogroup): it gets only CPU time nothing else wants, as a store on its own host would"
    echo "  take none of the service's; the write-behind catches up after. The other processes each run"
    echo "  in a session (autogroup) of their own at equal weight."
  else
    echo "  secantusd-py ran at normal priority (STORE_SCHED=normal): the store takes a full share of the cores."
  fi
  echo "settings: RUNS=$RUNS CONNECTIONS=$CONNECTIONS DURATION=${DURATION}s WARMUP=${WARMUP}s (flashsale-load parts)"
  echo "  server: defaults except IP_ALLOW=127.0.0.1/32 (all load comes from one address, which the"
  echo "    per-IP purchase limit would cap at 50 req/s); per-user limits and the attempts window stay on;"
  echo "    sales are created with maxAccountsPerIp 0 for the same reason"
  echo "  a: redis-benchmark -c $CONNECTIONS -n $bench_n -r 100000000 EVALSHA purchase.lua, 9 keys as the engine"
  echo "     passes them, nearly every call a buyer's first purchase (as in b)"
  echo "     passes them (stock 1e9, separate redis-server)"
  echo "  b: flashsale-load purchase, closed model, 10,000,000 units, $BUYERS buyers, quantity 1;"
  echo "     the write-behind drains into secantusd-py during the run (and is awaited after it)"
  echo "  c: flashsale-load purchase --mode sold-out (100 units sold first, then only rejections), $BUYERS buyers"
  echo "  d: flashsale-load get --path /healthz"
  echo "  e: as b, open model at $half_rate req/s, $rate_source (latency from the intended send time)"
  echo "  h: as e, while flashsale-load signin-flood sends made-up sign-ins from 300 loopback addresses"
  echo "     outside IP_ALLOW (30 each per round, fresh addresses each round); runs alternate with e's"
  echo "  g: as b, against a second server with REDIS_ACK_REPLICAS=1 on its own primary + one replica"
  echo "     (WAIT grouped per connection; runs alternate with b's)"
  echo "  k: as g, against a server on the same primary + replica with REDIS_ACK_REPLICAS=0 (runs"
  echo "     alternate with g's; both servers drain that Redis's orders, as two instances would)"
  echo "  i: as b over $((CONNECTIONS * 10)) connections against a third server on the service's stores with"
  echo "     MAX_IN_FLIGHT=$CONNECTIONS (what it cannot admit is answered 503 with Retry-After); a refused client"
  echo "     waits out the Retry-After (flashsale-load --honor-retry-after), as the web console does"
  echo "  j: as i, a refused client asking again at once (the load generator's CPU goes to refusals)"
  echo "  w: as b for ${STORM}s (one sale of 10,000,000 units), then the drain into secantusd-py"
  echo "  h's flood: open model, $FLOOD_RATE sign-ins/s, each on a new connection, each run from addresses"
  echo "     no earlier run used (signin-flood --first-round), so every run meets fresh attackers"
  echo "  f: GET /api/leaderboard, page of 100 at offset 50000 of 100,000 buyers (admin token), open model at ${LEADERBOARD_RATE:-1000} req/s"
  echo
  printf '%-2s %-44s %10s %10s %10s %9s %9s  %s\n' "" "part" "req/s min" "median" "max" "p50 ms" "p99 ms" "checks"
  row a "redis EVALSHA purchase.lua (the limit)"
  row b "POST /api/purchase-product (buy path)"
  row c "POST /api/purchase-product (sold out)"
  row d "GET /healthz (HTTP floor)"
  row e "POST /api/purchase-product, open, half rate"
  row f "GET /api/leaderboard (100 of 100k), open"
  row g "POST /api/purchase-product, REDIS_ACK_REPLICAS=1"
  row k "POST /api/purchase-product, replicated, ack 0"
  row h "POST /api/purchase-product, open, sign-in flood"
  row i "POST /api/purchase-product, 10x conns, polite"
  row j "POST /api/purchase-product, 10x conns, harsh"
  row w "POST /api/purchase-product, ${STORM}s storm"
  echo
  echo "ratios of medians: b/a = $(ratio "$(med_of b)" "$(med_of a)")  (service buy path / Redis script alone)"
  echo "                   c/d = $(ratio "$(med_of c)" "$(med_of d)")  (rejection path / HTTP floor)"
  echo "                   g/b = $(ratio "$(med_of g)" "$(med_of b)")  (buy path confirmed by a replica / buy path)"
  echo "                   g/k = $(ratio "$(med_of g)" "$(med_of k)")  (the same, both on a replicated Redis: what WAIT costs)"
  echo "p99 ratio of medians: h/e = $(ratio "$(jq -r '.latency_ms.p99' "$tmp/h.jsonl" | median3)" "$(jq -r '.latency_ms.p99' "$tmp/e.jsonl" | median3)")  (purchase p99 during a sign-in flood / without it)"
  echo "sign-in flood answers per h run: $(jq -rc '"\(.sent) in \(.seconds) s \(.outcomes)"' "$tmp/flood.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  echo "outcomes seen in h: $(outcomes h)"
  echo "CPU per h run, cores (the flood generator shares the 2 cores with everything else): $(jq -rc '"flood \(.cpu.processes.flood.cores // "?"), server \(.cpu.processes.server.cores // "?"), redis \(.cpu.processes.redis.cores // "?"), load \(.cpu.processes.load.cores // "?")"' "$tmp/h.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  echo "  the same in e: $(jq -rc '"server \(.cpu.processes.server.cores // "?"), redis \(.cpu.processes.redis.cores // "?"), load \(.cpu.processes.load.cores // "?")"' "$tmp/e.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  echo "outcomes seen: b: $(outcomes b); c: $(outcomes c); d: $(outcomes d)"
  echo "write-behind after each b run (orders of the run; seconds from the storm's end until MongoDB held"
  echo "  every one): $(jq -r '"\(.sale.ordersThisRun // "?") orders: \((.invariants[] | select(.name == "write-behind drained") | .detail | capture("after (?<s>[0-9.]+) s").s) // "?") s"' "$tmp/b.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  echo "p50/p99: medians over runs; a's come from redis-benchmark, the rest from flashsale-load (closed model"
  echo "  but e, f and h, which are open)."
  echo
  echo "CPU per request, microseconds (user + system from /proc over the measured window, divided by the"
  echo "  requests answered in it; min/median/max over runs); the last column is Redis's own usec_per_call"
  echo "  for EVALSHA (INFO commandstats, warm-up included). a's redis is the benchmark's redis-server."
  printf '%-2s %-30s %18s %18s %18s %18s %18s\n' "" "part" "server" "redis" "load" "store" "EVALSHA usec"
  cpu_row a "redis-benchmark EVALSHA"
  cpu_row b "purchase (buy path)"
  cpu_row c "purchase (sold out)"
  cpu_row d "GET /healthz"
  cpu_row e "purchase, open, half rate"
  cpu_row h "purchase, open, sign-in flood"
  cpu_row g "purchase, REDIS_ACK_REPLICAS=1"
  cpu_row k "purchase, replicated, ack 0"
  cpu_row i "purchase, 10x conns, polite"
  cpu_row j "purchase, 10x conns, harsh"
  cpu_row f "GET /api/leaderboard"
  cpu_row w "purchase, ${STORM}s storm"
  echo "Redis commands per purchase in b (every command the service sent during the last run, over its"
  echo "  EVALSHA calls): $(awk -F'[:=,]' '{ sub(/^cmdstat_/, "", $1); c[$1] = $3; t += $3 } END { e = c["evalsha"]; if (e > 0) { printf "%.3f in all;", t / e; for (k in c) if (k != "evalsha" && c[k] / e >= 0.001) printf " %s %.3f", k, c[k] / e } }' "$tmp/b.cmdstats.$RUNS" 2>/dev/null)"
  echo "purchases per WAIT in g (EVALSHA calls over WAIT calls, per run): $(for ((r = 1; r <= RUNS; r++)); do awk -F'[:=,]' '$1 == "cmdstat_evalsha" { e = $3 } $1 == "cmdstat_wait" { w = $3 } END { if (w > 0) printf "%.1f ", e / w; else printf "- " }' "$tmp/g.cmdstats.$r" 2>/dev/null; done)"
  echo
  echo "goals of issue 17 (medians unless said):"
  echo "  server CPU per purchase / per /healthz request (b/d): $(ratio "$(cpu_med b server)" "$(cpu_med d server)")  (goal <= 1.5)"
  echo "  server CPU per sold-out answer / per /healthz request (c/d): $(ratio "$(cpu_med c server)" "$(cpu_med d server)")"
  echo "  service Redis CPU per purchase / benchmark Redis per EVALSHA (b/a): $(ratio "$(cpu_med b redis)" "$(cpu_med a redis)")  (goal <= 1.0)"
  echo "  b/a throughput per run: $(paste -d' ' <(jq -r '.achieved_rps' "$tmp/b.jsonl") <(awk '{ print $1 }' "$tmp/a.txt") | awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $1 / $2 }')  (goal: median >= 0.8, every run >= 0.5)"
  echo "  e p99 per run (ms): $(jq -r '.latency_ms.p99' "$tmp/e.jsonl" | paste -sd ' ')  (goal < 10 in every run)"
  echo "  f p99 per run (ms): $(jq -r '.latency_ms.p99' "$tmp/f.jsonl" | paste -sd ' ')  (goal < 5)"
  echo "issue 14, overload: accepted purchases/s in i / b's req/s (i/b) = $(ratio "$(accepted i | median)" "$(med_of b)")  (goal >= 0.9);"
  echo "  j/b = $(ratio "$(accepted j | median)" "$(med_of b)") (clients ignoring Retry-After)"
  for part in i j; do
    echo "  $part per run: $(jq -rc '"\((.outcomes["201"] // 0) / .elapsed_s | floor) accepted/s of \(.achieved_rps) answered/s, p99 \(.latency_ms.p99) ms, load \(.cpu.processes.load.cores) cores, server \(.cpu.processes.server.cores) cores, \(.outcomes)"' "$tmp/$part.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  done
  echo "the write-behind (w): the store's insert rate through pymongo per run (orders/s): $(awk '{ print $3 }' "$tmp/store-rate.txt" | paste -sd ' ')"
  echo "  per storm: $(jq -rc '"\(.sale.ordersThisRun) orders in \(.elapsed_s | floor) s, \(.sale.pendingWriteBehindAtEnd) still to write at its end, drained \(.sale.drainSeconds) s later: \(.sale.ordersThisRun / (.elapsed_s + .sale.drainSeconds) | floor) orders/s end to end; server CPU while draining \(.sale.drainCpu.processes.server.us_per_request // "?") us per order left"' "$tmp/w.jsonl" | paste -sd ';' | sed 's/;/; /g')"
  echo "  write-behind CPU per order (drain) / server CPU per purchase (b): $(ratio "$(jq -r '.sale.drainCpu.processes.server.us_per_request // empty' "$tmp/w.jsonl" | median)" "$(cpu_med b server)")  (goal <= 0.1)"
  echo "memory (m): $(jq -rc '"\(.held_idle) idle WebSockets held, server \(.server_kib_per_conn) KiB each (goal < 16), peak RSS \(.server_rss_kib.peak) KiB"' "$tmp/m.jsonl" 2>/dev/null)"
  echo "server peak RSS (VmHWM): ${server_rss_peak} KiB"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$tmp/table.txt"

if [[ -n "${BENCH_OUT:-}" ]]; then
  cp "$tmp/table.txt" "$BENCH_OUT"
fi

# On a failure the clean-up prints the last lines of every log.
((failures == 0)) || die "$failures failed run(s) or check(s)"

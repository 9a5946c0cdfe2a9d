#!/usr/bin/env bash
# Instruction counts per request of the release server, with callgrind, over
# a fixed number of requests: unlike CPU time on this shared 2-core box they
# repeat from run to run, so a change to the hot path can be judged by a
# single run. Starts its OWN redis-server, secantusd-py and release flashsale
# server under `valgrind --tool=callgrind` (free ports, a temp dir; the Redis
# on 6379 is never touched), then for each part in PARTS:
#
#   purchase  flashsale-load purchase, REQUESTS first purchases of a large sale
#             (the buy path; the write-behind's work for them is counted too,
#             as flashsale-load waits until MongoDB holds every order)
#   soldout   flashsale-load purchase --mode sold-out (the rejection path)
#   healthz   flashsale-load get --path /healthz (the HTTP floor)
#
# zeroes the counters (callgrind_control --zero), runs the part and dumps
# them (callgrind_control --dump), and prints the server's instructions (Ir)
# per request, the ratio of each part to healthz, and the functions with the
# most inclusive instructions per request. Only the server's user-space
# instructions are counted: the kernel's share (sockets, wake-ups) is not,
# nor Redis's. Background work paced by the clock (the realtime tick, lease
# renewals) runs about 50x as often per request under valgrind; it is small
# but shows in the table under its own functions.
#
# Environment:
#   PARTS        parts to run, space-separated (default "healthz soldout purchase")
#   REQUESTS     measured requests per part (default 20000)
#   CONNECTIONS  concurrent connections (default 16)
#   TOP          functions listed per part (default 40)
#   PROFILE_OUT  keep the callgrind files in this directory (default: removed)
#   SKIP_BUILD=1 use the existing target/release binaries (the set-up still runs,
#                with SETUP_PROFILING=1 so that it installs valgrind)
#   CARGO_TARGET_DIR  honoured as usual
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init profile 2 # stdout is the report
stop_timeout=60

PARTS="${PARTS:-healthz soldout purchase}"
REQUESTS="${REQUESTS:-20000}"
CONNECTIONS="${CONNECTIONS:-16}"
TOP="${TOP:-40}"
for v in REQUESTS CONNECTIONS TOP; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((REQUESTS >= 100 && REQUESTS <= 1000000)) || die "REQUESTS must be from 100 to 1000000"
((CONNECTIONS >= 1 && CONNECTIONS <= 1024)) || die "CONNECTIONS must be from 1 to 1024"
read -r -a parts <<<"$PARTS"
((${#parts[@]} >= 1)) || die "PARTS is empty"
for p in "${parts[@]}"; do
  case "$p" in
    purchase | soldout | healthz) ;;
    *) die "PARTS: unknown part '$p' (purchase, soldout, healthz)" ;;
  esac
done

make_temp_dir flashsale-profile
# The set-up installs valgrind (callgrind) when asked to.
export SETUP_PROFILING=1
prepare_binaries
require valgrind callgrind_control callgrind_annotate redis-cli jq

redis_port="$(free_port)"
start_redis "redis-server" "$redis_port" "$tmp/redis" "$tmp/redis/redis.log"
redis_pid="$last_pid"
mongo_port="$(free_port)"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo" "$tmp/secantusd.log"
store_pid="$last_pid"

http_port="$(free_port)"
secret="$(random_token 48)"
# The server runs under valgrind through a wrapper (start_flashsale takes one
# program). Instrumentation starts off, so start-up is not counted; each part
# turns it on after zeroing the counters.
cat >"$tmp/server-under-callgrind" <<EOF_WRAPPER
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no \\
  --callgrind-out-file="$tmp/callgrind.out.%p" "$server_bin"
EOF_WRAPPER
chmod +x "$tmp/server-under-callgrind"
start_timeout=600 start_flashsale "flashsale server (callgrind)" "$tmp/server.log" \
  "$tmp/server-under-callgrind" "$http_port" "$redis_port" "$mongo_port" flashsale_profile \
  SECRET_KEY="$secret" RUST_LOG="${RUST_LOG:-warn}" IP_ALLOW=127.0.0.1/32 \
  PASSWORD_ITERATIONS=1000 PASSWORD_ITERATIONS_INSECURE=1
server_pid="$last_pid"
# valgrind runs the server in the process spawn started (each step execs).
log "flashsale server under callgrind on 127.0.0.1:$http_port (pid $server_pid)"
export SECRET_KEY="$secret"

# One part: zero, collect, run, dump; prints "part requests Ir".
declare -A ir
run_part() {
  local part="$1" args=()
  case "$part" in
    purchase) args=(purchase --units 10000000 --max-per-user 1000000 --max-per-tx 10
      --quantity 1 --buyers 100000 --drain-timeout 300) ;;
    soldout) args=(purchase --mode sold-out --units 100 --max-per-user 10 --max-per-tx 10
      --quantity 1 --buyers 100000 --drain-timeout 300) ;;
    healthz) args=(get --path /healthz) ;;
  esac
  callgrind_control --zero "$server_pid" >/dev/null
  callgrind_control --instr=on "$server_pid" >/dev/null
  local line
  line="$(timeout 3000 "$load_bin" "${args[@]}" --target "127.0.0.1:$http_port" \
    --connections "$CONNECTIONS" --requests "$REQUESTS" --duration 290 --warmup 0 --json \
    2>"$tmp/$part.load.log")" || {
    sed 's/^/  | /' "$tmp/$part.load.log" >&2
    die "$part: flashsale-load failed"
  }
  callgrind_control --dump="$part" "$server_pid" >/dev/null
  callgrind_control --instr=off "$server_pid" >/dev/null
  local n
  n="$(jq -r '.completed' <<<"$line")"
  [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || die "$part: no request count in flashsale-load's report: $line"
  log "$part: $n requests, outcomes $(jq -c .outcomes <<<"$line")"
  local file
  file="$(grep -l "^desc: Trigger: dump $part\$" "$tmp"/callgrind.out.* | head -n 1)"
  [[ -n "$file" ]] || die "$part: callgrind wrote no dump"
  mv "$file" "$tmp/$part.callgrind"
  local total
  total="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$tmp/$part.callgrind")"
  [[ "$total" =~ ^[0-9]+$ ]] || die "$part: no summary line in the dump"
  ir[$part]="$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }')"
  reqs[$part]="$n"
}
declare -A reqs
for p in "${parts[@]}"; do
  log "$p: $REQUESTS requests over $CONNECTIONS connections"
  run_part "$p"
done

echo "flashsale server instructions per request (callgrind, user space only), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit $(git -C "$procs_root" rev-parse --short HEAD 2>/dev/null || echo unknown), $CONNECTIONS connections"
printf '%-10s %10s %14s %10s\n' part requests "Ir/request" "/healthz"
for p in "${parts[@]}"; do
  rel="-"
  [[ -n "${ir[healthz]:-}" ]] && rel="$(awk -v a="${ir[$p]}" -v b="${ir[healthz]}" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-10s %10s %14s %10s\n' "$p" "${reqs[$p]}" "${ir[$p]}" "$rel"
done
for p in "${parts[@]}"; do
  echo
  echo "$p: functions by inclusive instructions per request (top $TOP)"
  callgrind_annotate --inclusive=yes --threshold=100 "$tmp/$p.callgrind" 2>/dev/null |
    sed -E 's/\( +/(/' | awk -v n="${reqs[$p]}" -v top="$TOP" '
      /^-+$/ { dashes++; next }
      dashes >= 4 && /^ *[0-9,]+ / {
        c = $1; gsub(",", "", c); pct = $2
        $1 = ""; $2 = ""; sub(/^ +/, "")
        sub(/ \[[^]]*\]$/, "")
        # file:function -> function (the file is in the kept dumps)
        sub(/^[^ ]*\.(rs|c|h|S):/, "")
        if (length($0) > 120) $0 = substr($0, 1, 117) "..."
        # (read to the end: an early exit would break the pipe)
        if (shown++ < top) printf "%10.0f %8s  %s\n", c / n, pct, $0
      }'
done
if [[ -n "${PROFILE_OUT:-}" ]]; then
  mkdir -p "$PROFILE_OUT"
  for p in "${parts[@]}"; do cp "$tmp/$p.callgrind" "$PROFILE_OUT/"; done
  log "callgrind files kept in $PROFILE_OUT (callgrind_annotate FILE)"
fi

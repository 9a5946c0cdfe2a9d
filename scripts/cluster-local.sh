#!/usr/bin/env bash
# The docker-compose topology as local processes, for machines without Docker:
# one redis-server, one secantusd-py (the Mongo-wire system of record), two
# flashsale instances sharing them, and, when nginx is installed, an nginx in
# front of both (config generated from deploy/nginx.conf with 127.0.0.1
# upstreams). Every process listens on 127.0.0.1 on a free port and keeps its
# data and logs in one temp dir, removed on exit.
#
# Usage:
#   scripts/cluster-local.sh up      start everything, print the URLs, run until
#                                    Ctrl-C/SIGTERM, then stop in order: nginx,
#                                    the apps (SIGTERM, so they drain), the stores
#   scripts/cluster-local.sh check   start everything, run a bounded smoke check
#                                    across both instances (and nginx), stop;
#                                    exit 0 when every check passed
#
# Environment:
#   FLASHSALE_BIN        server binary (default ${CARGO_TARGET_DIR:-target}/debug/flashsale,
#                        built with `cargo build --bin flashsale` when missing)
#   FLASHSALE_BUILD=1    run `cargo build --bin flashsale` even when the binary exists
#   SECANTUSD            Mongo-wire server (default .venv/bin/secantusd-py)
#   SECRET_KEY, ADMIN_EMAIL, ADMIN_PASSWORD
#                        shared by both instances (default: random key, admin@flashsale.local,
#                        random password printed by `up`)
#   FLASHSALE_NO_LB=1    do not start nginx even when it is installed
#   FLASHSALE_KEEP_TMP=1 keep the temp dir (data and logs) after exit
#   FLASHSALE_START_TIMEOUT  seconds each process gets to become ready (default 30)
#   FLASHSALE_STOP_TIMEOUT   seconds each process gets to stop before SIGKILL (default 20)
#   Any other service variable (RUST_LOG, WS_TICK_MS, ...) is passed to both
#   instances. The instances run in their own directories, so a .env file in
#   the repository is not read.
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init cluster

usage() {
  printf 'usage: %s up|check\n' "$0" >&2
  exit 2
}

[[ $# -eq 1 ]] || usage
mode="$1"
case "$mode" in
  up | check) ;;
  *) usage ;;
esac

start_timeout="${FLASHSALE_START_TIMEOUT:-30}"
stop_timeout="${FLASHSALE_STOP_TIMEOUT:-20}"
[[ "$start_timeout" =~ ^[0-9]+$ ]] || die "FLASHSALE_START_TIMEOUT is not a number: '$start_timeout'"
[[ "$stop_timeout" =~ ^[0-9]+$ ]] || die "FLASHSALE_STOP_TIMEOUT is not a number: '$stop_timeout'"
if [[ "${FLASHSALE_KEEP_TMP:-0}" =~ ^(1|true|yes)$ ]]; then
  keep_tmp=1
fi

# The clean-up stops nginx, then the apps, then the stores. Both instances get
# SIGTERM at once, so they drain in parallel.
lb_pid=""
app1_pid=""
app2_pid=""
before_stop() {
  local pid
  stop_pid "nginx" "$lb_pid"
  if [[ -n "$app1_pid$app2_pid" ]]; then
    log "stopping the flashsale instances (SIGTERM: finish requests, drain the write-behind)"
  fi
  for pid in $app1_pid $app2_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}

# --- prerequisites -----------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 ||
  [[ ! -x "$secantusd" ]]; then
  log "redis-server or secantusd-py missing: running scripts/setup.sh"
  bash scripts/setup.sh
fi
require_stores
require curl python3

if [[ -n "${FLASHSALE_BIN:-}" ]]; then
  bin="$FLASHSALE_BIN"
  [[ -x "$bin" ]] || die "FLASHSALE_BIN=$bin is not an executable file"
else
  bin="${CARGO_TARGET_DIR:-target}/debug/flashsale"
  if [[ ! -x "$bin" || "${FLASHSALE_BUILD:-0}" =~ ^(1|true|yes)$ ]]; then
    log "cargo build --bin flashsale"
    cargo build --bin flashsale
  fi
  [[ -x "$bin" ]] || die "$bin not found after cargo build"
fi
[[ "$bin" == /* ]] || bin="$root/$bin"

# nginx in front is part of the topology: without it the check fails naming
# the package, unless FLASHSALE_NO_LB asks for the apps alone.
use_lb=1
if [[ "${FLASHSALE_NO_LB:-0}" =~ ^(1|true|yes)$ ]]; then
  use_lb=0
else
  require nginx
fi

# --- temp dir and ports ------------------------------------------------------------
make_temp_dir flashsale-cluster
if ((use_lb)); then
  # nginx workers may run as another user (nobody when started as root) and
  # must reach their temp dirs under this one.
  chmod 711 "$tmp"
fi
mkdir -p "$tmp/logs" "$tmp/app1" "$tmp/app2"
read -r redis_port mongo_port app1_port app2_port lb_port < <(free_ports 5)
[[ -n "$lb_port" ]] || die "could not find free ports"

# --- stores ----------------------------------------------------------------------------
# The AOF is on and fsynced on every write, as in docker-compose.yml.
log "starting redis-server on 127.0.0.1:$redis_port"
start_redis "redis-server" "$redis_port" "$tmp/redis" "$tmp/logs/redis.log" \
  --appendonly yes --appendfsync always
log "starting secantusd-py on 127.0.0.1:$mongo_port"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo" "$tmp/logs/secantusd.log"

# --- the two instances -------------------------------------------------------------------
export REDIS_URL="redis://127.0.0.1:$redis_port"
export MONGO_URL="mongodb://127.0.0.1:$mongo_port/?directConnection=true"
export BIND_ADDR=127.0.0.1
export SECRET_KEY="${SECRET_KEY:-$(random_token 48)}"
export ADMIN_EMAIL="${ADMIN_EMAIL:-admin@flashsale.local}"
export ADMIN_PASSWORD="${ADMIN_PASSWORD:-$(random_token 20)}"
if ((use_lb)); then
  # nginx connects from 127.0.0.1: trust its X-Forwarded-For.
  export TRUST_PROXY=127.0.0.1
fi
if [[ "$mode" == check ]]; then
  # Every request of the check comes from 127.0.0.1, so the per-IP limits and
  # the multi-account and new-account rules would refuse most of it: switch
  # them off. Cheap password hashing keeps the check fast in a debug build.
  export "${single_address_env[@]}"
fi

log "starting $bin as app1 on 127.0.0.1:$app1_port and app2 on 127.0.0.1:$app2_port"
# Each in its own working directory: no .env is read.
spawn "flashsale app1" "$tmp/logs/app1.log" env -C "$tmp/app1" PORT="$app1_port" "$bin"
app1_pid="$last_pid"
spawn "flashsale app2" "$tmp/logs/app2.log" env -C "$tmp/app2" PORT="$app2_port" "$bin"
app2_pid="$last_pid"

app1="http://127.0.0.1:$app1_port"
app2="http://127.0.0.1:$app2_port"
wait_until "flashsale app1" "$app1_pid" "$start_timeout" http_ok "$app1/readyz"
wait_until "flashsale app2" "$app2_pid" "$start_timeout" http_ok "$app2/readyz"
log "app1 (pid $app1_pid) and app2 (pid $app2_pid) ready"

# --- nginx in front ----------------------------------------------------------------------
lb=""
if ((use_lb)); then
  mkdir -p "$tmp/nginx"
  chmod 711 "$tmp/nginx"
  conf="$tmp/nginx/nginx.conf"
  # deploy/nginx.conf with local upstreams, a local listen address, and its
  # own pid file and temp dirs (the packaged defaults need root).
  sed \
    -e "s|^\([[:space:]]*\)server app1:5050|\1server 127.0.0.1:$app1_port|" \
    -e "s|^\([[:space:]]*\)server app2:5050|\1server 127.0.0.1:$app2_port|" \
    -e "s|^\([[:space:]]*\)listen 5050;|\1listen 127.0.0.1:$lb_port;|" \
    -e "s|^worker_processes .*;|worker_processes 1;\npid $tmp/nginx/nginx.pid;|" \
    -e "s|^http {|http {\n    client_body_temp_path $tmp/nginx/client_body;\n    proxy_temp_path $tmp/nginx/proxy;\n    fastcgi_temp_path $tmp/nginx/fastcgi;\n    uwsgi_temp_path $tmp/nginx/uwsgi;\n    scgi_temp_path $tmp/nginx/scgi;|" \
    deploy/nginx.conf >"$conf"
  for want in "server 127.0.0.1:$app1_port" "server 127.0.0.1:$app2_port" \
    "listen 127.0.0.1:$lb_port;" "pid $tmp/nginx/nginx.pid;" "proxy_temp_path $tmp/nginx/proxy;"; do
    grep -qF "$want" "$conf" || die "deploy/nginx.conf changed shape: could not generate '$want' (see $conf)"
  done
  nginx_args=(-p "$tmp/nginx/" -c "$conf")
  if nginx -h 2>&1 | grep -q -- '-e filename'; then
    nginx_args+=(-e "$tmp/logs/nginx.log")
  fi
  nginx -t -q "${nginx_args[@]}" >>"$tmp/logs/nginx.log" 2>&1 ||
    die "generated nginx config is invalid (see $tmp/logs/nginx.log)"
  log "starting nginx on 127.0.0.1:$lb_port"
  spawn "nginx" "$tmp/logs/nginx.log" nginx "${nginx_args[@]}" -g 'daemon off;'
  lb_pid="$last_pid"
  lb="http://127.0.0.1:$lb_port"
  wait_until "nginx" "$last_pid" "$start_timeout" http_ok "$lb/healthz"
else
  log "FLASHSALE_NO_LB=1: no load balancer"
fi

# --- up: run until a signal or until a child exits ---------------------------------------
if [[ "$mode" == up ]]; then
  cat <<EOF

flashsale cluster is running:
  load balancer  ${lb:-"(none: FLASHSALE_NO_LB=1)"}
  app1           $app1   (metrics $app1/metrics)
  app2           $app2   (metrics $app2/metrics)
  redis          $REDIS_URL
  mongo          $MONGO_URL
  admin          $ADMIN_EMAIL
  password       $ADMIN_PASSWORD
  logs           $tmp/logs
Press Ctrl-C to stop everything.

EOF
  watch_children
fi

# --- check: a bounded smoke test ------------------------------------------------------------
resp="$tmp/response.json"
hdrs="$tmp/response.headers"
status=""
body=""

# req METHOD URL TOKEN BODY [curl args...]: one request (TOKEN and BODY may be
# empty); sets $status and $body, the headers are in $hdrs.
req() {
  local method="$1" url="$2" token="$3" data="$4"
  shift 4
  local args=(-sS --max-time 10 -o "$resp" -D "$hdrs" -w '%{http_code}' -X "$method" "$@")
  if [[ -n "$token" ]]; then
    args+=(-H "authorization: Bearer $token")
  fi
  if [[ -n "$data" ]]; then
    args+=(-H 'content-type: application/json' --data-binary "$data")
  fi
  : >"$resp"
  status="$(curl "${args[@]}" "$url")" || die "$method $url: curl failed"
  body="$(cat "$resp")"
}

# expect WANT WHAT: fails unless the last request answered WANT.
expect() {
  [[ "$status" == "$1" ]] || die "$2: expected HTTP $1, got $status: ${body:0:500}"
}

# jget KEY...: a field of $body (list indices as numbers); strings raw,
# everything else as JSON (true, 15, null...).
jget() {
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
for k in sys.argv[2:]:
    d = d[int(k)] if isinstance(d, list) else d[k]
print(d if isinstance(d, str) else json.dumps(d))
' "$body" "$@" 2>/dev/null || die "no field '$*' in response: ${body:0:500}"
}

checks=0
ok() {
  checks=$((checks + 1))
  log "ok: $*"
}

# Purchases go to app2 and, when present, through nginx (else app1).
front="${lb:-$app1}"
front_name=app1
if [[ -n "$lb" ]]; then
  front_name=nginx
fi

req POST "$app1/api/signin" "" \
  "{\"email\":\"$(json_escape "$ADMIN_EMAIL")\",\"password\":\"$(json_escape "$ADMIN_PASSWORD")\"}"
expect 200 "admin sign-in on app1"
admin="$(jget accessToken)"
ok "admin signed in on app1"

req POST "$app1/api/products" "$admin" \
  '{"name":"Cluster check phone","description":"smoke test","price":100}'
expect 201 "create product on app1"
product="$(jget id)"

start_time="$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)"
end_time="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
req POST "$app1/api/flash-sales" "$admin" \
  "{\"productId\":\"$product\",\"startTime\":\"$start_time\",\"endTime\":\"$end_time\",\"discount\":10,\"totalUnits\":20,\"maxPerUser\":2,\"maxPerTransaction\":2}"
expect 201 "create flash sale on app1"
sale="$(jget id)"
ok "product $product and sale $sale (20 units, 2 per user) created on app1"

tokens=()
for i in 1 2 3; do
  email="customer$i@example.com"
  req POST "$app1/api/signup" "" "{\"name\":\"Customer $i\",\"email\":\"$email\",\"password\":\"correct-horse-$i$i\"}"
  expect 201 "sign-up of $email on app1"
  req POST "$app2/api/signin" "" "{\"email\":\"$email\",\"password\":\"correct-horse-$i$i\"}"
  expect 200 "sign-in of $email on app2"
  tokens+=("$(jget accessToken)")
done
ok "3 customers signed up on app1 and signed in on app2"

purchase() { # URL TOKEN QUANTITY [curl args...]
  local url="$1" token="$2" quantity="$3"
  shift 3
  req POST "$url/api/purchase-product" "$token" "{\"flashSaleId\":\"$sale\",\"quantity\":$quantity}" "$@"
}

key="cluster-check-$RANDOM$RANDOM"
purchase "$app2" "${tokens[0]}" 2 -H "Idempotency-Key: $key"
expect 201 "customer1 buys 2 on app2"
order1="$(jget id)"
[[ "$(jget remainingUnits)" == 18 ]] || die "customer1's purchase: remainingUnits $(jget remainingUnits), expected 18"
ok "customer1 bought 2 units on app2 (order $order1, 18 left)"

purchase "$front" "${tokens[0]}" 2 -H "Idempotency-Key: $key"
[[ "$status" == 200 || "$status" == 201 ]] ||
  die "idempotent replay on $front_name: expected HTTP 200/201, got $status: ${body:0:500}"
[[ "$(jget id)" == "$order1" ]] || die "idempotent replay on $front_name returned order $(jget id), expected $order1"
grep -qi '^idempotent-replayed: *true' "$hdrs" || die "idempotent replay on $front_name: no 'Idempotent-Replayed: true' header"
ok "the same Idempotency-Key on $front_name replayed order $order1"

purchase "$front" "${tokens[0]}" 1
expect 403 "customer1's third unit on $front_name"
[[ "$(jget error code)" == USER_PURCHASE_LIMIT_REACHED ]] ||
  die "customer1's third unit: expected USER_PURCHASE_LIMIT_REACHED, got $(jget error code)"
ok "customer1's third unit refused on $front_name (USER_PURCHASE_LIMIT_REACHED)"

purchase "$front" "${tokens[1]}" 2
expect 201 "customer2 buys 2 on $front_name"
purchase "$app2" "${tokens[2]}" 1
expect 201 "customer3 buys 1 on app2"
purchase "$front" "${tokens[2]}" 1
expect 201 "customer3 buys 1 on $front_name"
ok "customer2 bought 2 on $front_name, customer3 1 on app2 and 1 on $front_name"

sold=6
req GET "$app1/api/flash-sales/$sale" "${tokens[1]}" ""
expect 200 "GET /api/flash-sales/$sale on app1"
available="$(jget availableUnits)"
[[ "$available" == $((20 - sold)) ]] || die "app1 shows availableUnits $available, expected $((20 - sold))"
ok "app1 shows availableUnits $available"

for name in app1 app2; do
  if [[ "$name" == app1 ]]; then url="$app1"; else url="$app2"; fi
  req GET "$url/readyz" "" ""
  expect 200 "$name /readyz"
  req GET "$url/metrics" "" ""
  if [[ "$status" == 404 ]]; then
    warn "$name /metrics answered 404 (metrics not built into this binary yet)"
  else
    expect 200 "$name /metrics"
    grep -q '^# \(TYPE\|HELP\) \|^flashsale_' "$resp" ||
      die "$name /metrics does not look like the Prometheus text format: ${body:0:300}"
    ok "$name /metrics answers the text format ($(grep -c '^flashsale_' "$resp" || true) flashsale_ samples)"
  fi
done
ok "app1 and app2 /readyz answer 200"

if [[ -n "$lb" ]]; then
  req GET "$lb/healthz" "" ""
  expect 200 "nginx /healthz passthrough"
  req GET "$lb/metrics" "" ""
  expect 403 "nginx must deny /metrics"
  # A WebSocket handshake through nginx: 101 proves the Upgrade/Connection
  # headers reach an instance. curl then waits on the open socket until
  # --max-time, hence the exit status is ignored.
  ws_status="$(curl -sS --http1.1 --max-time 2 -o /dev/null -w '%{http_code}' \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
    "$lb/ws?token=${tokens[1]}" 2>/dev/null || true)"
  [[ "$ws_status" == 101 ]] || die "WebSocket handshake through nginx: expected 101, got '$ws_status'"
  ok "nginx: /healthz 200, /metrics 403, WebSocket upgrade on /ws 101"
fi

# The write-behind must bring MongoDB level with Redis.
deadline=$((SECONDS + 15))
while true; do
  req GET "$app1/api/admin/reconcile?flashSaleId=$sale" "$admin" ""
  expect 200 "GET /api/admin/reconcile on app1"
  consistent="$(jget 0 consistent)"
  pending="$(jget 0 pendingWriteBehind)"
  if [[ "$consistent" == true && "$pending" == 0 ]]; then
    break
  fi
  ((SECONDS < deadline)) ||
    die "reconcile did not report consistent:true with pendingWriteBehind 0 within 15s: ${body:0:500}"
  sleep 0.5
done
[[ "$(jget 0 redisSold)" == "$sold" && "$(jget 0 mongoSold)" == "$sold" ]] ||
  die "reconcile: expected $sold units sold in Redis and MongoDB: ${body:0:500}"
ok "reconcile on app1: consistent, $sold units in Redis and MongoDB, nothing pending"

log "check passed ($checks checks; load balancer: ${lb:-none})"

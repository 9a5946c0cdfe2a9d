#!/usr/bin/env bash
# Starts the whole system locally: Redis, SecantusDB (the Mongo-wire system of
# record) and the flashsale server. Ctrl-C (SIGINT) or SIGTERM stops all three:
# the server first (so it can drain and flush), then SecantusDB and Redis.
#
# State lives under .data/ (git-ignored): redis/, mongo/, logs/, secret_key,
# admin_password.
#
# Environment (values already set in the environment always win):
#   REDIS_PORT          port of the local Redis (default 6380; 6379 is left to
#                       any system Redis)
#   MONGO_PORT          port of the local SecantusDB (default 27018)
#   PORT                HTTP port of the server (env, then .env, default 5050)
#   BIND_ADDR           address the server binds (env, then .env, default 127.0.0.1)
#   SECRET_KEY          JWT signing key (env, then .env, else generated once
#                       into .data/secret_key and reused)
#   ADMIN_EMAIL         first admin's email (env, then .env, default admin@flashsale.local)
#   ADMIN_PASSWORD      first admin's password (env, then .env, else generated
#                       once into .data/admin_password and reused)
#   CARGO_TARGET_DIR    where cargo puts the build (default target)
#   SECANTUSD           the Mongo-wire server (default .venv/bin/secantusd-py)
#   FLASHSALE_SKIP_SERVER=1 (or true/yes)
#                       start only Redis and SecantusDB (no build, no server),
#                       print where they listen and wait for Ctrl-C; handy for
#                       running the server from an IDE or `cargo run`
#   FLASHSALE_START_TIMEOUT  seconds to wait for each store to accept
#                       connections (default 30)
#   FLASHSALE_STOP_TIMEOUT   seconds to wait for each process to stop after
#                       SIGTERM before SIGKILL (default 20)
#
# REDIS_URL and MONGO_URL are always set from REDIS_PORT and MONGO_PORT.
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init run

# --- helpers -----------------------------------------------------------------

# Prints the last value of KEY in .env (optional `export `, optional quotes).
dotenv_get() {
  local key="$1" line val
  [[ -f .env ]] || return 1
  line="$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=" .env | tail -n 1)" || return 1
  val="${line#*=}"
  val="${val#"${val%%[![:space:]]*}"}"
  val="${val%"${val##*[![:space:]]}"}"
  if [[ ${#val} -ge 2 && (("$val" == \"*\") || ("$val" == \'*\')) ]]; then
    val="${val:1:${#val}-2}"
  fi
  [[ -n "$val" ]] || return 1
  printf '%s' "$val"
}

# Prints $KEY from the environment, else from .env, else $2 (may be empty).
env_or_dotenv() {
  local key="$1" fallback="${2-}"
  if [[ -n "${!key:-}" ]]; then
    printf '%s' "${!key}"
  elif dotenv_get "$key"; then
    :
  else
    printf '%s' "$fallback"
  fi
}

# Prints the value stored in file $1; when missing or shorter than $3,
# generates a random one of length $2 and stores it (mode 600).
stored_secret() {
  local file="$1" len="$2" min="$3" val=""
  if [[ -f "$file" ]]; then
    val="$(tr -d '\r\n' <"$file")"
  fi
  if ((${#val} < min)); then
    val="$(random_token "$len")"
    (
      umask 077
      printf '%s\n' "$val" >"$file"
    )
    log "generated ${file#"$root"/}" >&2
  fi
  printf '%s' "$val"
}

shell_single_quote() {
  local s="$1"
  printf "'%s'" "${s//\'/\'\\\'\'}"
}

# --- settings ------------------------------------------------------------------
redis_port="${REDIS_PORT:-6380}"
mongo_port="${MONGO_PORT:-27018}"
start_timeout="${FLASHSALE_START_TIMEOUT:-30}"
stop_timeout="${FLASHSALE_STOP_TIMEOUT:-20}"
skip_server="${FLASHSALE_SKIP_SERVER:-0}"
valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }
valid_port "$redis_port" || die "REDIS_PORT is not a port number: '$redis_port'"
valid_port "$mongo_port" || die "MONGO_PORT is not a port number: '$mongo_port'"
[[ "$start_timeout" =~ ^[0-9]+$ ]] || die "FLASHSALE_START_TIMEOUT is not a number: '$start_timeout'"
[[ "$stop_timeout" =~ ^[0-9]+$ ]] || die "FLASHSALE_STOP_TIMEOUT is not a number: '$stop_timeout'"

# --- set-up ----------------------------------------------------------------------
bash scripts/setup.sh

data="$root/.data"
mkdir -p "$data/redis" "$data/mongo" "$data/logs"
redis_log="$data/logs/redis.log"
mongo_log="$data/logs/secantusd.log"

for p in "$redis_port" "$mongo_port"; do
  if tcp_open "$p"; then
    die "port $p on 127.0.0.1 is already in use (stale run.sh? set REDIS_PORT / MONGO_PORT to use other ports)"
  fi
done

# --- the stores ------------------------------------------------------------------
# The AOF is on here (not in scripts/lib/redis.flags, which the tests share).
log "starting redis-server on 127.0.0.1:$redis_port (data .data/redis, log .data/logs/redis.log)"
start_redis "redis-server" "$redis_port" "$data/redis" "$redis_log" \
  --appendonly yes --appendfsync everysec
log "redis-server ready (pid $last_pid)"
log "starting secantusd-py on 127.0.0.1:$mongo_port (data .data/mongo, log .data/logs/secantusd.log)"
start_store "secantusd-py" "$mongo_port" .data/mongo "$mongo_log"
log "secantusd-py ready (pid $last_pid)"

export REDIS_URL="redis://127.0.0.1:$redis_port"
export MONGO_URL="mongodb://127.0.0.1:$mongo_port/?directConnection=true"

server_pid=""
if [[ "$skip_server" =~ ^(1|true|yes)$ ]]; then
  cat <<EOF

Stores are running (FLASHSALE_SKIP_SERVER=1: no build, no server):
  redis  $REDIS_URL   (log .data/logs/redis.log)
  mongo  $MONGO_URL   (log .data/logs/secantusd.log)
Run the server yourself with, for example:
  REDIS_URL='$REDIS_URL' MONGO_URL='$MONGO_URL' cargo run --release
Press Ctrl-C to stop.
EOF
else
  # --- server settings (environment wins, then .env, then generated/default) ---
  port="$(env_or_dotenv PORT 5050)"
  bind_addr="$(env_or_dotenv BIND_ADDR 127.0.0.1)"
  secret_key="$(env_or_dotenv SECRET_KEY)"
  if [[ -z "$secret_key" ]]; then
    secret_key="$(stored_secret "$data/secret_key" 48 32)"
  fi
  admin_email="$(env_or_dotenv ADMIN_EMAIL admin@flashsale.local)"
  admin_password="$(env_or_dotenv ADMIN_PASSWORD)"
  if [[ -z "$admin_password" ]]; then
    admin_password="$(stored_secret "$data/admin_password" 24 8)"
  fi
  valid_port "$port" || die "PORT is not a port number: '$port'"
  if tcp_open "$port"; then
    die "port $port is already in use (set PORT to use another)"
  fi
  export PORT="$port" BIND_ADDR="$bind_addr" SECRET_KEY="$secret_key"
  export ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password"

  log "cargo build --release"
  cargo build --release
  bin="${CARGO_TARGET_DIR:-target}/release/flashsale"
  [[ -x "$bin" ]] || die "$bin not found after cargo build"

  log "starting $bin on $bind_addr:$port"
  spawn "flashsale server" - "$bin"
  server_pid="$last_pid"

  # The server is up when its port accepts connections; it keeps running even
  # when that takes longer than the start timeout.
  deadline=$((SECONDS + start_timeout * 2))
  until tcp_open "$port"; do
    kill -0 "$server_pid" 2>/dev/null || break
    if ((SECONDS >= deadline)); then
      log "warning: server not accepting connections on port $port yet; still waiting"
      break
    fi
    sleep 0.2
  done

  url="http://localhost:$port"
  body="{\"email\":\"$(json_escape "$admin_email")\",\"password\":\"$(json_escape "$admin_password")\"}"
  cat <<EOF

flashsale is running:
  app        $url
  liveness   $url/healthz
  readiness  $url/readyz
  admin      $admin_email
  password   $admin_password
  redis      $REDIS_URL   (log .data/logs/redis.log)
  mongo      $MONGO_URL   (log .data/logs/secantusd.log)
Sign in:
  curl -sS -X POST $url/api/signin -H 'content-type: application/json' -d $(shell_single_quote "$body")
Press Ctrl-C to stop everything.

EOF
fi

# --- run until a signal or until any child exits --------------------------------------
# Only the server may end the run successfully; a store never should.
watch_children "$server_pid"

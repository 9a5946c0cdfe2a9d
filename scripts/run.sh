#!/usr/bin/env bash
# Starts the whole system locally: Redis, SecantusDB (the Mongo-wire system of
# record) and the flashsale server. Ctrl-C (SIGINT) or SIGTERM stops all three:
# the server first (so it can drain and flush), then Redis and SecantusDB.
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

cd "$(dirname "$0")/.."
root="$PWD"

log() { printf 'run: %s\n' "$*"; }
die() {
  printf 'run: error: %s\n' "$*" >&2
  exit 1
}

# --- clean-up: registered before anything is started ------------------------
server_pid=""
redis_pid=""
mongo_pid=""
sleeper_pid=""

# Sends SIGTERM to a child and waits up to the stop timeout, then SIGKILL.
stop_child() {
  local name="$1" pid="$2" deadline
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within ${stop_timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap '' INT TERM HUP # a second Ctrl-C must not cut the clean-up short
  trap - EXIT
  if [[ -n "$sleeper_pid" ]]; then
    kill "$sleeper_pid" 2>/dev/null || true
  fi
  stop_child "flashsale server" "$server_pid"
  stop_child "redis-server" "$redis_pid"
  stop_child "secantusd-py" "$mongo_pid"
  if [[ -n "$server_pid$redis_pid$mongo_pid" ]]; then
    log "stopped"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

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

# Prints a random alphanumeric string of length $1.
random_token() {
  local want="$1" s=""
  while ((${#s} < want)); do
    s+="$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')"
  done
  printf '%s' "${s:0:want}"
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

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
redis_pong() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# wait_ready NAME PID LOGFILE CHECK ARGS...: polls CHECK until it succeeds,
# failing if PID exits or the start timeout passes.
wait_ready() {
  local name="$1" pid="$2" logfile="$3" deadline
  shift 3
  deadline=$((SECONDS + start_timeout))
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      if [[ -f "$logfile" ]]; then
        printf -- '--- last lines of %s ---\n' "$logfile" >&2
        tail -n 20 "$logfile" >&2 || true
      fi
      die "$name exited during start-up (log: ${logfile#"$root"/})"
    fi
    if ((SECONDS >= deadline)); then
      die "$name did not become ready within ${start_timeout}s (log: ${logfile#"$root"/})"
    fi
    sleep 0.2
  done
}

# Starts a command in the background in its own session, so that Ctrl-C in the
# terminal reaches only this script, which then stops the children in order.
# Sets $! like `cmd &` does.
spawn() {
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" </dev/null &
  else
    "$@" </dev/null &
  fi
}

json_escape() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '%s' "$s"
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

# --- Redis -------------------------------------------------------------------------
log "starting redis-server on 127.0.0.1:$redis_port (data .data/redis, log .data/logs/redis.log)"
spawn redis-server \
  --port "$redis_port" \
  --bind 127.0.0.1 \
  --dir "$data/redis" \
  --appendonly yes \
  --appendfsync everysec \
  --notify-keyspace-events KEA \
  --maxmemory-policy noeviction \
  --save "" \
  --daemonize no \
  --logfile "$redis_log"
redis_pid=$!

# --- SecantusDB (Mongo wire) -----------------------------------------------------
log "starting secantusd-py on 127.0.0.1:$mongo_port (data .data/mongo, log .data/logs/secantusd.log)"
spawn .venv/bin/secantusd-py \
  --host 127.0.0.1 \
  --port "$mongo_port" \
  --storage-path .data/mongo \
  --log-level WARNING \
  >>"$mongo_log" 2>&1
mongo_pid=$!

wait_ready "redis-server" "$redis_pid" "$redis_log" redis_pong "$redis_port"
log "redis-server ready (pid $redis_pid)"
wait_ready "secantusd-py" "$mongo_pid" "$mongo_log" tcp_open "$mongo_port"
log "secantusd-py ready (pid $mongo_pid)"

export REDIS_URL="redis://127.0.0.1:$redis_port"
export MONGO_URL="mongodb://127.0.0.1:$mongo_port/?directConnection=true"

watch_names=("redis-server" "secantusd-py")
watch_pids=("$redis_pid" "$mongo_pid")

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
  spawn "$bin"
  server_pid=$!
  watch_names+=("flashsale server")
  watch_pids+=("$server_pid")

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
while true; do
  for i in "${!watch_pids[@]}"; do
    if ! kill -0 "${watch_pids[$i]}" 2>/dev/null; then
      status=0
      wait "${watch_pids[$i]}" || status=$?
      log "${watch_names[$i]} exited with status $status; stopping the rest"
      # Only the server may end the run successfully; a store never should.
      if ((status == 0)) && [[ "${watch_pids[$i]}" != "$server_pid" ]]; then
        status=1
      fi
      exit "$status"
    fi
  done
  sleep 1 &
  sleeper_pid=$!
  wait "$sleeper_pid" || true
  sleeper_pid=""
done

# The project's stores for the scripts: redis-server with the flags in
# scripts/lib/redis.flags, and secantusd-py (SecantusDB, the Mongo-wire system
# of record) with the project's flags; and a flashsale server wired to them.
# Source it after procs.sh.
# shellcheck shell=bash
#
#   require_stores           dies unless redis-server, redis-cli and secantusd-py
#                            are there (scripts/setup.sh installs them)
#   start_redis NAME PORT DIR LOGFILE [FLAG VALUE]...
#                            spawns redis-server on 127.0.0.1:PORT with the
#                            flags of redis.flags, then these, and waits for PONG
#   start_store NAME PORT STORAGE LOGFILE [FLAG VALUE]...
#                            spawns secantusd-py on 127.0.0.1:PORT (data in
#                            STORAGE) and waits until it accepts connections
#   redis_pong PORT
#   start_flashsale NAME LOG BIN PORT REDIS_PORT MONGO_PORT DB [VAR=VALUE]...
#                            spawns BIN on 127.0.0.1:PORT in $tmp (so no .env
#                            is read) with those stores, Mongo database DB and
#                            the settings VAR=VALUE, and waits for /readyz
#
# All set last_pid, give up after $start_timeout s (default 30 for Redis, 60
# for secantusd-py, 90 for the server) and are stopped by the clean-up of
# procs.sh.
#
# Settings: SECANTUSD (the Mongo-wire server, default .venv/bin/secantusd-py);
# store_prefix, an array put before secantusd-py (bench.sh: chrt --idle 0).

secantusd="${SECANTUSD:-$procs_root/.venv/bin/secantusd-py}"
secantusd_flags=(--host 127.0.0.1 --log-level WARNING)
store_prefix=()

# redis_flags: scripts/lib/redis.flags as arguments.
redis_flags=()
while read -r flag value; do
  [[ -n "$flag" && "$flag" != \#* ]] || continue
  [[ -n "$value" ]] || die "scripts/lib/redis.flags: '$flag' has no value (write \"\" for an empty one)"
  [[ "$value" != '""' ]] || value=""
  redis_flags+=("$flag" "$value")
done <"$procs_lib/redis.flags"
unset flag value

require_stores() {
  require redis-server redis-cli
  [[ -x "$secantusd" ]] || die "secantusd-py not found at $secantusd: run scripts/setup.sh (it installs SecantusDB into .venv)"
}

redis_pong() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

start_redis() {
  local name="$1" port="$2" dir="$3" logfile="$4"
  shift 4
  require_stores
  mkdir -p "$dir"
  spawn "$name" "$logfile" redis-server "${redis_flags[@]}" \
    --port "$port" --dir "$dir" --logfile "$logfile" "$@"
  wait_until "$name" "$last_pid" "${start_timeout:-30}" redis_pong "$port"
}

start_store() {
  local name="$1" port="$2" storage="$3" logfile="$4"
  shift 4
  require_stores
  mkdir -p "$storage"
  spawn "$name" "$logfile" "${store_prefix[@]}" "$secantusd" "${secantusd_flags[@]}" \
    --port "$port" --storage-path "$storage" "$@"
  wait_until "$name" "$last_pid" "${start_timeout:-60}" tcp_open "$port"
}

# Settings for a server all of whose clients come from 127.0.0.1 (the console
# test, the fuzzer, the local cluster check): per-address limits, velocity
# rules and the dummy-hash rate and CPU budget off, cheap password hashing.
single_address_env=(
  PASSWORD_ITERATIONS=1000 PASSWORD_ITERATIONS_INSECURE=1
  RATE_PURCHASE_PER_IP=0 RATE_PURCHASE_PER_USER=0
  RATE_SIGNIN_PER_IP=0 RATE_SIGNIN_PER_ACCOUNT=0 RATE_SIGNIN_PER_ACCOUNT_GLOBAL=0
  RATE_SIGNUP_PER_IP=0 SIGNIN_FAILURES_PER_IP=0 HASH_UNKNOWN_PER_SECOND=0
  HASH_UNKNOWN_CPU_PERCENT=0
  PURCHASE_ATTEMPTS_PER_WINDOW=0 DEFAULT_MAX_ACCOUNTS_PER_IP=0
  FRAUD_RULE_NEW_ACCOUNT=off FRAUD_RULE_REFUSAL_BURST=off FRAUD_RULE_MANY_IPS=off
)

start_flashsale() {
  local name="$1" logfile="$2" bin="$3" port="$4" redis_port="$5" mongo_port="$6" db="$7"
  shift 7
  spawn "$name" "$logfile" env -C "$tmp" PORT="$port" BIND_ADDR=127.0.0.1 \
    REDIS_URL="redis://127.0.0.1:$redis_port" \
    MONGO_URL="mongodb://127.0.0.1:$mongo_port/?directConnection=true" \
    MONGO_DB="$db" "$@" "$bin"
  wait_until "$name" "$last_pid" "${start_timeout:-90}" http_ok "http://127.0.0.1:$port/readyz"
}

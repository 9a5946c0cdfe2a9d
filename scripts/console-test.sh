#!/usr/bin/env bash
# The web console in a real browser: starts its own redis-server and
# secantusd-py (free ports, temp dirs) and the debug build of the server
# (cargo build --bin flashsale) on a free port, then runs
# web/test/console.test.mjs: headless Chromium from Debian's `chromium`
# package driven by playwright-core (pinned in web/test/package-lock.json;
# no browser download). Stops everything on exit.
#
# The scenario (see the test file): the admin creates a sale starting in a
# few seconds, a buyer page in a second browser context counts down and goes
# live, API purchases move its stock bar, the buyer buys once with a double
# click and sees the order, the sale sells out on both pages.
#
# Environment:
#   CONSOLE_SCREENSHOT_DIR  where the screenshots go
#                           (default: target/console-screenshots)
#   CHROMIUM                the browser (default /usr/bin/chromium)
#   SECANTUSD               Mongo-wire server (default .venv/bin/secantusd-py)
#   CARGO_TARGET_DIR        honoured as usual
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init console-test
stop_timeout=15

chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
shots="${CONSOLE_SCREENSHOT_DIR:-$root/target/console-screenshots}"

require node curl
[[ -x "$chromium_bin" ]] || die "$chromium_bin not found: install the Debian package chromium (scripts/setup.sh does)"
[[ -f web/test/node_modules/playwright-core/package.json ]] ||
  die "web/test/node_modules/playwright-core missing: run scripts/setup.sh (npm ci in web/test; npm is the Debian package npm)"
require_stores

make_temp_dir flashsale-console
mkdir -p "$shots"
shots="$(cd "$shots" && pwd)"

# --- build -------------------------------------------------------------------
log "cargo build --bin flashsale"
cargo build --bin flashsale
bin="${CARGO_TARGET_DIR:-target}/debug/flashsale"
[[ "$bin" == /* ]] || bin="$root/$bin"
[[ -x "$bin" ]] || die "$bin not found after cargo build"

# --- stores and server -----------------------------------------------------------
read -r redis_port mongo_port port < <(free_ports 3)
start_redis "redis-server" "$redis_port" "$tmp/redis" "$tmp/redis.log"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo/data" "$tmp/mongo.log" \
  --log-level ERROR --cache-size 256M
admin_email="admin@console.test"
admin_password="$(random_token 24)"
# Every buyer of the scenario comes from 127.0.0.1: the per-address limits
# and velocity rules are off, as in the API tests.
start_flashsale "flashsale server" "$tmp/server.log" "$bin" \
  "$port" "$redis_port" "$mongo_port" flashsale_console \
  SECRET_KEY="$(random_token 48)" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
  "${single_address_env[@]}" \
  SHUTDOWN_GRACE_MS=3000 LOG_FORMAT=text RUST_LOG="${RUST_LOG:-warn}"
base="http://127.0.0.1:$port"
log "flashsale server ready on $base"

# --- the browser scenario ------------------------------------------------------
CONSOLE_BASE_URL="$base" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
  CONSOLE_SCREENSHOT_DIR="$shots" CHROMIUM="$chromium_bin" \
  node web/test/console.test.mjs
log "passed; screenshots: ${shots#"$root"/}/buyer.png, ${shots#"$root"/}/admin.png"

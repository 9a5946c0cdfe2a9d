#!/usr/bin/env bash
# Fuzzes the API against its own description with schemathesis, an
# independent property-based tester: every operation of the served
# /openapi.json gets generated valid and invalid requests, and every answer is
# checked for no 5xx, a documented status code and content type, the documented
# headers and a body that matches the documented schema.
#
# Starts everything it needs and stops it on exit: its own redis-server and
# secantusd-py (free ports, temp dirs), and the debug build of the server
# (cargo build --bin flashsale) on a free port with rate limits and abuse rules
# off (every request comes from 127.0.0.1). Then it signs in an admin, signs up
# and signs in a customer, creates products and sales so that generated
# requests also use real ids, and runs schemathesis twice: as the admin and as
# the customer (the only role that can purchase).
#
# The WebSocket upgrade operations (GET / and GET /ws) are not fuzzed: a 101
# would hand the fuzzer's HTTP connection over to the WebSocket protocol.
# schemathesis also skips GET /openapi.json, the document it loads
# (tests/openapi.rs checks that one).
#
# Prints, per run and in total, the operations, test cases and checks it ran.
# Exits non-zero when schemathesis reports a failure, when the server panicked,
# or when it cannot run.
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 25)
#   SCHEMATHESIS_SEED          seed for reproducible runs (default: random, printed)
#   SCHEMATHESIS_WORKERS       concurrent workers (default 1: with more, Python
#                              3.11's ast.parse can fail spuriously with "AST
#                              constructor recursion depth mismatch" inside
#                              hypothesis, CPython gh-106905)
#   SCHEMATHESIS_ARGS          extra arguments for `schemathesis run`
#   SCHEMATHESIS_REPORT_DIR    keep the NDJSON event reports and the server log
#                              here (default: a temp dir removed on exit)
#   SECANTUSD                  Mongo-wire server (default .venv/bin/secantusd-py)
#   CARGO_TARGET_DIR           honoured as usual
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
# shellcheck source=scripts/lib/stores.sh
source "$(dirname "$0")/lib/stores.sh"
procs_init schemathesis
stop_timeout=15

readonly ST="$root/.venv/bin/schemathesis"
readonly PY="$root/.venv/bin/python"
readonly MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
readonly WORKERS="${SCHEMATHESIS_WORKERS:-1}"
report_dir="${SCHEMATHESIS_REPORT_DIR:-}"
seed="${SCHEMATHESIS_SEED:-}"

[[ -x "$ST" ]] || die "$ST not found: run scripts/setup.sh, which installs schemathesis into .venv"
require_stores
require curl
[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "SCHEMATHESIS_MAX_EXAMPLES must be a positive number"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "SCHEMATHESIS_WORKERS must be a positive number"
if [[ -z "$seed" ]]; then
  seed="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
fi
[[ "$seed" =~ ^[0-9]+$ ]] || die "SCHEMATHESIS_SEED must be a number"

make_temp_dir flashsale-schemathesis
if [[ -z "$report_dir" ]]; then
  report_dir="$tmp/reports"
fi
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"

# A panic the fuzzer cannot see (a background task, shutdown) fails the run too.
after_stop() {
  if [[ -f "$report_dir/server.log" ]] && grep -q "panicked at" "$report_dir/server.log"; then
    log "FAILED: the server panicked (log: $report_dir/server.log):"
    grep -A 3 "panicked at" "$report_dir/server.log" | head -n 40 >&2
    return 1
  fi
}

# --- build -------------------------------------------------------------------
log "cargo build --bin flashsale"
cargo build --bin flashsale
bin="${CARGO_TARGET_DIR:-target}/debug/flashsale"
[[ -x "$bin" ]] || die "$bin not found after cargo build"

# --- stores ------------------------------------------------------------------
read -r redis_port mongo_port port < <(free_ports 3)
start_redis "redis-server" "$redis_port" "$tmp/redis" "$tmp/redis.log"
start_store "secantusd-py" "$mongo_port" "$tmp/mongo/data" "$tmp/mongo.log" \
  --log-level ERROR --cache-size 256M
log "redis-server on 127.0.0.1:$redis_port, secantusd-py on 127.0.0.1:$mongo_port"

# --- server ------------------------------------------------------------------
# Abuse controls off (fuzzing sends thousands of requests from one address,
# many of them sign-ins for made-up emails, whose dummy-hash rate would answer
# 503 by design, and the not_a_server_error check counts every 5xx).
admin_email="admin@schemathesis.local"
admin_password="$(random_token 24)"
[[ "$bin" == /* ]] || bin="$root/$bin"
start_flashsale "flashsale server" "$report_dir/server.log" "$bin" \
  "$port" "$redis_port" "$mongo_port" flashsale_schemathesis \
  SECRET_KEY="$(random_token 48)" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
  "${single_address_env[@]}" \
  IP_ALLOW=127.0.0.1/32 \
  SHUTDOWN_GRACE_MS=3000 LOG_FORMAT=text RUST_LOG="${RUST_LOG:-warn}"
# (Velocity rules are off, and the fuzzer's own address is exempt from IP
# rules: a generated blocklist entry for 127.0.0.1 must not lock it out.)
base="http://127.0.0.1:$port"
log "flashsale server ready on $base"

# --- fixtures: tokens and real ids, written into a schemathesis config --------
# fixtures ROLE: signs in (the customer is signed up first), creates products
# and sales of its own (the admin run may cancel or rerun what it finds), and
# writes $tmp/ROLE.toml and $tmp/ROLE.token.
fixtures() {
  ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" "$PY" - "$base" "$tmp" "$1" <<'PY'
import datetime, json, os, sys, urllib.error, urllib.request

base, tmp, role = sys.argv[1:4]


def call(method, path, body=None, token=None, expect=(200, 201)):
    req = urllib.request.Request(base + path, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, data, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if status not in expect:
        sys.exit(f"schemathesis: error: fixtures: {method} {path} answered {status}: {text}")
    return json.loads(text)


def iso(minutes):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def signin(email, password):
    return call("POST", "/api/signin", {"email": email, "password": password})


admin = signin(os.environ["ADMIN_EMAIL"], os.environ["ADMIN_PASSWORD"])
admin_token, admin_id = admin["accessToken"], admin["user"]["id"]
if role == "customer":
    email, password = "buyer@schemathesis.local", "buyer-password-1"
    call("POST", "/api/signup", {"name": "Fuzz Buyer", "email": email, "password": password})
    me = signin(email, password)
    token, my_id = me["accessToken"], me["user"]["id"]
else:
    token, my_id = admin_token, admin_id


def product(name):
    body = {"name": f"{name} ({role} run)", "description": "fixture", "price": 100.0}
    return call("POST", "/api/products", body, admin_token)["id"]


def sale(start, end, **extra):
    body = {"productId": product("Sale product"), "startTime": iso(start), "endTime": iso(end),
            "discount": 20, **extra}
    return call("POST", "/api/flash-sales", body, admin_token)["id"]


# Open, with stock and limits high enough for many generated purchases.
s_open = sale(-1, 120, totalUnits=10000000, maxPerUser=1000000, maxPerTransaction=1000000)
s_pending = sale(60, 120, totalUnits=100)  # not started yet
s_small = sale(-1, 120, totalUnits=1)  # sold out below
buyer = token
if role == "admin":
    c = call("POST", "/api/signup", {"name": "Fixture Buyer", "email": "fixture@schemathesis.local",
                                     "password": "fixture-password-1"})
    buyer = signin("fixture@schemathesis.local", "fixture-password-1")["accessToken"]
# Orders, so orders, the leaderboard and reconcile have data; s_small is sold out.
call("POST", "/api/purchase-product", {"flashSaleId": s_open, "quantity": 2}, buyer)
call("POST", "/api/purchase-product", {"flashSaleId": s_small, "quantity": 1}, buyer)
products = [call("GET", f"/api/flash-sales/{s}", token=admin_token)["productId"] for s in (s_open, s_pending, s_small)]
spare_product = product("Spare product")  # no sale yet: creating one can succeed


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def bind(key, dictionary, probability=0.5):
    return f'"{key}" = {{ dictionary = "{dictionary}", probability = {probability} }}'


sales = [s_open, s_pending, s_small]
times = [iso(m) for m in (-2, 30, 90, 60 * 24, 60 * 24 * 40)]
config = f"""
[cache]
enabled = false

[auth.openapi.bearerAuth]
bearer = "${{FLASHSALE_TOKEN}}"

[dictionaries.products]
values = {toml_list(products + [spare_product])}

[dictionaries.sales]
values = {toml_list(sales)}

[dictionaries.users]
values = {toml_list(sorted({my_id, admin_id}))}

[dictionaries.times]
values = {toml_list(times)}

[[operations]]
include-operation-id = "getProduct"
parameters = {{ {bind("path.id", "products")} }}

[[operations]]
include-operation-id = ["getFlashSale", "cancelFlashSale"]
parameters = {{ {bind("path.id", "sales")} }}

[[operations]]
include-operation-id = "rerunFlashSale"
parameters = {{ {bind("path.id", "sales")}, {bind("body.startTime", "times", 0.7)}, {bind("body.endTime", "times", 0.7)} }}

[[operations]]
include-operation-id = ["createFlashSale", "createFlashSaleLegacy"]
parameters = {{ {bind("body.productId", "products", 0.7)}, {bind("body.startTime", "times", 0.7)}, {bind("body.endTime", "times", 0.7)} }}

[[operations]]
include-operation-id = "purchaseProduct"
parameters = {{ {bind("body.flashSaleId", "sales", 0.8)} }}

[[operations]]
include-operation-id = ["listOrders", "listFraudEvents"]
parameters = {{ {bind("query.flashSaleId", "sales")}, {bind("query.userId", "users")} }}

[[operations]]
include-operation-id = ["getLeaderboard", "reconcile"]
parameters = {{ {bind("query.flashSaleId", "sales", 0.7)} }}
"""
with open(f"{tmp}/{role}.toml", "w") as f:
    f.write(config)
with open(f"{tmp}/{role}.token", "w") as f:
    f.write(token)
print(f"schemathesis: fixtures for the {role} run: sales open {s_open}, pending {s_pending}, sold out {s_small}")
PY
}

# --- schemathesis ----------------------------------------------------------------
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
version="$("$ST" --version 2>/dev/null | awk '{print $NF}')"
log "schemathesis $version, seed $seed, $MAX_EXAMPLES examples per operation, checks: $checks"

# run_as ROLE: fresh fixtures, then one schemathesis run with ROLE's token; its
# NDJSON event report goes to $report_dir/ROLE.
run_as() {
  local role="$1" rc=0
  local -a cmd=(
    "$ST" --config-file "$tmp/$role.toml" run "$base/openapi.json"
    --url "$base"
    --checks "$checks"
    --max-examples "$MAX_EXAMPLES"
    --seed "$seed"
    --workers "$WORKERS"
    --exclude-operation-id websocketRoot --exclude-operation-id websocket
    --generation-database none
    --request-timeout 30
    --continue-on-failure
    --report ndjson --report-dir "$report_dir/$role"
    --no-color
  )
  if [[ -n "${SCHEMATHESIS_ARGS:-}" ]]; then
    # shellcheck disable=SC2206 # word splitting is intended
    cmd+=($SCHEMATHESIS_ARGS)
  fi
  rm -rf "${report_dir:?}/$role"
  fixtures "$role" || return 1
  log "== run as $role: schemathesis run $base/openapi.json --checks $checks --max-examples $MAX_EXAMPLES --seed $seed"
  # In the background, so that a signal reaches this script's trap at once.
  spawn "schemathesis" - env -C "$tmp" FLASHSALE_TOKEN="$(cat "$tmp/$role.token")" "${cmd[@]}"
  wait_pid "$last_pid" || rc=$?
  return "$rc"
}

status=0
admin_rc=0
customer_rc=0
run_as admin || admin_rc=$?
run_as customer || customer_rc=$?

# Totals over both runs, from the NDJSON event streams.
"$PY" - "$report_dir" <<'PY' || status=1
import collections, glob, json, sys

total_ops, total_cases = set(), 0
for role in ("admin", "customer"):
    ops, cases, checks, failed = set(), 0, 0, collections.Counter()
    for path in glob.glob(f"{sys.argv[1]}/{role}/*.ndjson"):
        with open(path) as f:
            for line in f:
                ev = json.loads(line).get("ScenarioFinished")
                if not ev:
                    continue
                rec = ev.get("recorder") or {}
                if ev.get("phase") != "stateful" and rec.get("cases"):
                    ops.add(rec["label"])
                cases += len(rec.get("cases") or {})
                for results in (rec.get("checks") or {}).values():
                    for c in results:
                        checks += 1
                        if c.get("status") == "failure":
                            failed[c["name"]] += 1
    total_ops |= ops
    total_cases += cases
    detail = ", ".join(f"{n} {name}" for name, n in sorted(failed.items())) or "none failed"
    print(f"schemathesis: as {role}: {len(ops)} operations, {cases} test cases, {checks} checks ({detail})")
print(f"schemathesis: total: {len(total_ops)} operations, {total_cases} test cases")
PY

if ((admin_rc != 0 || customer_rc != 0)); then
  log "FAILED (admin run exit $admin_rc, customer run exit $customer_rc)"
  exit 1
fi
((status == 0)) || log "warning: could not total the reports"
log "no failures"

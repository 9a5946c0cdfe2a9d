#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, then every test target.
# Every step runs even when an earlier one failed; a summary follows, and the
# exit status is non-zero when any step failed.
#
# Environment:
#   TEST_THREADS   passed to the test binaries as `-- --test-threads N` (unset:
#                  the test harness's default)
#   SECANTUSD      Mongo-wire server the Rust test harness starts
#                  (default: .venv/bin/secantusd-py, installed by setup.sh)
#   CARGO_*        honoured by cargo as usual (CARGO_TARGET_DIR, CARGO_BUILD_JOBS, ...)
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
procs_init test

bash scripts/setup.sh

export SECANTUSD="${SECANTUSD:-$PWD/.venv/bin/secantusd-py}"
[[ -x "$SECANTUSD" ]] || die "SECANTUSD=$SECANTUSD is not executable"

test_args=(--workspace --all-targets)
if [[ -n "${TEST_THREADS:-}" ]]; then
  [[ "$TEST_THREADS" =~ ^[1-9][0-9]*$ ]] || die "TEST_THREADS must be a positive number, got $TEST_THREADS"
  test_args+=(-- --test-threads "$TEST_THREADS")
fi

make_temp_dir flashsale-test
test_log="$tmp/cargo-test.log"

steps=()
results=()
failed=0
step_display=""

# step NAME CMD...: runs CMD, records its result and how long it took.
step() {
  local name="$1" start rc=0
  shift
  log "== $name: ${step_display:-$*}"
  step_display=""
  start=$SECONDS
  "$@" || rc=$?
  steps+=("$name")
  if ((rc == 0)); then
    results+=("ok    ($((SECONDS - start))s)")
  else
    results+=("FAILED (exit $rc, $((SECONDS - start))s)")
    failed=1
  fi
}

run_tests() {
  cargo test "${test_args[@]}" 2>&1 | tee "$test_log"
}

step "fmt" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step_display="cargo test ${test_args[*]}"
step "tests" run_tests
# The API against its OpenAPI document: schemathesis fuzzes the debug build.
step "api-fuzz" bash scripts/schemathesis.sh
# The web console in a real browser: headless Debian chromium driven by
# playwright-core against the debug build with its own stores.
step "console" bash scripts/console-test.sh

# The k6 scripts (load/k6): k6 itself is not packaged for Debian, so their
# syntax is checked with node (load/k6/package.json makes them ES modules).
k6_syntax() {
  require node
  local f rc=0
  for f in load/k6/*.js; do
    node --check "$f" || { log "k6: $f does not parse"; rc=1; }
  done
  return "$rc"
}
step_display="node --check load/k6/*.js"
step "k6-syntax" k6_syntax

# --- cluster: the two-instance topology end to end, then the deployment files.
# scripts/cluster-local.sh check starts Redis, secantusd-py, two instances and
# (when installed) nginx as local processes and runs a smoke check through
# them; docker-compose.yml and deploy/*.yml are validated when the tools exist.
# Every sub-check runs; the step fails when any of them failed.
cluster_checks() {
  local rc=0
  # Every tool here comes from scripts/setup.sh; a missing one fails the step
  # and names its Debian package, never skips.
  require docker-compose promtool nginx
  log "cluster: scripts/cluster-local.sh check"
  scripts/cluster-local.sh check || rc=1

  log "cluster: docker-compose config -q"
  # Dummy values: the file requires them, config only interpolates them.
  SECRET_KEY=config-check-dummy-secret-key-0123456789 ADMIN_PASSWORD=config-check-dummy GRAFANA_ADMIN_PASSWORD=config-check-dummy \
    REDIS_PASSWORD=config-check-dummy MONGO_PASSWORD=config-check-dummy \
    docker-compose config -q || rc=1

  log "cluster: promtool check config / check rules / test rules"
  promtool check config deploy/prometheus.yml || rc=1
  promtool check rules deploy/alerts.yml || rc=1
  promtool test rules deploy/alerts_test.yml || rc=1
  return "$rc"
}
step_display="scripts/cluster-local.sh check; docker-compose config -q; promtool checks"
step "cluster" cluster_checks

# Totals over every test binary's "test result:" line.
read -r passed failed_tests ignored < <(
  awk '/^test result:/ {
         for (i = 1; i <= NF; i++) {
           if ($(i + 1) ~ /^passed;?$/) p += $i
           if ($(i + 1) ~ /^failed;?$/) f += $i
           if ($(i + 1) ~ /^ignored;?$/) g += $i
         }
       }
       END { printf "%d %d %d\n", p, f, g }' "$test_log"
)

echo
log "summary"
for i in "${!steps[@]}"; do
  printf '  %-8s %s\n' "${steps[$i]}" "${results[$i]}"
done
echo "tests: $passed passed, $failed_tests failed, $ignored skipped"

if ((failed)); then
  log "FAILED"
  exit 1
fi
log "all steps passed"

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

cd "$(dirname "$0")/.."

log() { printf 'test: %s\n' "$*"; }

bash scripts/setup.sh

export SECANTUSD="${SECANTUSD:-$PWD/.venv/bin/secantusd-py}"
[[ -x "$SECANTUSD" ]] || {
  printf 'test: error: SECANTUSD=%s is not executable\n' "$SECANTUSD" >&2
  exit 1
}

test_args=(--all-targets)
if [[ -n "${TEST_THREADS:-}" ]]; then
  [[ "$TEST_THREADS" =~ ^[1-9][0-9]*$ ]] || {
    printf 'test: error: TEST_THREADS must be a positive number, got %s\n' "$TEST_THREADS" >&2
    exit 1
  }
  test_args+=(-- --test-threads "$TEST_THREADS")
fi

test_log="$(mktemp "${TMPDIR:-/tmp}/flashsale-test.XXXXXX")"
trap 'rm -f "$test_log"' EXIT

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
step "clippy" cargo clippy --all-targets -- -D warnings
step_display="cargo test ${test_args[*]}"
step "tests" run_tests

if command -v promtool >/dev/null 2>&1; then
  : # promtool is available: rule and config checks will be added here.
fi

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

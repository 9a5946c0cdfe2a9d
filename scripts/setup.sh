#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian/Ubuntu machine for flashsale.
#
# Makes sure these are present, installing only what is missing:
#   - redis-server and redis-cli       (Debian package redis-server)
#   - jq, curl, faketime, pgrep/kill   (Debian packages jq, curl, faketime,
#                                       procps: called by the scripts and tests)
#   - cargo                            (not installed here: points to https://rustup.rs)
#   - python3 with venv support        (Debian packages python3, python3-venv)
#   - .venv/ with SecantusDB pinned    (provides .venv/bin/secantusd-py, the
#                                       Mongo-wire server used by run.sh and the tests)
#   - schemathesis pinned in .venv     (provides .venv/bin/schemathesis, the API
#                                       fuzzer run by scripts/schemathesis.sh)
#   - chromium, npm                    (Debian packages chromium, npm: the browser
#                                       test of the web console, scripts/console-test.sh)
#   - web/test/node_modules            (npm ci: playwright-core as pinned in
#                                       web/test/package-lock.json; no browser download)
#   - valgrind, only with SETUP_PROFILING=1 (scripts/profile.sh sets it: callgrind
#                                       counts the server's instructions per request)
#
# A second run installs nothing and only reports what is present.
#
# Environment:
#   SECANTUSDB_SPEC   pip requirement to install (default: SecantusDB==0.7.0b3)
#   SCHEMATHESIS_SPEC pip requirement to install (default: schemathesis==4.32.5)
#   PYTHON            python interpreter used to create .venv (default: python3)
set -euo pipefail

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "$0")/lib/procs.sh"
procs_init setup

readonly SECANTUSDB_SPEC="${SECANTUSDB_SPEC:-SecantusDB==0.7.0b3}"
readonly SCHEMATHESIS_SPEC="${SCHEMATHESIS_SPEC:-schemathesis==4.32.5}"
readonly PYTHON="${PYTHON:-python3}"
readonly VENV=".venv"

did_something=0
apt_updated=0

# Runs a command as root: directly when root, through sudo when available.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run '$*' (not root and sudo is not installed); run it by hand and retry"
  fi
}

# Installs Debian packages, running apt-get update once, and only when needed.
apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install $* with your system's package manager and retry"
  if [[ "$apt_updated" -eq 0 ]]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  did_something=1
}

# The Debian package starts a system-wide redis on port 6379; we never use it
# (run.sh starts its own on REDIS_PORT), so stop and disable the one we just installed.
stop_system_service() {
  local svc="$1"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    log "stopped and disabled the system $svc service (not used by flashsale)"
  elif command -v service >/dev/null 2>&1; then
    as_root service "$svc" stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
    log "stopped the system $svc service (not used by flashsale)"
  fi
}

# --- redis -------------------------------------------------------------------
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  log "redis-server present ($(redis-server --version | awk '{print $3}'))"
else
  apt_install redis-server
  stop_system_service redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install"
  log "installed redis-server ($(redis-server --version | awk '{print $3}'))"
fi

# --- the other tools the scripts and tests call ------------------------------
# The test command also validates docker-compose.yml (docker-compose), the
# Prometheus config and alert rules (promtool) and runs nginx in front of the
# local two-instance cluster, and checks the k6 scripts' syntax (node); the
# web console's browser test runs Debian's chromium, driven from node with
# playwright-core (installed by npm below). Each check fails, naming its
# package, when its tool is missing.
tools=(jq curl faketime pgrep nginx promtool docker-compose node npm chromium)
if [[ "${SETUP_PROFILING:-0}" == 1 ]]; then
  tools+=(valgrind)
fi
missing_packages=()
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing_packages+=("$(debian_package "$tool")")
  fi
done
if ((${#missing_packages[@]})); then
  apt_install "${missing_packages[@]}"
  # The nginx and prometheus packages start system services we never use.
  for svc in nginx prometheus; do
    if [[ " ${missing_packages[*]} " == *" $svc "* ]]; then
      stop_system_service "$svc"
    fi
  done
fi
require "${tools[@]}"
log "${tools[*]} present"

# --- cargo -------------------------------------------------------------------
if command -v cargo >/dev/null 2>&1; then
  log "cargo present ($(cargo --version))"
  # test.sh needs rustfmt and clippy; rustup installs them when they are missing.
  missing_components=()
  cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
  if [[ ${#missing_components[@]} -gt 0 ]]; then
    if command -v rustup >/dev/null 2>&1; then
      log "rustup component add ${missing_components[*]}"
      rustup component add "${missing_components[@]}"
      did_something=1
    else
      die "cargo ${missing_components[*]} missing (needed by scripts/test.sh) and rustup not found: install them with your Rust toolchain"
    fi
  fi
else
  msg="cargo (Rust) is not installed or not on PATH.
  Install Rust with rustup: https://rustup.rs
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
  then open a new shell (or run: . \"\$HOME/.cargo/env\") and run this script again."
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    msg="$msg
  Note: $HOME/.cargo/bin/cargo exists; it is just not on PATH (run: . \"\$HOME/.cargo/env\")."
  fi
  printf 'setup: error: %s\n' "$msg" >&2
  exit 1
fi

# --- python3 + .venv + SecantusDB --------------------------------------------
if command -v "$PYTHON" >/dev/null 2>&1; then
  log "python3 present ($("$PYTHON" --version 2>&1))"
else
  [[ "$PYTHON" == python3 ]] || die "PYTHON=$PYTHON not found"
  apt_install python3 python3-venv
fi

if [[ -x "$VENV/bin/python" ]]; then
  log "$VENV present"
else
  # A half-made .venv (e.g. from an earlier failed attempt) is replaced.
  rm -rf "$VENV"
  log "creating $VENV"
  if ! venv_err="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
    rm -rf "$VENV"
    # Debian/Ubuntu ship venv/ensurepip in a separate package.
    log "'$PYTHON -m venv' failed; installing python3-venv"
    apt_install python3-venv
    "$PYTHON" -m venv "$VENV" || {
      rm -rf "$VENV"
      printf '%s\n' "$venv_err" >&2
      die "cannot create $VENV with $PYTHON"
    }
  fi
  did_something=1
fi

# pip_pinned DIST SPEC BIN: installs SPEC into .venv unless .venv/bin/BIN is
# there with DIST at SPEC's version (any version when SPEC pins none).
pip_pinned() {
  local dist="$1" spec="$2" bin="$VENV/bin/$3" wanted="${2#*==}" installed
  installed="$("$VENV/bin/python" -c \
    'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$dist" 2>/dev/null || true)"
  if [[ -x "$bin" && ("$installed" == "$wanted" || "$wanted" == "$spec") ]]; then
    log "$3 present ($dist ${installed:-?})"
    return 0
  fi
  log "installing $spec into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "$spec"
  [[ -x "$bin" ]] || die "$bin missing after installing $spec"
  did_something=1
  log "installed $spec"
}

pip_pinned SecantusDB "$SECANTUSDB_SPEC" secantusd-py
# schemathesis (in the same .venv) is the API fuzzer of scripts/schemathesis.sh.
pip_pinned schemathesis "$SCHEMATHESIS_SPEC" schemathesis

# --- the browser test's npm packages ------------------------------------------
# web/test pins playwright-core in its package-lock.json; npm ci installs
# exactly that, and only when the installed version differs. playwright-core
# never downloads a browser: the test uses /usr/bin/chromium.
lock_version() {
  node -e 'const l = require(process.argv[1]); console.log(l.packages["node_modules/playwright-core"].version)' \
    "$PWD/web/test/package-lock.json"
}
installed_version() {
  node -e 'console.log(require(process.argv[1]).version)' \
    "$PWD/web/test/node_modules/playwright-core/package.json" 2>/dev/null || true
}
wanted_pw="$(lock_version)"
if [[ "$(installed_version)" == "$wanted_pw" ]]; then
  log "playwright-core present ($wanted_pw, web/test)"
else
  log "npm ci in web/test (playwright-core $wanted_pw)"
  (cd web/test && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  [[ "$(installed_version)" == "$wanted_pw" ]] || die "playwright-core $wanted_pw missing from web/test after npm ci"
  did_something=1
fi

if [[ "$did_something" -eq 0 ]]; then
  log "everything present, nothing to do"
else
  log "done"
fi

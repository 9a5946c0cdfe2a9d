# The process library every script under scripts/ sources: logging, the
# clean-up trap, background children, readiness polls, ports, tokens.
# shellcheck shell=bash
#
#   procs_init NAME [FD]     cd to the repository (and sets $root); log/warn/die
#                            prefixed "NAME: " (log to FD, default 1; warn and
#                            die to 2); traps so that any exit stops every
#                            spawned process, newest first, and removes $tmp
#   make_temp_dir PREFIX     sets $tmp to a new temp dir (kept on exit when
#                            keep_tmp=1)
#   spawn NAME LOG CMD...    CMD in the background in its own session, stdin
#                            /dev/null, output appended to LOG ('-': this
#                            terminal); sets last_pid
#   stop_pid NAME PID        SIGTERM, up to $stop_timeout s (default 20), SIGKILL
#   wait_pid PID             waits for a spawned PID and returns its status
#   wait_until NAME PID SECONDS CHECK...
#                            polls CHECK until it succeeds; dies when PID exits
#                            first or SECONDS pass
#   watch_children [MAIN]    runs until a signal or until a spawned process
#                            exits: exits with MAIN's status, or 1 for any other
#   show_logs                the last lines of every spawned process's log
#   require TOOL...          dies naming the Debian package of a missing tool
#   debian_package TOOL      prints the package that provides TOOL
#   free_ports N, free_port  distinct free 127.0.0.1 ports (never 6379)
#   tcp_open PORT, http_ok URL
#   random_token LEN, json_escape STRING
#   prepare_binaries         setup.sh, release build; sets server_bin, load_bin
#
# Optional hooks the script may define: before_stop (runs first in the
# clean-up) and after_stop (after every process stopped; a non-zero return
# turns a successful exit into exit 1). On a failed exit (not 0, 129, 130,
# 143) the clean-up prints show_logs.

procs_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
procs_root="$(cd "$procs_lib/../.." && pwd)"

procs_name="${0##*/}"
procs_log_fd=1
tmp=""
keep_tmp=0
last_pid=""
sleeper_pid=""
spawned_pids=()
spawned_names=()
spawned_logs=()

procs_init() {
  cd "$procs_root"
  root="$procs_root"
  procs_pid="$BASHPID"
  procs_name="$1"
  procs_log_fd="${2:-1}"
  trap procs_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  require setsid
}

log() { printf '%s: %s\n' "$procs_name" "$*" >&"$procs_log_fd"; }
warn() { printf '%s: WARN: %s\n' "$procs_name" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$procs_name" "$*" >&2
  exit 1
}

make_temp_dir() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
}

procs_cleanup() {
  local rc=$? i
  trap - EXIT
  # A child of spawn signalled between its fork and its exec runs these traps
  # too: it only exits.
  [[ "$BASHPID" == "$procs_pid" ]] || exit "$rc"
  trap '' INT TERM HUP # a second Ctrl-C must not cut the clean-up short
  if [[ -n "$sleeper_pid" ]]; then
    kill "$sleeper_pid" 2>/dev/null || true
  fi
  if declare -F before_stop >/dev/null; then
    before_stop || true
  fi
  for ((i = ${#spawned_pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${spawned_names[$i]}" "${spawned_pids[$i]}"
  done
  if ((${#spawned_pids[@]})); then
    log "stopped every process it started"
  fi
  if declare -F after_stop >/dev/null && ! after_stop && ((rc == 0)); then
    rc=1
  fi
  if ((rc != 0 && rc != 129 && rc != 130 && rc != 143)); then
    show_logs
  fi
  if [[ -n "$tmp" && -d "$tmp" ]]; then
    if [[ "$keep_tmp" == 1 ]]; then
      log "kept $tmp"
    else
      rm -rf "$tmp"
    fi
  fi
  exit "$rc"
}

# Drops PID from the spawned list (it was waited for).
procs_forget() {
  local i
  for i in "${!spawned_pids[@]}"; do
    if [[ "${spawned_pids[$i]}" == "$1" ]]; then
      spawned_pids[i]=""
    fi
  done
}

spawn() {
  local name="$1" logfile="$2"
  shift 2
  if [[ "$logfile" == - ]]; then
    setsid "$@" </dev/null &
  else
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
  fi
  last_pid=$!
  spawned_pids+=("$last_pid")
  spawned_names+=("$name")
  spawned_logs+=("$logfile")
}

stop_pid() {
  local name="$1" pid="$2" i
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < ${stop_timeout:-20} * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name (pid $pid) did not stop within ${stop_timeout:-20}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  procs_forget "$pid"
}

wait_pid() {
  local status=0
  wait "$1" || status=$?
  procs_forget "$1"
  return "$status"
}

# Prints " (log: FILE)" for a spawned PID that logs to a file.
procs_log_hint() {
  local i
  for i in "${!spawned_pids[@]}"; do
    if [[ "${spawned_pids[$i]}" == "$1" && "${spawned_logs[$i]}" != - ]]; then
      printf ' (log: %s)' "${spawned_logs[$i]#"$procs_root"/}"
    fi
  done
}

wait_until() {
  local name="$1" pid="$2" limit="$3" deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up$(procs_log_hint "$pid")"
    ((SECONDS < deadline)) || die "$name not ready within ${limit}s$(procs_log_hint "$pid")"
    sleep 0.2
  done
}

watch_children() {
  local main="${1-}" i pid status
  while true; do
    for i in "${!spawned_pids[@]}"; do
      pid="${spawned_pids[$i]}"
      [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null || continue
      status=0
      wait_pid "$pid" || status=$?
      log "${spawned_names[$i]} exited with status $status; stopping the rest"
      # Only MAIN may end the run successfully; the others never should.
      if [[ "$pid" != "$main" ]]; then
        status=1
      fi
      exit "$status"
    done
    # `wait` returns at once when a trapped signal arrives; `sleep` would not.
    sleep 1 &
    sleeper_pid=$!
    wait "$sleeper_pid" || true
    sleeper_pid=""
  done
}

show_logs() {
  local f seen=" "
  for f in "${spawned_logs[@]}"; do
    [[ "$f" != - && "$seen" != *" $f "* && -s "$f" ]] || continue
    seen+="$f "
    printf -- '--- last lines of %s ---\n' "${f#"$procs_root"/}" >&2
    tail -n 20 "$f" >&2 || true
  done
}

debian_package() {
  case "$1" in
    redis-cli | redis-benchmark) echo redis-tools ;;
    chrt | setsid) echo util-linux ;;
    timeout) echo coreutils ;;
    pgrep | kill) echo procps ;;
    promtool) echo prometheus ;;
    node) echo nodejs ;;
    callgrind_control | callgrind_annotate) echo valgrind ;;
    *) echo "$1" ;; # redis-server, jq, curl, python3, faketime, nginx, docker-compose
  esac
}

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "$tool not found: install the Debian package $(debian_package "$tool") (scripts/setup.sh does)"
  done
}

free_ports() {
  require python3
  python3 - "$1" <<'PY'
import socket, sys
socks = []  # held open together, so the ports are distinct
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] != 6379:  # never a system Redis's port
        socks.append(s)
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()  # before printing: the caller may bind them at once
print(*ports)
PY
}
free_port() { free_ports 1; }

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_ok() { curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null; }

random_token() {
  local want="$1" s=""
  while ((${#s} < want)); do
    s+="$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')"
  done
  printf '%s' "${s:0:want}"
}

# Escapes STRING for use inside a JSON string literal.
json_escape() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '%s' "$s"
}

# prepare_binaries: runs scripts/setup.sh (stores, .venv), builds the release
# server and load generator unless SKIP_BUILD=1, and sets server_bin and
# load_bin.
prepare_binaries() {
  bash "$procs_root/scripts/setup.sh" >&2
  local target_dir="${CARGO_TARGET_DIR:-$procs_root/target}"
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p flashsale -p flashsale-load"
    cargo build --release -p flashsale -p flashsale-load >&2
  fi
  server_bin="$target_dir/release/flashsale"
  load_bin="$target_dir/release/flashsale-load"
  [[ -x "$server_bin" && -x "$load_bin" ]] || die "release binaries missing in $target_dir/release"
}

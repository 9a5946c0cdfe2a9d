# Process helpers shared by scripts/bench.sh and scripts/ws-bench.sh.
# Source it after defining log() and die(), then call procs_init PREFIX: it
# makes a temp dir ($tmp) and registers a clean-up that stops every process
# started with spawn (newest first) and removes the temp dir on any exit.
# shellcheck shell=bash

procs_init() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  pids=()
  names=()
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}


stop_pid() {
  local name="$1" pid="$2" i
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${STOP_WAIT_TENTHS:-300}; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  trap '' INT TERM HUP
  trap - EXIT
  # Newest first: the server before the stores it drains into.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${names[$i]}" "${pids[$i]}"
  done
  rm -rf "$tmp"
  exit "$rc"
}

# spawn NAME LOG CMD...: starts CMD in the background in its own session
# (Ctrl-C reaches only this script, which then stops the children), output to
# LOG, and records its pid.
spawn() {
  local name="$1" logfile="$2"
  shift 2
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

free_port() {
  local p
  for _ in 1 2 3 4 5; do
    p="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [[ "$p" != 6379 ]]; then
      printf '%s' "$p"
      return 0
    fi
  done
  die "no free port"
}

random_token() {
  local want="$1" s=""
  while ((${#s} < want)); do
    s+="$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')"
  done
  printf '%s' "${s:0:want}"
}

# Prints the tail of every log in the temp dir (it is removed on exit).
show_logs() {
  local f
  for f in "$tmp"/*.log "$tmp"/*/*.log; do
    [[ -s "$f" ]] || continue
    printf -- '--- %s ---\n' "${f#"$tmp"/}" >&2
    tail -n 20 "$f" >&2 || true
  done
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until NAME PID SECONDS CHECK...: polls CHECK until it succeeds.
wait_until() {
  local name="$1" pid="$2" limit="$3" deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_logs
      die "$name exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_logs
      die "$name not ready within ${limit}s"
    fi
    sleep 0.2
  done
}

# prepare_binaries: runs scripts/setup.sh (stores, .venv), builds the release
# server and load generator unless SKIP_BUILD=1, and sets server_bin and
# load_bin. Needs `root`, `log` and `die` from the caller.
prepare_binaries() {
  if [[ -f scripts/setup.sh ]]; then
    bash scripts/setup.sh >&2
  fi
  [[ -x .venv/bin/secantusd-py ]] || die ".venv/bin/secantusd-py missing (scripts/setup.sh installs it)"
  local target_dir="${CARGO_TARGET_DIR:-$root/target}"
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p flashsale -p flashsale-load"
    cargo build --release -p flashsale -p flashsale-load >&2
  fi
  server_bin="$target_dir/release/flashsale"
  load_bin="$target_dir/release/flashsale-load"
  [[ -x "$server_bin" && -x "$load_bin" ]] || die "release binaries missing in $target_dir/release"
}

# Shell helpers the local-stack scripts share (sourced, not run).

# stop_pid PID SECONDS: SIGTERM, then SIGKILL if PID has not exited after SECONDS.
stop_pid() {
  local pid=$1 tries=$(($2 * 4)) i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < tries; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
}

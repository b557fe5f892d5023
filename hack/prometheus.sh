#!/usr/bin/env bash
# A real Prometheus server (the Debian package) for the autoscaling tests and benchmark.
#
#   hack/prometheus.sh ensure                        install the package when missing
#   hack/prometheus.sh start DIR PORT TARGET...      scrape TARGETs (host:port) every
#                                                    $PROM_SCRAPE_INTERVAL (default 1s);
#                                                    waits until /-/ready answers
#   hack/prometheus.sh stop DIR                      stop the server started in DIR
#
# The server listens on 127.0.0.1 only and keeps its data under DIR. Targets are
# scraped with honor_labels, so the exporter's own `namespace` and `pod` labels stay
# (prometheus-adapter maps those onto Kubernetes objects).
set -euo pipefail

PROMETHEUS="${PROMETHEUS_BIN:-/usr/bin/prometheus}"

log() { printf '[prometheus] %s\n' "$*" >&2; }

ensure() {
  if [ -x "$PROMETHEUS" ]; then return 0; fi
  log "installing the Debian package prometheus"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  # Only the binary is used: this script runs its own instance, on its own port.
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends prometheus >&2 || {
    log "apt-get install prometheus failed"
    return 1
  }
  [ -x "$PROMETHEUS" ] || { log "$PROMETHEUS missing after the install"; return 1; }
}

pid_of() { cat "$1/prometheus.pid" 2>/dev/null || true; }

# True when PID is alive and is the server of DIR (pids get reused).
ours() {
  local pid=$1 dir=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- "$dir/data" >/dev/null
}

start() {
  local dir=$1 port=$2
  shift 2
  [ $# -ge 1 ] || { log "start needs at least one target"; return 2; }
  ensure
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  if ours "$(pid_of "$dir")" "$dir"; then
    stop "$dir"
  fi
  local interval="${PROM_SCRAPE_INTERVAL:-1s}" targets="" t
  for t in "$@"; do targets+="'$t',"; done
  cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: $interval
  evaluation_interval: $interval
scrape_configs:
  - job_name: egpu-sim
    honor_labels: true
    scrape_interval: $interval
    scrape_timeout: $interval
    static_configs:
      - targets: [${targets%,}]
EOF
  setsid "$PROMETHEUS" \
    --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn \
    >"$dir/prometheus.log" 2>&1 </dev/null &
  echo $! >"$dir/prometheus.pid"
  local i
  for i in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
      log "ready on 127.0.0.1:$port (pid $(pid_of "$dir"))"
      return 0
    fi
    if ! ours "$(pid_of "$dir")" "$dir"; then
      log "exited during start-up:"; tail -n 20 "$dir/prometheus.log" >&2; return 1
    fi
    sleep 0.2
  done
  log "not ready after 30s:"; tail -n 20 "$dir/prometheus.log" >&2
  stop "$dir"
  return 1
}

stop() {
  local dir pid i
  dir="$(cd "$1" 2>/dev/null && pwd)" || return 0
  pid="$(pid_of "$dir")"
  if ours "$pid" "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do ours "$pid" "$dir" || break; sleep 0.1; done
    if ours "$pid" "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$dir/prometheus.pid"
}

case "${1:-}" in
  ensure) ensure ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 ensure | start DIR PORT TARGET... | stop DIR" >&2; exit 2 ;;
esac

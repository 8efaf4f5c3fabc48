#!/usr/bin/env bash
# Start or stop the local Ray cluster the Ray tests and benchmarks/ray_executor.py use.
#
#   bash .ci/ray.sh start   # head on 127.0.0.1:$KAI_RAY_PORT, 2 CPUs, 100 MB object store
#   bash .ci/ray.sh stop
#
# Small on purpose: the machines have 2 cores shared with other jobs. Every wait is
# bounded (start 120 s, ready 60 s); exits non-zero with the log tail on failure.
# Note: `ray stop` stops every Ray process of this user on the machine.
#
# Token authentication is on (RAY_AUTH_MODE=token, token in ~/.ray/auth_token, made
# here if missing): Ray 2.60 turns it on by itself once that file exists (a local
# `ray.init()` writes it), and a client without the token is then refused, so the
# mode is chosen here rather than left to whatever ran before. Clients (the tests,
# `kai stage measure`) need RAY_AUTH_MODE=token too; .ci/ray-tests.sh exports it.
set -euo pipefail
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

RAY="${RAY_BIN:-ray}"
PORT="${KAI_RAY_PORT:-6391}"
TMP="${KAI_RAY_TMP:-/tmp/kai-ray-$PORT}"
ADDR="127.0.0.1:$PORT"
log() { echo "ray.sh: $*"; }
die() { echo "ray.sh: error: $*" >&2; exit 1; }

case "${1:-}" in
  start)
    if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
      timeout 60 "$RAY" get-auth-token --generate >/dev/null || die "could not make a Ray token"
    fi
    log "starting a Ray head on $ADDR (temp dir $TMP)"
    timeout 120 "$RAY" start --head --node-ip-address 127.0.0.1 --port "$PORT" \
      --num-cpus 2 --num-gpus 0 --object-store-memory 100000000 \
      --include-dashboard false --disable-usage-stats --temp-dir "$TMP" >"$TMP.start.log" 2>&1 \
      || { tail -n 20 "$TMP.start.log" >&2; die "ray start failed or took over 120 s"; }
    for _ in $(seq 1 30); do
      if timeout 20 "$RAY" status --address "$ADDR" >/dev/null 2>&1; then
        log "ready: $ADDR"; exit 0
      fi
      sleep 2
    done
    tail -n 20 "$TMP.start.log" >&2
    die "cluster at $ADDR not ready after 60 s"
    ;;
  stop)
    timeout 60 "$RAY" stop >/dev/null 2>&1 || timeout 60 "$RAY" stop --force >/dev/null 2>&1 || true
    log "stopped"
    ;;
  *) die "usage: ray.sh start|stop" ;;
esac

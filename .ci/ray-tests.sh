#!/usr/bin/env bash
# CI: the tests marked `ray` against a local Ray cluster started here and stopped on exit.
# Needs KAI_TEST_POSTGRES_URL (the executor's store is PostgreSQL, as on a real cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export RAY_BIN="$VENV/bin/ray"
export KAI_RAY_PORT="${KAI_RAY_PORT:-6391}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"   # the cluster's mode (.ci/ray.sh)
trap 'bash .ci/ray.sh stop' EXIT
bash .ci/ray.sh start
export KAI_TEST_RAY_ADDRESS="127.0.0.1:$KAI_RAY_PORT"
"$VENV/bin/pytest" -m ray

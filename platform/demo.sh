#!/usr/bin/env bash
# `make demo`: the web server, two Celery workers (queues gpu and default, as in the Procfile) and beat, on
# SQLite and the embedded broker; then the packaged SmolLM2 generates candidates for a few demo prompts and the
# first task is ready to label. Ctrl-C stops everything. Logs: var/log/.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
DEMO_PROMPTS=${DEMO_PROMPTS:-6}
LOG=var/log
mkdir -p "$LOG"
export QUORUM_DEBUG=${QUORUM_DEBUG:-1}
export QUORUM_DEV=${QUORUM_DEV:-1}        # the development secret key, even with QUORUM_DEBUG=0
export QUORUM_WORKER_PRELOAD=1    # workers import torch/transformers while the model is being converted
export OMP_WAIT_POLICY=PASSIVE    # four processes share the cores; spinning OpenMP threads would starve them
export HF_HUB_OFFLINE=1           # nothing is downloaded, ever

t0=$(date +%s)
say() { printf '[demo %4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

pids=()
names=()
stop_all() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    say "stopping web, workers and beat"
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 50); do
      alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null
  fi
  wait 2>/dev/null
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

start() {  # start NAME COMMAND...: run in the background, output in var/log/NAME.log
  local name=$1; shift
  "$@" >"$LOG/$name.log" 2>&1 &
  pids+=($!); names+=("$name")
}

# The GGUF conversion needs no database: it runs while the database is migrated and seeded.
say "converting the packaged SmolLM2 (once; later runs reuse it)"
$PY manage.py register_packaged_models --convert-only >"$LOG/convert.log" 2>&1 &
convert_pid=$!

say "migrating and seeding the demo project"
$PY manage.py migrate --noinput -v 0 || exit 1
$PY manage.py seed_demo --url "http://$HOST:$PORT/" || exit 1
$PY manage.py collectstatic --noinput -v 0 || exit 1
# The embedded broker's tables exist before the four processes below connect to it at once.
$PY -c 'from quorum.celery import embedded_broker_prepare; embedded_broker_prepare()' || exit 1

start worker-gpu $PY -m celery -A quorum worker -Q gpu -c 1 -n gpu@%h --without-gossip --without-mingle --loglevel INFO
start worker-default $PY -m celery -A quorum worker -Q default -c 1 -n default@%h --without-gossip --without-mingle --loglevel INFO
start beat $PY -m celery -A quorum beat --schedule var/celerybeat-schedule --loglevel INFO
start web $PY manage.py runserver --noreload "$HOST:$PORT"
say "web on http://$HOST:$PORT/, workers and beat started (logs in $LOG/)"

if ! wait "$convert_pid"; then
  cat "$LOG/convert.log"; say "model conversion failed"; exit 1
fi
say "$(tail -n 1 "$LOG/convert.log")"
$PY manage.py register_packaged_models | tail -n 1 || exit 1

say "generating 2 candidates each for $DEMO_PROMPTS new demo prompts with SmolLM2 (pairwise tasks, first in the queue)"
$PY manage.py generate --project demo --model SmolLM2-135M-Instruct --n 2 --kind pairwise \
  --limit "$DEMO_PROMPTS" --new-only --priority-top --batch-prompts 1 --sampling '{"max_new_tokens": 160}' \
  --wait --until-first-task || exit 1
say "the first generated task is ready: sign in at http://$HOST:$PORT/ (logins printed above) and open the demo project"
say "generation goes on in the background; watch it at http://$HOST:$PORT/training/p/demo/generation/"
say "Ctrl-C stops the demo"

# Stay up until a process dies or Ctrl-C.
wait -n "${pids[@]}"
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || { say "${names[$i]} stopped; see $LOG/${names[$i]}.log"; tail -n 20 "$LOG/${names[$i]}.log"; }
done
exit 1

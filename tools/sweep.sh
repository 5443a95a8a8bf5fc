#!/usr/bin/env bash
# Trains several config variants concurrently (e.g. on one GPU) for a time limit, then packs each
# run's config, metrics and best checkpoint into $OUT/NAME.tgz.
#   OUT=/tmp/out bash tools/sweep.sh SECONDS "NAME:--config.a=1;--config.b=2" ...
# Runs go to /tmp/runs/NAME and resume there if started again. On a machine without
# ml_collections/tensorboardX installed, put their wheels in .whl/ first.
set -u
OUT=${OUT:-/tmp/sweep}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
limit=$1; shift
pids=()
for spec in "$@"; do
  name=${spec%%:*}
  overrides=${spec#*:}
  timeout -s INT "$limit" python3 main.py --config=configs/mult.py --workdir="/tmp/runs/$name" \
    $(echo "$overrides" | tr ';' ' ') > "$OUT/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for spec in "$@"; do
  name=${spec%%:*}
  (cd "/tmp/runs/$name" && tar czf "$OUT/$name.tgz" config.json metrics.jsonl best)
  tail -3 "$OUT/$name.log"
done

#!/usr/bin/env bash
# Runs every benchmark (issue 8) and writes bench/BENCHMARKS.md and bench/results.json.
#   bench/run.sh [--repeats 2] [--steps 5] [--only pretrain,rnnt,fbank,decode,profile] [--note TEXT]
# Peers are installed on first use into ~/.cache/w2vbert/bench-venvs/ (W2VBERT_BENCH_CACHE).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${W2VBERT_PYTHON:-$repo/.venv/bin/python}
if [ ! -x "$py" ]; then
  echo "bench/run.sh: $py not found; run utils/setup_env.sh first (or set W2VBERT_PYTHON)" >&2
  exit 1
fi
exec "$py" "$repo/bench/run_all.py" "$@"

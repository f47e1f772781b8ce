#!/usr/bin/env bash
# Runs every benchmark (issue 8) and writes bench/BENCHMARKS.md and bench/results.json.
#   bench/run.sh [--repeats 2] [--steps 5] [--only pretrain,rnnt,fbank,decode,profile] [--note TEXT]
#   bench/run.sh --report-only      # re-render BENCHMARKS.md from the committed inputs
# The project's environment is set up on first use (path.sh), as for run.sh and tests/run.sh;
# W2VBERT_PYTHON=PATH uses that interpreter instead. Peers are installed on first use into
# ~/.cache/w2vbert/bench-venvs/ (W2VBERT_BENCH_CACHE). The report is written even when a
# measurement fails; the exit status is 1 when one did.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${W2VBERT_PYTHON:-}" ]; then
  py=$W2VBERT_PYTHON
else
  # shellcheck disable=SC1091
  . "$repo/path.sh"
  py=$(command -v python)
fi
exec "$py" "$repo/bench/run_all.py" "$@"

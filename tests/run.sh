#!/usr/bin/env bash
# The test command: sets up the environment on first use (path.sh), then runs the pytest suite.
#   tests/run.sh                 # everything
#   tests/run.sh -k rnnt -x      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exec python -m pytest tests "$@"

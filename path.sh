# Sourced by run.sh and tests/run.sh: activates the recipe's Python environment (setting it up
# on first use) and puts the repository on PYTHONPATH.
#
#   W2VBERT_VENV=DIR          use this venv instead of <repo>/.venv (created if missing)
#   W2VBERT_USE_ACTIVE_ENV=1  use the already active venv/conda env (deps installed into it)
W2VBERT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export W2VBERT_ROOT
if [ "${W2VBERT_USE_ACTIVE_ENV:-0}" = 1 ]; then
  __venv=${VIRTUAL_ENV:-${CONDA_PREFIX:-}}
else
  __venv=${W2VBERT_VENV:-$W2VBERT_ROOT/.venv}
fi
if [ -z "$__venv" ] || [ ! -f "$__venv/.w2vbert-setup-done" ]; then
  echo "path.sh: setting up the environment (first use; later runs skip this)" >&2
  W2VBERT_VENV=$__venv bash "$W2VBERT_ROOT/utils/setup_env.sh" || return 1 2>/dev/null || exit 1
  [ -n "$__venv" ] || __venv=$W2VBERT_ROOT/.venv
fi
if [ "${W2VBERT_USE_ACTIVE_ENV:-0}" != 1 ]; then
  # shellcheck disable=SC1091
  . "$__venv/bin/activate"
fi
export PYTHONPATH=$W2VBERT_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
unset __venv

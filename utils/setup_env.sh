#!/usr/bin/env bash
# Sets up the Python environment of the recipe. Idempotent, offline-safe (PyPI + apt only).
#
#   utils/setup_env.sh [--venv DIR] [--no-apt] [--force] [--offline DIR]
#
# - creates DIR (default: <repo>/.venv, or $W2VBERT_VENV) unless it exists;
#   W2VBERT_USE_ACTIVE_ENV=1 installs into the already active venv/conda instead;
# - installs pinned deps (torch==2.13.0 and the rest of requirements.txt) and the tests'
#   references (requirements-test.txt: transformers);
# - builds kaldifeat and fast_rnnt from their PyPI sdists with no network access in CMake
#   (pybind11 comes from its own PyPI sdist) and caches the wheels in
#   ${W2VBERT_WHEEL_CACHE:-~/.cache/w2vbert/wheels}, so a second set-up takes seconds;
# - installs espeak-ng + English text sources from Debian when root (the mini corpus needs them);
# - ends by importing everything and printing versions and the RNN-T backend.
# --offline DIR: a machine without network (a GPU node): pip reads only DIR (wheels of what is
#   missing and the kaldifeat/fast_rnnt/pybind11 sdists, as `bench/gpu/validate.sh prepare`
#   writes), an importable torch is kept (else torch==2.13.0 from DIR), no apt, no pip upgrade.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${W2VBERT_VENV:-$repo/.venv}
use_apt=true
force=false
offline=""
while [ $# -gt 0 ]; do
  case $1 in
    --venv) venv=$2; shift 2 ;;
    --no-apt) use_apt=false; shift ;;
    --force) force=true; shift ;;
    --offline)
      [ -n "${2:-}" ] && [ -d "$2" ] || { echo "setup_env.sh: --offline needs a directory of wheels and sdists (bench/gpu/validate.sh prepare writes one), but got '${2:-}'" >&2; exit 2; }
      offline=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup_env.sh: unknown option '$1' (expected --venv DIR, --no-apt, --force or --offline DIR)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup_env $(date +%H:%M:%S)] $*"; }
t_start=$(date +%s)
cache=${W2VBERT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/w2vbert/wheels}
mkdir -p "$cache"
if [ -n "$offline" ]; then  # pip reads these in every call below (build_one's downloads too)
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=$offline
  use_apt=false
fi

# --- 1. Debian packages for the mini corpus ------------------------------------------
need_pkgs=()
for pkg in espeak-ng fortunes fortunes-min bible-kjv-text bible-kjv; do
  if command -v dpkg >/dev/null; then
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
  fi
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if $use_apt && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${need_pkgs[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null 2>&1 \
      || say "WARNING: apt-get install ${need_pkgs[*]} failed; the mini corpus (stage 0) needs them"
  else
    say "WARNING: the mini corpus needs: apt-get install ${need_pkgs[*]} (run as root, or ask your admin)"
  fi
fi

# --- 2. the virtual environment --------------------------------------------------------
if [ "${W2VBERT_USE_ACTIVE_ENV:-0}" = 1 ]; then
  venv=${VIRTUAL_ENV:-${CONDA_PREFIX:-}}
  if [ -z "$venv" ]; then
    say "ERROR: W2VBERT_USE_ACTIVE_ENV=1 but no venv/conda env is active (VIRTUAL_ENV/CONDA_PREFIX unset)"; exit 1
  fi
  py=$(command -v python)
  say "using the active environment: $venv"
else
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
  fi
  py=$venv/bin/python
fi
pip_() {  # quiet pip; drops the noise of this machine's local index config
  "$py" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

stamp=$venv/.w2vbert-setup-done
reqs_sum=$(cat "$repo/requirements.txt" "$repo/requirements-test.txt" "$0" | sha1sum | cut -c1-12)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs_sum" ] && [ "$force" != true ]; then
  say "environment up to date ($venv)"
else
  say "installing pinned dependencies (requirements.txt)"
  if [ -z "$offline" ]; then
    pip_ --upgrade pip setuptools wheel
    pip_ torch==2.13.0
  elif ! "$py" -c 'import torch' 2>/dev/null; then
    pip_ torch==2.13.0
  fi
  pip_ -r "$repo/requirements.txt"
  pip_ -r "$repo/requirements-test.txt"  # the tests' independent references (transformers)

  # --- 3. kaldifeat and fast_rnnt from sdists, cached as wheels ----------------------
  torch_tag=$("$py" -c 'import sys, torch; print("torch%s-py%d%d" % (torch.__version__.replace("+", "_"), *sys.version_info[:2]))')
  with_cuda=OFF
  if command -v nvcc >/dev/null && "$py" -c 'import torch,sys; sys.exit(0 if torch.version.cuda else 1)'; then with_cuda=ON; fi
  build_one() {  # name version env-var cuda-flag
    local name=$1 version=$2 envvar=$3 cudaflag=$4
    local dest=$cache/$torch_tag-cuda$with_cuda
    mkdir -p "$dest"
    if ls "$dest"/${name}-${version}-*.whl >/dev/null 2>&1; then
      say "$name $version: cached wheel in $dest"
    else
      say "$name $version: building from the PyPI sdist (kaldifeat ~4 min, fast_rnnt ~1 min on 2 cores)"
      local work; work=$(mktemp -d)
      if [ -n "$offline" ]; then  # (pip download would build pybind11's metadata: scikit-build-core)
        cp "$offline/$name-$version.tar.gz" "$offline/pybind11-3.1.0.tar.gz" "$work/"
      else
        "$py" -m pip download -q --no-deps --no-binary :all: -d "$work" "$name==$version" pybind11==3.1.0 \
          2> >(grep -v "is ignored: it is neither" >&2)
      fi
      (cd "$work" && tar xzf pybind11-3.1.0.tar.gz)
      local inc; inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
      local args="-DCMAKE_BUILD_TYPE=Release -DFETCHCONTENT_FULLY_DISCONNECTED=ON"
      args+=" -DFETCHCONTENT_SOURCE_DIR_PYBIND11=$work/pybind11-3.1.0 -DCMAKE_CXX_STANDARD=17"
      args+=" -DCMAKE_CXX_FLAGS=-I$inc -D$cudaflag=$with_cuda"
      [ "$name" = fast_rnnt ] && args+=" -DFT_BUILD_TESTS=OFF"
      (cd "$work" && tar xzf "$name-$version.tar.gz")
      if [ "$name" = fast_rnnt ] && [ "$with_cuda" = ON ]; then
        # its CMakeLists compiles for sm_35..sm_86, which CUDA >= 12.9 refuses and which miss
        # Hopper: build for the GPU present (else the archs torch was built for) instead
        local archs; archs=$("$py" -c 'import torch; c = torch.cuda
print(" ".join("%d%d" % c.get_device_capability(i) for i in range(c.device_count())) if c.is_available()
      else " ".join(a[3:] for a in c.get_arch_list() if a.startswith("sm_")))')
        say "fast_rnnt: CUDA archs $archs"
        sed -i -e "s/set(FT_COMPUTE_ARCH_CANDIDATES 35 50 60 61 70 75)/set(FT_COMPUTE_ARCH_CANDIDATES $archs)/" \
          -e "s/list(APPEND FT_COMPUTE_ARCH_CANDIDATES 80 86)//" "$work/$name-$version/CMakeLists.txt"
      fi
      env "$envvar=$args" MAKEFLAGS="-j$(nproc)" \
        "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dest" "$work/$name-$version" \
        > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; say "ERROR: building $name failed (log: $work/build.log)"; exit 1; }
      rm -rf "$work"
    fi
    pip_ --no-deps "$dest"/${name}-${version}-*.whl
  }
  "$py" -c 'import kaldifeat' 2>/dev/null || build_one kaldifeat 1.24 KALDIFEAT_CMAKE_ARGS KALDIFEAT_WITH_CUDA
  "$py" -c 'import fast_rnnt' 2>/dev/null || build_one fast_rnnt 1.3 FT_CMAKE_ARGS FT_WITH_CUDA
  say "installing the recipe's package (editable)"
  # (offline: with the installed setuptools, not one fetched into an isolated build)
  "$py" -m pip install --disable-pip-version-check -q --no-deps ${offline:+--no-build-isolation} -e "$repo" > "$venv/.w2vbert-editable.log" 2>&1 \
    || { cat "$venv/.w2vbert-editable.log" >&2; exit 1; }
  echo "$reqs_sum" > "$stamp"
fi

# --- 4. check -------------------------------------------------------------------------
"$py" - <<'PY'
import importlib
mods = ["torch", "lhotse", "kaldifeat", "fast_rnnt", "sentencepiece", "kaldialign", "tensorboard",
        "tqdm", "matplotlib", "pytest", "onnx", "onnxruntime", "sherpa_onnx", "lilcom", "w2vbert"]
for m in mods:
    mod = importlib.import_module(m)
    print(f"  {m:14s} {getattr(mod, '__version__', '')}")
from w2vbert.objectives.rnnt_backend import backend_name
print(f"  RNN-T backend: {backend_name()}")
PY
say "done in $(( $(date +%s) - t_start )) s; activate with: source $venv/bin/activate"

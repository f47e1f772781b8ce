#!/usr/bin/env bash
# The recipe on one GPU (issue 29), in one prepared run of at most ~8 minutes:
#
#   bench/gpu/validate.sh prepare   # here, with network: .gpu-carry/ = the wheels the GPU image
#                                   # lacks, the kaldifeat/fast_rnnt sdists, the tiny corpus (stages 0-1)
#   bench/gpu/validate.sh [--out DIR] [--budget S] [--parts "NAME ..."]
#
# Parts, in this order (expected seconds on one H100/H200, guesses until measured; cap = timeout):
#   setup          offline set-up from .gpu-carry (utils/setup_env.sh --offline: builds
#                  kaldifeat and fast_rnnt for the GPU)                                ~120 (cap 240)
#   recipe         ./run.sh --corpus tiny stages 2-7, --fbank-device cuda, bf16 training,
#                  --compile in pre-training                                           ~150 (cap 240)
#   resume         torchrun (1 process, NCCL) pre-training, bf16: straight twice, and SIGTERM
#                  after checkpoint-2.pt then the same command again; final weights compared ~60 (cap 150)
#   w2v2-finetune  stages 2-6 from local/make_tiny_w2v_bert_2.py's directory (--init-from,
#                  --continue-pretraining false, w2v-bert-2.0 fbank on cuda)            ~50 (cap 120)
#   w2v2-vs-hf     bench/w2v_bert_2_vs_hf.py --full --device cuda (0.6B, ours vs transformers) ~60 (cap 150)
#   xl-eager       bench/gpu_xl_step.py, batches 32 and 64 x 15 s, eager                ~40 (cap 120)
#   xl-compile     the same, batch 64, --compile-blocks (as the training command) and a
#                  profile of its top kernels                                           ~90 (cap 240)
# A part starts only with >= 20 s of --budget left (default 510 s on CUDA) and is cut at its cap or
# at the budget. Without CUDA every part runs on the CPU at tiny size (a dry run), except
# xl-compile, which is skipped with a message. Writes to --out (default $OUT, else
# exp/gpu-validate): summary.md, summary.json (rc, seconds, results per part) and logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
carry=$PWD/.gpu-carry

prepare() {  # run where pip reaches PyPI; the GPU machine has torch, transformers & co. but not these
  local plat=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
              --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64)
  mkdir -p "$carry/wheels"
  python3 -m pip download -q --no-deps "${plat[@]}" -d "$carry/wheels" lhotse==1.33.0 lilcom==1.8.2 \
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 kaldialign==0.12.0 audioread==3.1.0 cytoolz==1.2.0 \
    intervaltree==3.2.1 sherpa-onnx==2.0.1 sherpa-onnx-core==2.0.1 || return 1
  python3 -m pip download -q --no-deps --no-binary :all: -d "$carry/wheels" kaldifeat==1.24 \
    fast_rnnt==1.3 pybind11==3.1.0 || return 1
  ./run.sh --corpus tiny --stage 0 --stop-stage 1 --download-dir .gpu-carry/download \
    --data-dir .gpu-carry/data --exp-dir .gpu-carry/exp || return 1
  du -sh "$carry"; echo "now: the device run tool with carry [\".gpu-carry\"] and bench/gpu/validate.sh"
}
if [ "${1:-}" = prepare ]; then prepare; exit; fi

out=${OUT:-exp/gpu-validate} budget="" parts="setup recipe resume w2v2-finetune w2v2-vs-hf xl-eager xl-compile"
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    *) sed -n '2,23p' "$0"; exit 2 ;;
  esac
done
work=${VALIDATE_WORK:-/tmp/w2vbert-validate}
logs=$work/logs
rm -rf "$logs" "$work"/{data,exp-*,resume,xl,w2v-bert-2.0-tiny}; mkdir -p "$out" "$logs" "$work/data"
cp -r "$carry/data/manifests" "$work/data/" 2>/dev/null || echo "validate.sh: no $carry/data/manifests (run 'bench/gpu/validate.sh prepare')"
t0=$(date +%s)

setup_part() {  # the device has no network and no recipe venv: set one up from .gpu-carry
  if [ -n "${W2VBERT_VENV:-}" ] || [ -f .venv/.w2vbert-setup-done ]; then
    echo "setup: an environment exists (${W2VBERT_VENV:-.venv}); nothing to do"; return 0
  fi
  [ -d "$carry/wheels" ] || { echo "setup: no $carry/wheels: run 'bench/gpu/validate.sh prepare' first and carry .gpu-carry"; return 1; }
  bash utils/setup_env.sh --offline "$carry/wheels"
}

recipe_part() {
  ./run.sh --corpus tiny --stage 2 --stop-stage 7 --nj 1 --data-dir "$work/data" \
    --download-dir .gpu-carry/download --exp-dir "$work/exp-recipe" --fbank-device "$dev" \
    --pretrain-extra-args "--warmup-steps 10 --log-interval 5 --num-buckets 2 $amp $compile" \
    --finetune-extra-args "--warmup-steps 10 --log-interval 5 --num-buckets 2 $amp"
}

resume_part() {  # torchrun, 1 process (nccl on a GPU, gloo on the CPU); SIGTERM, then resume
  local fb=$work/data/fbank d=$work/resume epochs=6  # 6 batches an epoch
  [ "$dev" = cuda ] || epochs=2
  [ -f "$fb/tiny_cuts_pretrain.jsonl.gz" ] || ./run.sh --corpus tiny --stage 2 --stop-stage 2 \
    --data-dir "$work/data" --download-dir .gpu-carry/download --exp-dir "$work/exp-fbank" || return 1
  local cmd=(torchrun --standalone --nproc-per-node 1 -m w2vbert.pretrain --world-size 1
    --train-cuts "$fb/tiny_cuts_pretrain.jsonl.gz" --valid-cuts "$fb/tiny_cuts_dev-mini.jsonl.gz"
    --model-preset tiny --num-epochs $epochs --max-duration 20 --num-buckets 2 --warmup-steps 10
    --save-every-n 2 --log-interval 1 --base-lr 1e-3 --seed 0 --no-tensorboard $amp --exp-dir)
  rm -rf "$d"; mkdir -p "$d"
  for x in straight straight2; do
    "${cmd[@]}" "$d/$x" > "$d/$x.log" 2>&1 || { tail -30 "$d/$x.log"; return 1; }
  done
  "${cmd[@]}" "$d/killed" > "$d/killed-first.log" 2>&1 & local pid=$!  # (torchrun's own pid)
  while kill -0 $pid 2>/dev/null && [ ! -f "$d/killed/checkpoint-2.pt" ]; do sleep 0.1; done
  kill -TERM $pid 2>/dev/null; wait $pid; local rc=$? finished=false
  [ -f "$d/killed/epoch-$epochs.pt" ] && finished=true  # the signal came too late to test anything
  echo "SIGTERM after checkpoint-2.pt: torchrun exited $rc (finished before it: $finished)"
  grep -h "Stopped by" "$d/killed-first.log"
  "${cmd[@]}" "$d/killed" > "$d/killed.log" 2>&1 || { tail -30 "$d/killed.log"; return 1; }
  python3 - "$d" "$rc" "$finished" "$epochs" <<'PY'
import json, sys, torch
d, rc, finished, epochs = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "true", sys.argv[4]
def final(name):
    return torch.load(f"{d}/{name}/epoch-{epochs}.pt", map_location="cpu", weights_only=False)
def diff(a, b):  # max abs difference over model and averaged model; equal: bit-identical
    return max(float((a[k][n].float() - b[k][n].float()).abs().max()) for k in ("model", "model_avg") for n in a[k])
s, s2, r = final("straight"), final("straight2"), final("killed")
res = {"sigterm_rc": rc, "interrupted": rc != 0 and not finished, "batches": [s["batch_idx_train"], r["batch_idx_train"]],
       "resumed_vs_straight_max_abs": diff(s, r), "straight_vs_straight_max_abs": diff(s, s2)}
res["resume_bit_identical"] = res["resumed_vs_straight_max_abs"] == 0.0
print("RESULT " + json.dumps(res))
sys.exit(0 if res["interrupted"] and res["batches"][0] == res["batches"][1] else 1)
PY
}

w2v2_finetune_part() {  # w2v-BERT 2.0's path (HF directory, its fbank) at a size that trains in seconds
  python3 local/make_tiny_w2v_bert_2.py --out-dir "$work/w2v-bert-2.0-tiny" || return 1
  ./run.sh --corpus tiny --stage 2 --stop-stage 6 --nj 1 --data-dir "$work/data" \
    --download-dir .gpu-carry/download --exp-dir "$work/exp-w2v2" --fbank-device "$dev" \
    --init-from "$work/w2v-bert-2.0-tiny" --continue-pretraining false --decoding-methods greedy_search \
    --finetune-extra-args "--warmup-steps 10 --log-interval 5 --num-buckets 2 $amp"
}

w2v2_vs_hf_part() {
  if [ "$dev" = cuda ]; then python3 bench/w2v_bert_2_vs_hf.py --full --device cuda --steps 5
  else python3 bench/w2v_bert_2_vs_hf.py --layers 2 --dim 64 --heads 4 --batch 2 --seconds 2 --steps 1
  fi
}

xl_part() {  # xl_part eager|compile: the XL step; JSON and profile in $work/xl (not $OUT: 8 files max)
  local args=(--out "$work/xl/$1.json")
  if [ "$dev" = cuda ]; then args+=(--warmup 2 --steps 5)
  else args+=(--cpu-dry-run --preset tiny --seconds 2 --warmup 1 --steps 1)
  fi
  if [ "$1" = eager ]; then [ "$dev" = cuda ] && args+=(--batches 32,64) || args+=(--batches 2)
  elif [ "$dev" = cuda ]; then args+=(--batches 64 --compile-blocks --profile)
  else echo "xl-compile: needs CUDA (torch.compile of the XL step is timed on a GPU only); skipped"; return 0
  fi
  mkdir -p "$work/xl"; OUT=$work/xl python3 bench/gpu_xl_step.py "${args[@]}"
}

run_part() {  # run_part NAME FUNCTION CAP: logged, timed, cut at CAP or at the budget
  local name=$1 fn=$2 cap=$3 left start rc
  left=$(( t0 + budget - $(date +%s) ))
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped\t0\tnot run: %s s of the %s s budget left\n' "$name" "$left" "$budget" >> "$logs/parts.tsv"
    echo "== $name: skipped (time budget)"; return
  fi
  [ "${dev:-cuda}" = cuda ] || cap=$(( cap * 3 ))  # the CPU dry run is slower
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (at most $cap s; log $logs/$name.log)"
  start=$(date +%s)
  timeout -k 20 "$cap" bash -c "$fn" > "$logs/$name.log" 2>&1; rc=$?
  [ "$rc" = 124 ] && echo "validate.sh: $name cut after $cap s" >> "$logs/$name.log"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" \
    "$(grep -v '^RESULT ' "$logs/$name.log" | tail -n 1 | cut -c1-200 | tr '\t' ' ')" >> "$logs/parts.tsv"
  echo "   rc $rc in $(( $(date +%s) - start )) s"
}

export work carry
export -f setup_part recipe_part resume_part w2v2_finetune_part w2v2_vs_hf_part xl_part
given_budget=$budget budget=${budget:-510}
if [ -z "${W2VBERT_VENV:-}" ] && [ ! -f .venv/.w2vbert-setup-done ]; then
  # no recipe venv (the GPU machine): set up into the python3 that holds torch, as the active env
  mkdir -p "$work/bin"; ln -sf "$(command -v python3)" "$work/bin/python"  # (setup_env.sh: python)
  export PATH=$work/bin:$(python3 -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH
  [ -x /usr/local/cuda/bin/nvcc ] && PATH=$PATH:/usr/local/cuda/bin  # fast_rnnt's CUDA build
  export W2VBERT_USE_ACTIVE_ENV=1 VIRTUAL_ENV=${VIRTUAL_ENV:-$(python3 -c 'import sys; print(sys.prefix)')}
fi
finish() {  # summary.md, summary.json and logs.tgz in $out
  python3 bench/gpu/validate_summary.py "$logs" "$out" "$work" "$(( $(date +%s) - t0 ))" "${dev:-none}"
  tar czf "$out/logs.tgz" -C "$work" logs $(cd "$work" && ls -d xl exp-*/log exp-*/RESULTS.md resume/*.log 2>/dev/null)
  echo "validate.sh: $out/summary.md, summary.json, logs.tgz"
}
case " $parts " in *" setup "*) run_part setup setup_part 240 ;; esac
if [ "${W2VBERT_USE_ACTIVE_ENV:-0}" = 1 ] && [ ! -f "$VIRTUAL_ENV/.w2vbert-setup-done" ]; then
  echo "validate.sh: no environment (see $logs/setup.log); nothing else can run"; finish; exit 1
fi
. ./path.sh || exit 1
dev=$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
if [ "$dev" = cuda ]; then amp=--use-bf16 compile=--compile; else amp="" compile="" budget=${given_budget:-1800}; fi
export dev amp compile
echo "device $dev: torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "")')"
for p in $parts; do
  case $p in
    setup) ;;
    recipe) run_part recipe recipe_part 240 ;;
    resume) run_part resume resume_part 150 ;;
    w2v2-finetune) run_part w2v2-finetune w2v2_finetune_part 120 ;;
    w2v2-vs-hf) run_part w2v2-vs-hf w2v2_vs_hf_part 150 ;;
    xl-eager) run_part xl-eager "xl_part eager" 120 ;;
    xl-compile) run_part xl-compile "xl_part compile" 240 ;;
    *) echo "validate.sh: unknown part '$p'" >&2; exit 2 ;;
  esac
done

finish

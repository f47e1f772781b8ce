#!/usr/bin/env bash
# w2v-BERT recipe: pre-train a speech encoder with w2v-BERT (contrastive + masked LM, jointly)
# and fine-tune it with a pruned RNN-T. Every stage is a standalone script; this file only
# sequences them.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=7
corpus=mini          # mini (bundled, synthesised here) | tiny | librispeech | librispeech-960 | librilight | an4 | an4-long
nj=2
seed=0
exp_dir=exp
data_dir=data
download_dir=download
force=false          # re-run stages that are already done
dry_run=false        # print each stage's command instead of running it
# How training (stages 4, 5, 8) starts its processes: utils/launch.sh (local | torchrun | slurm)
launcher=local
num_gpus=1           # training processes per node (one per GPU)
num_nodes=1
rdzv_endpoint=""     # HOST:PORT for torchrun on several nodes
rdzv_port=29400      # the rendezvous port under SLURM
slurm_args=""        # more srun flags (quoted string)
# Corpus settings (egs/librispeech/conf/<corpus>.sh gives the defaults; any can be overridden here)
librispeech_dir=""   # an existing LibriSpeech copy to link instead of downloading
librilight_dir=""    # an existing Libri-Light copy (small/ medium/ large/) to link (--corpus librilight)
librilight_subset="" # --corpus librilight: small | medium | large | all (default small)
librilight_max_cut_duration=""  # join Libri-Light VAD segments into segments of at most this many s
full_librispeech=""  # gone: --corpus librispeech-960
an4_archive=""       # --corpus an4: a local an4_raw.bigendian.tar.gz instead of CMU's download
an4_dir=""           # --corpus an4: an unpacked AN4 tree (etc/, wav/) to link instead
an4_train_part=""    # --corpus an4: the fine-tuning part, train (default) or train-1of8
pretrain_preset=""
pretrain_epochs=""
pretrain_max_duration=""
pretrain_lr=""
finetune_epochs=""
finetune_max_duration=""
finetune_lr=""
bpe_vocab_size=""
decode_epoch=""
decode_avg=""
decoding_methods=""
decode_beam_size=""      # modified_beam_search's beam (default 4)
pretrain_extra_cuts=""   # more unlabelled cuts manifests for stage 4 (space-separated; same fbank kind)
pretrain_extra_args=""   # extra flags for python -m w2vbert.pretrain (quoted string)
finetune_extra_args=""   # extra flags for python -m w2vbert.finetune
finetune_init_args=""    # more stage-5 flags only when it starts from a pre-trained encoder
# Starting from released weights (w2v-BERT 2.0): a Hugging Face directory, hf:<hub id>, a fairseq
# conformer_shaw.pt or one of our checkpoints. Stage 4 then continues its pre-training on the
# corpus's unlabelled audio (--continue-pretraining false: stage 5 fine-tunes it directly).
init_from=""
continue_pretraining=true
fbank=""                 # icefall | w2v-bert-2.0 (default: w2v-bert-2.0 with --init-from, else icefall)
init_pretrain_args=""    # stage-4 flags used only with --init-from (default: the corpus conf's)
pretrain_shar=""         # none | features | audio: pre-train from Lhotse Shar shards (default: the conf's)
shar_shard_size=1000     # cuts per Shar shard
fbank_device=""          # stage 2's kaldifeat device: cpu (default) or cuda[:N]
# Streaming (issue 28): stages 5-7 fine-tune with dynamic chunks into exp/finetune-streaming,
# decode at each chunk size and export for sherpa-onnx's online recogniser
streaming=false
streaming_chunk_sizes="320ms,640ms,-1"   # --chunk-sizes of stage 5 (steps or ms; -1 = full context)
streaming_left_chunks=4                  # --left-context-chunks

help_message=$(cat <<'HELP'
Usage: ./run.sh [options]
  Runs the w2v-BERT recipe. With no options: every stage on the bundled mini corpus.

Stages (--stage N --stop-stage M; default 0..7):
  0 corpus     mini: synthesise the mini corpus (espeak-ng); others: download/link LibriSpeech
               (every part used) and Libri-Light
  1 manifests  Lhotse recordings/supervisions manifests   -> data/manifests/
  2 fbank      80-dim kaldifeat fbank, lilcom-compressed   -> data/fbank/
  3 bpe        sentencepiece unigram model                 -> data/lang_bpe_N/
  4 pretrain   w2v-BERT pre-training (contrastive + MLM)   -> exp/pretrain/
  5 finetune   pruned RNN-T fine-tuning                    -> exp/finetune/
  6 decode     greedy and modified beam search, WER        -> exp/finetune/<method>/
  7 export     ONNX export, checked with sherpa-onnx       -> exp/finetune/*.onnx
  8 compare    ablation: scratch vs w2v-BERT vs contrastive-only vs MLM-only vs BEST-RQ -> exp/compare/

Options:
  --stage N --stop-stage M   stages to run (default 0 and 7)
  --corpus NAME              mini (default) | tiny | librispeech (fine-tune on 100 h, pre-train
                             on 960 h) | librispeech-960 (fine-tune on 960 h) | librilight
                             (pre-train on Libri-Light, fine-tune on 960 h) | an4 (CMU's AN4,
                             real speech: 848 train / 100 dev / 130 test utterances) |
                             an4-long (the same data; twice the pre-training, beam 10, exp-long/)
  --nj N                     parallel jobs for data preparation (default 2)
  --exp-dir DIR --data-dir DIR --download-dir DIR
  --force true               re-run stages already done (default: skip them)
  --dry-run true             print the commands without running them
  --seed N                   random seed (corpus synthesis, training)
  --launcher NAME            how training starts (utils/launch.sh): local (default: python -m,
                             --num-gpus processes on this machine) | torchrun | slurm (srun +
                             torchrun per node, inside sbatch/salloc: egs/librispeech/slurm/)
  --num-gpus N --num-nodes N processes per node (default 1) and nodes (default 1); the exp dir
                             must be on a filesystem every node shares
  --rdzv-endpoint HOST:PORT  torchrun's rendezvous on several nodes; --rdzv-port (SLURM, 29400)
  --slurm-args "..."         more srun flags
  --librispeech-dir PATH     use an existing LibriSpeech copy (linked, not downloaded)
  --an4-archive FILE         --corpus an4: unpack this an4_raw.bigendian.tar.gz (default: CMU's)
  --an4-dir DIR              --corpus an4: link this unpacked AN4 tree instead
  --an4-train-part PART      --corpus an4: fine-tune (and BPE) on train (default, 848 utterances)
                             or train-1of8 (1/8 of them, whole speakers: few labels)
  --librilight-subset NAME   --corpus librilight: small (default) | medium | large | all
  --librilight-dir PATH      use an existing Libri-Light copy holding the subsets (linked)
  --librilight-max-cut-duration S   join each Libri-Light recording's VAD segments into segments
                             of at most S <= 30 s (default 30 for --corpus librilight; else unjoined)
  --pretrain-preset NAME     tiny|mini|small|base|xl|xxl; and --pretrain-epochs, --pretrain-max-duration,
                             --pretrain-lr, --finetune-epochs, --finetune-max-duration, --finetune-lr,
                             --bpe-vocab-size, --decode-epoch, --decode-avg, --decoding-methods,
                             --decode-beam-size (modified_beam_search's beam, default 4)
  --pretrain-extra-cuts "F..." more unlabelled cuts manifests (with features of the same kind,
                             e.g. another corpus's <prefix>_cuts_*.jsonl.gz) that stage 4
                             pre-trains on besides the corpus's own, mixed in by size
  --pretrain-extra-args "..." --finetune-extra-args "..."   more flags for stage 4 / 5
  --finetune-init-args "..."  more stage-5 flags for pre-trained encoders only (not scratch)
  --init-from SRC            start from released weights: a Hugging Face w2v-BERT 2.0 directory
                             (huggingface-cli download facebook/w2v-bert-2.0), hf:<hub id>, a
                             fairseq conformer_shaw.pt or our checkpoint; stage 4 continues its
                             pre-training (--continue-pretraining false: skip to fine-tuning)
  --fbank KIND               icefall | w2v-bert-2.0 (default: w2v-bert-2.0 with --init-from);
                             features of a kind other than icefall go to <data-dir>/fbank-KIND/
  --init-pretrain-args "..." stage-4 flags for continued pre-training (default: the conf's)
  --pretrain-shar KIND       none | features | audio: stage 2 also writes the pre-training cuts
                             as Lhotse Shar (shards with the fbank, or the audio only, fbank then
                             computed in training) and stage 4 reads them, shard order shuffled
                             per epoch (default: features for librilight, else none)
  --shar-shard-size N        cuts per Shar shard (default 1000)
  --fbank-device DEV         stage 2 computes the fbank on DEV: cpu (default) or cuda[:N]
  --streaming true           stages 5-7 build a streaming recogniser in <exp-dir>/finetune-streaming:
                             causal conv + stored input statistics, dynamic chunk fine-tuning,
                             greedy decoding at each chunk size, export for sherpa-onnx's
                             OnlineRecognizer checked on the first test set fed in 0.1 s pieces
  --streaming-chunk-sizes L  chunk sizes drawn in fine-tuning, decoded in stage 6; the first
                             positive one is exported (default 320ms,640ms,-1)
  --streaming-left-chunks N  left context in chunks (default 4)
  Defaults per corpus: egs/librispeech/conf/<corpus>.sh.
Each stage logs to <exp-dir>/log/stage-N-NAME.log; a finished stage leaves stage-N-NAME.done.
HELP
)

run_command="./run.sh${*:+ $*}"
. utils/parse_options.sh
. utils/stage_lib.sh
. utils/launch.sh

if ! [[ "$stage" =~ ^[0-9]+$ && "$stop_stage" =~ ^[0-9]+$ ]]; then
  echo "run.sh: --stage and --stop-stage must be integers, got '$stage' and '$stop_stage'" >&2; exit 2
fi
if [ "$stage" -gt "$stop_stage" ]; then
  echo "run.sh: --stage ($stage) is greater than --stop-stage ($stop_stage): nothing to run" >&2; exit 2
fi
conf=egs/librispeech/conf/$corpus.sh
if [ ! -f "$conf" ]; then
  echo "run.sh: unknown --corpus '$corpus' (expected one of: $(ls egs/librispeech/conf | sed 's/\.sh$//' | xargs))" >&2
  exit 2
fi
if [ -n "$full_librispeech" ]; then
  echo "run.sh: --full-librispeech is gone: use --corpus librispeech-960 (fine-tuning on 960 h)" >&2; exit 2
fi
. "$conf"
if [ -z "${librilight_parts:-}" ] && [ -n "$librilight_dir$librilight_subset" ]; then
  echo "run.sh: --librilight-dir and --librilight-subset are for --corpus librilight, not '$corpus'" >&2; exit 2
fi
if [ "${corpus_layout:-}" != an4 ] && [ -n "$an4_archive$an4_dir$an4_train_part" ]; then
  echo "run.sh: --an4-archive, --an4-dir and --an4-train-part are for --corpus an4, not '$corpus'" >&2; exit 2
fi
if [ -n "$an4_archive" ] && [ -n "$an4_dir" ]; then
  echo "run.sh: give --an4-archive or --an4-dir, not both" >&2; exit 2
fi
case ${an4_train_part:-train} in
  train|train-1of*) ;;
  *) echo "run.sh: unknown --an4-train-part '$an4_train_part' (expected train or train-1of${an4_subset_denominator:-8})" >&2; exit 2 ;;
esac
if [ -n "${librilight_max_cut_duration:-}" ] &&
   ! awk -v x="$librilight_max_cut_duration" 'BEGIN { exit !(x ~ /^[0-9.]+$/ && x > 0 && x <= 30) }'; then
  echo "run.sh: --librilight-max-cut-duration must be a number of seconds in (0, 30], got" \
    "'$librilight_max_cut_duration' (stage 2 and training drop cuts over 30 s)" >&2; exit 2
fi
if [ -z "$fbank" ]; then
  if [ -n "$init_from" ]; then fbank=w2v-bert-2.0; else fbank=icefall; fi
fi
case $fbank in
  icefall) fbank_dir=$data_dir/fbank ;;
  w2v-bert-2.0) fbank_dir=$data_dir/fbank-$fbank ;;
  *) echo "run.sh: unknown --fbank '$fbank' (expected icefall or w2v-bert-2.0)" >&2; exit 2 ;;
esac
log_dir=$exp_dir/log
mkdir -p "$log_dir"

if [ "$dry_run" != true ]; then
  . ./path.sh
fi
. egs/librispeech/stages.sh

log "run.sh: corpus=$corpus stages $stage..$stop_stage; logs in $log_dir/"
SECONDS=0
for n in $(seq "$stage" "$stop_stage"); do
  run_recipe_stage "$n"
done
log "run.sh: finished stages $stage..$stop_stage in $SECONDS s"
if [ "$stop_stage" -ge 4 ] && [ "$dry_run" != true ]; then
  _report > "$log_dir/report.log" 2>&1 || { log "ERROR: writing the results failed; see $log_dir/report.log"; exit 1; }
  awk '/^## /{show = ($0 ~ /^## (Recognition|Streaming|Comparison|Time per stage)/)} show && !/^!\[/' "$exp_dir/RESULTS.md"
  log "results: $exp_dir/RESULTS.md (plots in $exp_dir/plots/)"
fi

# CMU AN4 (alphanumeric, 1991): real speech, 948 training utterances of 74 speakers (~42 min) and
# 130 test utterances of 10 other speakers (~6 min), spelled letters, digits and short commands.
# Stage 0 downloads CMU's an4_raw.bigendian archive (--an4-archive FILE: a local copy;
# --an4-dir DIR: an unpacked tree); stage 1 (local/prepare_an4.py) converts its big-endian audio
# to FLAC once and holds out dev (100 utterances of whole training speakers, as ESPnet's
# train_dev) and a 1/8 few-label subset, train-1of8 (--an4-train-part train-1of8 fine-tunes on it).
# Reference: ESPnet egs2/an4/asr1 (Transformer, BPE 30): test WER 7.6 / CER 3.6, no LM.
prefix=an4
synthetic=false
corpus_layout=an4            # stages 0 and 1 use local/download_an4.py and local/prepare_an4.py
corpus_dir=$download_dir/an4
: "${an4_dev_utterances:=100}"     # env-overridable (tests use a small tree)
: "${an4_subset_denominator:=8}"
train_parts="${an4_train_part:-train}"   # fine-tuning and BPE: train (848) or train-1of8
dev_parts="dev"
test_parts="test"
unlabelled_parts="train"           # pre-training: AN4's training audio (never dev's or test's)
: "${bpe_vocab_size:=30}"     # the letters, apostrophe and word boundary: ESPnet's AN4 size
: "${pretrain_preset:=mini}"    # 5.6 M parameters: what 2 CPU cores train in minutes
: "${pretrain_epochs:=20}"      # ~110 updates of <= 25 s per epoch (0.63 h of audio)
: "${pretrain_max_duration:=25}"
: "${pretrain_lr:=2e-3}"
if [ "${an4_train_part:-train}" != train ]; then
  # 1/8 of the labels (~106 utterances, ~14 min speed-perturbed): at 30 s per batch 12 epochs are
  # ~360 updates, fewer than the warm-up, and every system stayed at the all-blank plateau (dev
  # WER 97-98, issue 27); smaller batches and more epochs give ~3,000 updates in ~8 min.
  : "${finetune_epochs:=40}"
  : "${finetune_max_duration:=10}"
fi
: "${finetune_epochs:=12}"      # speed-perturbed (x3): ~270 updates of <= 30 s per epoch
: "${finetune_max_duration:=30}"
: "${finetune_lr:=2e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=5}"
: "${decoding_methods:=greedy_search modified_beam_search}"
speed_perturb=true
# Pre-training as the mini corpus's (a slower quantizer, short warm-up; the mini preset's masking).
: "${pretrain_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 40 --quantizer-lr-scale 0.1 --valid-max-duration 400 --keep-last-epochs 2}"
# Fine-tuning: a warm-up of 500 updates for the lr and for the RNN-T loss scales (the CLI's
# defaults, 25000 and 3000, are LibriSpeech-scale: a 14-epoch AN4 run, ~3800 updates, ended at
# 0.15 x its peak lr with the pruned loss still ramping up, issue 27); an auxiliary CTC loss; no
# SpecAugment (icefall's LibriSpeech values, time warp 80 and masks of up to 100 frames, are
# made for 15 s utterances; AN4's are 1-7 s, 2.7 s on average).
: "${finetune_extra_args:=--warmup-steps 500 --model-warm-step 500 --num-buckets 10 --log-interval 50 --ctc-loss-scale 0.5 --no-spec-augment --keep-last-epochs $((decode_avg + 1))}"
# From a pre-trained encoder: frozen for the first 300 updates while the new RNN-T layers learn
# to read it (as the mini corpus).
: "${finetune_init_args:=--freeze-encoder-steps 300}"

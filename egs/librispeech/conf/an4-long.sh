# CMU AN4, the long configuration (issue 27): <= 3 h on 2 CPU cores, aiming at ESPnet's
# Transformer (test WER 7.6 %, CER 3.6 %, beam 10, no LM). The same data, parts and stages as
# conf/an4.sh (--corpus an4; its data dir is shared), with a larger encoder pre-trained longer,
# a longer fine-tuning, and beam 10.
# Its experiments go to exp-long/ unless --exp-dir is given.
[ "$exp_dir" = exp ] && exp_dir=exp-long
: "${pretrain_preset:=small}"   # 12.7 M parameters: dim 256, 4 + 4 blocks (~2.4x mini's compute)
: "${pretrain_epochs:=30}"      # mini: 20 -> 40 epochs moved dev WER <= 1 point; a larger model needs more
: "${finetune_epochs:=16}"      # x3 speed-perturbed: ~270 updates of <= 30 s per epoch
: "${decode_avg:=5}"
: "${decode_beam_size:=10}"     # ESPnet's beam
# No SpecAugment, as conf/an4.sh: sized for short utterances (--spec-augment-time-warp 20,
# icefall's mel and time masks) it made dev WER worse, 20.6-21.0 against 16.07 after 12 and 16
# epochs of the mini encoder (docs/results/RESULTS-an4-long-2026-12-07.md). All epochs are kept
# (the epoch and the number averaged are chosen on dev).
: "${finetune_extra_args:=--warmup-steps 500 --model-warm-step 500 --num-buckets 10 --log-interval 50 --ctc-loss-scale 0.5 --no-spec-augment --keep-last-epochs $finetune_epochs}"
. egs/librispeech/conf/an4.sh

# CMU AN4, the long configuration (issue 27): <= 3 h on 2 CPU cores, aiming at ESPnet's
# Transformer (test WER 7.6 %, CER 3.6 %, beam 10, no LM). The same data, parts and stages as
# conf/an4.sh (--corpus an4; its data dir is shared), with a larger encoder pre-trained longer,
# a longer fine-tuning with SpecAugment sized for AN4's 1-7 s utterances, and beam 10.
# Its experiments go to exp-long/ unless --exp-dir is given.
[ "$exp_dir" = exp ] && exp_dir=exp-long
: "${pretrain_preset:=small}"   # 12.7 M parameters: dim 256, 4 + 4 blocks (~2.4x mini's compute)
: "${pretrain_epochs:=30}"      # mini: 20 -> 40 epochs moved dev WER <= 1 point; a larger model needs more
: "${finetune_epochs:=24}"
: "${decode_avg:=5}"
: "${decode_beam_size:=10}"     # ESPnet's beam
# SpecAugment: icefall's mel masks (2 of <= 27 bins) and time masks (<= 15 % of each utterance:
# one mask of <= 40 frames on AN4's 2.7 s average), but time warp of <= 20 frames, not 80 (a warp
# centre of 80 frames and +-80 frames on a 270-frame utterance is most of it).
: "${finetune_extra_args:=--warmup-steps 500 --model-warm-step 500 --num-buckets 10 --log-interval 50 --ctc-loss-scale 0.5 --spec-augment --spec-augment-time-warp 20 --keep-last-epochs $((decode_avg + 1))}"
. egs/librispeech/conf/an4.sh

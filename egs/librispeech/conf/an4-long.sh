# CMU AN4, the longer configuration (issue 27): the best found on dev within <= 3 h on 2 CPU
# cores, aiming at ESPnet's Transformer (test WER 7.6 %, CER 3.6 %, beam 10, no LM). The same
# data, parts and stages as conf/an4.sh (--corpus an4; its data dir is shared), with twice the
# pre-training (40 epochs) and ESPnet's beam of 10. ~52 min on a busy 2-core machine.
# What did not help on dev (docs/results/RESULTS-an4-long-2026-12-07.md; each against dev greedy
# 16.07 after 12 fine-tuning epochs): the `small` preset (12.7 M, 30 pre-training epochs) 26.73;
# SpecAugment sized for 1-7 s utterances (time warp 20, icefall's masks) 20.98; the encoder at
# 0.3 x the lr (--encoder-lr-scale 0.3) 21.66. The models fit their training audio (1.4 % WER on
# 200 training utterances against 16 % on dev), which points at too little data (one seed each).
# Its experiments go to exp-long/ unless --exp-dir is given.
[ "$exp_dir" = exp ] && exp_dir=exp-long
: "${pretrain_epochs:=40}"      # 20 -> 40: dev 16.07 / 15.74 -> 16.07 / 14.72 (greedy / beam 4)
: "${decode_beam_size:=10}"     # ESPnet's beam
. egs/librispeech/conf/an4.sh

# CMU AN4, the long configuration (issue 27): <= 3 h on 2 CPU cores, aiming at ESPnet's
# Transformer (test WER 7.6 %, CER 3.6 %, beam 10, no LM). The same data, parts and stages as
# conf/an4.sh (--corpus an4; its data dir is shared), with a larger encoder pre-trained longer
# and a longer fine-tuning with SpecAugment sized for AN4's 1-7 s utterances.
# Its experiments go to exp-long/ unless --exp-dir is given.
[ "$exp_dir" = exp ] && exp_dir=exp-long
: "${pretrain_preset:=small}"   # 12.7 M parameters: dim 256, 4 + 4 blocks (~2.4x mini's compute)
: "${pretrain_epochs:=30}"      # mini: 20 -> 40 epochs moved dev WER <= 1 point; a larger model needs more
. egs/librispeech/conf/an4.sh

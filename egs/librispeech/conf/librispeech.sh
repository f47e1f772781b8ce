# LibriSpeech as in the paper, scaled to what one machine can do: fine-tune on train-clean-100,
# pre-train on the 960 h audio (so stage 0 gets all seven parts). --corpus librispeech-960
# fine-tunes on all 960 h; --corpus librilight pre-trains on Libri-Light.
prefix=librispeech
synthetic=false   # stage 0 downloads or links it (--librispeech-dir PATH: link an existing copy)
corpus_dir=$download_dir/LibriSpeech
train_parts="train-clean-100"     # fine-tuning (one shuffled set over the parts) and BPE
dev_parts="dev-clean dev-other"
test_parts="test-clean test-other"
unlabelled_parts="train-clean-100 train-clean-360 train-other-500"   # pre-training
librilight_parts=""               # Libri-Light subsets stage 0 gets (the librilight conf sets them)
: "${bpe_vocab_size:=500}"
: "${pretrain_preset:=base}"
: "${pretrain_epochs:=30}"
: "${pretrain_max_duration:=600}"
: "${pretrain_lr:=2e-3}"
: "${finetune_epochs:=30}"
: "${finetune_max_duration:=600}"
: "${finetune_lr:=1e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=5}"
: "${decoding_methods:=greedy_search modified_beam_search}"
speed_perturb=true
if [ -n "${init_from:-}" ]; then
  # From w2v-BERT 2.0 (./run.sh --corpus librispeech --init-from hf:facebook/w2v-bert-2.0): the
  # 0.6B encoder on one GPU in bf16 with activation checkpointing; continued pre-training at a
  # tenth of its usual peak lr with a short warm-up. Not tuned here (no GPU runs yet).
  : "${init_pretrain_args:=--base-lr 2e-4 --warmup-steps 1000}"
  : "${pretrain_extra_args:=--use-bf16 --activation-checkpointing}"
  : "${finetune_extra_args:=--use-bf16 --activation-checkpointing --ctc-loss-scale 0.2}"
fi
: "${pretrain_extra_args:=}"
: "${finetune_extra_args:=}"
# pre-trained encoders stay frozen while the new RNN-T layers warm up (scaled from the mini
# corpus, where 300 of ~2000 updates helped a lot; not tuned on LibriSpeech)
: "${finetune_init_args:=--freeze-encoder-steps 2000}"

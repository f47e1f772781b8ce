# Bundled mini corpus, synthesised on this machine with espeak-ng (stage 0).
# Sizes and training budgets are tuned so that the default ./run.sh stays within ~30 min on 2 cores.
prefix=mini
synthetic=true    # stage 0 synthesises it (local/make_mini_corpus.py)
corpus_dir=$download_dir/mini
train_parts="train-mini"          # labelled: fine-tuning set (LibriSpeech layout)
dev_parts="dev-mini"
test_parts="test-mini"            # voices unseen in every training part
unlabelled_parts="unlab-mini"     # unlabelled: pre-training set (Libri-Light layout)
mini_train_minutes=20
mini_dev_minutes=5
mini_test_minutes=5
mini_unlabelled_minutes=120
: "${bpe_vocab_size:=256}"
: "${pretrain_preset:=mini}"
: "${pretrain_epochs:=10}"
: "${pretrain_max_duration:=100}"
: "${pretrain_lr:=3e-3}"
: "${finetune_epochs:=30}"
: "${finetune_max_duration:=60}"
: "${finetune_lr:=3e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=5}"
: "${decoding_methods:=greedy_search modified_beam_search}"
speed_perturb=false
: "${pretrain_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 20 --gumbel-temp-decay 0.998}"
: "${finetune_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 20 --model-warm-step 200 --ctc-loss-scale 0.2}"

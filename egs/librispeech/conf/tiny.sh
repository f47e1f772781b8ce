# A tiny corpus and model for a smoke test of every stage in about two minutes (tests use it).
# Same layout and scripts as "mini"; the numbers it gives mean nothing.
prefix=tiny
synthetic=true    # stage 0 synthesises it (local/make_mini_corpus.py)
corpus_dir=$download_dir/tiny
train_parts="train-mini"
dev_parts="dev-mini"
test_parts="test-mini"
unlabelled_parts="unlab-mini"
mini_train_minutes=1
mini_dev_minutes=0.3
mini_test_minutes=0.3
mini_unlabelled_minutes=1.5
: "${bpe_vocab_size:=64}"
: "${pretrain_preset:=tiny}"
: "${pretrain_epochs:=1}"
: "${pretrain_max_duration:=60}"
: "${pretrain_lr:=1e-3}"
: "${finetune_epochs:=2}"
: "${finetune_max_duration:=60}"
: "${finetune_lr:=1e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=1}"
: "${decoding_methods:=greedy_search modified_beam_search}"
: "${pretrain_extra_args:=--warmup-steps 10 --log-interval 5 --num-buckets 2}"
: "${finetune_extra_args:=--warmup-steps 10 --log-interval 5 --num-buckets 2}"
speed_perturb=false

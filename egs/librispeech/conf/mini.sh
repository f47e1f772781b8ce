# Bundled mini corpus, synthesised on this machine with espeak-ng (stage 0).
# Sizes and training budgets are tuned so that the default ./run.sh stays within ~30 min on 2 cores.
prefix=mini
synthetic=true    # stage 0 synthesises it (local/make_mini_corpus.py)
corpus_dir=$download_dir/mini
train_parts="train-mini"          # labelled: fine-tuning set (LibriSpeech layout)
dev_parts="dev-mini"
test_parts="test-mini"            # voices unseen in every training part
unlabelled_parts="unlab-mini"     # unlabelled: pre-training set (Libri-Light layout)
: "${mini_train_minutes:=20}"   # labelled minutes (train-mini); env-overridable for experiments
mini_dev_minutes=5
mini_test_minutes=5
mini_unlabelled_minutes=120
: "${bpe_vocab_size:=32}"       # letters + "▁THE": 333 training sentences are too few for subwords
: "${pretrain_preset:=mini}"
: "${pretrain_epochs:=10}"
: "${pretrain_max_duration:=25}"  # many small batches: 4x the updates of 100 s for the same time
: "${pretrain_lr:=2e-3}"
: "${finetune_epochs:=40}"
: "${finetune_max_duration:=30}"
: "${finetune_lr:=2e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=5}"
: "${decoding_methods:=greedy_search modified_beam_search}"
speed_perturb=false
# Epoch files hold model + averaged model + Adam state: keep only what resuming and decoding
# (--avg) read, or ./run.sh plus stage 8 leave ~21 GB behind.
# Pre-training: a slower quantizer (0.1 x lr) so the targets do not drift faster than the context
# network learns them; 160 ms masked spans (the espeak speech is fast: ~17 characters/s); the whole
# dev set in one validation batch so that code_usage is the share of codes used on dev.
: "${pretrain_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 40 --gumbel-temp-decay 0.998 --quantizer-lr-scale 0.1 --mask-span-len 4 --mask-p 0.15 --valid-max-duration 400 --keep-last-epochs 2}"
# Fine-tuning: no SpecAugment. icefall's LibriSpeech settings (time warp 80, up to 10 time masks)
# keep a 20-minute fine-tuning on the CTC/RNN-T blank plateau: a CTC probe from the pre-trained
# encoder leaves it within 200 steps without, and not in 250 with.
: "${finetune_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 50 --model-warm-step 200 --ctc-loss-scale 0.5 --no-spec-augment --keep-last-epochs $((decode_avg + 1))}"
# Stage 8 also pre-trains w2v-BERT and MLM-only with the quantizer on the learned feature-encoder
# output (the paper's wording) for this many epochs: the codebook-collapse check (claim 3).
: "${compare_features_epochs:=4}"

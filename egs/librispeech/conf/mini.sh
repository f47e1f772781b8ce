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
: "${pretrain_epochs:=18}"  # ~15 min; 10 -> 20 epochs: fine-tuned dev WER/CER 80.1/40.5 -> 77.5/36.9
                           # (18, not 20: stage 8 pre-trains twice more and must stay under 60 min)
: "${pretrain_max_duration:=25}"  # many small batches: 4x the updates of 100 s for the same time
: "${pretrain_lr:=2e-3}"
: "${finetune_epochs:=20}"  # ~1000 updates: the pre-trained runs' dev loss bottoms out at ~700
: "${finetune_max_duration:=30}"
: "${finetune_lr:=2e-3}"
: "${decode_epoch:=$finetune_epochs}"
: "${decode_avg:=5}"
: "${decoding_methods:=greedy_search modified_beam_search}"
speed_perturb=false
# Epoch files hold model + averaged model + Adam state: keep only what resuming and decoding
# (--avg) read, or ./run.sh plus stage 8 leave ~21 GB behind.
# Pre-training: a slower quantizer (0.1 x lr) so the targets do not drift faster than the context
# network learns them; the whole dev set in one validation batch so that code_usage is the share
# of codes used on dev. The model's own settings for this corpus (160 ms masked spans, a faster
# Gumbel temperature decay) are in the "mini" preset (w2vbert/model/config.py: mini()).
: "${pretrain_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 40 --quantizer-lr-scale 0.1 --valid-max-duration 400 --keep-last-epochs 2}"
# Fine-tuning: no SpecAugment. icefall's LibriSpeech settings (time warp 80, up to 10 time masks)
# keep a 20-minute fine-tuning on the CTC/RNN-T blank plateau: a CTC probe from the pre-trained
# encoder leaves it within 200 steps without, and not in 250 with.
: "${finetune_extra_args:=--warmup-steps 100 --num-buckets 10 --log-interval 50 --model-warm-step 200 --ctc-loss-scale 0.5 --no-spec-augment --keep-last-epochs $((decode_avg + 1))}"
# Fine-tuning from a pre-trained encoder (not the scratch baseline): the encoder stays frozen for
# the first 300 updates while the new RNN-T decoder/joiner and CTC head learn to read it. Updated
# from step 1 by the randomly initialised heads, the pre-trained features are washed out and the
# run is no better than from scratch (dev CTC loss 1.83 at step 600 vs 1.73 from scratch, both
# still on the blank plateau at step 1000: dev WER 95.8). Frozen for 300 updates: CTC loss 1.52 at
# step 300, dev WER/CER 80.1/40.5 at step 1000 (0.3 x lr for the encoder afterwards: 83.1/45.5).
: "${finetune_init_args:=--freeze-encoder-steps 300}"
# Stage 8 also pre-trains w2v-BERT and MLM-only with the quantizer on the learned feature-encoder
# output (the paper's wording) for this many epochs: the codebook-collapse check (claim 3).
: "${compare_features_epochs:=4}"
# ... and that w2v-BERT run (only it: MLM only drops the diversity loss whole) weighs the diversity
# loss 0.5 instead of 0.1: with learned features as the quantizer input, 0.1 lets the codebook
# shrink to 7 % of its codes (perplexity 11) in 4 epochs; 0.5 keeps 50 % (perplexity 92) while the
# contrastive task learns (dev accuracy 0.12); 1.0 keeps 61 % but nothing is learned (accuracy at
# chance, loss ln(101)).
: "${compare_features_w2vbert_args:=--diversity-weight 0.5}"
# ... and the BEST-RQ run, (e), masks as the other mini runs do (the mini preset's 160 ms spans
# starting at 15 % of the 40 ms steps, ~48 % masked) instead of the paper's 400 ms spans at 1 % of
# the 10 ms frames (~33 %): the espeak speech is fast, and so (b)-(e) differ only in their
# objective. Its codebook is the paper's (1 x 8192 entries of dim 16, noise std 0.1).
: "${compare_best_rq_args:=--mask-p 0.15 --mask-span-len 4}"
# Continued pre-training from released weights (./run.sh --init-from SRC): a lower peak lr and a
# short warm-up, as people continue w2v-BERT 2.0 (its quantizer, when the source has one, stays
# at the end of its temperature schedule: w2vbert.pretrain --gumbel-update-offset).
: "${init_pretrain_args:=--base-lr 5e-4 --warmup-steps 50}"

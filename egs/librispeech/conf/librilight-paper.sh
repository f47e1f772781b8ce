# The paper's pre-training (Chung et al. 2021, XL): all of Libri-Light (60k h), the XL encoder
# (0.6B), Adam with the Transformer schedule at peak lr 2e-3 after 25k warm-up updates, 400k
# updates of 2048 utterances; fine-tuning on LibriSpeech 960 h. The global batch is set in seconds
# of audio: 2048 x 15 s = 30720 s per update (the paper's count with wav2vec 2.0-sized ~15 s
# crops; our joined Libri-Light segments average ~26 s, so an update holds ~1200 of them), on any
# number of GPUs: --accum-grad is derived from it (utils/launch.sh --num-gpus/--num-nodes). Per
# GPU 1440 s batches: the XL step fits an H200 at 96 x 15 s, compiled (bench/gpu). Training logs
# its plan at start (updates, epochs, H200 GPU-hours from bench/gpu). Data: as --corpus librilight
# (same prefix, so its manifests, features and Shar are reused). Not run here: no GPU cluster.
: "${librilight_subset:=all}"
: "${pretrain_preset:=xl}"
: "${pretrain_max_duration:=1440}"
: "${pretrain_lr:=2e-3}"
: "${pretrain_epochs:=100}"   # an upper bound: --max-steps 400000 ends it (~57 epochs of 60k h)
: "${pretrain_extra_args:=--global-batch-duration 30720 --max-steps 400000 --warmup-steps 25000 --use-bf16 --compile --num-workers 8 --save-every-n 2000 --valid-interval 5000 --keep-last-k 10}"
: "${finetune_max_duration:=1000}"
: "${finetune_extra_args:=--use-bf16 --activation-checkpointing --num-workers 8}"
. egs/librispeech/conf/librilight.sh

# LibriSpeech 960 h: fine-tune (and train the BPE model) on all three training parts, pre-train on
# the same 960 h audio. Otherwise as the librispeech conf (same prefix: manifests and features are
# shared with it).
. egs/librispeech/conf/librispeech.sh
train_parts="train-clean-100 train-clean-360 train-other-500"

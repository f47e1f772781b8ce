# The paper's setting: pre-train on Libri-Light (--librilight-subset small|medium|large|all, 577 h /
# 5.2k h / 51k h / all 60k h; default small), fine-tune on LibriSpeech 960 h. Stage 0 downloads
# Libri-Light into <download-dir>/LibriLight (or links --librilight-dir PATH, which must hold the
# subsets as small/ medium/ large/); stage 1 joins the VAD segments of its long recordings into
# segments of at most --librilight-max-cut-duration s (default 30, as Libri-Light's cut_by_vad).
# Training budgets are the librispeech conf's: not sized for 60k h yet.
. egs/librispeech/conf/librispeech-960.sh
prefix=librilight   # its own manifests and features: its pre-training set is not the 960 h one
: "${librilight_subset:=small}"
case $librilight_subset in
  small | medium | large) librilight_parts=$librilight_subset ;;
  all) librilight_parts="small medium large" ;;
  *) echo "run.sh: unknown --librilight-subset '$librilight_subset' (expected small, medium, large or all)" >&2
     exit 2 ;;
esac
librilight_corpus_dir=$download_dir/LibriLight
unlabelled_parts=$librilight_parts
: "${librilight_max_cut_duration:=30}"
# 60k h: pre-training reads globally shuffled Shar shards (stage 2 --shar-dir), not one manifest
# in recording order; --pretrain-shar audio stores the audio instead (fbank on the fly, on the GPU)
: "${pretrain_shar:=features}"

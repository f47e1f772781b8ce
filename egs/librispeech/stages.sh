# The stage commands of run.sh (sourced by it). One Python entry point per stage; each can be
# run by hand with the same arguments (every script has --help).

_cuts() {  # _cuts PART: the fbank cuts file of a part
  echo "${fbank_dir:-$data_dir/fbank}/${prefix}_cuts_$1.jsonl.gz"
}

_shar_dir() {  # the Shar directory of the pre-training cuts (--pretrain-shar features|audio)
  echo "${fbank_dir:-$data_dir/fbank}/${prefix}_shar_pretrain"
}

_first() { echo "$1"; }

_several_train_parts() {  # true when fine-tuning uses more than one part (stage 2 then writes
  # their shuffled union, which stage 5 trains on)
  [ "$(echo $train_parts | wc -w)" -gt 1 ]
}  # _first WORD...: the first word, e.g. the first of several dev parts

_librispeech_parts() {  # the LibriSpeech parts the configuration uses (fine-tuning, dev, test,
  # pre-training), each once: all that are not Libri-Light subsets
  local p seen=" ${librilight_parts:-} " out=()
  for p in $train_parts $dev_parts $test_parts $unlabelled_parts; do
    case $seen in *" $p "*) continue ;; esac
    seen+="$p "
    out+=("$p")
  done
  echo "${out[@]}"
}

_forced() {  # _forced CMD...: CMD, plus --force under ./run.sh --force true: the data scripts
  # skip the parts they have already written unless told otherwise (edited transcripts would
  # otherwise keep their old manifests). Not part of the fingerprint: a later run without
  # --force true is not a changed command.
  if [ "${force:-false}" = true ]; then "$@" --force; else "$@"; fi
}

_settings() {  # _settings NAME...: "var=value ..." of the globals that the stage functions _NAME
  # (_pretrain, _finetune, _decode, _compare, below) read besides their arguments: the
  # stage_settings of a stage run as one of them (see utils/stage_lib.sh). Keep each list in step
  # with its function.
  local f v names=()
  for f in "$@"; do
    case $f in
      pretrain) names+=(data_dir prefix dev_parts pretrain_preset pretrain_epochs
                        pretrain_max_duration pretrain_lr seed pretrain_extra_args) ;;
      finetune) names+=(data_dir prefix train_parts dev_parts lang_dir pretrain_preset
                        finetune_epochs finetune_max_duration finetune_lr seed
                        finetune_extra_args finetune_init_args) ;;
      decode) names+=(data_dir prefix dev_parts test_parts lang_dir decode_epoch decode_avg)
              # (a beam other than the default 4 only: old fingerprints hold)
              if [ "${decode_beam_size:-4}" != 4 ]; then names+=(decode_beam_size); fi ;;
      compare) names+=(exp_dir pretrain_epochs compare_features_epochs
                       compare_features_w2vbert_args compare_best_rq_args) ;;
      *) echo "_settings: no stage function '$f'" >&2; return 1 ;;
    esac
  done
  for v in $(printf '%s\n' "${names[@]}" | awk '!seen[$0]++'); do  # each once, in order
    printf '%s=%q ' "$v" "${!v-}"
  done
  # settings added later enter only when set, so that existing runs keep their fingerprints
  for v in fbank init_from init_pretrain_args continue_pretraining pretrain_shar pretrain_extra_cuts; do
    case "$v=${!v-}" in
      fbank=|fbank=icefall|init_from=|init_pretrain_args=|continue_pretraining=|continue_pretraining=true) ;;
      pretrain_shar=|pretrain_shar=none|pretrain_extra_cuts=) ;;
      *) printf '%s=%q ' "$v" "${!v}" ;;
    esac
  done
}

_pretrain() {  # _pretrain EXP_DIR [more flags]: stage 4's command (also used by stage 8);
  # with $init_from it continues that model's pre-training (its config, not the preset's) with
  # $init_pretrain_args (e.g. a lower peak lr and a short warm-up)
  local dir=$1 init=() train=() extra=(); shift
  [ -n "${init_from:-}" ] && read -r -a init <<< "--init-from $init_from ${init_pretrain_args:-}"
  case ${pretrain_shar:-none} in  # Shar shards (stage 2 --shar-dir), shuffled per epoch
    none) train=("$(_cuts pretrain)") ;;
    features) train=("$(_shar_dir)") ;;
    audio) train=("$(_shar_dir)" --on-the-fly-feats) ;;  # fbank computed in training
  esac
  # more unlabelled audio from other manifests (e.g. another corpus's), mixed in by size
  if [ -n "${pretrain_extra_cuts:-}" ]; then
    [ "${pretrain_shar:-none}" = none ] || {
      echo "run.sh: --pretrain-extra-cuts needs --pretrain-shar none (one Shar directory is read alone)" >&2; return 2; }
    read -r -a extra <<< "$pretrain_extra_cuts"
    train+=("${extra[@]}")
  fi
  # (inputs that changed since its checkpoints: they move to $dir/stale-<time>/, training restarts)
  launch_training w2vbert.pretrain --exp-dir "$dir" --stale-inputs set-aside \
    --train-cuts "${train[@]}" --valid-cuts "$(_cuts "$(_first $dev_parts)")" \
    --model-preset "$pretrain_preset" --num-epochs "$pretrain_epochs" \
    --max-duration "$pretrain_max_duration" --base-lr "$pretrain_lr" --seed "$seed" \
    $pretrain_extra_args "${init[@]}" "$@"
}

_finetune() {  # _finetune EXP_DIR INIT_FROM [more flags]: stage 5's command (also used by stage 8)
  local dir=$1 init=$2 args=(); shift 2
  # from a checkpoint the encoder's configuration is the checkpoint's (the ablations move blocks
  # between the contrastive and MLM modules) and $finetune_init_args apply (e.g. a frozen
  # encoder at first); from scratch it is the preset's
  if [ "$init" = none ]; then
    args=(--model-preset "$pretrain_preset")
  else
    read -r -a args <<< "$finetune_init_args"
  fi
  local train=("$(_cuts "$(_first $train_parts)")")
  # several fine-tuning parts: the globally shuffled union that stage 2 writes (--train-union)
  _several_train_parts && train=("$(_cuts train)")
  launch_training w2vbert.finetune --exp-dir "$dir" --stale-inputs set-aside \
    --init-from "$init" "${args[@]}" \
    --bpe-model "$lang_dir/bpe.model" \
    --train-cuts "${train[@]}" --valid-cuts "$(_cuts "$(_first $dev_parts)")" \
    --num-epochs "$finetune_epochs" --max-duration "$finetune_max_duration" \
    --base-lr "$finetune_lr" --seed "$seed" $finetune_extra_args "$@"
}

_decode() {  # _decode EXP_DIR METHOD...: decode every dev and test part
  local dir=$1 method sets=() more=(); shift
  read -r -a more <<< "${decode_extra_args:-}"  # (_decode_streaming's chunk flags)
  for part in $dev_parts $test_parts; do sets+=("$part=$(_cuts "$part")"); done
  for method in "$@"; do
    python -m w2vbert.decode --exp-dir "$dir" --epoch "$decode_epoch" --avg "$decode_avg" \
      --use-averaged-model --bpe-model "$lang_dir/bpe.model" --decoding-method "$method" \
      --beam-size "${decode_beam_size:-4}" --cuts "${sets[@]}" "${more[@]}" || return 1
  done
}

_decode_streaming() {  # _decode_streaming EXP_DIR: greedy search at each chunk size (-1: full);
  # then the offline model of stage 5 (when there is one) at each positive chunk size, the
  # reference a streaming model must beat (its chunked decoding is the full forward with the
  # chunk mask: what full-context training gives when run in chunks)
  local dir=$1 chunk
  for chunk in ${streaming_chunk_sizes//,/ }; do
    decode_extra_args="--decode-chunk-size $chunk --left-context-chunks $streaming_left_chunks" \
      _decode "$dir" greedy_search || return 1
  done
  [ -f "$exp_dir/finetune/epoch-$decode_epoch.pt" ] || return 0
  for chunk in $(_streaming_chunks); do
    decode_extra_args="--decode-chunk-size $chunk --left-context-chunks $streaming_left_chunks" \
      _decode "$exp_dir/finetune" greedy_search || return 1
  done
}

_streaming_chunks() {  # the positive chunk sizes of --streaming-chunk-sizes (each is exported)
  local chunk out=()
  for chunk in ${streaming_chunk_sizes//,/ }; do
    [ "$chunk" != -1 ] && out+=("$chunk")
  done
  [ ${#out[@]} -gt 0 ] && { echo "${out[@]}"; return 0; }
  echo "run.sh: --streaming-chunk-sizes '$streaming_chunk_sizes' lists no positive chunk size" >&2
  return 1
}

_export_streaming() {  # stage 7 --streaming: one online model per positive chunk size, each
  # checked with sherpa-onnx on the first test set (WER, RTF on 1 thread)
  local chunk
  for chunk in "$@"; do
    python -m w2vbert.export_onnx --exp-dir "$exp_dir/finetune-streaming" \
      --epoch "$decode_epoch" --avg "$decode_avg" --use-averaged-model --int8 \
      --tokens "$lang_dir/tokens.txt" --check-cuts "$(_cuts "$(_first $test_parts)")" \
      --streaming --decode-chunk-size "$chunk" --left-context-chunks "$streaming_left_chunks" || return 1
  done
}

_report() {  # writes $exp_dir/RESULTS.md and plots from whatever has run
  python -m w2vbert.report --exp-dir "$exp_dir" --dev-sets $dev_parts --test-sets $test_parts \
    --title "w2v-BERT recipe: results on the $corpus corpus" --command "$run_command"
}

_compare() {  # stage 8: (a) scratch, (c) contrastive only, (d) MLM only, (e) BEST-RQ; (b) is
  # stages 4-6. (e) gets the same pre-training and fine-tuning budgets as (b)-(d), plus
  # $compare_best_rq_args (e.g. the corpus's masking instead of the paper's)
  local c=$exp_dir/compare obj best_rq=()
  read -r -a best_rq <<< "${compare_best_rq_args:-}"
  for obj in contrastive mlm; do
    _pretrain "$c/pretrain-$obj" --objective "$obj" || return 1
  done
  _pretrain "$c/pretrain-best-rq" --objective best-rq "${best_rq[@]}" || return 1
  # claim 3 (codebook collapse) with the quantizer on the learned features, pre-training only;
  # $compare_features_w2vbert_args (e.g. a diversity weight) go to the w2v-BERT run only: MLM only
  # drops the contrastive and diversity losses whole
  local more
  for obj in w2vbert mlm; do
    more=()
    [ "$obj" = w2vbert ] && read -r -a more <<< "${compare_features_w2vbert_args:-}"
    _pretrain "$c/pretrain-features-$obj" --objective "$obj" --quantizer-input features \
      --no-block-same-code --num-epochs "${compare_features_epochs:-2}" "${more[@]}" || return 1
  done
  _finetune "$c/finetune-scratch" none || return 1
  for obj in contrastive mlm best-rq; do
    _finetune "$c/finetune-$obj" "$c/pretrain-$obj/epoch-$pretrain_epochs.pt" || return 1
  done
  for sys in scratch contrastive mlm best-rq; do
    _decode "$c/finetune-$sys" greedy_search || return 1
  done
}

_pretrain_inputs() {  # the files stage 4 reads (stage_inputs)
  local train
  case ${pretrain_shar:-none} in none) train=$(_cuts pretrain) ;; *) train=$(_shar_dir) ;; esac
  echo "$train ${pretrain_extra_cuts:-} $(_cuts "$(_first $dev_parts)") ${init_from:-}"
}

_finetune_train_cuts() {  # the cuts stage 5 trains on
  if _several_train_parts; then _cuts train; else _cuts "$(_first $train_parts)"; fi
}

_decode_outputs() {  # the result directories of stage 6
  local m; for m in $decoding_methods; do printf '%s ' "$exp_dir/finetune/$m"; done
}

run_recipe_stage() {
  local n=$1
  lang_dir=$data_dir/lang_bpe_$bpe_vocab_size
  case $n in
    0)
      if [ "$synthetic" = true ]; then
        run_stage 0 corpus _forced python local/make_mini_corpus.py --out-dir "$corpus_dir" --seed "$seed" \
          --nj "$nj" --train-minutes "$mini_train_minutes" --dev-minutes "$mini_dev_minutes" \
          --test-minutes "$mini_test_minutes" --unlabelled-minutes "$mini_unlabelled_minutes"
      elif [ "${corpus_layout:-}" = an4 ]; then  # CMU's archive, a local copy of it, or a tree
        run_stage 0 corpus python local/download_an4.py --target-dir "$download_dir" \
          ${an4_archive:+--archive "$an4_archive"} ${an4_dir:+--existing "$an4_dir"}
      else
        # every part the configuration uses, pre-training's included; Libri-Light subsets too
        run_stage 0 corpus python local/download_librispeech.py --target-dir "$download_dir" \
          ${librispeech_dir:+--existing "$librispeech_dir"} --parts $(_librispeech_parts) \
          ${librilight_parts:+--librilight $librilight_parts} \
          ${librilight_dir:+--existing-librilight "$librilight_dir"}
      fi ;;
    1)
      if [ "${corpus_layout:-}" = an4 ]; then  # raw big-endian audio -> FLAC; dev, train-1of8
        run_stage 1 manifests _forced python local/prepare_an4.py --corpus-dir "$corpus_dir" \
          --output-dir "$data_dir/manifests" --audio-dir "$data_dir/an4_flac" --prefix "$prefix" \
          --num-dev "$an4_dev_utterances" --subset-denominator "$an4_subset_denominator" --nj "$nj"
        return
      fi
      # (flags that a configuration does not use stay off the line: old fingerprints hold)
      local dirs=("$corpus_dir") more=()
      [ "$synthetic" != true ] && more=(--parts $(_librispeech_parts) ${librilight_parts:-})
      [ -n "${librilight_parts:-}" ] && dirs+=("$librilight_corpus_dir")
      [ -n "${librilight_max_cut_duration:-}" ] && more+=(--max-cut-duration "$librilight_max_cut_duration")
      run_stage 1 manifests _forced python local/prepare_manifests.py --corpus-dir "${dirs[@]}" \
        --output-dir "$data_dir/manifests" --prefix "$prefix" --nj "$nj" "${more[@]}" ;;
    2)
      local sp=() fb=() tp=() sh=(); [ "$speed_perturb" = true ] && sp=(--speed-perturb)
      case ${pretrain_shar:-none} in
        none) ;;
        features|audio) sh=(--shar-dir "$(_shar_dir)" --shar-fields "$pretrain_shar"
                            --shar-shard-size "${shar_shard_size:-1000}") ;;
        *) echo "run.sh: unknown --pretrain-shar '$pretrain_shar' (expected none, features or audio)" >&2; return 2 ;;
      esac
      [ "${fbank:-icefall}" != icefall ] && fb=(--fbank "$fbank")  # (absent: old fingerprints hold)
      # only the fine-tuning parts are speed-perturbed (not train-* parts used for pre-training only)
      [ "$synthetic" != true ] && tp=(--train-parts $train_parts)
      _several_train_parts && tp+=(--train-union)  # one shuffled set (stage 5)
      [ -n "${fbank_device:-}" ] && [ "$fbank_device" != cpu ] && sh+=(--device "$fbank_device")
      run_stage 2 fbank _forced python local/compute_fbank.py --manifest-dir "$data_dir/manifests" \
        --output-dir "${fbank_dir:-$data_dir/fbank}" "${fb[@]}" --prefix "$prefix" --nj "$nj" \
        --pretrain-parts $unlabelled_parts "${tp[@]}" "${sp[@]}" "${sh[@]}" ;;
    3)
      local transcripts=(); for p in $train_parts; do transcripts+=("$(_cuts "$p")"); done
      stage_inputs="${transcripts[*]}" stage_outputs=$lang_dir/bpe.model \
        run_stage 3 bpe _forced python local/train_bpe.py --lang-dir "$lang_dir" --vocab-size "$bpe_vocab_size" \
        --transcripts "${transcripts[@]}" ;;
    4)
      if [ -n "${init_from:-}" ] && [ "${continue_pretraining:-true}" != true ]; then
        log "stage 4 (pretrain): skipped (--continue-pretraining false: stage 5 starts from $init_from)"
        return 0
      fi
      stage_settings=$(_settings pretrain) stage_inputs=$(_pretrain_inputs) \
        stage_outputs=$exp_dir/pretrain/epoch-$pretrain_epochs.pt \
        run_stage 4 pretrain _pretrain "$exp_dir/pretrain" ;;
    5)
      local start=$exp_dir/pretrain/epoch-$pretrain_epochs.pt
      if [ -n "${init_from:-}" ] && [ "${continue_pretraining:-true}" != true ]; then start=$init_from; fi
      # a re-made pre-trained model, BPE model or cuts (even at the same path) re-run it
      local ft_inputs="$start $lang_dir/bpe.model $(_finetune_train_cuts) $(_cuts "$(_first $dev_parts)")"
      [ "$start" = none ] && ft_inputs=${ft_inputs#none }
      if [ "${streaming:-false}" = true ]; then
        stage_settings="$(_settings finetune)$(printf 'streaming=%q ' "$streaming_chunk_sizes/$streaming_left_chunks")" \
          stage_inputs=$ft_inputs stage_outputs=$exp_dir/finetune-streaming/epoch-$finetune_epochs.pt \
          run_stage 5 finetune-streaming _finetune "$exp_dir/finetune-streaming" "$start" \
          --chunk-sizes "$streaming_chunk_sizes" --left-context-chunks "$streaming_left_chunks" \
          --conv-causal --input-norm global
        return 0
      fi
      stage_settings=$(_settings finetune) stage_inputs=$ft_inputs \
        stage_outputs=$exp_dir/finetune/epoch-$finetune_epochs.pt \
        run_stage 5 finetune _finetune "$exp_dir/finetune" "$start" ;;
    6)
      local sets=() p; for p in $dev_parts $test_parts; do sets+=("$(_cuts "$p")"); done
      if [ "${streaming:-false}" = true ]; then
        stage_settings="$(_settings decode)$(printf 'streaming=%q ' "$streaming_chunk_sizes/$streaming_left_chunks")" \
          stage_inputs="$exp_dir/finetune-streaming/epoch-$decode_epoch.pt $lang_dir/bpe.model ${sets[*]}$(
            f=$exp_dir/finetune/epoch-$decode_epoch.pt; [ -f "$f" ] && echo " $f")" \
          run_stage 6 decode-streaming _decode_streaming "$exp_dir/finetune-streaming"
        return 0
      fi
      stage_settings=$(_settings decode) stage_outputs=$(_decode_outputs) \
        stage_inputs="$exp_dir/finetune/epoch-$decode_epoch.pt $lang_dir/bpe.model ${sets[*]}" \
        run_stage 6 decode _decode "$exp_dir/finetune" $decoding_methods ;;
    7)
      if [ "${streaming:-false}" = true ]; then
        local chunks; chunks=$(_streaming_chunks) || return 2
        stage_settings=$(printf '%q ' "$data_dir" "$prefix" "$test_parts" "$decode_epoch" "$decode_avg" "$streaming_left_chunks") \
          stage_inputs="$exp_dir/finetune-streaming/epoch-$decode_epoch.pt $lang_dir/tokens.txt" \
          run_stage 7 export-streaming _export_streaming $chunks
        return 0
      fi
      stage_inputs="$exp_dir/finetune/epoch-$decode_epoch.pt $lang_dir/tokens.txt" \
        run_stage 7 export python -m w2vbert.export_onnx --exp-dir "$exp_dir/finetune" \
        --epoch "$decode_epoch" --avg "$decode_avg" --use-averaged-model --int8 \
        --tokens "$lang_dir/tokens.txt" --check-cuts "$(_cuts "$(_first $test_parts)")" --test-set "$(_first $test_parts)" \
        --decode-dir "$exp_dir/finetune/greedy_search" ;;
    8)
      stage_settings=$(_settings pretrain finetune decode compare) run_stage 8 compare _compare ;;
    *)
      echo "run.sh: there is no stage $n (stages are 0..8; see --help)" >&2; exit 2 ;;
  esac
}

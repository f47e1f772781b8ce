# The stage commands of run.sh (sourced by it). One Python entry point per stage; each can be
# run by hand with the same arguments (every script has --help).

_need() {  # _need N NAME FILE: a stage whose script has not landed fails honestly
  if [ ! -f "$3" ]; then not_implemented "$1" "$2"; exit 1; fi
}

run_recipe_stage() {
  local n=$1
  case $n in
    0)
      if [ "$corpus" = mini ]; then
        _need 0 corpus local/make_mini_corpus.py
        run_stage 0 corpus python local/make_mini_corpus.py --out-dir "$corpus_dir" --seed "$seed" \
          --nj "$nj" --train-minutes "$mini_train_minutes" --dev-minutes "$mini_dev_minutes" \
          --test-minutes "$mini_test_minutes" --unlabelled-minutes "$mini_unlabelled_minutes"
      else
        _need 0 corpus local/download_librispeech.py
        run_stage 0 corpus python local/download_librispeech.py --target-dir "$download_dir" \
          ${librispeech_dir:+--existing "$librispeech_dir"} --parts $train_parts $dev_parts $test_parts
      fi ;;
    1)
      _need 1 manifests local/prepare_manifests.py
      run_stage 1 manifests python local/prepare_manifests.py --corpus-dir "$corpus_dir" \
        --output-dir "$data_dir/manifests" --prefix "$prefix" --nj "$nj" ;;
    2)
      _need 2 fbank local/compute_fbank.py
      run_stage 2 fbank python local/compute_fbank.py --manifest-dir "$data_dir/manifests" \
        --output-dir "$data_dir/fbank" --prefix "$prefix" --nj "$nj" ;;
    3)
      _need 3 bpe local/train_bpe.py
      run_stage 3 bpe python local/train_bpe.py --lang-dir "$data_dir/lang_bpe_$bpe_vocab_size" \
        --vocab-size "$bpe_vocab_size" ;;
    4)
      _need 4 pretrain w2vbert/pretrain.py
      run_stage 4 pretrain python -m w2vbert.pretrain --exp-dir "$exp_dir/pretrain" ;;
    5)
      _need 5 finetune w2vbert/finetune.py
      run_stage 5 finetune python -m w2vbert.finetune --exp-dir "$exp_dir/finetune" ;;
    6)
      _need 6 decode w2vbert/decode.py
      run_stage 6 decode python -m w2vbert.decode --exp-dir "$exp_dir/finetune" ;;
    7)
      _need 7 export w2vbert/export_onnx.py
      run_stage 7 export python -m w2vbert.export_onnx --exp-dir "$exp_dir/finetune" ;;
    8)
      _need 8 compare egs/librispeech/compare.sh
      run_stage 8 compare bash egs/librispeech/compare.sh ;;
    *)
      echo "run.sh: there is no stage $n (stages are 0..8; see --help)" >&2; exit 2 ;;
  esac
}

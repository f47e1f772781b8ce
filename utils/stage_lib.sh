# Shell helpers shared by run.sh and other recipes' run scripts: logging and stage running.
# Needs: stage, stop_stage, force (true/false), dry_run (true/false), log_dir.
#
# Fingerprints: a finished stage's .done file holds its command line, and the stage is re-run
# when that changes. A shell function's command line does not show the globals the function
# reads, so for a function stage the caller also passes those settings, in stage_settings, as
# a prefix assignment that holds for that one call only:
#
#   stage_settings="epochs=$epochs lr=$lr" run_stage 4 pretrain _pretrain exp/pretrain
#
# Then a change of these settings, or of the line, re-runs the stage, and no other setting does
# (egs/librispeech/stages.sh builds them with _settings). A global stage_settings would apply to
# every function stage. Commands that are not shell functions ignore stage_settings: their
# command line is their whole fingerprint.
#
# Inputs and outputs: the files a stage reads and writes, given like stage_settings (a prefix
# assignment of that call, paths separated by spaces):
#
#   stage_inputs="$lang_dir/bpe.model $cuts" stage_outputs="$dir/epoch-4.pt" run_stage 5 ...
#
# The identity of each input (the md5 of a file up to 64 MiB; the size and time of a larger one,
# e.g. a checkpoint, whose weights training compares by content; the same of every file under a
# directory) is part of the fingerprint: a changed input re-runs the stage, even at the same path.
# A .done whose outputs are not all there is not done: the stage runs again.
#
# One run of a stage at a time: a second ./run.sh reaching a stage that another is running stops
# at once (flock on <log_dir>/.stage-N-NAME.lock, held by the stage's processes), before it
# touches the stage's .done or log.
#
# Stages depend on the ones before them: a stage that runs removes the .done files of every later
# stage, so that they re-run on their new input (a new pre-trained model is fine-tuned and decoded
# again) instead of keeping results of the old one. A stage is never re-run for a later change.

log() {
  # log MESSAGE...: time, caller file and line, message (as icefall's prepare.sh)
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

_run_logged() {
  # _run_logged LOG HEADER CMD...: CMD (after a "# <time> HEADER" line) with its output on the terminal
  # and in LOG; returns CMD's status. CMD runs in its own process group: a SIGTERM or SIGINT to
  # this script is passed on to CMD and everything it started (training then stops with a
  # checkpoint), and the script waits for it, so nothing is left running. tee ignores both signals,
  # so the command's last lines still reach the log.
  local logf=$1 header=$2; shift 2
  local tee_pid job rc=0
  exec 3> >(trap '' TERM INT; exec tee "$logf")
  tee_pid=$!
  set -m
  { echo "# $(date '+%F %T') $header"; "$@"; } >&3 2>&1 &
  job=$!
  set +m
  trap 'kill -TERM -- "-$job" 2>/dev/null || true' TERM
  trap 'kill -INT -- "-$job" 2>/dev/null || true' INT
  while true; do
    wait "$job" && rc=0 || rc=$?
    kill -0 "$job" 2>/dev/null || break  # a trap interrupted the wait: wait again
  done
  trap - TERM INT
  exec 3>&-
  wait "$tee_pid" 2>/dev/null || true
  return "$rc"
}

_input_identity() {
  # _input_identity PATH...: one "identity" word per path (see the top of this file)
  local p
  for p in "$@"; do
    if [ -f "$p" ]; then
      if [ "$(stat -c %s "$p")" -le $((64 * 1024 * 1024)) ]; then
        printf 'md5:%s ' "$(md5sum < "$p" | cut -c1-32)"
      else
        printf 'stat:%s ' "$(stat -c %s:%Y "$p")"
      fi
    elif [ -d "$p" ]; then
      printf 'dir:%s ' "$(cd "$p" && find . -type f -printf '%P %s %T@\n' | LC_ALL=C sort | md5sum | cut -c1-32)"
    else
      printf 'missing '
    fi
  done
}

_missing_output() {
  # _missing_output PATH...: prints the first path that does not exist; false if all exist
  local p
  for p in "$@"; do
    if [ ! -e "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

run_stage() {
  # run_stage N NAME CMD...: runs CMD as stage N when stage <= N <= stop_stage.
  # Its output goes to the terminal and to $log_dir/stage-N-NAME.log. On success it writes
  # $log_dir/stage-N-NAME.done holding the command line; a later run with the same command
  # skips the stage (unless --force), a changed command re-runs it; for a shell function CMD
  # the command line includes $stage_settings (see the top of this file). On failure the run
  # stops and names the log.
  local n=$1 name=$2; shift 2
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 0; fi
  local logf=$log_dir/stage-$n-$name.log done=$log_dir/stage-$n-$name.done
  local cmd; cmd=$(printf '%q ' "$@")
  if [ "$(type -t "$1")" = function ]; then
    cmd+="# ${stage_settings:-}"  # a function's command line does not show its settings
  fi
  if [ -n "${stage_inputs:-}" ]; then
    # shellcheck disable=SC2086  # (paths separated by spaces)
    cmd+=$'\n'"# inputs: $(_input_identity $stage_inputs)"
  fi
  local missing=""
  # shellcheck disable=SC2086
  [ -n "${stage_outputs:-}" ] && missing=$(_missing_output $stage_outputs || true)
  if [ -f "$done" ] && [ "$(cat "$done")" = "$cmd" ] && [ "$force" != true ]; then
    if [ -z "$missing" ]; then
      log "stage $n ($name): already done, skipping (--force true re-runs it)"
      return 0
    fi
    log "stage $n ($name): marked done, but its output $missing is missing: running it again"
  fi
  if [ "$dry_run" = true ]; then
    log "stage $n ($name): would run: $cmd"
    if [ "$(type -t "$1")" = function ]; then  # and the python commands the function runs
      ( python() { printf '    python'; printf ' %q' "$@"; echo; }
        torchrun() { printf '    torchrun'; printf ' %q' "$@"; echo; }  # (utils/launch.sh)
        srun() { printf '    srun'; printf ' %q' "$@"; echo; }
        "$@" ) || true
    fi
    return 0
  fi
  mkdir -p "$log_dir"
  local lock=$log_dir/.stage-$n-$name.lock lock_fd=""
  if command -v flock > /dev/null; then
    exec {lock_fd}>> "$lock"
    if ! flock -n "$lock_fd"; then
      exec {lock_fd}>&-
      log "ERROR: stage $n ($name) is running in another ./run.sh (pid $(cat "$lock" 2>/dev/null)); its log $logf is left as it is: wait for it, or stop it"
      exit 1
    fi
    echo "$$" > "$lock"  # (the flock is on the open file, which stays the same)
  fi
  rm -f "$done"
  log "stage $n ($name): starting; log: $logf"
  local t0=$SECONDS rc=0
  _run_logged "$logf" "$cmd" "$@" || rc=$?
  [ -n "$lock_fd" ] && exec {lock_fd}>&-
  if [ "$rc" -gt 128 ]; then
    log "stage $n ($name): stopped by signal $((rc - 128)) after $((SECONDS - t0)) s; its log: $logf (re-run to resume)"
    exit "$rc"
  elif [ "$rc" -ne 0 ]; then
    log "ERROR: stage $n ($name) failed after $((SECONDS - t0)) s; its log: $logf"
    exit 1
  fi
  echo "$cmd" > "$done"
  local later m
  for later in "$log_dir"/stage-*.done; do  # later stages read what this one just rewrote
    m=${later##*/stage-}; m=${m%%-*}
    if [[ "$m" =~ ^[0-9]+$ ]] && [ "$m" -gt "$n" ] && [ -f "$later" ]; then
      rm -f "$later"; log "stage $n ($name): stage $m must run again (${later##*/} removed)"
    fi
  done
  echo "$n $name $((SECONDS - t0))" >> "$log_dir/stage-times.txt"
  log "stage $n ($name): done in $((SECONDS - t0)) s"
}

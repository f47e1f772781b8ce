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
  if [ -f "$done" ] && [ "$(cat "$done")" = "$cmd" ] && [ "$force" != true ]; then
    log "stage $n ($name): already done, skipping (--force true re-runs it)"
    return 0
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
  rm -f "$done"
  log "stage $n ($name): starting; log: $logf"
  local t0=$SECONDS rc=0
  _run_logged "$logf" "$cmd" "$@" || rc=$?
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

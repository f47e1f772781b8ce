# Shell helpers shared by run.sh and other recipes' run scripts: logging and stage running.
# Needs: stage, stop_stage, force (true/false), dry_run (true/false), log_dir;
# optional: stage_settings (settings that stages run as shell functions depend on).

log() {
  # log MESSAGE...: time, caller file and line, message (as icefall's prepare.sh)
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

run_stage() {
  # run_stage N NAME CMD...: runs CMD as stage N when stage <= N <= stop_stage.
  # Its output goes to the terminal and to $log_dir/stage-N-NAME.log. On success it writes
  # $log_dir/stage-N-NAME.done holding the command line; a later run with the same command
  # skips the stage (unless --force), a changed command re-runs it. On failure the run stops
  # and names the log.
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
    return 0
  fi
  mkdir -p "$log_dir"
  rm -f "$done"
  log "stage $n ($name): starting; log: $logf"
  local t0=$SECONDS
  if ! { echo "# $(date '+%F %T') $cmd"; "$@"; } 2>&1 | tee "$logf"; then
    log "ERROR: stage $n ($name) failed after $((SECONDS - t0)) s; its log: $logf"
    exit 1
  fi
  echo "$cmd" > "$done"
  echo "$n $name $((SECONDS - t0))" >> "$log_dir/stage-times.txt"
  log "stage $n ($name): done in $((SECONDS - t0)) s"
}

not_implemented() {
  # not_implemented N NAME: a stage whose code has not landed yet fails honestly.
  echo "stage $1 ($2) is not implemented yet" >&2
  return 1
}

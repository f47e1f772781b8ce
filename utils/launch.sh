# The training launcher (like Kaldi's cmd.sh): how stages 4, 5 and 8 start their Python training
# processes. Sourced by run.sh; other recipes can source it too. Reads these globals:
#
#   launcher=local     python -m MODULE --world-size $num_gpus: one process, or num_gpus processes
#                      spawned on this machine (icefall's way). The default.
#   launcher=torchrun  torchrun --standalone --nproc-per-node $num_gpus (one node); with
#                      num_nodes > 1: torchrun --nnodes $num_nodes --rdzv-backend c10d
#                      --rdzv-endpoint $rdzv_endpoint, which this machine runs and every other
#                      node must run too (the command is logged: copy it, or use SLURM).
#   launcher=slurm     inside an sbatch/salloc allocation: srun starts one torchrun per node
#                      (--nodes $num_nodes), the rendezvous on the allocation's first node;
#                      $slurm_args are more srun flags. See egs/librispeech/slurm/.
#
#   num_gpus=1         processes per node (one per GPU; on CPU, gloo processes)
#   num_nodes=1
#   rdzv_endpoint=     HOST:PORT of the rendezvous for torchrun on several nodes
#   rdzv_port=29400    its port under SLURM
#   shutdown_timeout=600  seconds torchrun gives the ranks after a SIGTERM before SIGKILL (its
#                      default, 30 s, is shorter than an update plus an XL checkpoint on NFS)
#
# Every node must see the same exp dir (a shared filesystem): checkpoints hold each rank's data
# position in a side file next to them. Training checks this at start and stops if not.

launch_training() {  # launch_training MODULE ARGS...: run the training module as $launcher says
  local module=$1; shift
  local nodes=${num_nodes:-1} per_node=${num_gpus:-1} world cmd=()
  if ! [[ "$nodes" =~ ^[1-9][0-9]*$ && "$per_node" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch_training: --num-nodes and --num-gpus must be positive integers, got '$nodes' and '$per_node'" >&2
    return 2
  fi
  world=$(( nodes * per_node ))
  case ${launcher:-local} in
    local)
      if [ "$nodes" -gt 1 ]; then
        echo "launch_training: --launcher local runs on this machine only; for --num-nodes $nodes use --launcher torchrun or slurm" >&2
        return 2
      fi
      cmd=(python -m "$module") ;;
    torchrun)
      if [ "$nodes" -eq 1 ]; then
        cmd=(torchrun --standalone --nproc-per-node "$per_node"
             --shutdown-timeout "${shutdown_timeout:-600}" -m "$module")
      else
        if [ -z "${rdzv_endpoint:-}" ]; then
          echo "launch_training: --launcher torchrun with --num-nodes $nodes needs --rdzv-endpoint HOST:PORT (a host every node reaches)" >&2
          return 2
        fi
        cmd=(torchrun --nnodes "$nodes" --nproc-per-node "$per_node" --rdzv-backend c10d
             --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "w2vbert-${module##*.}"
             --shutdown-timeout "${shutdown_timeout:-600}" -m "$module")
      fi ;;
    slurm)
      if [ -z "${SLURM_JOB_ID:-}" ]; then
        echo "launch_training: --launcher slurm runs inside a SLURM allocation (sbatch or salloc; see egs/librispeech/slurm/), but SLURM_JOB_ID is not set" >&2
        return 2
      fi
      local head extra=()
      head=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?}" | head -n 1)
      [ -n "${slurm_args:-}" ] && read -r -a extra <<< "$slurm_args"
      cmd=(srun --nodes "$nodes" --ntasks-per-node 1 --kill-on-bad-exit=1 "${extra[@]}"
           torchrun --nnodes "$nodes" --nproc-per-node "$per_node" --rdzv-backend c10d
           --rdzv-endpoint "$head:${rdzv_port:-29400}" --rdzv-id "$SLURM_JOB_ID"
           --shutdown-timeout "${shutdown_timeout:-600}" -m "$module") ;;
    *)
      echo "launch_training: unknown --launcher '${launcher}' (expected local, torchrun or slurm)" >&2
      return 2 ;;
  esac
  cmd+=("$@")
  if [ "${launcher:-local}" != local ] || [ "$world" -gt 1 ]; then
    cmd+=(--world-size "$world")  # (one local process: the command as it always was)
  fi
  [ "${dry_run:-false}" = true ] || echo "launch: $(printf '%q ' "${cmd[@]}")" >&2
  "${cmd[@]}"
}

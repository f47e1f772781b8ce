"""Checkpoint files: the atomic writer, loading, finding, pruning, averaging and the
``--epoch/--avg/--use-averaged-model/--checkpoint`` selection. Imports nothing of training."""

from w2vbert.checkpoint.averaging import (
    average_checkpoints,
    average_state_dicts,
    average_with_model_avg,
    averaged_model_from_epochs,
    averaging_suffix,
    init_averaged_model,
    update_averaged_model,
)
from w2vbert.checkpoint.files import (
    find_checkpoints,
    find_epoch_checkpoints,
    load_checkpoint,
    rank_side_path,
    remove_old_checkpoints,
    remove_old_epochs,
    remove_stale_temp_files,
    resume_candidates,
    set_aside_all,
    set_aside_later,
)
from w2vbert.checkpoint.identity import changed_inputs
from w2vbert.checkpoint.rng import (
    capture_rng_state,
    find_generators,
    restore_rng_state,
    seed_everything,
)
from w2vbert.checkpoint.selection import CheckpointSelection
from w2vbert.util.atomic import atomic_torch_save

__all__ = [
    "CheckpointSelection",
    "atomic_torch_save",
    "average_checkpoints",
    "average_state_dicts",
    "average_with_model_avg",
    "averaged_model_from_epochs",
    "averaging_suffix",
    "capture_rng_state",
    "changed_inputs",
    "find_checkpoints",
    "find_epoch_checkpoints",
    "find_generators",
    "init_averaged_model",
    "load_checkpoint",
    "rank_side_path",
    "remove_old_checkpoints",
    "remove_old_epochs",
    "remove_stale_temp_files",
    "restore_rng_state",
    "resume_candidates",
    "seed_everything",
    "set_aside_all",
    "set_aside_later",
    "update_averaged_model",
]

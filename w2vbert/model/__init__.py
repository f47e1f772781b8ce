"""w2v-BERT model: feature encoder, conformer, masking, quantizer, configs and factories."""

from w2vbert.model.best_rq import BestRqModel, BestRqOutput, create_best_rq_model
from w2vbert.model.config import (
    W2VBertConfig,
    get_w2vbert_config,
    preset_names,
    with_objective,
)
from w2vbert.model.conformer import ConformerBlock, ConformerEncoder
from w2vbert.model.feature_encoder import (
    FbankFeatureEncoder,
    min_input_frames,
    output_lengths,
)
from w2vbert.model.masking import compute_span_mask, make_padding_mask
from w2vbert.model.quantizer import GumbelVectorQuantizer, QuantizerOutput
from w2vbert.model.random_projection import RandomProjectionOutput, RandomProjectionQuantizer
from w2vbert.model.w2vbert import (
    W2VBertEncoder,
    W2VBertModel,
    W2VBertOutput,
    create_w2vbert_encoder,
    create_w2vbert_model,
)

__all__ = [
    "BestRqModel",
    "BestRqOutput",
    "RandomProjectionOutput",
    "RandomProjectionQuantizer",
    "create_best_rq_model",
    "ConformerBlock",
    "ConformerEncoder",
    "FbankFeatureEncoder",
    "GumbelVectorQuantizer",
    "QuantizerOutput",
    "W2VBertConfig",
    "W2VBertEncoder",
    "W2VBertModel",
    "W2VBertOutput",
    "compute_span_mask",
    "create_w2vbert_encoder",
    "create_w2vbert_model",
    "get_w2vbert_config",
    "make_padding_mask",
    "min_input_frames",
    "output_lengths",
    "preset_names",
    "with_objective",
]

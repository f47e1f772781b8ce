"""W2VBertConfig: model and pre-training objective hyper-parameters, and the presets.

Presets (``get_w2vbert_config(name)``): ``tiny`` (unit tests), ``mini`` (CPU runs, ~5.5M
parameters), ``base`` (~95M), ``xl`` (0.6B: 24 blocks, 12 contrastive + 12 MLM, the paper's
XL), ``xxl`` (1.0B: 12 + 30). Objectives: :func:`with_objective` (``"contrastive"`` =
w2v-Conformer, ``"mlm"`` = MLM only, the paper's collapsing ablation, ``"best-rq"`` = BEST-RQ,
Chiu et al. 2022, on the same encoder).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Literal

Objective = Literal["w2vbert", "contrastive", "mlm", "best-rq"]
OBJECTIVES: tuple[str, ...] = ("w2vbert", "contrastive", "mlm", "best-rq")
Method = Literal["w2vbert", "best-rq"]

# BEST-RQ (Chiu et al. 2022, section 3 and 4.2): the paper's numbers, in 10 ms input frames.
BEST_RQ_CODEBOOK_SIZE = 8192
"""Entries of the random codebook."""
BEST_RQ_CODE_DIM = 16
"""Dimension of the random projection and of the codebook entries."""
BEST_RQ_FRAME_MASK_P = 0.01
"""Probability that a 10 ms input frame starts a masked span."""
BEST_RQ_MASK_MS = 400
"""Masked span length in ms (40 input frames)."""
BEST_RQ_NOISE_STD = 0.1
"""Standard deviation of the noise N(0, 0.1) that replaces masked (normalised) fbank frames."""


@dataclass(frozen=True, kw_only=True)
class W2VBertConfig:
    """Defaults are the paper's XL model (see :func:`xl`)."""

    # Feature encoder
    num_mel_bins: int = 80
    """Fbank bins per input frame (10 ms frames)."""
    fbank: Literal["icefall", "w2v-bert-2.0"] = "icefall"
    """The fbank the model reads (:mod:`w2vbert.data.fbank`): stage 2 computes it with
    ``--fbank``, training and decoding refuse stored features of the other kind."""
    frontend: Literal["conv2d", "stacked"] = "conv2d"
    """``"conv2d"``: two stride-2 Conv2d over (time, mel) (the paper's w2v-BERT);
    ``"stacked"``: ``frame_stride`` normalised frames stacked, LayerNorm, Linear (w2v-BERT 2.0;
    :class:`w2vbert.model.feature_encoder.StackedFbankFrontend`)."""
    frame_stride: int = 4
    """Input frames per encoder step: 4 (40 ms, the paper) or 2 (20 ms; w2v-BERT 2.0)."""
    feature_encoder_channels: int = 256
    """Channels of the two Conv2d layers."""
    input_norm: Literal["utterance", "frame", "global", "none"] = "utterance"
    """Input normalisation: per-utterance mean/var per bin, per-frame LayerNorm (conv2d front
    end), per-bin statistics stored in the model (``"global"``: streamable, see
    :func:`streaming_problems`), or none (conv2d). The stacked front end knows ``"utterance"``
    (any value but ``"global"``) and ``"global"``."""

    # Conformer
    model_dim: int = 1024
    """Width M of the conformer blocks."""
    num_heads: int = 8
    """Attention heads (head dim = model_dim / num_heads, even)."""
    ffn_dim: int = 4096
    """Inner width of each macaron feed-forward module."""
    conv_kernel_size: int = 5
    """Depthwise convolution kernel, in encoder steps (odd)."""
    num_contrastive_layers: int = 12
    """Conformer blocks of the contrastive module (context network)."""
    num_mlm_layers: int = 12
    """Conformer blocks of the MLM module, on top of the contrastive module."""
    rotary_base: float = 10000.0
    """Base of the rotary position embedding frequencies."""
    position_encoding: Literal["rotary", "shaw"] = "rotary"
    """``"rotary"`` (RoFormer) or ``"shaw"``: learned relative position keys for offsets clipped
    to ``[-shaw_left_context, shaw_right_context]`` (w2v-BERT 2.0, "conformer_shaw")."""
    shaw_left_context: int = 64
    """Shaw positions: the largest left offset with its own key embedding."""
    shaw_right_context: int = 8
    """Shaw positions: the largest right offset with its own key embedding."""
    conv_causal: bool = False
    """Causal depthwise convolution (left context only; w2v-BERT 2.0) instead of a centred one."""
    conv_bias: bool = True
    """Biases in the conv module's pointwise and depthwise layers (w2v-BERT 2.0 has none)."""

    # Self-supervised method
    method: Method = "w2vbert"
    """``"w2vbert"``: Gumbel quantizer learned by the contrastive task, contrastive + MLM losses
    (and the ablations of :func:`with_objective`). ``"best-rq"``: targets from a frozen random
    projection and a frozen random codebook of the stacked normalised fbank
    (:class:`w2vbert.model.random_projection.RandomProjectionQuantizer`), masked fbank frames
    replaced by noise, MLM loss only, every block an MLM block; set by
    ``with_objective(config, "best-rq")``."""
    random_projection_seed: int = 0
    """BEST-RQ: seed of the projection and codebook (they are buffers saved with the checkpoint,
    so resuming or fine-tuning never draws them again)."""
    mask_noise_std: float = BEST_RQ_NOISE_STD
    """BEST-RQ: standard deviation of the noise that replaces masked fbank frames."""

    # Dropout
    feature_dropout_p: float = 0.1
    """Dropout on the feature-encoder output."""
    dropout_p: float = 0.1
    """Dropout on the output of every residual branch."""
    attn_dropout_p: float = 0.0
    """Dropout on attention weights."""
    ffn_inner_dropout_p: float = 0.0
    """Dropout after the activation inside the feed-forward modules (costly on CPU)."""

    # Masking
    mask_p: float = 0.065
    """Probability that an encoder step starts a masked span."""
    mask_span_len: int = 10
    """Masked span length, in encoder steps."""
    min_num_mask_spans: int = 1
    """Minimum masked spans per utterance."""
    mask_fill: Literal["learned", "random"] = "learned"
    """What replaces the masked steps: one learned vector (wav2vec 2.0, fairseq2) or random
    vectors with the features' standard deviation (the paper's wording). On the mini corpus the
    random vectors look like real features and the context network learns far slower: valid
    contrastive loss 4.53 vs 4.34 after 280 steps."""

    # Quantizer
    quantizer_input: Literal["fbank", "features", "frontend-norm"] = "fbank"
    """What the quantizer sees at masked steps: ``"fbank"`` = the normalised fbank stacked over
    ``frame_stride`` frames (fixed, as fairseq2's w2v-BERT), or ``"features"`` = the learned
    feature encoder's output (the paper's wording). With ``"features"`` the contrastive loss can
    make its own targets trivial by collapsing the feature encoder; on the mini corpus that
    happens within 20 steps (codebook perplexity 1). ``"frontend-norm"``: the stacked front end's
    LayerNorm output before its Linear (w2v-BERT 2.0: what fairseq's wav2vec2/w2v-BERT quantizer
    reads, so a restored conformer_shaw quantizer sees the input it was trained on)."""
    num_codebooks: int = 1
    """Codebooks (groups) G of the quantizer (BEST-RQ: independent random codebooks, each with its
    own projection and its own MLM softmax)."""
    num_codebook_entries: int = 1024
    """Entries V per codebook."""
    num_target_codebooks: int | None = None
    """w2v-BERT: MLM targets are the code ids of the first ``num_target_codebooks`` codebooks
    (fairseq2's ``W2VBertConfig.num_target_codebooks``; the MLM head has that many softmaxes of
    V); ``None``: all ``num_codebooks``. BEST-RQ predicts all of its codebooks."""
    codebook_dim: int = 1024
    """Gumbel: codevector dim C (concatenation over codebooks; multiple of num_codebooks).
    BEST-RQ: the dim of each codebook's projection and entries."""
    gumbel_max_temp: float = 2.0
    """Gumbel-softmax temperature at step 0."""
    gumbel_min_temp: float = 0.5
    """Lowest Gumbel-softmax temperature."""
    gumbel_temp_decay: float = 0.999995
    """Temperature factor per optimiser step."""
    target_proj: bool = True
    """Linear(C, C) on the codevectors before the contrastive loss (wav2vec 2.0's ``project_q``,
    fairseq2's ``final_target_proj``). Without it the uniformly initialised codevectors all have
    cosine ~0.75 with each other and the contrastive loss learns far slower."""

    # Objective
    num_distractors: int = 100
    """Distractors K per masked step, from other masked steps of the same utterance."""
    logit_temp: float = 0.1
    """Temperature dividing the cosine similarities of the contrastive loss."""
    block_same_code: bool = True
    """Give ``-inf`` to distractors whose codes equal the positive's (wav2vec 2.0's rule, kept by
    fairseq2). It also makes a collapsed codebook cost nothing (every distractor blocked, loss 0);
    ``False`` draws distractors plainly, as the paper describes, so collapse costs ln(K + 1)."""
    contrastive_weight: float = 1.0
    """Weight beta of the InfoNCE loss L_w (0 = MLM only)."""
    diversity_weight: float = 0.1
    """Weight of the codebook diversity loss L_d (the paper's beta * alpha)."""
    mlm_weight: float = 1.0
    """Weight gamma of the MLM loss L_m (0 = contrastive only, w2v-Conformer)."""

    def validate(self) -> None:
        """Raise ``ValueError`` listing every problem of the configuration."""
        p: list[str] = []
        positive = (
            "num_mel_bins", "feature_encoder_channels", "model_dim", "num_heads", "ffn_dim",
            "mask_span_len", "num_codebooks", "num_codebook_entries", "codebook_dim",
            "num_distractors",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                p.append(f"`{name}` must be >= 1, but is {getattr(self, name)} instead.")
        for name in ("num_contrastive_layers", "num_mlm_layers", "min_num_mask_spans"):
            if getattr(self, name) < 0:
                p.append(f"`{name}` must be >= 0, but is {getattr(self, name)} instead.")
        for name in (
            "feature_dropout_p",
            "dropout_p",
            "attn_dropout_p",
            "ffn_inner_dropout_p",
            "mask_p",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                p.append(f"`{name}` must be in [0, 1], but is {getattr(self, name)} instead.")
        for name in ("contrastive_weight", "diversity_weight", "mlm_weight"):
            if getattr(self, name) < 0.0:
                p.append(f"`{name}` must be >= 0, but is {getattr(self, name)} instead.")
        if self.fbank not in ("icefall", "w2v-bert-2.0"):
            p.append(f"`fbank` must be 'icefall' or 'w2v-bert-2.0', but is {self.fbank!r} instead.")
        if self.frontend not in ("conv2d", "stacked"):
            p.append(f"`frontend` must be 'conv2d' or 'stacked', but is {self.frontend!r} instead.")
        if self.frontend == "conv2d" and self.frame_stride not in (2, 4):
            p.append(
                f"`frame_stride` must be 2 or 4 with the conv2d front end, but is "
                f"{self.frame_stride} instead."
            )
        if self.frame_stride < 1:
            p.append(f"`frame_stride` must be >= 1, but is {self.frame_stride} instead.")
        if self.position_encoding not in ("rotary", "shaw"):
            p.append(
                f"`position_encoding` must be 'rotary' or 'shaw', but is "
                f"{self.position_encoding!r} instead."
            )
        for name in ("shaw_left_context", "shaw_right_context"):
            if getattr(self, name) < 0:
                p.append(f"`{name}` must be >= 0, but is {getattr(self, name)} instead.")
        if self.mask_fill not in ("learned", "random"):
            p.append(f"`mask_fill` must be 'learned' or 'random', but is {self.mask_fill!r} instead.")
        if self.quantizer_input not in ("fbank", "features", "frontend-norm"):
            p.append(
                f"`quantizer_input` must be 'fbank', 'features' or 'frontend-norm', but is "
                f"{self.quantizer_input!r} instead."
            )
        if self.quantizer_input == "frontend-norm" and self.frontend != "stacked":
            p.append("`quantizer_input` 'frontend-norm' needs the stacked front end (frontend='stacked').")
        if self.method not in ("w2vbert", "best-rq"):
            p.append(f"`method` must be 'w2vbert' or 'best-rq', but is {self.method!r} instead.")
        if self.method == "best-rq":
            for name in ("contrastive_weight", "num_contrastive_layers"):
                if getattr(self, name) != 0:
                    p.append(
                        f"`{name}` must be 0 for BEST-RQ (MLM only, every block an MLM block), "
                        f"but is {getattr(self, name)} instead."
                    )
            if self.mlm_weight == 0.0:
                p.append("`mlm_weight` must be > 0 for BEST-RQ (its only loss), but is 0 instead.")
            if self.input_norm == "none":
                p.append(
                    "`input_norm` must be 'utterance' or 'frame' for BEST-RQ (the random projection "
                    "needs normalised input, and the noise is drawn at that scale), but is 'none'."
                )
            if self.mask_noise_std < 0.0:
                p.append(f"`mask_noise_std` must be >= 0, but is {self.mask_noise_std} instead.")
        if self.input_norm not in ("utterance", "frame", "global", "none"):
            p.append(
                f"`input_norm` must be 'utterance', 'frame', 'global' or 'none', but is "
                f"{self.input_norm!r} instead."
            )
        if self.num_heads >= 1 and (
            self.model_dim % self.num_heads != 0 or (self.model_dim // self.num_heads) % 2 != 0
        ):
            p.append(
                f"`model_dim` must be a multiple of `num_heads` ({self.num_heads}) with an even "
                f"head dim, but is {self.model_dim} instead."
            )
        if self.conv_kernel_size < 1 or self.conv_kernel_size % 2 == 0:
            p.append(f"`conv_kernel_size` must be odd, but is {self.conv_kernel_size} instead.")
        if (
            self.method == "w2vbert"
            and self.num_codebooks >= 1
            and self.codebook_dim % self.num_codebooks != 0
        ):
            p.append(
                f"`codebook_dim` must be a multiple of `num_codebooks` ({self.num_codebooks}), "
                f"but is {self.codebook_dim} instead."
            )
        if self.num_target_codebooks is not None and not (
            1 <= self.num_target_codebooks <= max(self.num_codebooks, 1)
        ):
            p.append(
                f"`num_target_codebooks` must be in [1, num_codebooks={self.num_codebooks}] (or "
                f"None: all), but is {self.num_target_codebooks} instead."
            )
        if not 0.0 < self.gumbel_min_temp <= self.gumbel_max_temp:
            p.append(
                f"`gumbel_min_temp` must be in (0, gumbel_max_temp={self.gumbel_max_temp}], "
                f"but is {self.gumbel_min_temp} instead."
            )
        if not 0.0 < self.gumbel_temp_decay <= 1.0:
            p.append(
                f"`gumbel_temp_decay` must be in (0, 1], but is {self.gumbel_temp_decay} instead."
            )
        if self.logit_temp <= 0.0:
            p.append(f"`logit_temp` must be > 0, but is {self.logit_temp} instead.")
        if self.num_contrastive_layers + self.num_mlm_layers < 1:
            p.append("`num_contrastive_layers + num_mlm_layers` must be >= 1, but is 0 instead.")
        if self.contrastive_weight == 0.0 and self.mlm_weight == 0.0 and self.method == "w2vbert":
            p.append("`contrastive_weight` and `mlm_weight` must not both be 0, but are.")
        if self.mlm_weight == 0.0 and self.num_mlm_layers > 0:
            p.append(
                f"`num_mlm_layers` must be 0 when `mlm_weight` is 0 (its blocks would get no "
                f"gradient; use with_objective(config, 'contrastive')), but is "
                f"{self.num_mlm_layers} instead."
            )
        if p:
            raise ValueError("Invalid W2VBertConfig: " + " ".join(p))

    @property
    def mlm_num_codebooks(self) -> int:
        """Codebooks the MLM head predicts: ``num_target_codebooks``, or all (BEST-RQ: all)."""
        if self.method == "best-rq" or self.num_target_codebooks is None:
            return self.num_codebooks
        return self.num_target_codebooks

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``w2vbert_loss`` taken from this configuration."""
        names = ("contrastive_weight", "mlm_weight", "diversity_weight", "num_distractors",
                 "logit_temp", "block_same_code")  # fmt: skip
        return {name: getattr(self, name) for name in names}


def streaming_problems(config: W2VBertConfig) -> list[str]:
    """Why an encoder of ``config`` cannot run chunk by chunk (empty if it can): it needs a
    causal convolution, an input normalisation without future frames and a front end without
    look-ahead past a step's own frames (:mod:`w2vbert.model.streaming`)."""
    p = []
    if not config.conv_causal:
        p.append("`conv_causal` must be True for streaming (a centred kernel reads future steps).")
    streamable = ("global",) if config.frontend == "stacked" else ("frame", "global", "none")
    if config.input_norm not in streamable:
        p.append(
            f"`input_norm` must be one of {streamable} for streaming with the {config.frontend} "
            f"front end (per-utterance statistics need the whole utterance), but is "
            f"{config.input_norm!r} instead."
        )
    if config.frontend == "conv2d" and config.frame_stride != 4:
        p.append(
            f"`frame_stride` must be 4 for streaming with the conv2d front end (with 2 a step "
            f"reads 2 frames past its own), but is {config.frame_stride} instead."
        )
    return p


def with_streaming(config: W2VBertConfig) -> W2VBertConfig:
    """``config`` made streamable with the same weights: causal depthwise convolution and input
    statistics stored in the model (``input_norm="global"``)."""
    return replace(config, conv_causal=True, input_norm="global")


def xl() -> W2VBertConfig:
    """The paper's XL (0.6B): 24 blocks of dim 1024, 8 heads, 12 contrastive + 12 MLM."""
    return W2VBertConfig()


def xxl() -> W2VBertConfig:
    """The paper's XXL (1.0B): 12 contrastive + 30 MLM blocks, otherwise XL."""
    return replace(xl(), num_mlm_layers=30)


def base() -> W2VBertConfig:
    """~95M parameters: dim 512, 8 heads, 7 contrastive + 8 MLM blocks."""
    return replace(
        xl(),
        feature_encoder_channels=128,
        model_dim=512,
        ffn_dim=2048,
        conv_kernel_size=15,
        num_contrastive_layers=7,
        num_mlm_layers=8,
        codebook_dim=512,
    )


def mini() -> W2VBertConfig:
    """A few million parameters for CPU runs: dim 192, 4 heads, 3 + 3 blocks, 1 x 320 codes.

    Tuned on the mini corpus (egs/librispeech/conf/mini.sh): 160 ms masked spans (4 steps of
    40 ms; the espeak speech is fast, ~17 characters/s) starting at 15 % of the steps (~48 % of
    the steps masked, as with the XL's 0.065 x 10), and a Gumbel temperature that reaches its
    minimum after ~700 updates instead of ~280k.
    """
    return replace(
        xl(),
        feature_encoder_channels=32,
        model_dim=192,
        num_heads=4,
        ffn_dim=768,
        conv_kernel_size=15,
        num_contrastive_layers=3,
        num_mlm_layers=3,
        num_codebook_entries=320,
        codebook_dim=192,
        mask_p=0.15,
        mask_span_len=4,
        gumbel_temp_decay=0.998,
    )


def small() -> W2VBertConfig:
    """12.7 M parameters: the mini preset at dim 256, 4 + 4 blocks.

    Tried for the AN4 long configuration (worse than mini on dev there): ~2.4x the mini preset's
    compute, with its masking and Gumbel schedule.
    """
    return replace(
        mini(),
        model_dim=256,
        num_heads=4,
        ffn_dim=1024,
        num_contrastive_layers=4,
        num_mlm_layers=4,
        codebook_dim=256,
    )


def tiny() -> W2VBertConfig:
    """For unit tests: dim 32, 1 + 1 blocks, 1 x 16 codes, no dropout."""
    return replace(
        xl(),
        feature_encoder_channels=4,
        model_dim=32,
        num_heads=2,
        ffn_dim=64,
        conv_kernel_size=3,
        num_contrastive_layers=1,
        num_mlm_layers=1,
        feature_dropout_p=0.0,
        dropout_p=0.0,
        num_codebook_entries=16,
        codebook_dim=16,
        num_distractors=20,
    )


def w2v_bert_2_0() -> W2VBertConfig:
    """Meta's w2v-BERT 2.0 (0.6B, "conformer_shaw_600m" of Seamless; ``facebook/w2v-bert-2.0``).

    From fairseq2/seamless_communication's ``conformer_shaw_600m`` and transformers'
    ``Wav2Vec2BertConfig`` defaults: stacked fbank front end (2 x 80 -> 160 at 20 ms, LayerNorm,
    Linear); 24 conformer blocks of dim 1024, 16 heads, FFN 4096, Shaw relative keys clipped to
    64 left / 8 right, causal depthwise conv of kernel 31 with LayerNorm, no conv biases; the
    w2v-BERT split of fairseq2's ``w2vbert_600m`` (the contrastive loss after block 8, MLM on the
    last 16); quantizer 2 codebooks x 320 entries, quantized and final dim 768, Gumbel temperature
    2.0 -> 0.1 x 0.999995 per update, diversity weight 0.2; masked spans of 10 steps.

    The continued-pre-training objective is the one it was trained with (README, "Start from
    w2v-BERT 2.0"): contrastive + diversity over both codebooks, MLM over the first codebook
    only (fairseq2 ``W2VBertConfig.num_target_codebooks = 1``), at least 2 masked spans per
    utterance (``min_num_temporal_mask_spans = 2`` of ``conformer_shaw_600m``).
    ``--num-target-codebooks 2`` predicts both codebooks (this recipe's behaviour before).
    """
    return replace(
        xl(),
        fbank="w2v-bert-2.0",
        frontend="stacked",
        frame_stride=2,
        model_dim=1024,
        num_heads=16,
        ffn_dim=4096,
        conv_kernel_size=31,
        conv_causal=True,
        conv_bias=False,
        position_encoding="shaw",
        shaw_left_context=64,
        shaw_right_context=8,
        num_contrastive_layers=8,
        num_mlm_layers=16,
        num_codebooks=2,
        num_codebook_entries=320,
        num_target_codebooks=1,
        min_num_mask_spans=2,
        codebook_dim=768,
        gumbel_min_temp=0.1,
        diversity_weight=0.2,
        quantizer_input="frontend-norm",
        feature_dropout_p=0.0,
        dropout_p=0.0,
    )


def w2v_bert_2_0_tiny() -> W2VBertConfig:
    """w2v-BERT 2.0's architecture at test size: dim 32, 2 heads, 1 + 2 blocks, kernel 5."""
    return replace(
        w2v_bert_2_0(),
        model_dim=32,
        num_heads=2,
        ffn_dim=64,
        conv_kernel_size=5,
        shaw_left_context=6,
        shaw_right_context=2,
        num_contrastive_layers=1,
        num_mlm_layers=2,
        num_codebook_entries=16,
        codebook_dim=16,
        num_distractors=20,
    )


_PRESETS: dict[str, Callable[[], W2VBertConfig]] = {
    "tiny": tiny,
    "mini": mini,
    "small": small,
    "base": base,
    "xl": xl,
    "xxl": xxl,
    "w2v-bert-2.0": w2v_bert_2_0,
    "w2v-bert-2.0-tiny": w2v_bert_2_0_tiny,
}


def preset_names() -> list[str]:
    """Names accepted by :func:`get_w2vbert_config`."""
    return list(_PRESETS)


def get_w2vbert_config(name: str) -> W2VBertConfig:
    """The preset called ``name`` (one of :func:`preset_names`)."""
    try:
        return _PRESETS[name]()
    except KeyError:
        raise ValueError(
            f"`name` must be one of {preset_names()}, but is {name!r} instead."
        ) from None


def with_objective(config: W2VBertConfig, objective: Objective) -> W2VBertConfig:
    """The configuration for one pre-training objective, same total number of blocks.

    ``"w2vbert"``: ``config`` unchanged. ``"contrastive"``: all blocks contrastive, no MLM
    (w2v-Conformer). ``"mlm"``: all blocks MLM and beta = 0: the paper's L_c = L_w + alpha * L_d
    is dropped whole, so neither the contrastive nor the diversity loss is trained (the paper's
    ablation where the codebook collapses; the diversity is still computed and logged).
    ``"best-rq"``: BEST-RQ with the paper's quantizer and masking (all blocks MLM; 1 codebook of
    8192 entries of dim 16; masked spans of 400 ms starting at 1 % of the 10 ms frames, i.e.
    ``mask_p = 1 - 0.99 ** frame_stride`` per encoder step and ``400 / (10 * frame_stride)``
    steps, about a third of the steps masked; noise std 0.1). Overrides given after this (e.g.
    ``--num-codebooks 16``, ``--mask-p``) still apply.
    """
    total = config.num_contrastive_layers + config.num_mlm_layers
    if objective == "w2vbert":
        return config
    if objective == "best-rq":
        stride = config.frame_stride
        return replace(
            config,
            method="best-rq",
            num_contrastive_layers=0,
            num_mlm_layers=total,
            contrastive_weight=0.0,
            diversity_weight=0.0,
            mlm_weight=1.0,
            quantizer_input="fbank",
            num_codebooks=1,
            num_target_codebooks=None,
            num_codebook_entries=BEST_RQ_CODEBOOK_SIZE,
            codebook_dim=BEST_RQ_CODE_DIM,
            mask_p=1.0 - (1.0 - BEST_RQ_FRAME_MASK_P) ** stride,
            mask_span_len=BEST_RQ_MASK_MS // (10 * stride),
            mask_noise_std=BEST_RQ_NOISE_STD,
        )
    if objective == "contrastive":
        return replace(config, num_contrastive_layers=total, num_mlm_layers=0, mlm_weight=0.0)
    if objective == "mlm":
        return replace(
            config,
            num_contrastive_layers=0,
            num_mlm_layers=total,
            contrastive_weight=0.0,
            diversity_weight=0.0,
        )
    raise ValueError(
        f"`objective` must be one of {list(OBJECTIVES)}, but is {objective!r} instead."
    )


def config_field_names() -> list[str]:
    """All field names of :class:`W2VBertConfig` (for CLIs that expose them)."""
    return [f.name for f in fields(W2VBertConfig)]

"""Feature encoder: 80-dim fbank (10 ms frames) -> model-dim vectors at 40 ms (or 20 ms).

Shapes: N batch, T fbank frames, F mel bins, S encoder steps, M model dim, C conv channels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2vbert.model.dropout import Dropout
from w2vbert.model.masking import make_padding_mask

InputNorm = Literal["utterance", "frame", "global", "none"]
STREAMABLE_INPUT_NORMS = ("frame", "global", "none")
"""Input normalisations that need no future frames (per-utterance statistics do)."""


def _halve(lens: Tensor | int) -> Tensor | int:
    """Output length of a kernel-3, padding-1, stride-2 convolution: ``ceil(len / 2)``."""
    if isinstance(lens, int):
        return (lens + 1) // 2
    return torch.div(lens + 1, 2, rounding_mode="floor")


def output_lengths(seq_lens: Tensor | int, frame_stride: int = 4) -> Tensor | int:
    """Encoder steps produced from ``seq_lens`` fbank frames.

    ``ceil(T / 2)`` per stride-2 stage: ``ceil(ceil(T / 2) / 2)`` for ``frame_stride=4``,
    ``ceil(T / 2)`` for ``frame_stride=2``. Any input of >= 1 frame gives >= 1 step, so the
    minimum input for one output step is 1 frame (see :func:`min_input_frames`).

    Args:
        seq_lens: (N,) tensor or an int, fbank frames.
        frame_stride: 4 (40 ms steps) or 2 (20 ms steps).
    """
    if frame_stride not in (2, 4):
        raise ValueError(f"`frame_stride` must be 2 or 4, but is {frame_stride} instead.")
    lens = _halve(seq_lens)
    if frame_stride == 4:
        lens = _halve(lens)
    return lens


def min_input_frames(num_steps: int, frame_stride: int = 4) -> int:
    """Smallest number of fbank frames that gives at least ``num_steps`` encoder steps."""
    if num_steps <= 0:
        return 0
    return (num_steps - 1) * frame_stride + 1


class StoredInputNorm(nn.Module):
    """Per-bin normalisation with statistics stored in the model: ``(x - mean) * inv_std``.

    The streaming counterpart of the per-utterance normalisation: it needs no future frame, and
    it is what the per-utterance mean and variance tend to on long utterances, so an encoder
    pre-trained with per-utterance statistics sees nearly the input it was trained on (a
    per-frame LayerNorm over the mel bins would give it another input altogether). The
    statistics are buffers (saved with the model, constants in an exported graph), identity
    until :meth:`set_statistics` is called (fine-tuning estimates them on its training data).
    """

    def __init__(self, num_mel_bins: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_mel_bins))
        self.register_buffer("inv_std", torch.ones(num_mel_bins))

    def forward(self, x: Tensor) -> Tensor:
        """(N, T, F) -> (N, T, F)."""
        return (x - self.mean.to(x.dtype)) * self.inv_std.to(x.dtype)

    @torch.no_grad()
    def set_statistics(
        self, total: Tensor, total_sq: Tensor, count: int, eps: float = 1e-5
    ) -> None:
        """From per-bin sums ``total``, ``total_sq`` (F,) over ``count`` valid frames."""
        if count < 2:
            raise ValueError(f"Input statistics need >= 2 frames, but got {count}.")
        mean = total.double() / count
        var = (total_sq.double() / count - mean.square()).clamp(min=0.0)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.inv_std.copy_(torch.rsqrt(var + eps).to(self.inv_std.dtype))


def frame_sums(x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor, int]:
    """Per-bin sums and sums of squares (F,) float64 over the valid frames of (N, T, F), and
    their number: what :meth:`StoredInputNorm.set_statistics` takes, summed over batches."""
    valid = (~make_padding_mask(x_lens, x.size(1))).unsqueeze(2).to(torch.float64)
    xd = x.double() * valid
    return xd.sum(dim=(0, 1)), (xd * x.double()).sum(dim=(0, 1)), int(x_lens.sum())


class FbankFeatureEncoder(nn.Module):
    """Input normalisation, two Conv2d (+ReLU) over (time, mel), Linear to M, LayerNorm, dropout.

    Both convolutions have kernel 3, padding 1, stride 2 over mel bins; in time both have stride
    2 (``frame_stride=4``, 40 ms steps, the paper) or only the first (``frame_stride=2``, 20 ms).
    Padded frames are zeroed before each convolution so that a padded batch gives the same
    outputs as each sequence alone; the output lengths are exact (:func:`output_lengths`).

    Input normalisation (so raw log-mel needs no global CMVN):
    ``"utterance"``: per-utterance mean/variance per mel bin over the valid frames;
    ``"frame"``: LayerNorm over the mel bins of each frame; ``"global"``: per-bin statistics
    stored in the model (:class:`StoredInputNorm`); ``"none"``.

    Look-ahead (streaming): with ``frame_stride=4`` step s reads frames ``4s - 3 .. 4s + 3``,
    i.e. its own four frames and three before them, so it needs **no** frame of a later step;
    :meth:`forward_chunk` computes chunk after chunk from a cache of one normalised frame and
    one conv1 output. With ``frame_stride=2`` step s reads frames ``2s - 3 .. 2s + 3``: two
    frames (20 ms) of look-ahead past its own, which :meth:`forward_chunk` refuses.
    """

    def __init__(
        self,
        *,
        num_mel_bins: int = 80,
        model_dim: int,
        num_channels: int,
        frame_stride: int = 4,
        input_norm: InputNorm = "utterance",
        dropout_p: float = 0.0,
    ) -> None:
        super().__init__()
        if frame_stride not in (2, 4):
            raise ValueError(f"`frame_stride` must be 2 or 4, but is {frame_stride} instead.")
        if input_norm not in ("utterance", "frame", "global", "none"):
            raise ValueError(
                "`input_norm` must be 'utterance', 'frame', 'global' or 'none', "
                f"but is {input_norm!r} instead."
            )
        self.num_mel_bins = num_mel_bins
        self.frame_stride = frame_stride
        self.input_norm = input_norm
        self.frame_norm = nn.LayerNorm(num_mel_bins) if input_norm == "frame" else None
        self.input_stats = StoredInputNorm(num_mel_bins) if input_norm == "global" else None
        self.conv1 = nn.Conv2d(1, num_channels, kernel_size=3, stride=2, padding=1)
        time_stride2 = 2 if frame_stride == 4 else 1
        self.conv2 = nn.Conv2d(
            num_channels, num_channels, kernel_size=3, stride=(time_stride2, 2), padding=1
        )
        freq_out = _halve(_halve(num_mel_bins))
        self.proj = nn.Linear(num_channels * int(freq_out), model_dim)
        self.layer_norm = nn.LayerNorm(model_dim)
        self.dropout = Dropout(dropout_p)

    def output_lengths(self, seq_lens: Tensor | int) -> Tensor | int:
        """Encoder steps for ``seq_lens`` input frames (see :func:`output_lengths`)."""
        return output_lengths(seq_lens, self.frame_stride)

    def _normalize(self, x: Tensor, valid: Tensor | None, x_lens: Tensor) -> Tensor:
        # x: (N, T, F); valid: (N, T, 1) float, or None when no frame is padding
        if self.input_norm == "utterance":
            if valid is None:
                centred = x - x.mean(dim=1, keepdim=True)
                var = centred.square().mean(dim=1, keepdim=True)  # (N, 1, F)
                return centred * torch.rsqrt(var + 1e-5)
            count = x_lens.clamp(min=1).to(x.dtype).view(-1, 1, 1)  # (N, 1, 1)
            mean = (x * valid).sum(dim=1, keepdim=True) / count  # (N, 1, F)
            centred = (x - mean) * valid
            var = centred.square().sum(dim=1, keepdim=True) / count
            return centred * torch.rsqrt(var + 1e-5)
        if self.frame_norm is not None:
            x = self.frame_norm(x)
        if self.input_stats is not None:
            x = self.input_stats(x)
        return x if valid is None else x * valid

    def normalize(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """The input normalisation alone: (N, T, F) -> (N, T, F), zero beyond ``x_lens``."""
        valid = (~make_padding_mask(x_lens, x.size(1))).unsqueeze(2).to(x.dtype)  # (N, T, 1)
        return self._normalize(x, valid, x_lens)

    def stack(self, x: Tensor) -> Tensor:
        """(N, T, F) -> (N, S, frame_stride * F), S = ``output_lengths(T)``: step s stacks
        frames ``[s * stride, (s + 1) * stride)``, zero-padded at the end."""
        n, t, f = x.shape
        s = int(self.output_lengths(t))
        x = nn.functional.pad(x, (0, 0, 0, s * self.frame_stride - t))  # (N, S * stride, F)
        return x.reshape(n, s, self.frame_stride * f)

    def stacked_input(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """The normalised fbank, ``frame_stride`` frames stacked per encoder step (no parameters
        are learned on this path except the optional frame LayerNorm).

        Args:
            x: (N, T, F) log-mel filterbanks; x_lens: (N,) valid frames.

        Returns:
            (N, S, frame_stride * F), S = ``output_lengths(T)``; step s stacks frames
            ``[s * stride, (s + 1) * stride)`` (zero beyond ``x_lens``).
        """
        return self.stack(self.normalize(x, x_lens))

    def forward(
        self, x: Tensor, x_lens: Tensor, *, normalized: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Encode fbank frames.

        Args:
            x: (N, T, F) log-mel filterbanks; frames at or beyond ``x_lens`` are ignored.
            x_lens: (N,) valid frames per sequence.
            normalized: ``x`` is already the output of :meth:`normalize` (BEST-RQ puts noise
                into the normalised frames): skip the normalisation.

        Returns:
            seqs (N, S, M) and seq_lens (N,), S = ``output_lengths(T)``.
        """
        if x.dim() != 3 or x.size(2) != self.num_mel_bins:
            raise ValueError(
                f"`x` must be (N, T, {self.num_mel_bins}), but has shape {tuple(x.shape)} instead."
            )
        num_frames = x.size(1)
        # Without padding the masks are all ones: skip the multiplications (they cost a pass over
        # the (N, C, T1, F1) tensor each way). Tracing/export always builds them.
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        padded = exporting or not bool((x_lens == num_frames).all())
        valid = None
        if padded:
            valid = (~make_padding_mask(x_lens, num_frames)).unsqueeze(2).to(x.dtype)  # (N, T, 1)
        if not normalized:
            x = self._normalize(x, valid, x_lens)
        elif valid is not None:
            x = x * valid

        # In-place ReLU: the convolutions' backward needs their inputs, not their outputs, and
        # ReLU's backward needs only its result, so overwriting the conv output is safe.
        h = self.conv1(x.unsqueeze(1)).relu_()  # (N, 1, T, F) -> (N, C, T1, F1)
        lens1 = _halve(x_lens)
        if padded:
            valid1 = ~make_padding_mask(lens1, h.size(2))  # (N, T1)
            h = h * valid1.view(h.size(0), 1, -1, 1).to(h.dtype)
        h = self.conv2(h).relu_()  # (N, C, T1, F1) -> (N, C, S, F2)
        seq_lens = lens1 if self.frame_stride == 2 else _halve(lens1)

        return self._project(h), seq_lens

    def _project(self, h: Tensor) -> Tensor:
        """(N, C, S, F2) conv2 output -> (N, S, M)."""
        n, c, s, f = h.shape
        h = h.permute(0, 2, 1, 3).reshape(n, s, c * f)  # (N, C, S, F2) -> (N, S, C*F2)
        return self.dropout(self.layer_norm(self.proj(h)))  # (N, S, M)

    def empty_cache(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """Streaming cache before the first chunk: ``(frame (N, 1, F), conv1 (N, C, 1, F1))``,
        zeros as the offline zero padding. Raises if this front end cannot stream."""
        if self.frame_stride != 4:
            raise ValueError(
                "`frame_stride` must be 4 for streaming with the conv2d front end (with 2 each "
                "step reads 2 frames past its own), but is 2 instead."
            )
        if self.input_norm not in STREAMABLE_INPUT_NORMS:
            raise ValueError(
                f"`input_norm` must be one of {STREAMABLE_INPUT_NORMS} for streaming (per-"
                "utterance statistics need the whole utterance), but is "
                f"{self.input_norm!r} instead."
            )
        channels, bins1 = self.conv1.out_channels, int(_halve(self.num_mel_bins))
        return (
            torch.zeros(batch_size, 1, self.num_mel_bins, device=device, dtype=dtype),
            torch.zeros(batch_size, channels, 1, bins1, device=device, dtype=dtype),
        )

    def forward_chunk(
        self, x: Tensor, x_lens: Tensor, cache: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Encode one chunk of 4C frames into C steps, exactly as :meth:`forward` (eval mode).

        Args:
            x: (N, 4C, F) the chunk's frames; x_lens: (N,) valid frames in the chunk (the rest
                is padding; 0 once an utterance has ended). Chunks start at multiples of 4C.
            cache: from :meth:`empty_cache` or the previous chunk.

        Returns:
            (N, C, M) and the cache for the next chunk.
        """
        n, t, _ = x.shape
        if t % 4 != 0:
            raise ValueError(f"`x` must hold whole steps of 4 frames, but holds {t} frames.")
        valid = (~make_padding_mask(x_lens, t)).unsqueeze(2).to(x.dtype)  # (N, 4C, 1)
        x = self._normalize(x, valid, x_lens)  # per frame (empty_cache refused "utterance")
        frames = torch.cat((cache[0], x), dim=1)  # (N, 1 + 4C, F): frame offset - 1 first
        # conv1 step j reads frames 2j-1 .. 2j+1: the chunk's 2C steps from the frames above
        h = F.conv2d(frames.unsqueeze(1), self.conv1.weight, self.conv1.bias, stride=2,
                     padding=(0, 1)).relu_()  # fmt: skip  # (N, C1, 2C, F1)
        lens1 = _halve(x_lens)  # valid conv1 steps of the chunk (it starts at an even frame)
        h = h * (~make_padding_mask(lens1, h.size(2))).view(n, 1, -1, 1).to(h.dtype)
        h2 = F.conv2d(torch.cat((cache[1], h), dim=2), self.conv2.weight, self.conv2.bias,
                      stride=2, padding=(0, 1)).relu_()  # fmt: skip  # (N, C1, C, F2)
        return self._project(h2), (x[:, -1:], h[:, :, -1:])


class StackedFbankFrontend(nn.Module):
    """w2v-BERT 2.0's front end: per-utterance normalisation, ``frame_stride`` frames stacked,
    LayerNorm, Linear to M, dropout (no convolution). ``input_norm="global"`` normalises with
    statistics stored in the model instead (:class:`StoredInputNorm`, streamable); any other
    value is the per-utterance normalisation. No look-ahead: step s reads its own frames.

    The normalisation is per mel bin over the valid frames with the unbiased variance and
    ``eps`` inside the square root, as ``SeamlessM4TFeatureExtractor`` (``(x - mean) /
    sqrt(var_ddof1 + 1e-7)``). Step s stacks frames ``[s * stride, (s + 1) * stride)``; the
    frames after the last full group are dropped, so ``T`` frames give ``floor(T / stride)``
    steps (:meth:`output_lengths`), as the extractor's reshape. Same interface as
    :class:`FbankFeatureEncoder` (``normalize``/``stack``/``stacked_input``/``forward``).
    """

    def __init__(
        self,
        *,
        num_mel_bins: int = 80,
        model_dim: int,
        frame_stride: int = 2,
        eps: float = 1e-7,
        layer_norm_eps: float = 1e-5,
        input_norm: InputNorm = "utterance",
        dropout_p: float = 0.0,
    ) -> None:
        super().__init__()
        if frame_stride < 1:
            raise ValueError(f"`frame_stride` must be >= 1, but is {frame_stride} instead.")
        self.input_norm = input_norm
        self.input_stats = StoredInputNorm(num_mel_bins) if input_norm == "global" else None
        self.num_mel_bins = num_mel_bins
        self.frame_stride = frame_stride
        self.eps = eps
        self.layer_norm = nn.LayerNorm(frame_stride * num_mel_bins, eps=layer_norm_eps)
        self.proj = nn.Linear(frame_stride * num_mel_bins, model_dim)
        self.dropout = Dropout(dropout_p)

    def output_lengths(self, seq_lens: Tensor | int) -> Tensor | int:
        """``floor(T / frame_stride)`` encoder steps for ``T`` frames."""
        if isinstance(seq_lens, int):
            return seq_lens // self.frame_stride
        return torch.div(seq_lens, self.frame_stride, rounding_mode="floor")

    def normalize(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """(N, T, F) -> (N, T, F): zero mean, unit (unbiased) variance per utterance and bin over
        the valid frames; zero beyond ``x_lens``."""
        valid = (~make_padding_mask(x_lens, x.size(1))).unsqueeze(2).to(x.dtype)  # (N, T, 1)
        if self.input_stats is not None:  # stored statistics: per frame, streamable
            return self.input_stats(x) * valid
        count = x_lens.to(x.dtype).view(-1, 1, 1)  # (N, 1, 1)
        mean = (x * valid).sum(dim=1, keepdim=True) / count.clamp(min=1.0)
        centred = (x - mean) * valid
        var = centred.square().sum(dim=1, keepdim=True) / (count - 1.0).clamp(min=1.0)
        return centred * torch.rsqrt(var + self.eps)

    def stack(self, x: Tensor) -> Tensor:
        """(N, T, F) -> (N, floor(T / stride), stride * F)."""
        n, t, f = x.shape
        s = t // self.frame_stride
        return x[:, : s * self.frame_stride].reshape(n, s, self.frame_stride * f)

    def stacked_input(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """The normalised fbank stacked per step: (N, S, stride * F)."""
        return self.stack(self.normalize(x, x_lens))

    def forward(
        self, x: Tensor, x_lens: Tensor, *, normalized: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(N, T, F) fbank, (N,) lengths -> (N, S, M) and (N,) steps; ``normalized``: ``x`` is
        already the output of :meth:`normalize`."""
        if x.dim() != 3 or x.size(2) != self.num_mel_bins:
            raise ValueError(
                f"`x` must be (N, T, {self.num_mel_bins}), but has shape {tuple(x.shape)} instead."
            )
        if not normalized:
            x = self.normalize(x, x_lens)
        seqs = self.dropout(self.proj(self.layer_norm(self.stack(x))))  # (N, S, M)
        return seqs, self.output_lengths(x_lens)

    def empty_cache(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """No streaming cache (a step reads only its own frames); raises unless the
        normalisation is ``"global"``."""
        if self.input_stats is None:
            raise ValueError(
                "`input_norm` must be 'global' for streaming with the stacked front end (per-"
                f"utterance statistics need the whole utterance), but is {self.input_norm!r}."
            )
        return ()

    def forward_chunk(
        self, x: Tensor, x_lens: Tensor, cache: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(N, stride * C, F) chunk, (N,) valid frames in it -> (N, C, M), as :meth:`forward`."""
        if x.size(1) % self.frame_stride != 0:
            raise ValueError(f"`x` must hold whole steps of {self.frame_stride} frames.")
        return self.forward(x, x_lens)[0], cache

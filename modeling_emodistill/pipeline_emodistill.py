"""`pipeline("audio-classification")` for EmoDistill students: any PCM array, any rate, stereo, recordings of any length.

What the pipeline accepts (one input, or a list of them):

* a file path or the bytes of an audio file: anything ffmpeg reads (wav, flac, ogg, mp3, m4a, ...), decoded,
  down-mixed and resampled by ffmpeg from the file itself (bytes go through a temporary file), because containers
  such as m4a/mp4 often keep their index at the end, where ffmpeg reading from a pipe cannot seek;
* a NumPy array or torch tensor at the model's rate (16 kHz), or a dict `{"raw" | "array": ..., "sampling_rate": sr}`
  at any rate (resampled with `torchaudio.functional.resample`), or a `torchcodec` `AudioDecoder`;
* float PCM (any float dtype, amplitudes in [-1, 1]) or integer PCM (`int16`, `int32`, `int8`: divided by the type's
  full scale, e.g. 32768 for `int16`; `uint8`: centred on 128 first);
* mono `(samples,)`, or multi-channel audio as `(channels, samples)` or `(samples, channels)`: the shorter axis is the
  channel axis (at most `MAX_CHANNELS` of them), and channels are averaged (the down-mix of `datasets.Audio`).

Long recordings are cut into windows of `chunk_length_s` seconds (default 10) whose consecutive windows overlap by
`stride_length_s` seconds (default 2); the last window is moved back to end with the recording, so every window of a
long recording has the same length and none is mostly padding. A recording no longer than `chunk_length_s` is one
window, exactly what the model would see without chunking. The windows go through the model `batch_size` at a time,
so memory stays bounded whatever the length, and the recording's scores are the **mean of the per-window
probabilities** (per-window softmax, or sigmoid for multi-label models; logits for `function_to_apply="none"`).

Short clips: the convolutional feature encoder needs its receptive field, `receptive_field(conv_kernel, conv_stride)`
samples (400, i.e. 25 ms, for HuBERT-base), for its first frame and cannot run on fewer. A shorter clip is normalised
by the feature extractor as it is, then padded *at the end* with the feature extractor's `padding_value` (0: silence
at the normalised mean) up to the receptive field; that silence counts as audio (masking it would leave no frame to
pool). At the end, not on both sides: it is where the feature extractor and batching already pad
(`padding_side="right"`), the clip's samples keep their positions, and with one frame spanning the whole padded
input, centring the clip would buy nothing. `chunk_length_s` must give windows at least that long.

Batches are exact: `batch_size` changes speed, never scores. A student whose padding can be masked (an attention mask
from the feature extractor and `feat_extract_norm="layer"`) runs zero-padded batches with the mask, as transformers
intends. Any other student never sees padding: HuBERT-base, for one, has `feat_extract_norm="group"` (which
normalises over time, padding included) and a feature extractor that returns no attention mask. Each item's true
length rides through the batch, and items of different lengths run in groups of equal length, unpadded.

Empty audio, NaN/inf samples and unreadable files raise a `ValueError` that names the problem (and the file).

This file ships to the hub next to the weights (``trust_remote_code``): it imports only numpy, torch, transformers
and the standard library.
"""

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import is_torchaudio_available

if is_torchaudio_available():  # a guard that `check_imports` understands: torchaudio stays optional for hub users
    from torchaudio.functional import resample as torchaudio_resample

DEFAULT_CHUNK_LENGTH_S = 10.0
DEFAULT_STRIDE_LENGTH_S = 2.0
# More "channels" than this is far more likely a batch of clips passed as one 2-D array than a microphone array.
MAX_CHANNELS = 8


def pcm_to_float32(waveform: np.ndarray) -> np.ndarray:
    """Float or integer PCM of any shape to float32 in [-1, 1] (integer types divided by their full scale)."""
    if np.issubdtype(waveform.dtype, np.floating):
        return waveform.astype(np.float32, copy=False)
    if np.issubdtype(waveform.dtype, np.unsignedinteger):
        half_scale = 2.0 ** (8 * waveform.dtype.itemsize - 1)
        return ((waveform.astype(np.float64) - half_scale) / half_scale).astype(np.float32)
    if np.issubdtype(waveform.dtype, np.signedinteger):
        full_scale = 2.0 ** (8 * waveform.dtype.itemsize - 1)
        return (waveform.astype(np.float64) / full_scale).astype(np.float32)
    raise ValueError(f"Audio must be float or integer PCM, got an array of dtype {waveform.dtype}.")


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """`(samples,)`, `(channels, samples)` or `(samples, channels)` to `(samples,)` by averaging the channels."""
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise ValueError(
            f"Audio must be mono `(samples,)` or multi-channel `(channels, samples)` / `(samples, channels)`, got "
            f"shape {waveform.shape}."
        )
    channel_axis = 0 if waveform.shape[0] <= waveform.shape[1] else 1
    if waveform.shape[channel_axis] > MAX_CHANNELS:
        raise ValueError(
            f"Audio of shape {waveform.shape} would have {waveform.shape[channel_axis]} channels (the shorter axis); "
            f"at most {MAX_CHANNELS} are accepted. Pass several clips as a list of 1-D arrays, not one 2-D array."
        )
    return waveform.mean(axis=channel_axis)


def check_finite(waveform: np.ndarray, source: str) -> None:
    bad = np.flatnonzero(~np.isfinite(waveform))
    if bad.size:
        raise ValueError(
            f"Audio ({source}) has {bad.size} NaN/inf samples (first at index {bad[0]} of {waveform.size}); "
            "the model's outputs would be NaN."
        )


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    if orig_rate == target_rate:
        return waveform
    if not is_torchaudio_available():
        raise ImportError(
            f"Audio at {orig_rate} Hz must be resampled to {target_rate} Hz, which needs torchaudio "
            "(`pip install torchaudio`)."
        )
    return torchaudio_resample(torch.from_numpy(np.ascontiguousarray(waveform)), orig_rate, target_rate).numpy()


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """
    Samples one output frame of the convolutional feature encoder sees, i.e. the shortest input it accepts:
    `k_1 + sum_{i>1} (k_i - 1) * prod_{j<i} s_j` (400 for HuBERT-base's kernels (10,3,3,3,3,2,2), strides (5,2,...)).
    """
    field, jump = 1, 1  # `jump`: input samples between neighbouring positions of layer i's input
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def ffmpeg_decode(path: str, sampling_rate: int) -> np.ndarray:
    """Any file ffmpeg reads to mono float32 `(samples,)` at `sampling_rate` (channels averaged by `-ac 1`)."""
    url = "file:" + os.path.abspath(path)  # `file:` so that a name with a colon is never taken for a protocol
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", url]
    command += ["-vn", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise ValueError(
            "ffmpeg was not found; it is needed to read audio files (e.g. `apt install ffmpeg`)."
        ) from error
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1].removeprefix(f"{url}: ") if lines else f"exit status {result.returncode}"
        raise ValueError(f"ffmpeg: {reason}")
    return np.frombuffer(result.stdout, np.float32)


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of windows of `window` samples every `hop` samples; the last one ends with the recording."""
    if num_samples <= window:
        return [0]
    num_windows = math.ceil((num_samples - window) / hop) + 1
    return [min(i * hop, num_samples - window) for i in range(num_windows)]


class EmoDistillAudioClassificationPipeline(AudioClassificationPipeline, ChunkPipeline):
    """
    [`AudioClassificationPipeline`] that validates and normalises what users pass, and classifies long recordings in
    overlapping windows (see the module docstring for the accepted inputs and the aggregation).

    Extra arguments (at construction or per call):
        chunk_length_s (`float`, *optional*, defaults to 10):
            Window length in seconds. `0` classifies the whole recording in one forward pass (`None` means the
            default, as for every pipeline argument).
        stride_length_s (`float`, *optional*, defaults to 2):
            Overlap of consecutive windows in seconds; must be smaller than `chunk_length_s`.
        batch_size (`int`, *optional*, defaults to 1):
            Windows per forward pass (across recordings too, when a list is classified).

    Example:

    ```python
    >>> classifier = pipeline("audio-classification", model="path/to/student")
    >>> classifier({"raw": stereo_int16_44k, "sampling_rate": 44100}, chunk_length_s=8, batch_size=8)
    [{'score': 0.61, 'label': 'neutral'}, ...]
    ```
    """

    def _sanitize_parameters(self, top_k=None, function_to_apply=None, chunk_length_s=None, stride_length_s=None):
        _, _, postprocess_params = super()._sanitize_parameters(top_k=top_k, function_to_apply=function_to_apply)
        preprocess_params = {}
        if chunk_length_s is not None:
            preprocess_params["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            preprocess_params["stride_length_s"] = stride_length_s
        return preprocess_params, {}, postprocess_params

    def _decode(self, path: str, source: str) -> np.ndarray:
        """FFmpeg's decoding of `path`; a failure names the caller's input (`source`), not a temporary file."""
        try:
            return ffmpeg_decode(path, self.feature_extractor.sampling_rate)
        except ValueError as error:
            raise ValueError(f"Cannot decode audio {source} (not an audio file, or a damaged one): {error}") from error

    def load_waveform(self, inputs: Any) -> np.ndarray:
        """Any accepted input to a finite mono float32 waveform `(samples,)` at the feature extractor's rate."""
        target_rate = self.feature_extractor.sampling_rate
        source = "array"
        if isinstance(inputs, (str, os.PathLike)):
            path = os.fspath(inputs)
            source = f"file {path!r}"
            if not os.path.isfile(path):
                reason = "it is a folder" if os.path.isdir(path) else "no such file"
                raise ValueError(f"Cannot read audio {source}: {reason}.")
            inputs = self._decode(path, source)
        elif isinstance(inputs, bytes):
            source = "bytes"
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "audio")
                with open(path, "wb") as f:
                    f.write(inputs)
                inputs = self._decode(path, source)
        if (torchcodec := sys.modules.get("torchcodec")) and isinstance(inputs, torchcodec.decoders.AudioDecoder):
            samples = inputs.get_all_samples()
            inputs = {"array": samples.data, "sampling_rate": samples.sample_rate}

        sampling_rate = target_rate
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    'A dict input needs a "sampling_rate" and the waveform under "raw" or "array", got keys '
                    f"{sorted(inputs)}."
                )
            sampling_rate = inputs["sampling_rate"]
            inputs = inputs["raw"] if "raw" in inputs else inputs["array"]
            if (
                isinstance(sampling_rate, bool)
                or not isinstance(sampling_rate, (int, np.integer))
                or sampling_rate <= 0
            ):
                raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}.")
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise TypeError(
                f"Expected a file path, bytes, a NumPy array, a torch tensor or a dict, got {type(inputs).__name__}."
            )
        if inputs.size == 0:  # before the down-mix, which would turn `(2, 0)` into NaN
            raise ValueError(f"Empty audio ({source}): 0 samples, shape {inputs.shape}.")
        waveform = to_mono(pcm_to_float32(inputs))
        check_finite(waveform, source)
        return resample(waveform, int(sampling_rate), target_rate)

    @property
    def receptive_field(self) -> int:
        """Samples of the shortest input the model accepts (one frame of its convolutional feature encoder)."""
        return receptive_field(self.model.config.conv_kernel, self.model.config.conv_stride)

    def window_and_hop(self, chunk_length_s: float | None, stride_length_s: float) -> tuple[int, int] | None:
        """Window length and hop in samples, or `None` for no chunking; `ValueError` for settings that cannot work."""
        if not chunk_length_s:
            return None
        rate = self.feature_extractor.sampling_rate
        window = round(chunk_length_s * rate)
        hop = window - round(stride_length_s * rate)
        if window <= 0 or stride_length_s < 0 or hop <= 0:
            raise ValueError(
                f"Need chunk_length_s > stride_length_s >= 0, got chunk_length_s={chunk_length_s} and "
                f"stride_length_s={stride_length_s}."
            )
        if window < (field := self.receptive_field):
            raise ValueError(
                f"chunk_length_s={chunk_length_s} gives windows of {window} samples, shorter than the model's "
                f"receptive field of {field} samples; use chunk_length_s >= {field / rate:g}."
            )
        return window, hop

    def pad_to_receptive_field(self, processed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The feature extractor's `(1, samples)` outputs padded at the end up to the receptive field (module doc)."""
        missing = self.receptive_field - processed["input_values"].shape[-1]
        if missing <= 0:
            return processed
        padding_values = {"input_values": self.feature_extractor.padding_value, "attention_mask": 1}
        return {
            key: torch.nn.functional.pad(value, (0, missing), value=padding_values.get(key, 0))
            for key, value in processed.items()
        }

    def preprocess(self, inputs, chunk_length_s=DEFAULT_CHUNK_LENGTH_S, stride_length_s=DEFAULT_STRIDE_LENGTH_S):
        waveform = self.load_waveform(inputs)
        rate = self.feature_extractor.sampling_rate
        window, hop = self.window_and_hop(chunk_length_s, stride_length_s) or (waveform.size, waveform.size)
        starts = window_starts(waveform.size, window, hop)
        for i, start in enumerate(starts):
            processed = self.feature_extractor(
                waveform[start : start + window], sampling_rate=rate, return_tensors="pt"
            )
            if self.dtype is not None:
                processed = processed.to(dtype=self.dtype)
            processed = self.pad_to_receptive_field(dict(processed))
            # `(1,)`: `pad_collate_fn` concatenates 1-D tensors: a batch carries each item's length before its padding.
            num_samples = torch.tensor([processed["input_values"].shape[-1]])
            yield {"is_last": i == len(starts) - 1, "num_samples": num_samples, **processed}

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        num_samples = model_inputs.pop("num_samples")
        return {"is_last": is_last, "logits": self.logits_without_padding(model_inputs, num_samples.tolist())}

    def logits_without_padding(self, model_inputs: dict[str, torch.Tensor], num_samples: list[int]) -> torch.Tensor:
        """
        The model's logits `(batch, num_labels)` for a batch of `(batch, samples)` inputs zero-padded at the end,
        exactly as if each item had been run alone.

        Padding is harmless only when it is masked and nothing normalises across time: with an attention mask and a
        `"layer"` feature encoder the padded batch runs as is. Otherwise (no mask, or group norm, whose statistics
        span the padding) items of equal length run together, each group cut to its true length.
        """
        padding_is_masked = "attention_mask" in model_inputs and self.model.config.feat_extract_norm != "group"
        if padding_is_masked or len(set(num_samples)) == 1:
            return self.model(**model_inputs).logits
        logits = [None] * len(num_samples)
        for length in sorted(set(num_samples)):
            rows = [i for i, n in enumerate(num_samples) if n == length]
            index = torch.tensor(rows, device=model_inputs["input_values"].device)
            group = {key: value[index, :length] for key, value in model_inputs.items()}
            for row, row_logits in zip(rows, self.model(**group).logits):
                logits[row] = row_logits
        return torch.stack(logits)

    def postprocess(self, model_outputs, top_k=5, function_to_apply=None):
        if function_to_apply is None:
            if self.model.config.problem_type == "regression":
                function_to_apply = "none"
            elif self.model.config.problem_type == "multi_label_classification":
                function_to_apply = "sigmoid"
            else:
                function_to_apply = "softmax"
        logits = torch.cat([output["logits"] for output in model_outputs]).float()  # (windows, num_labels)
        if function_to_apply == "softmax":
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        scores, ids = scores.mean(0).topk(top_k)
        return [
            {"score": score, "label": self.model.config.id2label[i]} for score, i in zip(scores.tolist(), ids.tolist())
        ]


__all__ = ["EmoDistillAudioClassificationPipeline"]

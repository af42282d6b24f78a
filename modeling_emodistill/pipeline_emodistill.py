"""`pipeline("audio-classification")` for EmoDistill students: any PCM array, any rate, stereo, recordings of any length.

What the pipeline accepts (one input, or a list of them):

* a file path or the bytes of an audio file (decoded, down-mixed and resampled by ffmpeg);
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

Empty audio, NaN/inf samples and unreadable files raise a `ValueError` that names the problem (and the file).

This file ships to the hub next to the weights (``trust_remote_code``): it imports only numpy, torch and transformers.
"""

import math
import os
import sys
from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline, ffmpeg_read
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
            Window length in seconds. `None` or `0` classifies the whole recording in one forward pass.
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

    def load_waveform(self, inputs: Any) -> np.ndarray:
        """Any accepted input to a finite mono float32 waveform `(samples,)` at the feature extractor's rate."""
        target_rate = self.feature_extractor.sampling_rate
        source = "array"
        if isinstance(inputs, (str, os.PathLike)):
            source = f"file {os.fspath(inputs)!r}"
            try:
                with open(inputs, "rb") as f:
                    inputs = f.read()
            except OSError as error:
                raise ValueError(f"Cannot read audio {source}: {error}") from error
        if isinstance(inputs, bytes):
            source = "file" if source == "array" else source
            try:
                inputs = ffmpeg_read(inputs, target_rate)
            except ValueError as error:
                raise ValueError(f"Cannot decode audio {source} (not a readable audio file?): {error}") from error
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

    def preprocess(self, inputs, chunk_length_s=DEFAULT_CHUNK_LENGTH_S, stride_length_s=DEFAULT_STRIDE_LENGTH_S):
        waveform = self.load_waveform(inputs)
        rate = self.feature_extractor.sampling_rate
        if chunk_length_s:
            window = round(chunk_length_s * rate)
            hop = window - round(stride_length_s * rate)
            if window <= 0 or stride_length_s < 0 or hop <= 0:
                raise ValueError(
                    f"Need chunk_length_s > stride_length_s >= 0, got chunk_length_s={chunk_length_s} and "
                    f"stride_length_s={stride_length_s}."
                )
        else:
            window = hop = waveform.size
        starts = window_starts(waveform.size, window, hop)
        for i, start in enumerate(starts):
            processed = self.feature_extractor(
                waveform[start : start + window], sampling_rate=rate, return_tensors="pt"
            )
            if self.dtype is not None:
                processed = processed.to(dtype=self.dtype)
            yield {"is_last": i == len(starts) - 1, **processed}

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        return {"is_last": is_last, "logits": self.model(**model_inputs).logits}

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

"""Turn one value of a `datasets.Audio` column into a mono float32 waveform.

What `dataset[i]["audio"]` returns depends on the `datasets` version: `datasets>=4` decodes lazily and hands out a
`torchcodec.decoders.AudioDecoder`; older versions (and hand-built rows) give a dict `{"array", "sampling_rate"}`.
`decode_audio` accepts both so feature extractors do not have to care.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

# The rate of IEMOCAP's wavs, of HuBERT's input and of everything this project writes.
SAMPLING_RATE = 16_000


def decode_audio(example_audio: Any) -> tuple[np.ndarray, int]:
    """Decode one audio value to a mono waveform.

    Args:
        example_audio: a `torchcodec.decoders.AudioDecoder` (anything with `get_all_samples()`), or a mapping with
            keys `"array"` (shape `(samples,)` or `(channels, samples)`) and `"sampling_rate"`.

    Returns:
        `(waveform, sampling_rate)`: `waveform` is a float32 array of shape `(samples,)`; multi-channel audio is
        averaged over channels (the same down-mix `datasets.Audio(mono=True)` applies).

    Raises:
        TypeError: for any other kind of value (e.g. an undecoded `{"path", "bytes"}` dict from `Audio(decode=False)`).
    """
    if hasattr(example_audio, "get_all_samples"):
        samples = example_audio.get_all_samples()  # `.data` is a (channels, samples) tensor
        waveform = samples.data.detach().cpu().numpy()
        sampling_rate = samples.sample_rate
    elif isinstance(example_audio, Mapping) and "array" in example_audio and "sampling_rate" in example_audio:
        waveform = np.asarray(example_audio["array"])
        sampling_rate = example_audio["sampling_rate"]
    else:
        keys = f" with keys {sorted(example_audio)}" if isinstance(example_audio, Mapping) else ""
        raise TypeError(
            f"Cannot decode audio value of type {type(example_audio).__name__}{keys}: expected a torchcodec "
            "AudioDecoder or a dict with 'array' and 'sampling_rate' (is the column cast with Audio(decode=False)?)"
        )
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=0)
    elif waveform.ndim != 1:
        raise ValueError(f"Expected audio of shape (samples,) or (channels, samples), got shape {waveform.shape}")
    return waveform.astype(np.float32, copy=False), int(sampling_rate)

"""openSMILE eGeMAPS v02 low-level descriptors (LLDs): 25 acoustic descriptors every 10 ms.

Three pieces:

- `extract_egemaps(waveform, sampling_rate)`: one utterance -> float32 array of shape `(frames, 25)`.
- `add_egemaps(dataset)`: adds an `egemaps` column to a dataset with an `audio` column, in parallel and cached by
  `datasets`' fingerprint machinery (a second call on the same Arrow-backed dataset only reads the cache file); with
  `level_dbfs`, of every utterance brought to that RMS level first (`to_level`): descriptors of the voice without its
  recording level.
- `egemaps_statistics(train_dataset)`: per-descriptor mean / std over all frames of a fold's *training* split, used
  to z-normalise every split of that fold (never fit on validation or test data). The prosodic teacher keeps them as
  buffers; `EgemapsStatistics.normalize` and its JSON round trip (`to_dict` / `from_dict`) are public API for users
  who normalise descriptors outside it.

Clips shorter than `MIN_DURATION_S` (60 ms, the longest openSMILE analysis window of this feature set) are rejected
with a `ValueError` rather than padded: openSMILE fills such clips with one all-NaN frame, and zero-padding them would
produce descriptors of silence. No IEMOCAP utterance comes close to that length, so an error there means bad input.
"""

import functools
import hashlib
import logging
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import opensmile

from .audio import decode_audio

logger = logging.getLogger(__name__)

FEATURE_SET_NAME = "eGeMAPSv02"
# Bump when the extraction output changes (openSMILE configuration, validation, dtype): it is part of the cache
# fingerprint of `add_egemaps`, so bumping it invalidates every cached `egemaps` column.
EGEMAPS_EXTRACTION_VERSION = "1"

# The 25 LLDs in the column order openSMILE 2.6 returns them.
EGEMAPS_LLD_NAMES = (
    "Loudness_sma3",
    "alphaRatio_sma3",
    "hammarbergIndex_sma3",
    "slope0-500_sma3",
    "slope500-1500_sma3",
    "spectralFlux_sma3",
    "mfcc1_sma3",
    "mfcc2_sma3",
    "mfcc3_sma3",
    "mfcc4_sma3",
    "F0semitoneFrom27.5Hz_sma3nz",
    "jitterLocal_sma3nz",
    "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz",
    "logRelF0-H1-H2_sma3nz",
    "logRelF0-H1-A3_sma3nz",
    "F1frequency_sma3nz",
    "F1bandwidth_sma3nz",
    "F1amplitudeLogRelF0_sma3nz",
    "F2frequency_sma3nz",
    "F2bandwidth_sma3nz",
    "F2amplitudeLogRelF0_sma3nz",
    "F3frequency_sma3nz",
    "F3bandwidth_sma3nz",
    "F3amplitudeLogRelF0_sma3nz",
)
NUM_EGEMAPS_LLD = 25
MIN_DURATION_S = 0.06


def min_num_samples(sampling_rate: int) -> int:
    """Fewest samples openSMILE turns into at least one finite eGeMAPS frame: 60 ms, rounded up."""
    return -(-sampling_rate * 6 // 100)  # integer ceil: 0.06 * 16000 is 960.0000000000001 in floating point


@functools.cache
def _smile() -> opensmile.Smile:
    # Built lazily, once per process: `add_egemaps` workers then never pickle an openSMILE object.
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )
    if tuple(smile.feature_names) != EGEMAPS_LLD_NAMES:
        raise RuntimeError(
            f"openSMILE {opensmile.__version__} returns eGeMAPS LLDs {smile.feature_names}, expected "
            f"{list(EGEMAPS_LLD_NAMES)}: update EGEMAPS_LLD_NAMES and bump EGEMAPS_EXTRACTION_VERSION"
        )
    return smile


def extract_egemaps(waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
    """eGeMAPS v02 low-level descriptors of one mono utterance.

    Args:
        waveform: float array of shape `(samples,)`, amplitudes in [-1, 1].
        sampling_rate: samples per second (16 kHz in this project; openSMILE handles any rate).

    Returns:
        float32 array of shape `(frames, 25)`, columns in `EGEMAPS_LLD_NAMES` order, one frame per 10 ms:
        `frames = (samples - 50 ms) // 10 ms + 1` (about 96 frames for 1 s).

    Raises:
        ValueError: the waveform is not 1-D or not floating point, is empty, contains NaN/inf, or is shorter than
            `MIN_DURATION_S`; or the sampling rate is not a positive integer.
    """
    waveform = np.asarray(waveform)
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    if waveform.ndim != 1:
        raise ValueError(f"Expected a mono waveform of shape (samples,), got shape {waveform.shape}")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"Expected a floating-point waveform in [-1, 1], got dtype {waveform.dtype}")
    if waveform.size == 0:
        raise ValueError("Cannot extract eGeMAPS from an empty waveform (0 samples)")
    non_finite = np.flatnonzero(~np.isfinite(waveform))
    if non_finite.size:
        raise ValueError(
            f"Waveform contains {non_finite.size} NaN/inf samples (first at index {non_finite[0]}); "
            "openSMILE would silently turn them into finite but meaningless descriptors"
        )
    min_samples = min_num_samples(int(sampling_rate))
    if waveform.size < min_samples:
        raise ValueError(
            f"Waveform too short for eGeMAPS: {waveform.size} samples ({1000 * waveform.size / sampling_rate:.1f} ms) "
            f"< {min_samples} samples ({1000 * MIN_DURATION_S:.0f} ms, the longest analysis window) at "
            f"{sampling_rate} Hz"
        )
    features = _smile().process_signal(waveform.astype(np.float32, copy=False), int(sampling_rate))
    features = features.to_numpy(dtype=np.float32)
    if not np.isfinite(features).all():
        raise ValueError(f"openSMILE returned NaN/inf descriptors for a waveform of {waveform.size} samples")
    return features


def rms(waveform: np.ndarray) -> float:
    """The waveform's root mean square (summed in float64: one value whatever the waveform's dtype)."""
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def scale_to_rms(waveform: np.ndarray, target_rms: float) -> np.ndarray:
    """The waveform scaled so that its RMS is `target_rms` (float32, not clipped: eGeMAPS and the student read floats).

    Raises:
        ValueError: the target is not a positive finite number, or the waveform is silent (RMS 0: no gain reaches it).
    """
    if isinstance(target_rms, bool) or not (
        isinstance(target_rms, numbers.Real) and math.isfinite(target_rms) and target_rms > 0
    ):
        raise ValueError(f"A target RMS must be a positive finite number, got {target_rms!r}")
    waveform = np.asarray(waveform)
    current = rms(waveform)
    if current == 0:
        raise ValueError(
            f"Cannot bring a silent waveform ({waveform.size} samples, RMS 0) to RMS {target_rms:.3g} "
            f"({20 * math.log10(target_rms):.1f} dBFS)"
        )
    return (waveform * (target_rms / current)).astype(np.float32)


def to_level(waveform: np.ndarray, level_dbfs: float) -> np.ndarray:
    """The waveform scaled so that its RMS is `level_dbfs` dB relative to full scale (float32, not clipped).

    Raises:
        ValueError: the level is not a finite number <= 0 dBFS, or the waveform is silent (RMS 0: no gain reaches it).
    """
    check_level_dbfs(level_dbfs)
    return scale_to_rms(waveform, 10 ** (float(level_dbfs) / 20))  # float(): one gain whatever type the level came in


def check_level_dbfs(level_dbfs: float) -> None:
    """Raises `ValueError` unless `level_dbfs` is a finite number <= 0 (an RMS level relative to full scale)."""
    if isinstance(level_dbfs, bool) or not isinstance(level_dbfs, numbers.Real) or not math.isfinite(level_dbfs):
        raise ValueError(f"A level in dBFS must be a finite number, got {level_dbfs!r}")
    if level_dbfs > 0:
        raise ValueError(f"A level above full scale ({level_dbfs} dBFS > 0) would push samples outside [-1, 1]")


def egemaps_fingerprint(
    dataset_fingerprint: str, column: str, audio_column: str, level_dbfs: float | None = None
) -> str:
    """Deterministic fingerprint of `add_egemaps`'s output: same input dataset + extraction -> same cache file."""
    parts = [dataset_fingerprint, FEATURE_SET_NAME, EGEMAPS_EXTRACTION_VERSION, column, audio_column]
    if level_dbfs is not None:  # as recorded, the fingerprint of every column cached before the option
        parts.append(f"level_dbfs={float(level_dbfs)!r}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _egemaps_batch(
    audios: list[Any], indices: list[int], column: str, level_dbfs: float | None
) -> dict[str, list[np.ndarray]]:
    features = []
    for audio, index in zip(audios, indices):
        waveform, sampling_rate = decode_audio(audio)
        try:
            if level_dbfs is not None:
                waveform = to_level(waveform, level_dbfs)
            features.append(extract_egemaps(waveform, sampling_rate))
        except ValueError as error:
            raise ValueError(f"eGeMAPS extraction failed for example {index}: {error}") from error
    return {column: features}


def add_egemaps(
    dataset: datasets.Dataset,
    *,
    num_proc: int | None = None,
    batch_size: int = 16,
    column: str = "egemaps",
    audio_column: str = "audio",
    level_dbfs: float | None = None,
    load_from_cache_file: bool | None = None,
) -> datasets.Dataset:
    """Add a column of eGeMAPS LLDs, shape `(frames, 25)` float32 per example, computed from `audio_column`.

    The map has an explicit fingerprint (input fingerprint + feature set + extraction version + column names), so
    for a dataset backed by Arrow files (`load_from_disk`, `load_dataset`, or any earlier cached map) the result is
    written once next to those files and every later call, in any process, reloads it instead of recomputing. It does
    not depend on `num_proc` or `batch_size`: `datasets` reuses cache files written with another `num_proc`.

    Args:
        dataset: a dataset with an `audio_column` of type `datasets.Audio` (or of `{"array", "sampling_rate"}` dicts).
        num_proc: worker processes; `None` uses every CPU core (`os.cpu_count()`), 1 runs in this process.
        batch_size: examples per `map` batch (also the unit of progress reporting).
        column: name of the new column; must not exist yet.
        audio_column: name of the audio column.
        level_dbfs: if given, every utterance is first scaled to this RMS level (see `to_level`), so no descriptor
            carries how loud it was recorded; `None` (default) reads the audio as recorded.
        load_from_cache_file: passed to `Dataset.map`; `False` forces recomputation.

    Raises:
        ValueError: `audio_column` is missing, `column` already exists, `level_dbfs` is not a level (see `to_level`),
            or an example cannot be processed (the message names its index and the problem, see `extract_egemaps`).
    """
    if level_dbfs is not None:
        check_level_dbfs(level_dbfs)
    if audio_column not in dataset.column_names:
        raise ValueError(f"Dataset has no audio column {audio_column!r}; columns: {dataset.column_names}")
    if column in dataset.column_names:
        raise ValueError(f"Dataset already has a column {column!r}; remove it first or choose another name")
    if num_proc is None:
        num_proc = os.cpu_count() or 1
    # A one-process pool only adds start-up cost: datasets runs `num_proc=None` in the calling process.
    num_proc = min(num_proc, len(dataset))
    features = dataset.features.copy()
    features[column] = datasets.Array2D(shape=(None, NUM_EGEMAPS_LLD), dtype="float32")
    return dataset.map(
        _egemaps_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        input_columns=[audio_column],
        fn_kwargs={"column": column, "level_dbfs": level_dbfs},
        features=features,
        num_proc=num_proc if num_proc > 1 else None,
        new_fingerprint=egemaps_fingerprint(dataset._fingerprint, column, audio_column, level_dbfs),
        load_from_cache_file=load_from_cache_file,
        desc=f"{FEATURE_SET_NAME} LLDs",
    )


@dataclass(frozen=True)
class EgemapsStatistics:
    """Per-descriptor normalisation statistics of eGeMAPS LLDs.

    Attributes:
        mean: float32 array of shape `(25,)`.
        std: float32 array of shape `(25,)`, population std (ddof=0); a descriptor that is constant over the
            training frames (std below `min_std` in `egemaps_statistics`) gets std 1, i.e. it is only centred.
        num_frames: frames the statistics were computed from.
        num_utterances: utterances the statistics were computed from.
    """

    mean: np.ndarray
    std: np.ndarray
    num_frames: int
    num_utterances: int

    def __post_init__(self):
        for name in ("mean", "std"):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != (NUM_EGEMAPS_LLD,):
                raise ValueError(f"EgemapsStatistics.{name} must have shape ({NUM_EGEMAPS_LLD},), got {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"EgemapsStatistics.{name} contains NaN/inf: {value.tolist()}")
            object.__setattr__(self, name, value)
        if (self.std <= 0).any():
            raise ValueError(f"EgemapsStatistics.std must be positive, got {self.std.tolist()}")

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """Z-normalise LLDs: `(features - mean) / std`, shape `(..., 25)` -> same shape, float32."""
        features = np.asarray(features, dtype=np.float32)
        if features.shape[-1:] != (NUM_EGEMAPS_LLD,):
            raise ValueError(f"Expected eGeMAPS features of shape (..., {NUM_EGEMAPS_LLD}), got {features.shape}")
        return (features - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; `from_dict(to_dict())` round-trips exactly."""
        return {
            "feature_set": FEATURE_SET_NAME,
            "names": list(EGEMAPS_LLD_NAMES),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "num_frames": self.num_frames,
            "num_utterances": self.num_utterances,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EgemapsStatistics":
        if data.get("feature_set") != FEATURE_SET_NAME or list(data.get("names", [])) != list(EGEMAPS_LLD_NAMES):
            raise ValueError(
                f"Statistics are for feature set {data.get('feature_set')!r} with descriptors {data.get('names')}, "
                f"expected {FEATURE_SET_NAME!r} with {list(EGEMAPS_LLD_NAMES)}"
            )
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float32),
            std=np.asarray(data["std"], dtype=np.float32),
            num_frames=int(data["num_frames"]),
            num_utterances=int(data["num_utterances"]),
        )


def _iter_utterance_features(dataset: datasets.Dataset, column: str, batch_size: int) -> Iterable[np.ndarray]:
    # Only `column` is read (audio is never decoded), `batch_size` utterances at a time.
    table = dataset.select_columns([column]).with_format("numpy")
    for batch in table.iter(batch_size=batch_size):
        yield from batch[column]


def egemaps_statistics(
    train_dataset: datasets.Dataset, column: str = "egemaps", *, batch_size: int = 256, min_std: float = 1e-6
) -> EgemapsStatistics:
    """Mean and std of every eGeMAPS descriptor over all frames of all utterances of `train_dataset`.

    Pass the *training* split of a fold only: the same statistics then normalise its validation and test splits.
    Streams over the dataset, merging per-utterance moments in float64 (Chan et al.'s parallel variance update), so
    memory does not grow with the number of frames.

    Args:
        train_dataset: dataset with a `column` of `(frames, 25)` arrays (see `add_egemaps`).
        column: name of the eGeMAPS column.
        batch_size: utterances read from Arrow at a time.
        min_std: descriptors whose std is below this are constant over the training frames; their std is set to 1
            (the convention of scikit-learn's `StandardScaler`) so normalising only centres them, and a warning names
            them.

    Raises:
        ValueError: the column is missing, an utterance has the wrong shape or NaN/inf values (its index is named),
            or there are no frames at all.
    """
    if column not in train_dataset.column_names:
        raise ValueError(f"Dataset has no column {column!r}; columns: {train_dataset.column_names} (run add_egemaps)")
    num_frames = 0
    mean = np.zeros(NUM_EGEMAPS_LLD, dtype=np.float64)
    sum_squared_deviations = np.zeros(NUM_EGEMAPS_LLD, dtype=np.float64)
    num_utterances = 0
    for index, features in enumerate(_iter_utterance_features(train_dataset, column, batch_size)):
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != NUM_EGEMAPS_LLD:
            raise ValueError(f"Example {index}: expected {column!r} of shape (frames, 25), got {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError(f"Example {index}: {column!r} contains NaN/inf values")
        num_utterances += 1
        if len(features) == 0:
            continue
        utterance_frames = len(features)
        utterance_mean = features.mean(axis=0)
        delta = utterance_mean - mean
        total = num_frames + utterance_frames
        mean += delta * (utterance_frames / total)
        sum_squared_deviations += ((features - utterance_mean) ** 2).sum(axis=0)
        sum_squared_deviations += delta**2 * (num_frames * utterance_frames / total)
        num_frames = total
    if num_frames == 0:
        raise ValueError(f"No eGeMAPS frames in the {num_utterances} training utterances: cannot compute statistics")
    std = np.sqrt(sum_squared_deviations / num_frames)
    constant = std < min_std
    if constant.any():
        logger.warning(
            "eGeMAPS descriptors constant over %d training frames (std < %g), normalised by centring only: %s",
            num_frames,
            min_std,
            [name for name, is_constant in zip(EGEMAPS_LLD_NAMES, constant) if is_constant],
        )
        std[constant] = 1.0
    return EgemapsStatistics(mean=mean, std=std, num_frames=num_frames, num_utterances=num_utterances)

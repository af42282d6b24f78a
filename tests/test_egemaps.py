import json
import os
import shutil

import datasets
import numpy as np
import pytest
import soundfile as sf

from emodistill.data_scripts import egemaps
from emodistill.data_scripts.audio import decode_audio
from emodistill.data_scripts.egemaps import (
    EGEMAPS_LLD_NAMES,
    NUM_EGEMAPS_LLD,
    EgemapsStatistics,
    add_egemaps,
    egemaps_fingerprint,
    egemaps_statistics,
    extract_egemaps,
    rms,
    scale_to_rms,
    to_level,
)

SAMPLING_RATE = 16000
F0_SEMITONE = EGEMAPS_LLD_NAMES.index("F0semitoneFrom27.5Hz_sma3nz")


def harmonic_tone(duration_s: float, f0: float = 200.0, seed: int = 0) -> np.ndarray:
    """A voiced-like signal: f0 and 4 harmonics with falling amplitude, plus a little noise. Shape (samples,)."""
    time = np.arange(int(duration_s * SAMPLING_RATE)) / SAMPLING_RATE
    signal = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * time) for k in range(1, 6))
    noise = 0.01 * np.random.default_rng(seed).standard_normal(time.size)
    return (signal + noise).astype(np.float32)


@pytest.fixture(scope="module")
def saved_audio_dataset(tmp_path_factory):
    """Eight clips (0.3-1.0 s, different pitches), 6 train + 2 test, saved as Arrow: path of the saved folder."""
    root = tmp_path_factory.mktemp("egemaps")
    paths, splits = [], []
    for index in range(8):
        path = root / f"clip{index}.wav"
        sf.write(path, harmonic_tone(0.3 + 0.1 * index, f0=120.0 + 25 * index, seed=index), SAMPLING_RATE)
        paths.append(str(path))
        splits.append("test" if index >= 6 else "train")
    dataset = datasets.Dataset.from_dict({"audio": paths, "split": splits})
    dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE))
    dataset.save_to_disk(root / "dataset")
    return root / "dataset"


def load_copy(saved_dataset, destination) -> datasets.Dataset:
    """An Arrow-backed copy with its own cache folder (map cache files are written next to the Arrow files)."""
    shutil.copytree(saved_dataset, destination)
    return datasets.load_from_disk(str(destination))


def test_extract_shape_dtype_and_frame_rate():
    one_second = extract_egemaps(harmonic_tone(1.0), SAMPLING_RATE)
    two_seconds = extract_egemaps(harmonic_tone(2.0), SAMPLING_RATE)

    assert one_second.shape == (96, NUM_EGEMAPS_LLD)  # (16000 - 800) // 160 + 1
    assert one_second.dtype == np.float32 and np.isfinite(one_second).all()
    assert len(two_seconds) - len(one_second) == 100  # 10 ms hop
    # Columns are in EGEMAPS_LLD_NAMES order: the pitch column recovers the 200 Hz tone.
    expected_semitone = 12 * np.log2(200.0 / 27.5)
    assert np.median(one_second[:, F0_SEMITONE]) == pytest.approx(expected_semitone, abs=0.5)
    assert len(EGEMAPS_LLD_NAMES) == NUM_EGEMAPS_LLD == 25


def test_extract_accepts_the_shortest_clip_and_float64():
    features = extract_egemaps(harmonic_tone(0.06).astype(np.float64), SAMPLING_RATE)  # 960 samples
    assert features.shape == (2, NUM_EGEMAPS_LLD) and features.dtype == np.float32
    assert np.isfinite(features).all()


@pytest.mark.parametrize(
    ("waveform", "sampling_rate", "message"),
    [
        (np.zeros(0, dtype=np.float32), SAMPLING_RATE, "empty waveform"),
        (harmonic_tone(0.06)[:959], SAMPLING_RATE, r"too short for eGeMAPS: 959 samples \(59.9 ms\) < 960 samples"),
        (np.zeros(100, dtype=np.float32), 8000, "too short for eGeMAPS: 100 samples .* < 480 samples"),
        (np.where(np.arange(16000) == 7, np.nan, harmonic_tone(1.0)), SAMPLING_RATE, "1 NaN/inf samples .*index 7"),
        (np.stack([harmonic_tone(1.0)] * 2), SAMPLING_RATE, r"mono waveform of shape \(samples,\), got shape \(2, "),
        ((harmonic_tone(1.0) * 2**15).astype(np.int16), SAMPLING_RATE, "floating-point waveform .* int16"),
        (harmonic_tone(1.0), 0, "sampling_rate must be a positive integer, got 0"),
        (harmonic_tone(1.0), 16000.0, "sampling_rate must be a positive integer, got 16000.0"),
    ],
)
def test_extract_rejects_bad_input(waveform, sampling_rate, message):
    with pytest.raises(ValueError, match=message):
        extract_egemaps(waveform, sampling_rate)


def test_decode_audio_handles_decoders_and_dicts(saved_audio_dataset):
    audio = datasets.load_from_disk(str(saved_audio_dataset))[0]["audio"]
    assert hasattr(audio, "get_all_samples")  # datasets >= 4: a torchcodec AudioDecoder
    waveform, sampling_rate = decode_audio(audio)
    assert waveform.shape == (int(0.3 * SAMPLING_RATE),) and waveform.dtype == np.float32
    assert sampling_rate == SAMPLING_RATE
    np.testing.assert_allclose(waveform, harmonic_tone(0.3, f0=120.0, seed=0), atol=1e-4)  # 16-bit wav

    stereo = np.stack([np.ones(4), np.zeros(4)])
    waveform, sampling_rate = decode_audio({"array": stereo, "sampling_rate": 8000})
    np.testing.assert_array_equal(waveform, np.full(4, 0.5, dtype=np.float32))
    assert sampling_rate == 8000 and waveform.dtype == np.float32

    with pytest.raises(TypeError, match=r"dict with keys \['bytes', 'path'\].*Audio\(decode=False\)"):
        decode_audio({"path": "a.wav", "bytes": None})


def test_add_egemaps_values_and_cache_reuse(saved_audio_dataset, tmp_path, monkeypatch):
    dataset = load_copy(saved_audio_dataset, tmp_path / "dataset")
    calls = []

    def counting_extract(waveform, sampling_rate):
        calls.append(len(waveform))
        return extract_egemaps(waveform, sampling_rate)

    monkeypatch.setattr(egemaps, "extract_egemaps", counting_extract)
    first = add_egemaps(dataset, num_proc=1, batch_size=3)
    assert len(calls) == len(dataset)
    cache_files_after_first = sorted(os.listdir(tmp_path / "dataset"))

    second = add_egemaps(datasets.load_from_disk(str(tmp_path / "dataset")), num_proc=1, batch_size=5)
    assert len(calls) == len(dataset)  # nothing recomputed, whatever the batch size
    assert sorted(os.listdir(tmp_path / "dataset")) == cache_files_after_first
    assert second._fingerprint == first._fingerprint == egemaps_fingerprint(dataset._fingerprint, "egemaps", "audio")
    assert second.cache_files == first.cache_files

    assert first.features["egemaps"] == datasets.Array2D(shape=(None, NUM_EGEMAPS_LLD), dtype="float32")
    assert first.column_names == ["audio", "split", "egemaps"]
    rows = first.with_format("numpy")
    for index in range(len(dataset)):
        expected = extract_egemaps(*decode_audio(dataset[index]["audio"]))
        np.testing.assert_array_equal(rows[index]["egemaps"], expected)
        assert rows[index]["egemaps"].shape == ((int((0.3 + 0.1 * index) * SAMPLING_RATE) - 800) // 160 + 1, 25)


def test_add_egemaps_two_processes_match_one(saved_audio_dataset, tmp_path):
    one_process = add_egemaps(load_copy(saved_audio_dataset, tmp_path / "one"), num_proc=1)
    two_processes = add_egemaps(load_copy(saved_audio_dataset, tmp_path / "two"), num_proc=2)

    assert two_processes._fingerprint == one_process._fingerprint
    assert sorted(name for name in os.listdir(tmp_path / "two") if name.startswith("cache-")) == [
        f"cache-{one_process._fingerprint}_{rank:05d}_of_00002.arrow" for rank in range(2)
    ]
    one_values = one_process.with_format("numpy")["egemaps"]
    two_values = two_processes.with_format("numpy")["egemaps"]
    assert len(one_values) == len(two_values) == 8
    for one, two in zip(one_values, two_values):
        np.testing.assert_array_equal(one, two)


def test_add_egemaps_reports_the_failing_example_and_bad_columns():
    clips = [harmonic_tone(0.2), harmonic_tone(0.05)]
    dataset = datasets.Dataset.from_dict(
        {"audio": [{"array": clip, "sampling_rate": SAMPLING_RATE} for clip in clips]}
    ).cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE))
    with pytest.raises(ValueError, match="example 1: Waveform too short for eGeMAPS: 800 samples"):
        add_egemaps(dataset, num_proc=1)
    with pytest.raises(ValueError, match="no audio column 'speech'"):
        add_egemaps(dataset, audio_column="speech")
    with pytest.raises(ValueError, match="already has a column 'audio'"):
        add_egemaps(dataset, column="audio")


def rms_dbfs(waveform: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def test_rms_and_scale_to_rms_by_hand():
    samples = np.array([3, -4, 0, 0], dtype=np.float32)
    assert rms(samples) == np.sqrt(25 / 4) == 2.5  # sqrt((9 + 16 + 0 + 0) / 4)
    np.testing.assert_array_equal(scale_to_rms(samples, 0.5), np.array([0.6, -0.8, 0, 0], dtype=np.float32))
    assert scale_to_rms(samples.astype(np.int16), 0.5).dtype == np.float32  # whatever came in
    with pytest.raises(ValueError, match=r"silent waveform \(4 samples, RMS 0\) to RMS 0.5 \(-6.0 dBFS\)"):
        scale_to_rms(np.zeros(4, dtype=np.float32), 0.5)
    for target in (0, -0.5, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match="positive finite number"):
            scale_to_rms(samples, target)


def test_to_level_sets_the_rms_and_refuses_what_it_cannot_scale():
    tone = harmonic_tone(0.5)
    gain_to_minus_20 = 0.1 / np.sqrt(np.mean(np.square(tone, dtype=np.float64)))  # -20 dBFS is an RMS of 0.1
    np.testing.assert_allclose(to_level(tone, -20), tone * gain_to_minus_20, rtol=1e-6)
    for level in (-40.0, -23, -3.0):
        scaled = to_level(tone, level)
        assert scaled.dtype == np.float32 and rms_dbfs(scaled) == pytest.approx(level, abs=1e-5)
    with pytest.raises(ValueError, match=r"silent waveform \(8000 samples, RMS 0\) to RMS 0.0708 \(-23.0 dBFS\)"):
        to_level(np.zeros(8000, dtype=np.float32), -23)
    with pytest.raises(ValueError, match=r"above full scale \(1.0 dBFS > 0\)"):
        to_level(tone, 1.0)
    assert to_level(tone, np.float32(-20)).tobytes() == to_level(tone, -20).tobytes()  # any real number
    for level in (float("nan"), float("-inf"), True, "-23", None):
        with pytest.raises(ValueError, match="must be a finite number"):
            to_level(tone, level)


def test_add_egemaps_at_one_level_removes_the_recording_gain():
    tone = harmonic_tone(0.5)
    clips = [tone, 0.25 * tone, np.zeros_like(tone)]  # an utterance, the same recorded 12 dB quieter, silence
    dataset = datasets.Dataset.from_dict(
        {"audio": [{"array": clip, "sampling_rate": SAMPLING_RATE} for clip in clips]}
    ).cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE))
    loudness = EGEMAPS_LLD_NAMES.index("Loudness_sma3")
    recorded = add_egemaps(dataset.select(range(2)), num_proc=1).with_format("numpy")["egemaps"]
    levelled = add_egemaps(dataset.select(range(2)), num_proc=1, level_dbfs=-23).with_format("numpy")["egemaps"]
    assert recorded[1][:, loudness].mean() < 0.5 * recorded[0][:, loudness].mean()  # as recorded: quieter
    # At one level, the same utterance (but for the quieter copy's coarser 16-bit samples in the Audio column).
    assert levelled[1][:, loudness].mean() == pytest.approx(levelled[0][:, loudness].mean(), rel=1e-3)
    waveform, rate = decode_audio(dataset[0]["audio"])
    np.testing.assert_array_equal(levelled[0], extract_egemaps(to_level(waveform, -23), rate))
    assert not np.array_equal(levelled[0], recorded[0])  # the tone is recorded at about -18 dBFS, not -23
    # Its own cache file: the level is part of the fingerprint (and as recorded the fingerprint is the one before).
    fingerprints = {egemaps_fingerprint("x", "egemaps", "audio", level) for level in (None, -23, -23.0, -20)}
    assert len(fingerprints) == 3 and egemaps_fingerprint("x", "egemaps", "audio") in fingerprints
    with pytest.raises(ValueError, match="example 2: Cannot bring a silent waveform"):
        add_egemaps(dataset, num_proc=1, level_dbfs=-23)
    with pytest.raises(ValueError, match="above full scale"):
        add_egemaps(dataset, level_dbfs=6)


def test_statistics_from_the_train_split_only(saved_audio_dataset, tmp_path):
    dataset = add_egemaps(load_copy(saved_audio_dataset, tmp_path / "dataset"), num_proc=1)
    train = dataset.filter(lambda split: split == "train", input_columns="split")
    statistics = egemaps_statistics(train, batch_size=4)

    train_frames = np.concatenate(train.with_format("numpy")["egemaps"])
    all_frames = np.concatenate(dataset.with_format("numpy")["egemaps"])
    assert statistics.num_utterances == 6 and statistics.num_frames == len(train_frames)
    np.testing.assert_allclose(statistics.mean, train_frames.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.std, train_frames.astype(np.float64).std(axis=0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(statistics.mean, all_frames.mean(axis=0))  # the test clips are not in the statistics

    normalized = statistics.normalize(train_frames)
    assert normalized.shape == train_frames.shape and normalized.dtype == np.float32
    np.testing.assert_allclose(normalized.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=0), 1.0, rtol=1e-4)

    restored = EgemapsStatistics.from_dict(json.loads(json.dumps(statistics.to_dict())))
    np.testing.assert_array_equal(restored.mean, statistics.mean)
    np.testing.assert_array_equal(restored.std, statistics.std)
    assert (restored.num_frames, restored.num_utterances) == (statistics.num_frames, statistics.num_utterances)


def test_statistics_centre_constant_descriptors_and_reject_bad_values(caplog):
    frames = np.random.default_rng(0).standard_normal((2, 10, NUM_EGEMAPS_LLD)).astype(np.float32)
    frames[:, :, 3] = 7.0
    features = datasets.Features({"egemaps": datasets.Array2D(shape=(None, NUM_EGEMAPS_LLD), dtype="float32")})
    dataset = datasets.Dataset.from_dict({"egemaps": list(frames)}, features=features)

    statistics = egemaps_statistics(dataset)
    assert statistics.mean[3] == pytest.approx(7.0) and statistics.std[3] == 1.0
    assert "slope0-500_sma3" in caplog.text
    np.testing.assert_allclose(statistics.normalize(frames)[..., 3], 0.0)

    frames[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match="Example 1: 'egemaps' contains NaN/inf"):
        egemaps_statistics(datasets.Dataset.from_dict({"egemaps": list(frames)}, features=features))
    with pytest.raises(ValueError, match="no column 'egemaps'"):
        egemaps_statistics(datasets.Dataset.from_dict({"x": [1]}))
    with pytest.raises(ValueError, match="expected 'eGeMAPSv02'"):
        EgemapsStatistics.from_dict({**statistics.to_dict(), "feature_set": "ComParE_2016"})
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 25\), got \(3, 24\)"):
        statistics.normalize(np.zeros((3, 24)))

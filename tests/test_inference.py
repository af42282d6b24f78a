"""Robust inference: `pipeline("audio-classification")` on what users actually pass (`emodistill-predict`:
test_predict_cli.py)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from transformers import (
    AudioClassificationPipeline,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
    pipeline,
)

from emodistill.modeling_emodistill import EmoDistillAudioClassificationPipeline, EmoDistillForAudioClassification
from emodistill.modeling_emodistill.pipeline_emodistill import receptive_field

from tiny_models import BLOCK_PROJECT_IMPORTS, LABELS, feature_extractor, tiny_student

RATE = 16_000


@pytest.fixture(scope="module")
def classifier(saved_student):
    return pipeline("audio-classification", model=str(saved_student))


@pytest.fixture(scope="module")
def model(saved_student):
    return EmoDistillForAudioClassification.from_pretrained(saved_student).eval()


def probabilities(model, waveform: np.ndarray) -> torch.Tensor:
    """The model's class probabilities `(num_labels,)` of one 16 kHz mono float waveform, no pipeline involved."""
    inputs = feature_extractor()(waveform, sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)[0]


def as_dict(predictions) -> dict[str, float]:
    return {p["label"]: p["score"] for p in predictions}


def assert_scores(predictions, expected: torch.Tensor, rel=1e-4):
    scores = as_dict(predictions)
    assert set(scores) == set(LABELS)
    for i, label in enumerate(LABELS):
        assert scores[label] == pytest.approx(expected[i].item(), rel=rel), label


def speech_like(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Band-limited noise with a slow envelope, amplitude well inside [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    carrier = np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size)
    return (0.3 * carrier * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_emodistill_models_get_the_emodistill_pipeline_and_other_models_the_stock_one(classifier):
    assert type(classifier) is EmoDistillAudioClassificationPipeline
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, conv_dim=(8, 8),
        conv_stride=(4, 4), conv_kernel=(8, 8), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
        num_labels=3,
    )  # fmt: skip
    other = pipeline(
        "audio-classification", model=Wav2Vec2ForSequenceClassification(config), feature_extractor=feature_extractor()
    )
    assert type(other) is AudioClassificationPipeline


def test_float32_and_float64_at_16khz_match_the_model(classifier, model):
    waveform = speech_like(2.0)
    assert_scores(classifier(waveform, top_k=None), probabilities(model, waveform))
    assert_scores(classifier(waveform.astype(np.float64), top_k=None), probabilities(model, waveform))
    assert_scores(classifier(torch.from_numpy(waveform), top_k=None), probabilities(model, waveform))


def test_int16_pcm_is_scaled_to_full_scale(classifier, model):
    waveform = speech_like(2.0)
    pcm = np.round(waveform * 32768).astype(np.int16)
    # Wrong scaling (raw integers) would still give finite scores after per-utterance normalisation; the quantised
    # float waveform must match to rounding precision, so compare against that.
    assert_scores(classifier(pcm, top_k=None), probabilities(model, pcm.astype(np.float32) / 32768))
    assert_scores(classifier(pcm.astype(np.int32) * 65536, top_k=None), probabilities(model, pcm / 32768))


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stereo_is_averaged_in_both_layouts(classifier, model, layout):
    left, right = speech_like(2.0, seed=1), speech_like(2.0, seed=2)
    stereo = np.stack([left, right]) if layout == "channels_first" else np.stack([left, right], axis=1)
    assert_scores(classifier(stereo, top_k=None), probabilities(model, (left + right) / 2))


def test_too_many_channels_is_rejected(classifier):
    with pytest.raises(ValueError, match="at most 8 are accepted"):
        classifier(np.zeros((16, 20_000), dtype=np.float32))


@pytest.mark.parametrize("rate", [8_000, 44_100])
def test_other_sampling_rates_are_resampled_to_16khz(classifier, model, rate):
    waveform = speech_like(2.0, rate=rate)
    expected = torchaudio.functional.resample(torch.from_numpy(waveform), rate, RATE).numpy()
    assert_scores(classifier({"raw": waveform, "sampling_rate": rate}, top_k=None), probabilities(model, expected))
    # int16 stereo at 44.1 kHz, `datasets`-style key: every conversion at once.
    pcm = np.round(np.stack([waveform, waveform], axis=1) * 32767).astype(np.int16)
    expected = torchaudio.functional.resample(torch.from_numpy(pcm[:, 0] / 32768).float(), rate, RATE).numpy()
    assert_scores(
        classifier({"array": pcm, "sampling_rate": rate}, top_k=None), probabilities(model, expected), rel=1e-3
    )


def test_windows_are_averaged_as_documented(classifier, model):
    waveform = speech_like(6.0)
    predictions = classifier(waveform, top_k=None, chunk_length_s=2, stride_length_s=0.5)
    # 2 s windows every 1.5 s, the last moved back to end with the recording: starts at 0, 1.5, 3 and 4 s.
    windows = [waveform[int(start * RATE) : int((start + 2) * RATE)] for start in (0, 1.5, 3, 4)]
    assert_scores(predictions, torch.stack([probabilities(model, w) for w in windows]).mean(0))
    # No chunking: one forward pass over the whole recording.
    assert_scores(classifier(waveform, top_k=None, chunk_length_s=0), probabilities(model, waveform))


@pytest.fixture
def one_thread():
    """Intra-op threads spin against any other busy process on a small machine (30x slower seen on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ten_minute_recording_runs_in_bounded_windows_and_batches(one_thread):
    # A coarser feature encoder than the shared tiny student: 10 minutes of audio in well under a second.
    model = tiny_student(conv_dim=(8, 8, 8), conv_stride=(10, 8, 4), conv_kernel=(10, 8, 4)).eval()
    calls = []
    forward = model.forward

    def recording_forward(input_values, **kwargs):
        calls.append(tuple(input_values.shape))
        return forward(input_values, **kwargs)

    model.forward = recording_forward
    classifier = pipeline("audio-classification", model=model, feature_extractor=feature_extractor())
    recording = np.random.default_rng(0).uniform(-0.5, 0.5, 600 * RATE).astype(np.float32)
    predictions = classifier(recording, chunk_length_s=2, stride_length_s=0.5, batch_size=16)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, rel=1e-5)
    expected_windows = int(np.ceil((600 - 2) / 1.5)) + 1  # 400
    assert sum(batch for batch, _ in calls) == expected_windows
    assert {samples for _, samples in calls} == {2 * RATE}
    assert max(batch for batch, _ in calls) == 16
    assert len(calls) == int(np.ceil(expected_windows / 16))


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros(0, dtype=np.float32), "Empty audio"),
        (np.zeros((2, 0), dtype=np.int16), "Empty audio"),
        (np.array([0.1, np.nan, 0.2] * 2000, dtype=np.float32), "2000 NaN/inf samples .first at index 1 of 6000"),
        (np.array([0.1, 0.2, -np.inf], dtype=np.float32), "1 NaN/inf samples .first at index 2 "),
        ({"raw": np.zeros(100, dtype=np.float32)}, 'needs a "sampling_rate"'),
        ({"raw": np.zeros(100, dtype=np.float32), "sampling_rate": 0}, "positive integer"),
        (np.zeros(100, dtype=np.complex64), "float or integer PCM"),
        (np.zeros((2, 3, 100), dtype=np.float32), "got shape \\(2, 3, 100\\)"),
    ],
)
def test_bad_arrays_are_clear_errors(classifier, audio, message):
    with pytest.raises(ValueError, match=message):
        classifier(audio)


def test_unreadable_and_missing_files_are_errors_naming_the_file(classifier, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    with pytest.raises(ValueError, match="broken.wav"):
        classifier(str(broken))
    with pytest.raises(ValueError, match="missing.flac"):
        classifier(str(tmp_path / "missing.flac"))


def test_audio_files_are_decoded_downmixed_and_resampled(classifier, model, tmp_path):
    waveform = speech_like(2.0, rate=RATE)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([waveform, waveform], axis=1), RATE, subtype="FLOAT")
    assert_scores(classifier(str(path), top_k=None), probabilities(model, waveform), rel=1e-3)


def test_audio_bytes_and_m4a_with_its_index_at_the_end_are_decoded(classifier, tmp_path):
    # ffmpeg's mp4 muxer writes the index (moov) after the audio; read from a pipe, such a file over ~10 s fails.
    m4a = tmp_path / "long.m4a"
    encode = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=220:duration=12"]
    result = subprocess.run([*encode, "-ar", str(RATE), "-c:a", "aac", str(m4a)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode AAC: {result.stderr.strip()[-200:]}")
    waveform = classifier.load_waveform(str(m4a))
    assert abs(waveform.size - 12 * RATE) < 0.1 * RATE
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(waveform.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(220, abs=1)
    np.testing.assert_array_equal(classifier.load_waveform(m4a.read_bytes()), waveform)
    assert as_dict(classifier(m4a.read_bytes(), top_k=None)) == as_dict(classifier(str(m4a), top_k=None))


HUBERT_BASE_ENCODER = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))


@pytest.mark.parametrize(
    "encoder, expected",
    [(HUBERT_BASE_ENCODER, 400), (dict(conv_dim=(32,) * 3, conv_kernel=(8, 8, 8), conv_stride=(4, 4, 4)), 148)],
)
def test_receptive_field_is_the_shortest_input_the_feature_encoder_accepts(encoder, expected):
    assert receptive_field(encoder["conv_kernel"], encoder["conv_stride"]) == expected
    encoder_model = tiny_student(**encoder).hubert.feature_extractor
    with torch.no_grad():
        assert encoder_model(torch.zeros(1, expected)).shape[-1] == 1
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            encoder_model(torch.zeros(1, expected - 1))


def student_pipeline(norm: str, attention_mask: bool, **encoder) -> EmoDistillAudioClassificationPipeline:
    """A tiny student whose feature encoder normalises with `norm` ("layer", or "group" as HuBERT-base), served with a
    feature extractor that returns an attention mask (as the layer-norm HuBERTs') or not (as HuBERT-base's)."""
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=attention_mask
    )
    model = tiny_student(feat_extract_norm=norm, **encoder).eval()
    return pipeline("audio-classification", model=model, feature_extractor=extractor)


@pytest.mark.parametrize("norm, attention_mask", [("layer", True), ("group", False)])
@pytest.mark.parametrize("num_samples", [160, 399, 400], ids=["10ms", "one_short_of_the_field", "the_field"])
def test_clips_shorter_than_the_receptive_field_are_padded_at_the_end(norm, attention_mask, num_samples):
    classifier = student_pipeline(norm, attention_mask, **HUBERT_BASE_ENCODER)
    assert classifier.receptive_field == 400
    clip = speech_like(1.0, seed=num_samples)[:num_samples]
    inputs = classifier.feature_extractor(clip, sampling_rate=RATE, return_tensors="pt")  # normalised as it is

    def probabilities_padded(left: int, right: int) -> torch.Tensor:
        padded = {"input_values": torch.nn.functional.pad(inputs["input_values"], (left, right))}
        if "attention_mask" in inputs:  # the silence counts as audio: it is the only frame there is
            padded["attention_mask"] = torch.ones_like(padded["input_values"], dtype=torch.long)
        with torch.no_grad():
            return classifier.model(**padded).logits.softmax(-1)[0]

    expected = probabilities_padded(0, 400 - num_samples)
    predictions = classifier(clip, top_k=None)
    assert_scores(predictions, expected, rel=1e-5)
    if num_samples < 400:  # the side matters: silence first gives other scores
        other_side = probabilities_padded(400 - num_samples, 0)
        assert not torch.allclose(expected, other_side, atol=1e-5)


def test_windows_shorter_than_the_receptive_field_are_rejected(classifier):
    with pytest.raises(ValueError, match="shorter than the model's receptive field of 148 samples"):
        classifier(speech_like(1.0), chunk_length_s=0.005, stride_length_s=0)


@pytest.mark.parametrize(
    "norm, attention_mask", [("layer", True), ("group", False), ("group", True), ("layer", False)]
)
def test_batches_give_the_scores_of_one_recording_at_a_time(norm, attention_mask):
    """Only a masked layer-norm student may see padding; HuBERT-base's arrangement (group norm, no attention mask)
    must not: group norm's statistics span the padded samples, and unmasked padding is pooled. Short clips, windows
    of long recordings and clips between them share batches here."""
    classifier = student_pipeline(norm, attention_mask)
    seconds = (0.005, 148 / RATE, 0.3, 3.3, 1.2, 6.0, 0.01)  # 2 s windows: 1 or several per recording
    clips = [speech_like(s, seed=i) for i, s in enumerate(seconds)]
    calls = []
    forward = classifier.model.forward

    def recording_forward(input_values, **kwargs):
        calls.append(tuple(input_values.shape))
        return forward(input_values, **kwargs)

    classifier.model.forward = recording_forward
    one_by_one = classifier(clips, batch_size=1, top_k=None, chunk_length_s=2, stride_length_s=0.5)
    assert all(batch == 1 for batch, _ in calls)
    calls.clear()
    batched = classifier(clips, batch_size=4, top_k=None, chunk_length_s=2, stride_length_s=0.5)
    assert max(batch for batch, _ in calls) > 1
    for batch_predictions, predictions in zip(batched, one_by_one, strict=True):
        expected = as_dict(predictions)
        for label, score in as_dict(batch_predictions).items():
            assert score == pytest.approx(expected[label], abs=1e-5)


HUB_USER = BLOCK_PROJECT_IMPORTS + textwrap.dedent(
    """
    import numpy as np
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=sys.argv[1], trust_remote_code=True)
    rng = np.random.default_rng(0)
    stereo = (rng.uniform(-0.3, 0.3, (2, 44_100 * 25)) * 32767).astype(np.int16)
    predictions = classifier({"raw": stereo, "sampling_rate": 44_100}, top_k=None, batch_size=2)
    try:
        classifier(np.zeros(0, dtype=np.float32))
        error = None
    except ValueError as e:
        error = str(e)
    print(json.dumps({
        "predictions": predictions,
        "pipeline_class": type(classifier).__module__ + "." + type(classifier).__name__,
        "empty_error": error,
        "project_modules": sorted(m for m in sys.modules if m.startswith("emodistill")),
    }))
    """
)


def test_hub_user_gets_the_emodistill_pipeline_with_remote_code(saved_student, classifier, tmp_path):
    assert (saved_student / "pipeline_emodistill.py").exists()
    assert json.loads((saved_student / "config.json").read_text())["custom_pipelines"]["audio-classification"][
        "impl"
    ] == ("pipeline_emodistill.EmoDistillAudioClassificationPipeline")
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", HUB_USER, str(saved_student)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    assert report["pipeline_class"].startswith("transformers_modules.")
    assert report["pipeline_class"].endswith("pipeline_emodistill.EmoDistillAudioClassificationPipeline")
    assert "Empty audio" in report["empty_error"]
    rng = np.random.default_rng(0)
    stereo = (rng.uniform(-0.3, 0.3, (2, 44_100 * 25)) * 32767).astype(np.int16)
    expected = as_dict(classifier({"raw": stereo, "sampling_rate": 44_100}, top_k=None))
    for p in report["predictions"]:
        assert p["score"] == pytest.approx(expected[p["label"]], rel=1e-5)

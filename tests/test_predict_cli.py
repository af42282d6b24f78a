"""`emodistill-predict` on files and folders of what users actually have, and on the mistakes they make."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification, pipeline

from emodistill.modeling_emodistill import EmoDistillAudioClassificationPipeline, EmoDistillForAudioClassification
from emodistill.trainers import predict
from emodistill.trainers.predict import AUDIO_EXTENSIONS, main

from tiny_models import LABELS, feature_extractor

RATE = 16_000


@pytest.fixture(scope="module")
def model(saved_student):
    return EmoDistillForAudioClassification.from_pretrained(saved_student).eval()


@pytest.fixture(scope="module")
def classifier(saved_student):
    return pipeline("audio-classification", model=str(saved_student))


def probabilities(model, waveform: np.ndarray) -> torch.Tensor:
    """The model's class probabilities `(num_labels,)` of one 16 kHz mono float waveform, no pipeline involved."""
    inputs = feature_extractor()(waveform, sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)[0]


def speech_like(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A 220 Hz carrier with noise and a slow envelope, amplitude well inside [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    carrier = np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size)
    return (0.3 * carrier * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speech_like(seconds, seed=seed), RATE)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`main(argv)` in this process: exit status, stdout, stderr."""
    capsys.readouterr()  # what the test's set-up printed
    try:
        main([str(arg) for arg in argv])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_dict(predictions) -> dict[str, float]:
    return {p["label"]: p["score"] for p in predictions}


def test_cli_json_in_a_subprocess(saved_student, tmp_path, model):
    waveform = speech_like(3.0, rate=44_100)
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.stack([waveform, waveform], axis=1), 44_100, subtype="PCM_16")
    flac = tmp_path / "short.flac"
    sf.write(flac, speech_like(1.0), RATE)
    command = [sys.executable, "-m", "emodistill.trainers.predict", "--model", str(saved_student), "--json"]
    result = subprocess.run([*command, "--top_k", "2", str(wav), str(flac)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [str(wav), str(flac)]
    assert all(len(r["predictions"]) == 2 for r in report)
    decoded, rate = sf.read(wav, dtype="float32")
    mono = torchaudio.functional.resample(torch.from_numpy(decoded.mean(1)), rate, RATE).numpy()
    expected = probabilities(model, mono)
    for p in report[0]["predictions"]:
        assert p["score"] == pytest.approx(expected[LABELS.index(p["label"])].item(), rel=1e-3)


def encode(source: Path, target: Path, codec: str) -> None:
    """`source` re-encoded by ffmpeg; the test is skipped, saying why, if this ffmpeg lacks the encoder."""
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(source), "-c:a", codec, str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {codec} ({target.suffix}): {result.stderr.strip()[-300:]}")


@pytest.mark.parametrize("extension", [".wav", ".flac", ".ogg", ".mp3", ".m4a"])
def test_every_format_the_pipeline_reads(saved_student, classifier, tmp_path, capsys, extension):
    stereo = np.stack([speech_like(3.0, rate=44_100, seed=1), speech_like(3.0, rate=44_100, seed=2)], axis=1)
    path = tmp_path / f"clip{extension}"
    if extension in (".wav", ".flac", ".ogg"):
        sf.write(path, stereo, 44_100)
    else:
        sf.write(tmp_path / "source.wav", stereo, 44_100)
        encode(tmp_path / "source.wav", path, {".mp3": "libmp3lame", ".m4a": "aac"}[extension])

    code, out, err = run(capsys, "--model", saved_student, "--json", path)
    assert code == 0, err
    [result] = json.loads(out)
    assert result["file"] == str(path)
    # The file went through the pipeline's own loader: decoded (about 3 s of the 220 Hz carrier) and classified.
    assert as_dict(result["predictions"]) == as_dict(classifier(str(path), top_k=None))
    waveform = classifier.load_waveform(str(path))
    assert abs(waveform.size - 3 * RATE) < 0.1 * RATE
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(waveform.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(220, abs=1)


def test_folders_are_searched_recursively_in_sorted_order(saved_student, tmp_path, capsys):
    single = write_wav(tmp_path / "single.wav", 1.0)
    folder = tmp_path / "recordings"
    write_wav(folder / "b.wav", 1.0, seed=1)
    write_wav(folder / "a" / "z" / "d.wav", 1.5, seed=2)
    sf.write(folder / "a" / "c.FLAC", speech_like(0.5), RATE, format="FLAC")  # extensions in any case
    write_wav(folder / "a" / "ten_ms.wav", 0.01, seed=3)  # shorter than the receptive field: padded, not a crash
    (folder / "a" / "notes.txt").write_text("not audio, and not an audio extension: skipped")

    code, out, err = run(capsys, "--model", saved_student, single, folder)
    assert code == 0, err
    files = [line.split(": ")[0] for line in out.strip().splitlines()]
    expected = [single] + [folder / name for name in ("a/c.FLAC", "a/ten_ms.wav", "a/z/d.wav", "b.wav")]
    assert files == [str(path) for path in expected]
    for line in out.strip().splitlines():
        scores = [float(item.rsplit(" ", 1)[1]) for item in line.split(": ", 1)[1].split(", ")]
        assert len(scores) == len(LABELS) and sum(scores) == pytest.approx(1.0, abs=0.01)
    # `--help` lists the extensions taken from folders.
    assert " ".join(sorted(extension[1:] for extension in AUDIO_EXTENSIONS)) in " ".join(predict.__doc__.split())


def bad_and_good_inputs(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """All inputs in order, the good files and the bad ones."""
    good = [write_wav(folder / "good1.wav", 1.0), write_wav(folder / "good2.wav", 2.0, seed=1)]
    broken = folder / "broken.wav"
    broken.write_text("not audio")
    empty = folder / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), RATE)
    nan = folder / "nan.wav"
    sf.write(nan, np.full(RATE, np.nan, dtype=np.float32), RATE, subtype="FLOAT")
    no_audio = folder / "no_audio"
    no_audio.mkdir()
    (no_audio / "readme.txt").write_text("nothing to classify")
    bad = [broken, folder / "missing.flac", empty, nan, no_audio]
    return [good[0], *bad[:3], good[1], *bad[3:]], good, bad


def assert_one_error_per_bad_input(err: str, bad: list[Path]):
    errors = [line for line in err.splitlines() if line.startswith("emodistill-predict: error: ")]
    assert len(errors) == len(bad), err
    for line, path in zip(errors, bad):
        assert repr(str(path)) in line, line
    assert "Traceback" not in err


def test_bad_files_are_reported_and_the_good_ones_written(saved_student, classifier, tmp_path, capsys):
    inputs, good, bad = bad_and_good_inputs(tmp_path)
    output = tmp_path / "results.csv"
    code, out, err = run(capsys, "--model", saved_student, "--output", output, *inputs)
    assert code == 1
    assert out == ""
    assert_one_error_per_bad_input(err, bad)
    for reason in ("not an audio file", "no such file", "Empty audio", "NaN/inf samples", "holds no audio files"):
        assert reason in err
    assert err.endswith(f"emodistill-predict: 2 of 7 inputs written to {output}; 5 failed (errors above).\n")
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [str(path) for path in good]

    # The same run as one JSON document on stdout: the good results, and the same errors.
    code, out, err = run(capsys, "--model", saved_student, "--json", *inputs)
    assert code == 1
    assert [result["file"] for result in json.loads(out)] == [str(path) for path in good]
    assert_one_error_per_bad_input(err, bad)
    assert err.endswith("emodistill-predict: 5 of 7 inputs failed (errors above).\n")


@pytest.mark.parametrize("extension", [".csv", ".jsonl"])
def test_output_files_are_written_as_results_come(saved_student, classifier, tmp_path, capsys, monkeypatch, extension):
    files = [write_wav(tmp_path / f"clip{i}.wav", 1.0 + i, seed=i) for i in range(3)]
    output = tmp_path / f"results{extension}"
    seen_before_last = []
    load_waveform = EmoDistillAudioClassificationPipeline.load_waveform

    def load_and_look(self, inputs):
        if inputs == str(files[-1]):
            seen_before_last.append(output.read_text())
        return load_waveform(self, inputs)

    monkeypatch.setattr(EmoDistillAudioClassificationPipeline, "load_waveform", load_and_look)
    code, out, err = run(capsys, "--model", saved_student, "--output", output, "--top_k", "2", *files)
    assert code == 0, err
    assert out == "" and err == f"emodistill-predict: 3 of 3 inputs written to {output}.\n"
    expected = [classifier(str(path), top_k=None) for path in files]
    if extension == ".csv":
        with open(output, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["file", "label", *LABELS]  # every class's score, whatever --top_k
        for row, path, predictions in zip(rows[1:], files, expected, strict=True):
            assert row[:2] == [str(path), predictions[0]["label"]]
            assert [float(score) for score in row[2:]] == pytest.approx([as_dict(predictions)[c] for c in LABELS])
        assert seen_before_last[0].splitlines()[1:] == [",".join(row) for row in rows[1:3]]
    else:
        lines = output.read_text().splitlines()
        for line, path, predictions in zip(lines, files, expected, strict=True):
            assert json.loads(line) == {"file": str(path), "predictions": predictions[:2]}
        assert seen_before_last[0].splitlines() == lines[:2]


def test_top_k_and_window_flags(saved_student, classifier, tmp_path, capsys):
    path = write_wav(tmp_path / "six_seconds.wav", 6.0)
    windows = dict(chunk_length_s=2, stride_length_s=0.5)
    code, out, err = run(
        capsys, "--model", saved_student, "--json", "--chunk_length_s", 2, "--stride_length_s", 0.5, "--batch_size", 4,
        path,
    )  # fmt: skip
    assert code == 0, err
    scores = as_dict(json.loads(out)[0]["predictions"])
    assert scores == pytest.approx(as_dict(classifier(str(path), top_k=None, **windows)), abs=1e-6)
    assert scores != pytest.approx(as_dict(classifier(str(path), top_k=None, chunk_length_s=0)), abs=1e-6)

    code, out, err = run(capsys, "--model", saved_student, "--top_k", 2, path)
    assert code == 0, err
    best = classifier(str(path), top_k=2)
    assert out == f"{path}: {best[0]['label']} {best[0]['score']:.3f}, {best[1]['label']} {best[1]['score']:.3f}\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--chunk_length_s", "1", "--stride_length_s", "1"], "Need chunk_length_s > stride_length_s >= 0"),
        (
            ["--chunk_length_s", "0.005", "--stride_length_s", "0"],
            "shorter than the model's receptive field of 148 samples",
        ),
        (["--top_k", "0"], "--top_k must be >= 1"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--output", "results.txt"], "--output must end in .csv or .jsonl"),
        (["--output", "results.csv", "--json"], "use one of them"),
        (["--output", "no/such/folder/results.csv"], "cannot write --output no/such/folder/results.csv"),
    ],
)
def test_unusable_settings_stop_before_any_file(saved_student, tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    path = write_wav(tmp_path / "clip.wav", 1.0)
    code, out, err = run(capsys, "--model", saved_student, *flags, path)
    assert code == 2
    assert message in err and out == "" and "Traceback" not in err


def model_folders(root: Path, saved_student: Path) -> dict[str, tuple[Path, str]]:
    """Folders a user might pass as `--model`, and what the message must say."""
    empty = root / "empty"
    empty.mkdir()
    a_file = root / "model.safetensors"
    a_file.write_bytes(b"")
    no_feature_extractor = root / "no_feature_extractor"
    shutil.copytree(saved_student, no_feature_extractor)
    (no_feature_extractor / "preprocessor_config.json").unlink()
    damaged_weights = root / "damaged_weights"
    shutil.copytree(saved_student, damaged_weights)
    (damaged_weights / "model.safetensors").write_bytes(b"truncated by a failed copy")
    broken_config = root / "broken_config"
    shutil.copytree(saved_student, broken_config)
    (broken_config / "config.json").write_text("{not json")
    other = root / "wav2vec2"
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, conv_dim=(8, 8),
        conv_stride=(4, 4), conv_kernel=(8, 8), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
        num_labels=3,
    )  # fmt: skip
    Wav2Vec2ForSequenceClassification(config).save_pretrained(other)
    feature_extractor().save_pretrained(other)
    return {
        "missing": (
            root / "missing",
            f"--model {root / 'missing'} does not exist; expected a folder with a config.json",
        ),
        "empty": (empty, f"--model {empty} is not a folder with a config.json"),
        "file": (a_file, f"--model {a_file} is a file, not a folder with a config.json"),
        "no_feature_extractor": (no_feature_extractor, "Can't load feature extractor"),
        "broken_config": (broken_config, "is not a valid JSON file"),
        "damaged_weights": (damaged_weights, f"Cannot load --model {damaged_weights}: SafetensorError: "),
        "other_model": (other, "holds a 'wav2vec2' model, not an EmoDistill student"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "empty", "file", "no_feature_extractor", "broken_config", "damaged_weights", "other_model"]
)  # fmt: skip
def test_missing_or_invalid_model_is_a_clear_error(saved_student, tmp_path, capsys, case):
    folder, message = model_folders(tmp_path, saved_student)[case]
    path = write_wav(tmp_path / "clip.wav", 1.0)
    code, out, err = run(capsys, "--model", folder, path)
    assert code == 2
    assert message in err and out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("cuda", 0, "--device cuda: "),
        ("cuda:0", 0, "--device cuda:0: "),
        ("cuda:1", 1, "--device cuda:1: only 1 CUDA GPU(s) visible, cuda:0 to cuda:0."),
        ("gpu", 0, "--device 'gpu' is not a torch device"),
    ],
)
def test_a_device_that_is_not_there_is_a_clear_error(
    saved_student, tmp_path, capsys, monkeypatch, device, gpus, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    path = write_wav(tmp_path / "clip.wav", 1.0)
    code, out, err = run(capsys, "--model", saved_student, "--device", device, path)
    assert code == 2
    assert message in err and out == "" and "Traceback" not in err
    if gpus == 0 and device.startswith("cuda"):
        assert "Leave --device out (or --device cpu) to run on the CPU." in err

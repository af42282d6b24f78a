import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emodistill.data_scripts.synthetic_iemocap import (
    CODE_TEXT_KIND,
    CONFIG_FILENAME,
    EspeakNotFoundError,
    generate_synthetic_iemocap,
    main,
    read_manifest,
)

HEADER_RE = re.compile(r"^\[(\d+\.\d+) - (\d+\.\d+)\]\t(\w+)\t(\w+)\t\[(\d+\.\d+), (\d+\.\d+), (\d+\.\d+)\]$")
RATER_RE = re.compile(r"^(C-(E\d|F1|M1):\t(\w+; )*\w+;|A-(E\d|F1|M1):\tval \d; act \d;( dom  \d;)?)\t\(.*\)$")
TRANSCRIPT_RE = re.compile(r"^(Ses\w+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.+)$")
ALL_CODES = {"neu", "ang", "sad", "hap", "exc", "fru", "sur", "fea", "oth", "dis", "xxx"}


@pytest.fixture(scope="module")
def root(tiny_iemocap_root):
    return tiny_iemocap_root


@pytest.fixture(scope="module")
def settings(root):
    """Arguments the tiny corpus was generated with (`synthetic_config.json`)."""
    config = json.loads((root / CONFIG_FILENAME).read_text())
    return {
        k: config[k] for k in ("utterances_per_speaker", "other_utterances_per_speaker", "carrier_proportions", "seed")
    }


@pytest.fixture(scope="module")
def manifest(root):
    return {row["id"]: row for row in read_manifest(root)}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _emo_evaluation_files(root: Path) -> list[Path]:
    return sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt"))


def test_layout(root):
    assert root.name == "IEMOCAP_full_release"
    assert "synthetic" in (root / "Documentation" / "README.txt").read_text().lower()
    for session in range(1, 6):
        dialog_dir = root / f"Session{session}" / "dialog"
        for sub in ("Attribute", "Categorical", "Self-evaluation"):
            assert any((dialog_dir / "EmoEvaluation" / sub).glob("*.txt")), f"Session{session} EmoEvaluation/{sub}"
        dialogs = {p.stem for p in (dialog_dir / "EmoEvaluation").glob("*.txt")}
        assert dialogs == {p.stem for p in (dialog_dir / "transcriptions").glob("*.txt")}
        assert dialogs == {p.name for p in (root / f"Session{session}" / "sentences" / "wav").iterdir()}


def test_emo_evaluation_format(root, manifest):
    seen = {}
    for path in _emo_evaluation_files(root):
        raw = path.read_bytes()
        # Session 5's files end lines with CRLF (as the reader must expect), the others with LF.
        assert (b"\r\n" in raw) == path.parts[-4].endswith("5"), path
        lines = raw.decode().replace("\r\n", "\n").split("\n")
        assert lines[:2] == ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        blocks = "\n".join(lines[2:]).strip("\n").split("\n\n")
        ids = []
        for block in blocks:
            header, *raters = block.split("\n")
            match = HEADER_RE.match(header)
            assert match, f"{path}: bad header {header!r}"
            start, end, utt_id, code = float(match[1]), float(match[2]), match[3], match[4]
            assert utt_id.rsplit("_", 1)[0] == path.stem
            assert 0 < start < end
            assert all(RATER_RE.match(line) for line in raters), f"{path}: {raters}"
            assert sum(line.startswith("C-") for line in raters) == 4 and any(line.startswith("A-") for line in raters)
            ids.append(utt_id)
            seen[utt_id] = (start, end, code, tuple(float(v) for v in match.group(5, 6, 7)))
        assert ids == sorted(ids), f"{path}: blocks must be ordered by id"
    assert set(seen) == set(manifest)
    for utt_id, (start, end, code, vad) in seen.items():
        row = manifest[utt_id]
        assert (start, end, code) == (row["start"], row["end"], row["emotion"])
        assert vad == (row["valence"], row["arousal"], row["dominance"])


def test_transcriptions_format(root, manifest):
    labelled, not_labelled = {}, []
    for path in sorted(root.glob("Session*/dialog/transcriptions/*.txt")):
        starts = []
        for line in path.read_text().splitlines():
            match = TRANSCRIPT_RE.match(line)
            assert match, f"{path}: bad line {line!r}"
            starts.append(float(match[2]))
            if "XX" in match[1]:
                not_labelled.append(match[1])
            else:
                labelled[match[1]] = (float(match[2]), float(match[3]), line.split("]: ", 1)[1])
        assert starts == sorted(starts), f"{path}: transcripts are in time order"
    assert not_labelled and not set(not_labelled) & set(manifest)
    assert labelled == {i: (row["start"], row["end"], row["text"]) for i, row in manifest.items()}


def test_wavs(root, manifest):
    for utt_id, row in manifest.items():
        path = root / f"Session{row['session']}" / "sentences" / "wav" / row["dialog"] / f"{utt_id}.wav"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV"), path
        assert abs(info.frames / 16000 - (row["end"] - row["start"])) < 1e-3
        assert 1.0 < info.duration < 5.0
        audio, _ = sf.read(path, dtype="int16")
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 100, f"{path} is (nearly) silent"
    # AppleDouble files sit among session 2's wavs, as in the release; they are not audio.
    apple_double = list(root.glob("Session2/sentences/wav/*/._*.wav"))
    assert apple_double and apple_double[0].read_bytes()[:4] == bytes.fromhex("00051607")


def test_speakers_dialogs_and_codes(manifest, settings):
    rows = list(manifest.values())
    speakers = Counter(row["speaker"] for row in rows)
    assert sorted(speakers) == [f"Ses{s:02d}_{g}" for s in range(1, 6) for g in "FM"]
    assert set(speakers.values()) == {settings["utterances_per_speaker"] + settings["other_utterances_per_speaker"]}
    for row in rows:
        assert row["id"][-4] == row["gender"] == row["speaker"][-1]
        assert row["improvised"] == ("_impro" in row["dialog"])
    assert any(row["dialog"][5] != row["gender"] for row in rows), "cross-gender turns"
    assert {row["improvised"] for row in rows} == {True, False}
    assert {"Ses03M_impro05a", "Ses05M_script01_1b"} <= {row["dialog"] for row in rows}
    codes = Counter(row["emotion"] for row in rows)
    assert set(codes) == ALL_CODES
    assert sum(codes[c] for c in ("neu", "ang", "sad", "hap", "exc")) > 0.6 * len(rows)


def test_scripted_lines_repeat_across_sessions(manifest):
    sessions_per_text = {}
    for row in manifest.values():
        if not row["improvised"]:
            sessions_per_text.setdefault(row["text"], set()).add(row["session"])
    assert max(len(sessions) for sessions in sessions_per_text.values()) >= 3


def test_carriers(manifest, settings):
    rows = list(manifest.values())
    carriers = Counter(row["carrier"] for row in rows)
    for carrier, share in settings["carrier_proportions"].items():
        # Carriers are spread per code: each of the 11 codes rounds by less than one utterance.
        assert abs(carriers[carrier] - share * len(rows)) < len(ALL_CODES), carriers
    for row in rows:
        in_words, in_voice = row["carrier"] in ("words", "both"), row["carrier"] in ("voice", "both")
        assert row["text_kind"] == (CODE_TEXT_KIND[row["emotion"]] if in_words else "neutral")
        if row["emotion"] != "xxx":
            assert row["voice_emotion"] == (row["emotion"] if in_voice else "neu")


def test_carrier_proportions_are_configurable(tmp_path):
    root = generate_synthetic_iemocap(
        tmp_path,
        utterances_per_speaker=2,
        other_utterances_per_speaker=0,
        carrier_proportions={"words": 0, "voice": 1, "both": 0},
    )
    rows = read_manifest(root)
    assert len(rows) == 20 and {row["carrier"] for row in rows} == {"voice"}
    assert {row["text_kind"] for row in rows} == {"neutral"}
    with pytest.raises(ValueError, match="sum to 1"):
        generate_synthetic_iemocap(tmp_path, carrier_proportions={"words": 0.5, "voice": 0.5, "both": 0.5})


def test_deterministic_for_a_seed(root, settings, tmp_path):
    again = generate_synthetic_iemocap(tmp_path / "same", **settings, num_workers=1)
    assert _digests(again) == _digests(root)
    other = generate_synthetic_iemocap(tmp_path / "other", **{**settings, "seed": settings["seed"] + 1})
    assert (other / "synthetic_manifest.jsonl").read_bytes() != (root / "synthetic_manifest.jsonl").read_bytes()


def test_reuses_or_regenerates(tmp_path):
    settings = {"utterances_per_speaker": 1, "other_utterances_per_speaker": 0}
    root = generate_synthetic_iemocap(tmp_path, **settings)
    manifest_mtime = (root / "synthetic_manifest.jsonl").stat().st_mtime_ns
    assert generate_synthetic_iemocap(tmp_path, **settings) == root
    assert (root / "synthetic_manifest.jsonl").stat().st_mtime_ns == manifest_mtime
    generate_synthetic_iemocap(tmp_path, **settings, seed=3)
    assert json.loads((root / CONFIG_FILENAME).read_text())["seed"] == 3
    assert len(read_manifest(root)) == 10

    real_looking = tmp_path / "real" / "IEMOCAP_full_release"
    real_looking.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_synthetic_iemocap(tmp_path / "real", **settings)


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        generate_synthetic_iemocap(tmp_path, utterances_per_speaker=1)


def test_command_line(tmp_path, capsys):
    main(["--output_dir", str(tmp_path), "--utterances_per_speaker", "1", "--other_utterances_per_speaker", "1"])
    printed = capsys.readouterr().out
    assert str(tmp_path / "IEMOCAP_full_release") in printed
    assert "20 utterances, 10 with a 4-class code, 10 speakers" in printed

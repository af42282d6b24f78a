"""Tests of the IEMOCAP reader on a hand-written fixture in the release's exact formats.

`tests/fixtures/iemocap_quirks/IEMOCAP_full_release` holds the text files (label files, transcripts, the
EmoEvaluation subfolders, AppleDouble `._*` files); the wavs listed in `wavs.txt` are written at run time into a
temporary copy. Its 22 labelled turns (2-3 per speaker, all 10 speakers):

    neu 6, sad 4, ang 3, hap 2, exc 2, fru 1, xxx 1, sur 1, fea 1, oth 1
    4-class kept 17: neutral 6, angry 3, sad 4, happy 4; per session 4 / 3 / 3 / 3 / 4
"""

import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emodistill.data_scripts.audio import decode_audio
from emodistill.data_scripts.iemocap import (
    FULL_RELEASE_EXPECTED,
    FULL_RELEASE_TURNS,
    IemocapAudioError,
    IemocapBuilder,
    IemocapFormatError,
    IemocapReport,
    _log_report,
    build_report,
    check_label_set,
    check_wav,
    load_iemocap,
    parse_emo_evaluation,
    parse_transcriptions,
    parse_utterance_id,
    read_corpus,
    scan_iemocap,
    select_turns,
)

FIXTURE = Path(__file__).parent / "fixtures" / "iemocap_quirks"
SES1_LABELS = "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
SES1_WAV = "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
SES1_TRANSCRIPT = "Session1/dialog/transcriptions/Ses01F_impro01.txt"
SES2_LABELS = "Session2/dialog/EmoEvaluation/Ses02M_impro03.txt"
LOGGER = "emodistill.data_scripts.iemocap"
COLUMNS = {
    "id": "string",
    "emotion_code": "string",
    "speaker": "string",
    "session": "int32",
    "gender": "string",
    "dialog": "string",
    "improvised": "bool",
    "text": "string",
    "start": "float32",
    "end": "float32",
    "valence": "float32",
    "arousal": "float32",
    "dominance": "float32",
}


def write_wav(path: Path, seconds: float = 0.25, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.shape)
    sf.write(path, (signal * 32767).astype(np.int16), 16_000, subtype="PCM_16")


def make_corpus(destination: Path) -> Path:
    """Copy the fixture tree to `destination` and write its wavs; returns the IEMOCAP_full_release folder."""
    root = destination / "IEMOCAP_full_release"
    shutil.copytree(FIXTURE / "IEMOCAP_full_release", root)
    wavs = [line for line in (FIXTURE / "wavs.txt").read_text().splitlines() if line and not line.startswith("#")]
    for seed, relative in enumerate(wavs):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)  # git keeps no empty wav folders
        write_wav(root / relative, seconds=0.2 + 0.01 * seed, seed=seed)
    return root


def edit(path: Path, old: bytes, new: bytes) -> None:
    """Replace the one occurrence of `old` in the file at `path` by `new`."""
    data = path.read_bytes()
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times in {path}"
    path.write_bytes(data.replace(old, new))


def iemocap_records(caplog, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER and record.levelno == level]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A pristine corpus shared by the read-only tests."""
    return make_corpus(tmp_path_factory.mktemp("iemocap_quirks"))


@pytest.fixture
def own_corpus(tmp_path) -> Path:
    """A corpus the test may damage."""
    return make_corpus(tmp_path)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("iemocap_cache")


@pytest.fixture(scope="module")
def loaded(corpus, cache_dir):
    return load_iemocap(corpus, cache_dir=cache_dir, return_report=True)


# ------------------------------------------------------------------ pure parsers


def test_fixture_keeps_its_crlf_label_file():
    assert b"\r\n" in (FIXTURE / "IEMOCAP_full_release" / SES1_LABELS).read_bytes()


def test_parse_emo_evaluation_crlf_thirds_and_cross_gender(corpus):
    records = {r.utterance_id: r for r in parse_emo_evaluation(corpus / SES1_LABELS)}
    assert list(records) == [f"Ses01F_impro01_{s}" for s in ("F000", "F001", "M000", "M001", "M002")]
    excited = records["Ses01F_impro01_F001"]
    assert (excited.emotion_code, excited.valence, excited.arousal, excited.dominance) == ("exc", 4.3333, 3.6667, 3.0)
    assert (excited.start, excited.end) == (10.01, 11.3925)
    cross_gender = records["Ses01F_impro01_M000"]  # Session 1's male actor speaking in a female-mocap dialog
    assert (cross_gender.speaker, cross_gender.gender, cross_gender.dialog) == ("Ses01_M", "M", "Ses01F_impro01")
    assert cross_gender.source == f"{corpus / SES1_LABELS}:16"


def test_parse_emo_evaluation_keeps_out_of_range_vad_and_ignores_rater_quirks(corpus):
    session3 = {
        r.utterance_id: r for r in parse_emo_evaluation(corpus / "Session3/dialog/EmoEvaluation/Ses03M_impro05a.txt")
    }
    assert (session3["Ses03M_impro05a_F000"].valence, session3["Ses03M_impro05a_F000"].arousal) == (0.5, 5.5)
    # Session 2 has a rater line with two labels and a dimension line without dominance: neither is a block header.
    session2 = parse_emo_evaluation(corpus / "Session2/dialog/EmoEvaluation/Ses02M_impro03.txt")
    assert [r.emotion_code for r in session2] == ["hap", "neu", "sad", "xxx"]


@pytest.mark.parametrize(
    "utterance_id, expected",
    [
        ("Ses01F_impro01_M000", (1, "M", "Ses01F_impro01")),
        ("Ses03M_impro05a_F012", (3, "F", "Ses03M_impro05a")),
        ("Ses05M_script01_1b_F003", (5, "F", "Ses05M_script01_1b")),
        ("Ses04F_script02_2_M041", (4, "M", "Ses04F_script02_2")),
    ],
)
def test_parse_utterance_id_uses_the_last_group(utterance_id, expected):
    assert parse_utterance_id(utterance_id) == expected


def test_parse_utterance_id_rejects_other_names():
    with pytest.raises(ValueError, match="Ses01F_impro01_X000"):
        parse_utterance_id("Ses01F_impro01_X000")


def test_parse_transcriptions_skips_and_counts_non_utterance_lines(corpus):
    skipped = Counter()
    texts = parse_transcriptions(corpus / "Session1/dialog/transcriptions/Ses01F_impro01.txt", skipped=skipped)
    assert texts["Ses01F_impro01_F000"] == "Excuse me." and len(texts) == 5
    parse_transcriptions(corpus / "Session2/dialog/transcriptions/Ses02M_impro03.txt", skipped=skipped)
    assert skipped == {"transcript id containing 'XX'": 1, "transcript line not starting with 'Ses'": 1}
    session4 = parse_transcriptions(corpus / "Session4/dialog/transcriptions/Ses04F_script02_2.txt")
    assert session4["Ses04F_script02_2_F000"] == "[LAUGHTER] You remembered!"


def test_malformed_label_header_names_file_and_line(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    lines = [
        "% header",
        "",
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]",
        "C-E2:\tNeutral;\t()",
    ]
    path.write_text("\n".join(lines + ["", "[10.0100 - 11.3925] Ses01F_impro01_F001 neu [2.5, 2.5, 2.5]"]) + "\n")
    with pytest.raises(IemocapFormatError, match=rf"{path}:6: malformed label block header"):
        parse_emo_evaluation(path)


def test_unknown_emotion_code_names_file_and_line(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text("% header\n\n[6.2901 - 8.2357]\tSes01F_impro01_F000\tjoy\t[2.5000, 2.5000, 2.5000]\n")
    with pytest.raises(IemocapFormatError, match=rf"{path}:3: unknown emotion code 'joy'"):
        parse_emo_evaluation(path)


def test_duplicate_id_across_files_names_both_places(own_corpus):
    label_file = own_corpus / "Session1/dialog/EmoEvaluation/Ses01F_impro01_copy.txt"
    shutil.copy(own_corpus / SES1_LABELS, label_file)
    with pytest.raises(IemocapFormatError, match="duplicate utterance id Ses01F_impro01_F000") as error:
        scan_iemocap(own_corpus)
    assert f"{own_corpus / SES1_LABELS}:3" in str(error.value) and f"{label_file}:3" in str(error.value)


def test_malformed_transcript_line_names_file_and_line(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text("Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nSes01F_impro01_F001 006.2901: Hi.\n")
    with pytest.raises(IemocapFormatError, match=rf"{path}:2: malformed transcript line"):
        parse_transcriptions(path)


def test_label_lines_with_whitespace_or_bom_are_kept(own_corpus):
    session1 = own_corpus / SES1_LABELS
    session1.write_bytes(b"\xef\xbb\xbf" + session1.read_bytes())  # BOM before the '%' line of a CRLF file
    session2 = own_corpus / SES2_LABELS
    edit(session2, b"\n[6.0000 - 7.5000]", b"\n [6.0000 - 7.5000]")  # leading space before a header
    edit(session2, b"[2.0000, 2.0000, 2.0000]\n", b"[2.0000, 2.0000, 2.0000] \t\n")  # trailing blanks
    edit(session2, b"\nC-E2:\tSadness;", b"\n\tC-E2:\tSadness;")  # indented rater line
    session3 = own_corpus / "Session3/dialog/EmoEvaluation/Ses03M_impro05a.txt"
    text = session3.read_bytes()
    session3.write_bytes(b"\xef\xbb\xbf" + text[text.index(b"\n[") + 1 :])  # no comment: the BOM sits before a header
    assert [r.utterance_id for r in parse_emo_evaluation(session3)][0] == "Ses03M_impro05a_F000"
    assert [r.emotion_code for r in parse_emo_evaluation(session2)] == ["hap", "neu", "sad", "xxx"]
    _, report = scan_iemocap(own_corpus)
    assert (report.total, report.kept) == (22, 17)


@pytest.mark.parametrize(
    "line",
    [
        "6.2901 - 8.2357]\tSes01F_impro01_F009\tneu\t[2.5000, 2.5000, 2.5000]",  # header without its '['
        "Ses01F_impro01_F009\tneu",
        "C-E2 Neutral;",  # rater without ':'
        "X-E2:\tNeutral;\t()",
        "Neutral;",
    ],
)
def test_a_label_line_of_no_known_kind_is_an_error_showing_it(tmp_path, line):
    path = tmp_path / "Ses01F_impro01.txt"
    header = "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
    path.write_text("\n".join(["% header", "", header, "C-E2:\tNeutral;\t()", "C-M1:\tNeutral;\t()", "", line]) + "\n")
    with pytest.raises(IemocapFormatError, match=re.escape(f"{path}:7: unexpected line {line!r}")):
        parse_emo_evaluation(path)


def test_rater_lines_of_every_kind_are_accepted_and_a_late_comment_is_not(tmp_path):
    path = tmp_path / "Ses01F_impro01.txt"
    header = "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
    raters = ["C-E1:\tNeutral; Anger;\t()", "C-F1:\tNeutral;\t(curious)", "C-M1:\tOther;\t()"]
    raters += ["A-E3:\tval 3; act 2; dom  2;\t()", "A-E12:\tval 3; act 2;\t()", "A-F1:\tval 3;", "A-M1:\tval 1;"]
    path.write_text("\n".join(["% header", "", header, *raters, ""]) + "\n")
    assert [r.utterance_id for r in parse_emo_evaluation(path)] == ["Ses01F_impro01_F000"]
    path.write_text("\n".join(["% header", "", header, *raters, "", "% again"]) + "\n")
    with pytest.raises(IemocapFormatError, match=f"{path}:12: '%' comment line '% again' after the first label"):
        parse_emo_evaluation(path)


def test_transcript_lines_with_bom_or_whitespace_are_kept(own_corpus):
    transcript = own_corpus / SES1_TRANSCRIPT
    transcript.write_bytes(b"\xef\xbb\xbf" + transcript.read_bytes())  # the BOM sits before the first id
    session2 = own_corpus / "Session2/dialog/transcriptions/Ses02M_impro03.txt"
    edit(session2, b"\nSes02M_impro03_F001 ", b"\n\n  Ses02M_impro03_F001 ")  # a blank line, then indented
    edit(session2, b"Whatever.\n", b"Whatever. \t\n")
    skipped = Counter()
    assert parse_transcriptions(transcript)["Ses01F_impro01_F000"] == "Excuse me."
    assert parse_transcriptions(session2, skipped=skipped)["Ses02M_impro03_M001"] == "Whatever."
    assert skipped == {"transcript line not starting with 'Ses'": 1}  # the "M: [BREATHING]" line, not the blank
    _, report = scan_iemocap(own_corpus)
    assert report.kept == 17 and "no transcript" not in report.dropped


@pytest.mark.parametrize(
    "relative, old, new, line, column",
    [
        (SES1_TRANSCRIPT, b"that's great!", b"caf\xe9!", 4, 49),
        (SES1_LABELS, b"(curious)", b"(caf\xe9)", 6, 20),  # a CRLF file
    ],
)
def test_undecodable_text_names_file_line_and_column(own_corpus, tmp_path, relative, old, new, line, column):
    path = own_corpus / relative
    edit(path, old, new)
    shown = path.read_bytes().splitlines()[line - 1]
    expected = re.escape(f"{path}:{line}: not UTF-8 text (byte 0xe9 at column {column}) in {shown!r};")
    with pytest.raises(IemocapFormatError, match=expected):
        scan_iemocap(own_corpus)
    with pytest.raises(IemocapFormatError, match=expected):
        load_iemocap(own_corpus, cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------ whole corpus


def test_load_iemocap_report_adds_up(loaded):
    dataset, report = loaded
    assert (report.total, report.kept, len(dataset)) == (22, 17, 17)
    assert report.kept + sum(report.dropped.values()) == report.total
    assert report.dropped == {f"emotion not in label set: {code}": 1 for code in ("fea", "fru", "oth", "sur", "xxx")}
    assert report.per_class == {"neutral": 6, "angry": 3, "sad": 4, "happy": 4}
    assert report.per_session == {1: 4, 2: 3, 3: 3, 4: 3, 5: 4}
    assert report.skipped_transcript_lines == {
        "transcript id containing 'XX'": 2,
        "transcript line not starting with 'Ses'": 1,
    }
    assert (report.unlabelled_transcripts, report.unlabelled_wavs) == (0, 0)  # `._*.wav` and non-wav files ignored
    table = str(report)
    assert "dropped: emotion not in label set: fru" in table and "neutral 6" in table


def test_load_iemocap_schema_and_values(loaded):
    dataset, _ = loaded
    assert {name: feature.dtype for name, feature in dataset.features.items() if name in COLUMNS} == COLUMNS
    assert dataset.features["label"].names == ["neutral", "angry", "sad", "happy"]
    assert dataset.features["audio"].sampling_rate == 16_000
    rows = {row["id"]: row for row in dataset.select_columns([c for c in dataset.column_names if c != "audio"])}
    excited = rows["Ses01F_impro01_F001"]
    assert (excited["emotion_code"], dataset.features["label"].int2str(excited["label"])) == ("exc", "happy")
    assert rows["Ses01F_impro01_M000"]["speaker"] == "Ses01_M"  # cross-gender turn
    irregular = rows["Ses05M_script01_1b_F000"]
    assert (irregular["dialog"], irregular["speaker"], irregular["improvised"]) == (
        "Ses05M_script01_1b",
        "Ses05_F",
        False,
    )
    assert rows["Ses03M_impro05a_F000"]["improvised"] and rows["Ses03M_impro05a_F000"]["session"] == 3
    assert rows["Ses03M_impro05a_F000"]["valence"] == 0.5 and rows["Ses03M_impro05a_F000"]["dominance"] == 5.5
    assert rows["Ses04F_script02_2_F000"]["text"] == "[LAUGHTER] You remembered!"
    assert sorted({row["speaker"] for row in rows.values()}) == sorted(
        f"Ses0{s}_{g}" for s in range(1, 6) for g in "FM"
    )


def test_audio_is_stored_as_path_and_decodes_to_16khz(loaded, corpus):
    dataset, _ = loaded
    stored = dataset.data.column("audio")[0].as_py()
    assert stored["bytes"] is None and stored["path"] == str((corpus / SES1_WAV).resolve())
    waveform, sampling_rate = decode_audio(dataset[0]["audio"])
    assert sampling_rate == 16_000 and waveform.dtype == np.float32 and waveform.shape == (3200,)
    assert 0.2 < np.abs(waveform).max() <= 1.0


def test_cache_reuse_keeps_the_report(loaded, corpus, cache_dir):
    _, first_report = loaded
    builder = IemocapBuilder(
        data_dir=str(corpus.resolve()), cache_dir=str(cache_dir), config_name="4class", skip_bad_audio=False
    )
    assert (Path(builder.cache_dir) / "iemocap_report.json").is_file()
    assert builder.report == first_report  # read back from the JSON beside the Arrow files
    assert IemocapBuilder(data_dir=str(corpus), cache_dir=str(cache_dir), label_set="all").config.name == "all"
    dataset, report = load_iemocap(corpus, cache_dir=cache_dir, return_report=True)
    assert report == first_report and len(dataset) == 17


def test_other_label_sets(corpus, cache_dir):
    _, no_exc = scan_iemocap(corpus, label_set="4class_no_exc")
    assert no_exc.kept == 15 and no_exc.dropped["emotion not in label set: exc"] == 2
    assert no_exc.per_class == {"neutral": 6, "angry": 3, "sad": 4, "happy": 2}
    dataset, everything = load_iemocap(corpus, label_set="all", cache_dir=cache_dir, return_report=True)
    assert (everything.kept, everything.dropped, len(dataset)) == (22, {}, 22)
    assert dataset.features["label"].names == [
        "neu",
        "ang",
        "sad",
        "hap",
        "exc",
        "fru",
        "sur",
        "fea",
        "oth",
        "dis",
        "xxx",
    ]
    assert [dataset.features["label"].int2str(label) for label in dataset["label"]] == dataset["emotion_code"]
    with pytest.raises(ValueError, match="Unknown IEMOCAP label_set 'five'"):
        load_iemocap(corpus, label_set="five", cache_dir=cache_dir)


def test_missing_transcript_and_unlabelled_files_are_counted_and_logged(own_corpus, tmp_path, caplog):
    transcript = own_corpus / "Session2/dialog/transcriptions/Ses02M_impro03.txt"
    lines = transcript.read_text().splitlines()
    lines = [line for line in lines if not line.startswith("Ses02M_impro03_F001 ")]
    transcript.write_text("\n".join(lines + ["Ses02M_impro03_F099 [020.0000-021.0000]: Unlabelled."]) + "\n")
    write_wav(own_corpus / "Session2/sentences/wav/Ses02M_impro03/Ses02M_impro03_F099.wav")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, report = load_iemocap(own_corpus, cache_dir=tmp_path / "cache", return_report=True)
    assert report.kept == 16 and report.dropped["no transcript"] == 1
    assert report.turns_without_transcript == {2: ["Ses02M_impro03_F001"]}
    assert (report.unlabelled_transcripts, report.unlabelled_wavs) == (1, 1)
    assert report.dialogs_without_labels == {}  # the unlabelled wav's dialog has labelled turns
    assert [record.getMessage() for record in iemocap_records(caplog, logging.WARNING)] == [
        "IEMOCAP Session2: 1 labelled turn(s) without a transcript line, dropped: Ses02M_impro03_F001"
    ]
    with pytest.raises(AssertionError, match="lists 0 turns without transcript but drops 1"):
        IemocapReport(data_dir="x", label_set="4class", total=1, dropped={"no transcript": 1})


@pytest.mark.parametrize("damage", ["deleted", "without blocks"])
def test_dialog_with_wavs_but_no_labels_is_reported_and_logged(own_corpus, tmp_path, caplog, damage):
    label_file = own_corpus / SES1_LABELS
    if damage == "deleted":
        label_file.unlink()
    else:
        label_file.write_bytes(label_file.read_bytes().split(b"\r\n\r\n")[0] + b"\r\n")  # the '%' line only
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, report = load_iemocap(own_corpus, cache_dir=tmp_path / "cache", return_report=True)
    assert (report.total, report.kept, report.unlabelled_wavs) == (17, 13, 5)
    assert report.dialogs_without_labels == {1: {"Ses01F_impro01": 5}}
    warning = (
        "IEMOCAP Session1: 1 dialog(s) with wavs but no EmoEvaluation file (or one without label blocks), their "
        "turns are not counted: Ses01F_impro01 (5 wavs)"
    )
    assert [record.getMessage() for record in iemocap_records(caplog, logging.WARNING)] == [warning]
    assert "dialogs with wavs but no labels: Ses01F_impro01" in str(report)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):  # read back from the cache: same report, same warning
        _, cached = load_iemocap(own_corpus, cache_dir=tmp_path / "cache", return_report=True)
    assert cached == report and [record.getMessage() for record in iemocap_records(caplog, logging.WARNING)] == [
        warning
    ]


def _damage(path: Path, kind: str) -> None:
    if kind == "missing":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # the header still declares every frame
        path.write_bytes(path.read_bytes()[:-1000])
    elif kind == "8 kHz":
        sf.write(path, np.zeros(800, dtype=np.int16), 8_000, subtype="PCM_16")
    elif kind == "not a wav":
        path.write_text("not audio at all")


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "missing file"),
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("8 kHz", "not 16 kHz mono 16-bit PCM wav"),
        ("not a wav", "unreadable"),
    ],
)
def test_bad_audio_is_an_error_naming_the_file_or_skipped_on_request(own_corpus, kind, reason):
    wav = own_corpus / SES1_WAV
    assert check_wav(wav) is None
    _damage(wav, kind)
    assert check_wav(wav).startswith(reason)
    with pytest.raises(IemocapAudioError, match=rf"{wav}: {reason}"):
        scan_iemocap(own_corpus)
    _, report = scan_iemocap(own_corpus, skip_bad_audio=True)
    assert report.kept == 16 and report.dropped[f"bad audio (skipped on request): {reason}"] == 1
    assert report.kept + sum(report.dropped.values()) == report.total


def test_bad_audio_error_surfaces_through_load_iemocap(own_corpus, tmp_path):
    _damage(own_corpus / SES1_WAV, "truncated")
    with pytest.raises(IemocapAudioError, match="Ses01F_impro01_F000.wav: truncated"):
        load_iemocap(own_corpus, cache_dir=tmp_path / "cache")
    dataset, report = load_iemocap(own_corpus, cache_dir=tmp_path / "cache", skip_bad_audio=True, return_report=True)
    assert len(dataset) == 16 and "Ses01F_impro01_F000" not in dataset["id"]
    assert report.dropped["bad audio (skipped on request): truncated"] == 1


def test_bad_audio_of_a_dropped_turn_is_not_checked(own_corpus):
    (own_corpus / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav").unlink()  # fru
    assert scan_iemocap(own_corpus)[1].kept == 17


def test_the_scan_steps_compose(corpus):
    contents = read_corpus(corpus)  # parsed once, selected twice
    assert len(contents.labels) == 22 and contents.texts["Ses01F_impro01_F000"] == "Excuse me."
    no_exc = select_turns(contents, "4class_no_exc")
    assert len(no_exc.examples) == 15 and no_exc.dropped["emotion not in label set: exc"] == 2
    assert build_report(contents, no_exc, "4class_no_exc") == scan_iemocap(corpus, label_set="4class_no_exc")[1]
    for call in (
        lambda: check_label_set("five"),
        lambda: select_turns(contents, "five"),
        lambda: scan_iemocap(corpus, "five"),
    ):
        with pytest.raises(ValueError, match="Unknown IEMOCAP label_set 'five'; choose one of"):
            call()


# ------------------------------------------------------------------ the Arrow cache follows the corpus


def label_of(dataset, utterance_id: str) -> str:
    return dataset.features["label"].int2str(dataset["label"][dataset["id"].index(utterance_id)])


def test_cache_notices_a_relabelled_turn(own_corpus, tmp_path):
    assert label_of(load_iemocap(own_corpus, cache_dir=tmp_path), "Ses02M_impro03_F001") == "neutral"
    size = (own_corpus / SES2_LABELS).stat().st_size
    edit(own_corpus / SES2_LABELS, b"\tSes02M_impro03_F001\tneu\t", b"\tSes02M_impro03_F001\tsad\t")
    assert (own_corpus / SES2_LABELS).stat().st_size == size  # only the mtime tells
    dataset, report = load_iemocap(own_corpus, cache_dir=tmp_path, return_report=True)
    assert label_of(dataset, "Ses02M_impro03_F001") == "sad" and report.per_class["sad"] == 5


def test_cache_notices_a_deleted_wav(own_corpus, tmp_path):
    assert len(load_iemocap(own_corpus, cache_dir=tmp_path)) == 17
    assert len(load_iemocap(own_corpus, cache_dir=tmp_path, skip_bad_audio=True)) == 17
    (own_corpus / SES1_WAV).unlink()
    with pytest.raises(IemocapAudioError, match="Ses01F_impro01_F000.wav: missing file"):
        load_iemocap(own_corpus, cache_dir=tmp_path)
    dataset, report = load_iemocap(own_corpus, cache_dir=tmp_path, skip_bad_audio=True, return_report=True)
    assert len(dataset) == 16 and report.dropped["bad audio (skipped on request): missing file"] == 1


def test_cache_notices_a_truncated_then_restored_wav(own_corpus, tmp_path):
    wav = own_corpus / SES1_WAV
    original = wav.read_bytes()
    assert len(load_iemocap(own_corpus, cache_dir=tmp_path, skip_bad_audio=True)) == 17
    _damage(wav, "truncated")
    dataset = load_iemocap(own_corpus, cache_dir=tmp_path, skip_bad_audio=True)
    assert len(dataset) == 16 and "Ses01F_impro01_F000" not in dataset["id"]
    wav.write_bytes(original)
    dataset, report = load_iemocap(own_corpus, cache_dir=tmp_path, skip_bad_audio=True, return_report=True)
    assert len(dataset) == 17 and "Ses01F_impro01_F000" in dataset["id"]
    assert not any(reason.startswith("bad audio") for reason in report.dropped)
    assert decode_audio(dataset[0]["audio"])[0].shape == (3200,)


def test_force_reload_rereads_an_edit_that_kept_size_and_mtime(own_corpus, tmp_path):
    label_file = own_corpus / SES2_LABELS
    assert label_of(load_iemocap(own_corpus, cache_dir=tmp_path), "Ses02M_impro03_F001") == "neutral"
    before = label_file.stat()
    edit(label_file, b"\tSes02M_impro03_F001\tneu\t", b"\tSes02M_impro03_F001\tsad\t")
    os.utime(label_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` of another file would
    assert label_of(load_iemocap(own_corpus, cache_dir=tmp_path), "Ses02M_impro03_F001") == "neutral"  # not seen
    assert label_of(load_iemocap(own_corpus, cache_dir=tmp_path, force_reload=True), "Ses02M_impro03_F001") == "sad"


def test_wrong_data_dir_errors_explain_what_to_pass(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sail\.usc\.edu/iemocap"):
        load_iemocap(None)
    with pytest.raises(FileNotFoundError, match="is not a folder.*licence"):
        load_iemocap(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"parent folder: use data_dir='{corpus}'"):
        load_iemocap(corpus.parent)
    with pytest.raises(FileNotFoundError, match=f"single session folder: use its parent data_dir='{corpus}'"):
        load_iemocap(corpus / "Session2")
    with pytest.raises(FileNotFoundError, match="does not hold Session1..Session5"):
        load_iemocap(tmp_path)


def full_release_report(label_set: str = "4class", **changes) -> IemocapReport:
    """A report with the published counts of the full release (no per-speaker counts), then `changes`."""
    expected = FULL_RELEASE_EXPECTED[label_set]
    not_kept = FULL_RELEASE_TURNS - expected["kept"]
    values = {
        "data_dir": "IEMOCAP_full_release",
        "label_set": label_set,
        "total": FULL_RELEASE_TURNS,
        "kept": expected["kept"],
        "dropped": {"emotion not in label set: xxx": not_kept} if not_kept else {},
        "per_class": dict(expected["per_class"]),
        "per_session": dict(expected.get("per_session", {})),
    }
    return IemocapReport(**{**values, **changes})


def test_full_release_counts_match_in_the_log(caplog):
    for label_set in FULL_RELEASE_EXPECTED:
        report = full_release_report(label_set)
        assert report.compare_with_full_release() == [] and report.matches_full_release
        with caplog.at_level(logging.INFO, logger=LOGGER):
            _log_report(report)
        assert f"IEMOCAP {label_set} counts match the published full-release counts" in caplog.text
    assert not iemocap_records(caplog, logging.WARNING)
    with pytest.raises(AssertionError, match="does not add up"):
        IemocapReport(data_dir="x", label_set="4class", total=3, kept=1, dropped={"emotion not in label set: xxx": 1})


def test_a_full_release_with_losses_says_which_sessions_and_classes_differ(caplog):
    expected = FULL_RELEASE_EXPECTED["4class"]
    report = full_release_report(
        kept=expected["kept"] - 6,
        dropped={
            "emotion not in label set: xxx": FULL_RELEASE_TURNS - expected["kept"],
            "bad audio (skipped on request): truncated": 6,
        },
        per_class={**expected["per_class"], "happy": 1_630},
        per_session={**expected["per_session"], 2: 1_017},
    )
    differences = [
        "kept: expected 5531, got 5525",
        "session 2: expected 1023, got 1017",
        "class happy: expected 1636, got 1630",
    ]
    assert report.compare_with_full_release() == differences and not report.matches_full_release
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _log_report(report)
    [warning] = iemocap_records(caplog, logging.WARNING)
    assert "differs from the published release (" + "; ".join(differences) + ")" in warning.getMessage()
    assert "looks like the full release with losses" in warning.getMessage()

    # A lost label file: 400 fewer turns (4 %) is still a release with losses; the total is named first.
    report = full_release_report(
        total=FULL_RELEASE_TURNS - 400,
        kept=expected["kept"] - 200,
        dropped={"emotion not in label set: xxx": FULL_RELEASE_TURNS - expected["kept"] - 200},
        per_class={**expected["per_class"], "neutral": 1_508},
        per_session={**expected["per_session"], 3: 951},
    )
    assert report.compare_with_full_release()[0] == "labelled turns: expected 10039, got 9639"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _log_report(report)
    assert (
        "session 3: expected 1151, got 951; class neutral" in iemocap_records(caplog, logging.WARNING)[0].getMessage()
    )

    everything = full_release_report(
        "all",
        kept=FULL_RELEASE_TURNS - 1,
        dropped={"no transcript": 1},
        turns_without_transcript={1: ["Ses01F_impro01_F000"]},
        per_class={**FULL_RELEASE_EXPECTED["all"]["per_class"], "fru": 1_848},
    )
    assert everything.compare_with_full_release() == [
        "kept: expected 10039, got 10038",
        "class fru: expected 1849, got 1848",
    ]


def test_a_small_corpus_differs_in_one_info_line(loaded, corpus, cache_dir, caplog):
    _, report = loaded
    assert not report.matches_full_release
    assert report.compare_with_full_release()[:2] == [
        "labelled turns: expected 10039, got 22",
        "kept: expected 5531, got 17",
    ]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        load_iemocap(corpus, cache_dir=cache_dir)
    [line] = [record for record in iemocap_records(caplog) if "published" in record.getMessage()]
    assert "differs from the published release (labelled turns: expected 10039, got 22;" in line.getMessage()
    assert "session 2: expected 1023, got 3" in line.getMessage() and "\n" not in line.getMessage()
    assert "a subset or a synthetic corpus" in line.getMessage() and not iemocap_records(caplog, logging.WARNING)


def test_the_synthetic_corpus_loads_without_warnings(tiny_iemocap_root, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, report = load_iemocap(tiny_iemocap_root, cache_dir=tmp_path / "cache", return_report=True)
    assert report.dialogs_without_labels == {} and report.turns_without_transcript == {}
    assert not report.matches_full_release and not iemocap_records(caplog, logging.WARNING)
    assert (
        len([record for record in iemocap_records(caplog) if "differs from the published" in record.getMessage()]) == 1
    )

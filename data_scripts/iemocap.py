"""IEMOCAP reader: a `datasets` builder for a manually obtained `IEMOCAP_full_release` folder.

IEMOCAP cannot be downloaded automatically (it needs a licence from https://sail.usc.edu/iemocap/), so the builder
reads the folder the user points it to, checks every labelled turn it keeps, and caches the result as Arrow:

    >>> from emodistill.data_scripts.iemocap import load_iemocap
    >>> ds, report = load_iemocap("/data/IEMOCAP_full_release", return_report=True)
    >>> print(report)  # kept / dropped-by-reason / per-class / per-session counts
    >>> report.matches_full_release, report.compare_with_full_release()  # vs the published counts

`datasets>=4` no longer runs loading scripts, so `load_iemocap` instantiates `IemocapBuilder` directly; the builder
can also be used as any other `datasets` builder (`download_and_prepare()`, `as_dataset(split="train")`).

Layout read (see docs/iemocap_format.md): labels from `SessionN/dialog/EmoEvaluation/*.txt` (only the files directly
in that folder, not its `Attribute/`, `Categorical/`, `Self-evaluation/` subfolders), transcripts from
`SessionN/dialog/transcriptions/*.txt`, audio from `SessionN/sentences/wav/<dialog>/<utterance id>.wav`.

`scan_iemocap` works in three steps: `read_corpus` (parse every label and transcript file, list the wavs),
`select_turns` (apply the label set, the transcripts and the wav checks to each labelled turn) and `build_report`.

Nothing is dropped silently: every line of a label file is a block header, a rater line, the `%` comment or blank,
anything else is an `IemocapFormatError`; every labelled turn is either kept or counted under a named reason in an
`IemocapReport` (`report.kept + sum(report.dropped.values()) == report.total`); dialogs whose wavs have no labels
are listed in the report and logged as warnings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import soundfile as sf

from .audio import SAMPLING_RATE

logger = logging.getLogger(__name__)

NUM_SESSIONS = 5

# Every emotion code of the release (an unknown code is an error: it would mean a corrupted or foreign file).
EMOTION_CODES = ("neu", "ang", "sad", "hap", "exc", "fru", "sur", "fea", "oth", "dis", "xxx")

# label set -> (class names, corpus code -> class name); codes absent from the mapping are dropped.
LABEL_SETS: dict[str, tuple[list[str], dict[str, str]]] = {
    "4class": (
        ["neutral", "angry", "sad", "happy"],
        {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"},
    ),
    "4class_no_exc": (
        ["neutral", "angry", "sad", "happy"],
        {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy"},
    ),
    "all": (list(EMOTION_CODES), {code: code for code in EMOTION_CODES}),
}

# Published counts of the full release (docs/iemocap_format.md), compared with every corpus that is read.
FULL_RELEASE_TURNS = 10_039
FULL_RELEASE_CODES = {
    "xxx": 2_507, "fru": 1_849, "neu": 1_708, "ang": 1_103, "sad": 1_084, "exc": 1_041,
    "hap": 595, "sur": 107, "fea": 40, "oth": 3, "dis": 2,
}  # fmt: skip
FULL_RELEASE_EXPECTED = {
    "4class": {
        "kept": 5_531,
        "per_class": {"neutral": 1_708, "angry": 1_103, "sad": 1_084, "happy": 1_636},
        "per_session": {1: 1_085, 2: 1_023, 3: 1_151, 4: 1_031, 5: 1_241},
    },
    "4class_no_exc": {
        "kept": 4_490,
        "per_class": {"neutral": 1_708, "angry": 1_103, "sad": 1_084, "happy": 595},
    },
    "all": {"kept": FULL_RELEASE_TURNS, "per_class": {code: FULL_RELEASE_CODES[code] for code in EMOTION_CODES}},
}
# A corpus whose total is this close to the full release's is taken for the release with losses (a WARNING when its
# counts differ); a smaller one is a subset or the synthetic corpus (an INFO line).
FULL_RELEASE_TOLERANCE = 0.05

DOWNLOAD_INSTRUCTIONS = (
    "IEMOCAP must be obtained manually: request it (licence required) at https://sail.usc.edu/iemocap/, unpack it, "
    "and pass as data_dir the folder `IEMOCAP_full_release` that holds Session1, Session2, ..., Session5."
)

REPORT_FILENAME = "iemocap_report.json"

# A block header of EmoEvaluation/<dialog>.txt, e.g. "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
_LABEL_HEADER = re.compile(r"^\[(\d+\.\d+) - (\d+\.\d+)\]\t(\w+)\t(\w+)\t\[(\d+\.\d+), (\d+\.\d+), (\d+\.\d+)\]$")
# A rater line of a block: categorical "C-E2:\tNeutral;\t()", self-rating "C-F1:" / "C-M1:", dimensional
# "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:" / "A-M1:".
_RATER_LINE = re.compile(r"^[CA]-[EFM]\d+:")
# "Ses01F_impro01_F000", "Ses03M_impro05a_M012", "Ses05M_script01_1b_F003": session, then dialog, then the speaker's
# gender letter in the *last* group (the mocap letter after "Ses01" is not the speaker for cross-gender turns).
_UTTERANCE_ID = re.compile(r"^Ses(\d{2})[FM]_\w+_([FM])\d+$")
_TRANSCRIPT_LINE = re.compile(r"^(\S+) \[(\d+\.\d+)-(\d+\.\d+)\]:(?: (.*))?$")
# Whitespace and byte-order marks around a line (editors add them; they carry nothing).
_LINE_EDGES = re.compile(r"^[\s\ufeff]+|[\s\ufeff]+$")
_LINE_END = re.compile(rb"[\r\n]|\Z")


class IemocapFormatError(ValueError):
    """A corpus file does not follow the IEMOCAP format (the message names the file and line)."""


class IemocapAudioError(ValueError):
    """A labelled utterance's wav is missing, empty, truncated or not 16 kHz mono 16-bit PCM."""


def check_label_set(label_set: str) -> None:
    """Raise `ValueError` naming the choices unless `label_set` is a key of `LABEL_SETS`."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"Unknown IEMOCAP label_set {label_set!r}; choose one of {list(LABEL_SETS)}")


# --------------------------------------------------------------------------------------------------------------------
# Pure parsing functions
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRecord:
    """One labelled turn (one block of an EmoEvaluation file)."""

    utterance_id: str
    emotion_code: str
    start: float
    end: float
    valence: float
    arousal: float
    dominance: float
    session: int
    gender: str
    dialog: str
    source: str  # "path:line" of the block header, for error messages

    @property
    def speaker(self) -> str:
        return f"Ses{self.session:02d}_{self.gender}"

    @property
    def improvised(self) -> bool:
        return "impro" in self.dialog


def parse_utterance_id(utterance_id: str) -> tuple[int, str, str]:
    """Split an utterance id into `(session, gender, dialog)`.

    `gender` is the letter of the id's last group (the speaking actor), `dialog` the id minus its last `_` group:
    `"Ses01F_impro01_M000" -> (1, "M", "Ses01F_impro01")`, `"Ses05M_script01_1b_F003" -> (5, "F", "Ses05M_script01_1b")`.

    Raises:
        ValueError: if the id does not have that shape.
    """
    match = _UTTERANCE_ID.match(utterance_id)
    if match is None:
        raise ValueError(f"not an IEMOCAP utterance id (expected e.g. 'Ses01F_impro01_M000'): {utterance_id!r}")
    return int(match.group(1)), match.group(2), utterance_id.rsplit("_", 1)[0]


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, numbered as an editor numbers them (`lines[0]` is line 1), with surrounding
    whitespace and byte-order marks removed. LF, CRLF and CR line ends are all accepted (the release mixes them).

    Raises:
        IemocapFormatError: naming file, line and column, if the file is not valid UTF-8.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_no = data[: error.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        line_start = max(data.rfind(b"\n", 0, error.start), data.rfind(b"\r", 0, error.start)) + 1
        line_end = _LINE_END.search(data, error.start).start()
        raise IemocapFormatError(
            f"{path}:{line_no}: not UTF-8 text (byte 0x{data[error.start]:02x} at column "
            f"{error.start - line_start + 1}) in {data[line_start:line_end]!r}; re-save the file as UTF-8 or restore "
            "it from the release"
        ) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":  # the newline that ends the last line does not start another one
        lines.pop()
    return [_LINE_EDGES.sub("", line) for line in lines]


def parse_emo_evaluation(path: str | os.PathLike) -> list[LabelRecord]:
    """Parse one `SessionN/dialog/EmoEvaluation/<dialog>.txt` file into its labelled turns, in file order.

    Every line must be one of: a block header (`[start - end]\\tid\\tcode\\t[V, A, D]`), a rater line of a block
    (`C-E2:`, `C-F1:`, `A-E3:`, `A-M1:`, ...), the `%` comment above the first block, or blank. Whitespace and a
    byte-order mark around a line are ignored. Only block headers carry a turn; V/A/D are kept as written (averages
    can fall outside 1-5).

    Raises:
        IemocapFormatError: naming file and line and showing the line, for any other line, a line starting with `[`
            that is not a valid block header, an unknown emotion code, a malformed utterance id, an id repeated
            within the file, or text that is not UTF-8.
    """
    path = Path(path)
    records: list[LabelRecord] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{line_no}"
        if not line or _RATER_LINE.match(line):
            continue
        if line.startswith("%"):
            if records:
                raise IemocapFormatError(f"{where}: '%' comment line {line!r} after the first label block")
            continue
        match = _LABEL_HEADER.match(line)
        if match is None:
            if line.startswith("["):
                raise IemocapFormatError(
                    f"{where}: malformed label block header {line!r}; expected "
                    "'[START - END]<TAB>UTTERANCE_ID<TAB>CODE<TAB>[V, A, D]'"
                )
            # A line of no known kind may be a damaged block header: skipping it could lose a turn unnoticed.
            raise IemocapFormatError(
                f"{where}: unexpected line {line!r}; an EmoEvaluation file holds only block headers "
                "'[START - END]<TAB>UTTERANCE_ID<TAB>CODE<TAB>[V, A, D]', rater lines ('C-E2:', 'C-F1:', 'A-E3:', "
                "...), the '%' comment at the top and blank lines"
            )
        start, end, utterance_id, code, valence, arousal, dominance = match.groups()
        if code not in EMOTION_CODES:
            raise IemocapFormatError(
                f"{where}: unknown emotion code {code!r} for {utterance_id} (known: {EMOTION_CODES})"
            )
        try:
            session, gender, dialog = parse_utterance_id(utterance_id)
        except ValueError as error:
            raise IemocapFormatError(f"{where}: {error}") from None
        if utterance_id in seen:
            raise IemocapFormatError(
                f"{where}: duplicate utterance id {utterance_id} (first at line {seen[utterance_id]})"
            )
        seen[utterance_id] = line_no
        records.append(
            LabelRecord(
                utterance_id=utterance_id,
                emotion_code=code,
                start=float(start),
                end=float(end),
                valence=float(valence),
                arousal=float(arousal),
                dominance=float(dominance),
                session=session,
                gender=gender,
                dialog=dialog,
                source=where,
            )
        )
    return records


def parse_transcriptions(path: str | os.PathLike, skipped: Counter | None = None) -> dict[str, str]:
    """Parse one `SessionN/dialog/transcriptions/<dialog>.txt` file into `{utterance_id: text}`.

    Lines are `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`, split on the first `]: `; the text is kept
    verbatim (tags such as `[LAUGHTER]` included). Whitespace and a byte-order mark around a line are ignored, blank
    lines skipped. Other lines that are not utterances are skipped and, if `skipped` is given, counted in it by
    reason: ids containing `XX` (unlabelled overlapping speech) and lines not starting with `Ses`.

    Raises:
        IemocapFormatError: naming file and line, for a `Ses...` line without `id [start-end]: `, a repeated id, or
            text that is not UTF-8.
    """
    path = Path(path)
    skipped = Counter() if skipped is None else skipped
    texts: dict[str, str] = {}
    where_seen: dict[str, int] = {}
    for line_no, line in enumerate(_read_lines(path), start=1):
        if not line:
            continue
        if not line.startswith("Ses"):
            skipped["transcript line not starting with 'Ses'"] += 1
            continue
        match = _TRANSCRIPT_LINE.match(line)
        if match is None:
            raise IemocapFormatError(
                f"{path}:{line_no}: malformed transcript line {line!r}; expected 'ID [START-END]: TEXT'"
            )
        utterance_id, text = match.group(1), match.group(4) or ""
        if "XX" in utterance_id:
            skipped["transcript id containing 'XX'"] += 1
            continue
        if utterance_id in texts:
            raise IemocapFormatError(
                f"{path}:{line_no}: duplicate transcript for {utterance_id} (first at line {where_seen[utterance_id]})"
            )
        texts[utterance_id] = text.strip()
        where_seen[utterance_id] = line_no
    return texts


def check_wav(path: str | os.PathLike) -> str | None:
    """Return why `path` is not a usable 16 kHz mono 16-bit PCM wav (`"kind"` or `"kind: details"`), or `None`.

    Besides the header (read with `soundfile.info`), the size of the RIFF `data` chunk is compared with the file
    size, because libsndfile quietly reads a truncated file as a shorter one.
    """
    path = Path(path)
    if not path.is_file():
        return "missing file"
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises several types (LibsndfileError, RuntimeError, TypeError)
        return f"unreadable: {error}"
    if (info.format, info.subtype, info.samplerate, info.channels) != ("WAV", "PCM_16", SAMPLING_RATE, 1):
        return (
            f"not 16 kHz mono 16-bit PCM wav: {info.format}/{info.subtype}, {info.samplerate} Hz, "
            f"{info.channels} channel(s)"
        )
    data_chunk = _wav_data_chunk(path)
    if data_chunk is None:
        return "no RIFF 'data' chunk"
    offset, declared = data_chunk
    if offset + declared > size:
        return f"truncated: header declares {declared // 2} frames, file holds {(size - offset) // 2}"
    if declared // 2 != info.frames:
        return f"header declares {declared // 2} frames, soundfile reads {info.frames}"
    if info.frames == 0:
        return "no audio frames"
    return None


def _wav_data_chunk(path: Path) -> tuple[int, int] | None:
    """`(offset, declared size in bytes)` of the `data` chunk of a RIFF/WAVE file."""
    with open(path, "rb") as handle:
        if handle.read(12)[8:12] != b"WAVE":
            return None
        while True:
            chunk_header = handle.read(8)
            if len(chunk_header) < 8:
                return None
            chunk_id, chunk_size = struct.unpack("<4sI", chunk_header)
            if chunk_id == b"data":
                return handle.tell(), chunk_size
            handle.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)  # chunks are padded to an even size


# --------------------------------------------------------------------------------------------------------------------
# Locating the corpus
# --------------------------------------------------------------------------------------------------------------------


def _holds_sessions(folder: Path) -> bool:
    return any((folder / f"Session{session}").is_dir() for session in range(1, NUM_SESSIONS + 1))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """Check that `data_dir` is the `IEMOCAP_full_release` folder (the one holding Session1..Session5).

    Raises:
        FileNotFoundError: with download instructions, and a hint when `data_dir` is the parent of the release
            folder or one of its `SessionN` folders (the two usual mistakes).
    """
    if data_dir is None:
        raise FileNotFoundError(f"No IEMOCAP data_dir given. {DOWNLOAD_INSTRUCTIONS}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"IEMOCAP data_dir {str(root)!r} is not a folder. {DOWNLOAD_INSTRUCTIONS}")
    missing = [f"Session{s}" for s in range(1, NUM_SESSIONS + 1) if not (root / f"Session{s}").is_dir()]
    if not missing:
        incomplete = [
            f"Session{s}/{sub}"
            for s in range(1, NUM_SESSIONS + 1)
            for sub in ("dialog/EmoEvaluation", "dialog/transcriptions", "sentences/wav")
            if not (root / f"Session{s}" / sub).is_dir()
        ]
        if incomplete:
            raise FileNotFoundError(
                f"IEMOCAP data_dir {str(root)!r} lacks {', '.join(incomplete)}: the release looks incomplete. "
                + DOWNLOAD_INSTRUCTIONS
            )
        return root
    hint = ""
    children = sorted(child for child in root.iterdir() if child.is_dir() and _holds_sessions(child))
    if children:
        hint = f" It looks like the parent folder: use data_dir={str(children[0])!r} instead."
    elif re.fullmatch(r"Session\d", root.name) or (root / "dialog").is_dir() or (root / "sentences").is_dir():
        hint = f" It looks like a single session folder: use its parent data_dir={str(root.parent)!r} instead."
    elif missing != [f"Session{s}" for s in range(1, NUM_SESSIONS + 1)]:
        hint = f" Missing: {', '.join(missing)}."
    raise FileNotFoundError(
        f"IEMOCAP data_dir {str(root)!r} does not hold Session1..Session5.{hint} {DOWNLOAD_INSTRUCTIONS}"
    )


def _text_files(folder: Path) -> list[Path]:
    # Only *.txt directly in the folder; `._*` are macOS AppleDouble metadata files, not text.
    return sorted(p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith("._"))


@dataclass
class SessionFiles:
    """Every file of one session that the reader reads (sorted paths, AppleDouble `._*` files left out)."""

    session: int
    label_files: list[Path]  # dialog/EmoEvaluation/*.txt (not its subfolders)
    transcript_files: list[Path]  # dialog/transcriptions/*.txt
    wavs: dict[str, list[Path]]  # dialog -> sentences/wav/<dialog>/*.wav, only dialogs with at least one wav

    def paths(self) -> Iterator[Path]:
        yield from self.label_files
        yield from self.transcript_files
        for wavs in self.wavs.values():
            yield from wavs


def list_corpus_files(root: Path) -> list[SessionFiles]:
    """The files `read_corpus` reads, per session (1..5) of the release folder `root` (see `resolve_data_dir`)."""
    sessions = []
    for session in range(1, NUM_SESSIONS + 1):
        session_dir = root / f"Session{session}"
        wavs = {}
        for dialog_dir in sorted((session_dir / "sentences" / "wav").iterdir()):
            if dialog_dir.is_dir():
                dialog_wavs = sorted(p for p in dialog_dir.glob("*.wav") if not p.name.startswith("._"))
                if dialog_wavs:
                    wavs[dialog_dir.name] = dialog_wavs
        sessions.append(
            SessionFiles(
                session=session,
                label_files=_text_files(session_dir / "dialog" / "EmoEvaluation"),
                transcript_files=_text_files(session_dir / "dialog" / "transcriptions"),
                wavs=wavs,
            )
        )
    return sessions


def corpus_fingerprint(root: Path) -> str:
    """Hash (16 hex digits) of the relative path, size and mtime (ns) of every file the reader reads under `root`.

    Any edit, deletion or addition of a label file, transcript or wav changes it; a file restored with its old
    size *and* mtime (e.g. `cp -p`, `rsync -t`) does not, which is right when its bytes are the old ones too.
    """
    digest = hashlib.sha256()
    for files in list_corpus_files(root):
        for path in files.paths():
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def _some(items: list[str], limit: int = 10) -> str:
    """`items` joined by commas, the first `limit` only (a whole dialog can lack its transcripts)."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


@dataclass
class IemocapReport:
    """What happened to every labelled turn of the corpus.

    `total` counts every block of every EmoEvaluation file; each is either kept or counted once in `dropped` under
    the first reason that applies (label set, then transcript, then audio), so `kept + sum(dropped.values()) ==
    total`. The ids dropped for "no transcript" are listed per session in `turns_without_transcript`.

    Files that hold no labelled turn are counted apart: `dialogs_without_labels` (session -> {dialog: number of
    wavs}: a `sentences/wav/<dialog>/` folder with wavs but no label block of that dialog, i.e. a missing or empty
    EmoEvaluation file, whose turns are therefore not in `total`), `skipped_transcript_lines` (XX ids, non-`Ses`
    lines), `unlabelled_transcripts` (a transcript id with no label block) and `unlabelled_wavs` (a `*.wav` under
    `sentences/wav` with no label block; `._*` AppleDouble and non-wav files are ignored).
    """

    data_dir: str
    label_set: str
    total: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, int] = field(default_factory=dict)
    per_session: dict[int, int] = field(default_factory=dict)
    per_speaker: dict[str, int] = field(default_factory=dict)
    skipped_transcript_lines: dict[str, int] = field(default_factory=dict)
    unlabelled_transcripts: int = 0
    unlabelled_wavs: int = 0
    dialogs_without_labels: dict[int, dict[str, int]] = field(default_factory=dict)
    turns_without_transcript: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        if self.kept + sum(self.dropped.values()) != self.total:
            raise AssertionError(
                f"IEMOCAP report does not add up: kept {self.kept} + dropped {self.dropped} != {self.total}"
            )
        listed = sum(len(ids) for ids in self.turns_without_transcript.values())
        if listed != self.dropped.get("no transcript", 0):
            raise AssertionError(
                f"IEMOCAP report lists {listed} turns without transcript but drops {self.dropped.get('no transcript')}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> IemocapReport:
        values = dict(values)
        for name in ("per_session", "dialogs_without_labels", "turns_without_transcript"):
            values[name] = {int(k): v for k, v in values[name].items()}  # JSON keys are strings
        return cls(**values)

    def compare_with_full_release(self) -> list[str]:
        """Differences from the published counts of the full release, e.g. `["labelled turns: expected 10039, got
        10033", "kept: expected 5531, got 5525", "session 2: expected 1023, got 1017", "class happy: expected 1636,
        got 1630"]`; empty when every published count matches. Per-session counts are published for "4class" only.
        """
        expected = FULL_RELEASE_EXPECTED[self.label_set]
        differences = []
        if self.total != FULL_RELEASE_TURNS:
            differences.append(f"labelled turns: expected {FULL_RELEASE_TURNS}, got {self.total}")
        if self.kept != expected["kept"]:
            differences.append(f"kept: expected {expected['kept']}, got {self.kept}")
        for session, count in expected.get("per_session", {}).items():
            if self.per_session.get(session, 0) != count:
                differences.append(f"session {session}: expected {count}, got {self.per_session.get(session, 0)}")
        for name, count in expected.get("per_class", {}).items():
            if self.per_class.get(name, 0) != count:
                differences.append(f"class {name}: expected {count}, got {self.per_class.get(name, 0)}")
        return differences

    @property
    def matches_full_release(self) -> bool:
        """Whether every published count of the full release matches (the corpus is the complete IEMOCAP)."""
        return not self.compare_with_full_release()

    def problems(self) -> list[str]:
        """One line per session and kind of loss outside the label set: dialogs with wavs but no labels, labelled
        turns without a transcript (the lines `load_iemocap` logs as warnings)."""
        lines = []
        for session, dialogs in sorted(self.dialogs_without_labels.items()):
            lines.append(
                f"Session{session}: {len(dialogs)} dialog(s) with wavs but no EmoEvaluation file (or one without "
                f"label blocks), their turns are not counted: "
                + ", ".join(f"{dialog} ({wavs} wavs)" for dialog, wavs in dialogs.items())
            )
        for session, ids in sorted(self.turns_without_transcript.items()):
            lines.append(
                f"Session{session}: {len(ids)} labelled turn(s) without a transcript line, dropped: {_some(ids)}"
            )
        return lines

    def __str__(self) -> str:
        rows = [("labelled turns", self.total), ("kept", self.kept)]
        rows += [(f"dropped: {reason}", count) for reason, count in self.dropped.items()]
        width = max(len(name) for name, _ in rows)
        lines = [f"IEMOCAP ({self.label_set}) from {self.data_dir}"]
        lines += [f"  {name:<{width}}  {count:>6}" for name, count in rows]
        lines.append("  per class:   " + ", ".join(f"{name} {count}" for name, count in self.per_class.items()))
        lines.append("  per session: " + ", ".join(f"{s}: {count}" for s, count in sorted(self.per_session.items())))
        lines.append("  per speaker: " + ", ".join(f"{s} {count}" for s, count in sorted(self.per_speaker.items())))
        not_turns = [f"{reason} {count}" for reason, count in self.skipped_transcript_lines.items()]
        not_turns += [
            f"transcripts without label {self.unlabelled_transcripts}",
            f"wavs without label {self.unlabelled_wavs}",
        ]
        lines.append("  ignored, not labelled turns: " + ", ".join(not_turns))
        unlabelled_dialogs = [dialog for dialogs in self.dialogs_without_labels.values() for dialog in dialogs]
        if unlabelled_dialogs:
            lines.append("  dialogs with wavs but no labels: " + ", ".join(sorted(unlabelled_dialogs)))
        differences = self.compare_with_full_release()
        lines.append(
            "  full release: " + ("all published counts match" if not differences else f"{len(differences)} differ")
        )
        return "\n".join(lines)


def _log_report(report: IemocapReport) -> None:
    """Log the report (INFO), its problems (WARNING) and how it compares with the published full release."""
    logger.info("%s", report)
    for problem in report.problems():
        logger.warning("IEMOCAP %s", problem)
    differences = report.compare_with_full_release()
    if not differences:
        logger.info("IEMOCAP %s counts match the published full-release counts.", report.label_set)
    elif abs(report.total - FULL_RELEASE_TURNS) <= FULL_RELEASE_TOLERANCE * FULL_RELEASE_TURNS:
        logger.warning(
            "IEMOCAP (%s) differs from the published release (%s); with %d labelled turns (the full release has %d) "
            "it looks like the full release with losses: the dropped reasons and warnings above say where.",
            report.label_set,
            "; ".join(differences),
            report.total,
            FULL_RELEASE_TURNS,
        )
    else:
        logger.info(
            "IEMOCAP (%s) differs from the published release (%s); with %d labelled turns (the full release has %d) "
            "it is a subset or a synthetic corpus.",
            report.label_set,
            "; ".join(differences),
            report.total,
            FULL_RELEASE_TURNS,
        )


# --------------------------------------------------------------------------------------------------------------------
# Corpus scan: read, select, report
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class CorpusContents:
    """What `read_corpus` found: every label block, transcript and wav of the corpus, nothing selected yet."""

    root: Path
    files: list[SessionFiles]
    labels: dict[str, LabelRecord]  # utterance id -> its label block, every block of every EmoEvaluation file
    texts: dict[str, str]  # utterance id -> transcript text
    skipped_transcript_lines: Counter  # reason -> count of transcript lines that are not utterances


@dataclass
class Selection:
    """What `select_turns` kept and why it dropped the rest."""

    examples: list[dict]  # kept rows (schema of `IemocapBuilder`, `audio` as the wav path), sorted by utterance id
    dropped: Counter  # reason -> number of labelled turns
    without_transcript: list[str]  # ids dropped for "no transcript", sorted


def read_corpus(root: Path) -> CorpusContents:
    """Step 1: parse every label and transcript file of the release folder `root` and list its wavs.

    Raises:
        IemocapFormatError: for malformed label/transcript files, a label block in another session's folder, or an
            utterance id labelled twice (naming both places).
    """
    files = list_corpus_files(root)
    labels: dict[str, LabelRecord] = {}
    texts: dict[str, str] = {}
    skipped_lines: Counter = Counter()
    for session_files in files:
        session = session_files.session
        for label_file in session_files.label_files:
            for record in parse_emo_evaluation(label_file):
                if record.session != session:
                    raise IemocapFormatError(f"{record.source}: {record.utterance_id} is not a Session{session} id")
                if record.utterance_id in labels:
                    raise IemocapFormatError(
                        f"duplicate utterance id {record.utterance_id}: labelled at "
                        f"{labels[record.utterance_id].source} and at {record.source}"
                    )
                labels[record.utterance_id] = record
        for transcript_file in session_files.transcript_files:
            texts.update(parse_transcriptions(transcript_file, skipped=skipped_lines))
    return CorpusContents(root=root, files=files, labels=labels, texts=texts, skipped_transcript_lines=skipped_lines)


def select_turns(contents: CorpusContents, label_set: str = "4class", skip_bad_audio: bool = False) -> Selection:
    """Step 2: keep each labelled turn whose code is in the label set, that has a transcript and a good wav; count
    every other one under the first reason that applies (label set, then transcript, then audio).

    Raises:
        IemocapAudioError: for a turn that passes the first two checks but whose wav is bad, unless
            `skip_bad_audio` (then it is counted as dropped).
    """
    check_label_set(label_set)
    _, code_to_class = LABEL_SETS[label_set]
    selection = Selection(examples=[], dropped=Counter(), without_transcript=[])
    for utterance_id in sorted(contents.labels):
        record = contents.labels[utterance_id]
        if record.emotion_code not in code_to_class:
            selection.dropped[f"emotion not in label set: {record.emotion_code}"] += 1
            continue
        if utterance_id not in contents.texts:
            selection.dropped["no transcript"] += 1
            selection.without_transcript.append(utterance_id)
            continue
        wav = contents.root / f"Session{record.session}" / "sentences" / "wav" / record.dialog / f"{utterance_id}.wav"
        problem = check_wav(wav)
        if problem is not None:
            if not skip_bad_audio:
                raise IemocapAudioError(
                    f"{wav}: {problem} (labelled at {record.source}). Restore the file from the release, or pass "
                    "skip_bad_audio=True to drop such turns (they are counted in the report)."
                )
            logger.warning("Skipping %s: %s", wav, problem)
            selection.dropped[f"bad audio (skipped on request): {problem.split(':')[0]}"] += 1
            continue
        selection.examples.append(
            {
                "id": utterance_id,
                "audio": str(wav),
                "label": code_to_class[record.emotion_code],
                "emotion_code": record.emotion_code,
                "speaker": record.speaker,
                "session": record.session,
                "gender": record.gender,
                "dialog": record.dialog,
                "improvised": record.improvised,
                "text": contents.texts[utterance_id],
                "start": record.start,
                "end": record.end,
                "valence": record.valence,
                "arousal": record.arousal,
                "dominance": record.dominance,
            }
        )
    return selection


def build_report(contents: CorpusContents, selection: Selection, label_set: str) -> IemocapReport:
    """Step 3: the `IemocapReport` of a selection (counts per reason, class, session and speaker; unlabelled files)."""
    class_names, _ = LABEL_SETS[label_set]
    examples = selection.examples
    per_class = Counter(example["label"] for example in examples)
    labelled_dialogs = {record.dialog for record in contents.labels.values()}
    dialogs_without_labels = {}
    for files in contents.files:
        unlabelled = {dialog: len(wavs) for dialog, wavs in files.wavs.items() if dialog not in labelled_dialogs}
        if unlabelled:
            dialogs_without_labels[files.session] = unlabelled
    turns_without_transcript: dict[int, list[str]] = {}
    for utterance_id in selection.without_transcript:
        turns_without_transcript.setdefault(contents.labels[utterance_id].session, []).append(utterance_id)
    wav_ids = {wav.stem for files in contents.files for wavs in files.wavs.values() for wav in wavs}
    return IemocapReport(
        data_dir=str(contents.root),
        label_set=label_set,
        total=len(contents.labels),
        kept=len(examples),
        dropped=dict(sorted(selection.dropped.items())),
        per_class={name: per_class[name] for name in class_names},
        per_session=dict(sorted(Counter(example["session"] for example in examples).items())),
        per_speaker=dict(sorted(Counter(example["speaker"] for example in examples).items())),
        skipped_transcript_lines=dict(sorted(contents.skipped_transcript_lines.items())),
        unlabelled_transcripts=len(contents.texts.keys() - contents.labels.keys()),
        unlabelled_wavs=len(wav_ids - contents.labels.keys()),
        dialogs_without_labels=dialogs_without_labels,
        turns_without_transcript=dict(sorted(turns_without_transcript.items())),
    )


def scan_iemocap(
    data_dir: str | os.PathLike, label_set: str = "4class", skip_bad_audio: bool = False
) -> tuple[list[dict], IemocapReport]:
    """Read the whole corpus and return `(examples, report)`: the kept rows (schema of `IemocapBuilder`, `audio` as
    the wav path, sorted by utterance id) and what happened to every labelled turn.

    Raises:
        ValueError: for an unknown `label_set`.
        FileNotFoundError: if `data_dir` is not the release folder.
        IemocapFormatError: for malformed label/transcript files or an utterance id labelled twice (naming both).
        IemocapAudioError: for a kept turn whose wav is bad, unless `skip_bad_audio` (then it is counted as dropped).
    """
    check_label_set(label_set)
    contents = read_corpus(resolve_data_dir(data_dir))
    selection = select_turns(contents, label_set, skip_bad_audio)
    return selection.examples, build_report(contents, selection, label_set)


# --------------------------------------------------------------------------------------------------------------------
# datasets builder
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class IemocapConfig(datasets.BuilderConfig):
    """Options of `IemocapBuilder`.

    Args:
        label_set: `"4class"` (neutral, angry, sad, happy with `exc` merged into happy), `"4class_no_exc"` (`exc`
            dropped) or `"all"` (every corpus code is a class).
        skip_bad_audio: drop (and count) turns whose wav is missing/empty/truncated/unreadable instead of raising.
    """

    label_set: str = "4class"
    skip_bad_audio: bool = False


def _module_fingerprint() -> str:
    # Part of the cache path, so a change to this reader never reuses Arrow files written by an older one.
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cache_hash(data_dir: str | os.PathLike | None) -> str:
    """The builder's `hash` (16 hex digits, a folder of the cache path): this module's fingerprint combined with
    `corpus_fingerprint` of `data_dir`, so that editing, deleting or restoring a corpus file gives another cache.

    Raises:
        FileNotFoundError: if `data_dir` is given but is not the release folder (see `resolve_data_dir`).
    """
    parts = [_module_fingerprint()]
    if data_dir is not None:  # without one, preparing fails later with the download instructions
        parts.append(corpus_fingerprint(resolve_data_dir(data_dir)))
    return hashlib.sha256("-".join(parts).encode()).hexdigest()[:16]


class IemocapBuilder(datasets.GeneratorBasedBuilder):
    """Builder for a local `IEMOCAP_full_release` folder; one `train` split holding every kept turn.

    Example:
        >>> builder = IemocapBuilder(data_dir="/data/IEMOCAP_full_release", config_name="4class_no_exc")
        >>> builder.download_and_prepare()
        >>> dataset = builder.as_dataset(split="train")
        >>> builder.report  # IemocapReport, also when the Arrow cache was reused

    The cache lives under `cache_dir` (default: the `datasets` cache, `HF_DATASETS_CACHE`) in
    `iemocap/<config id, which encodes data_dir and options>/<version>/<cache_hash(data_dir)>/`, beside the report
    in `iemocap_report.json`. The hash covers this module and the path, size and mtime of every corpus file read, so
    an edited, deleted or restored file is noticed when the builder is created (each state of the corpus gets its
    own folder, small: audio is stored as paths). To rebuild anyway, pass
    `download_mode="force_redownload"` to `download_and_prepare`.
    """

    VERSION = datasets.Version("1.0.0")  # also the version of BUILDER_CONFIGS
    BUILDER_CONFIG_CLASS = IemocapConfig
    BUILDER_CONFIGS = [IemocapConfig(name=name, label_set=name, version="1.0.0") for name in LABEL_SETS]
    DEFAULT_CONFIG_NAME = "4class"

    def __init__(self, *args, **kwargs):
        # `IemocapBuilder(label_set="all")` picks the config of that name rather than relabelling the default one.
        if "label_set" in kwargs and kwargs.get("config_name") is None:
            kwargs["config_name"] = kwargs.pop("label_set")
        if "hash" not in kwargs:
            kwargs["hash"] = cache_hash(kwargs.get("data_dir"))
        kwargs.setdefault("dataset_name", "iemocap")
        super().__init__(*args, **kwargs)
        self._report: IemocapReport | None = None

    def _info(self) -> datasets.DatasetInfo:
        check_label_set(self.config.label_set)
        class_names, _ = LABEL_SETS[self.config.label_set]
        return datasets.DatasetInfo(
            description="IEMOCAP (Busso et al., 2008): dyadic acted sessions, one row per labelled utterance.",
            homepage="https://sail.usc.edu/iemocap/",
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "audio": datasets.Audio(sampling_rate=SAMPLING_RATE),
                    "label": datasets.ClassLabel(names=class_names),
                    "emotion_code": datasets.Value("string"),
                    "speaker": datasets.Value("string"),
                    "session": datasets.Value("int32"),
                    "gender": datasets.Value("string"),
                    "dialog": datasets.Value("string"),
                    "improvised": datasets.Value("bool"),
                    "text": datasets.Value("string"),
                    "start": datasets.Value("float32"),
                    "end": datasets.Value("float32"),
                    "valence": datasets.Value("float32"),
                    "arousal": datasets.Value("float32"),
                    "dominance": datasets.Value("float32"),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        # The whole corpus is checked here, before any Arrow file is written, so that a bad file raises its own
        # error (errors inside `_generate_examples` are re-raised by `datasets` as a generic DatasetGenerationError).
        examples, self._report = scan_iemocap(
            self.config.data_dir, label_set=self.config.label_set, skip_bad_audio=self.config.skip_bad_audio
        )
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"examples": examples})]

    def _generate_examples(self, examples: list[dict]) -> Iterator[tuple[str, dict]]:
        for example in examples:
            yield example["id"], example

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_splits_kwargs):
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_splits_kwargs)
        # `_output_dir` is still the temporary folder here: the report is moved into the cache with the Arrow files.
        with open(os.path.join(self._output_dir, REPORT_FILENAME), "w", encoding="utf-8") as handle:
            json.dump(self._report.to_dict(), handle, indent=2)

    @property
    def report(self) -> IemocapReport:
        """The report of the prepared data: from this process's preparation, else from the cache, else re-scanned."""
        if self._report is None:
            cached = Path(self.cache_dir) / REPORT_FILENAME
            if cached.is_file():
                self._report = IemocapReport.from_dict(json.loads(cached.read_text(encoding="utf-8")))
            else:
                _, self._report = scan_iemocap(
                    self.config.data_dir, label_set=self.config.label_set, skip_bad_audio=self.config.skip_bad_audio
                )
        return self._report


def load_iemocap(
    data_dir: str | os.PathLike,
    *,
    label_set: str = "4class",
    skip_bad_audio: bool = False,
    cache_dir: str | os.PathLike | None = None,
    download_mode: str | datasets.DownloadMode | None = None,
    return_report: bool = False,
    force_reload: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, IemocapReport]:
    """Load IEMOCAP as one `datasets.Dataset` (prepared once, then read from the Arrow cache).

    Args:
        data_dir: the `IEMOCAP_full_release` folder (the one holding Session1..Session5).
        label_set: `"4class"` (default; exc merged into happy), `"4class_no_exc"` or `"all"`.
        skip_bad_audio: drop and count turns with a missing/empty/truncated/unreadable wav instead of raising.
        cache_dir: where the Arrow files go (default: the `datasets` cache).
        download_mode: `"force_redownload"` re-reads the corpus even if a cache exists.
        return_report: also return the `IemocapReport` (it is always logged, with the comparison with the published
            full-release counts and a warning per session for dialogs without labels and turns without transcript).
        force_reload: re-read the corpus even if a cache exists (the same as `download_mode="force_redownload"`).
            Edits to the corpus files are noticed without it (see `IemocapBuilder`).

    Returns:
        The dataset (schema: see `IemocapBuilder._info`), or `(dataset, report)` if `return_report`.
    """
    check_label_set(label_set)
    root = resolve_data_dir(data_dir)
    if force_reload:
        download_mode = datasets.DownloadMode.FORCE_REDOWNLOAD
    builder = IemocapBuilder(
        data_dir=str(root.resolve()),
        cache_dir=None if cache_dir is None else str(cache_dir),
        config_name=label_set,
        skip_bad_audio=skip_bad_audio,
    )
    builder.download_and_prepare(download_mode=download_mode)
    dataset = builder.as_dataset(split="train")
    report = builder.report
    _log_report(report)
    return (dataset, report) if return_report else dataset

"""Writing the synthetic release: the wavs (espeak-ng), the label, transcript and rating files with the release's
quirks, the manifest of ground truth, and `generate_synthetic_iemocap`, which does it all (cached by settings)."""

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import SAMPLING_RATE
from ..espeak import SpeechSettings, espeak_version, find_espeak, synthesise
from ..generated_folder import partial_folder, publish, reusable
from .plan import Utterance, plan_corpus, validate_proportions
from .tables import (
    APPLEDOUBLE_SESSIONS,
    CODE_NAMES,
    CODE_VAD,
    CONFIG_FILENAME,
    CORPUS_DIRNAME,
    CRLF_SESSIONS,
    DEFAULT_CARRIER_PROPORTIONS,
    GENERATOR_VERSION,
    MANIFEST_FILENAME,
    NON_UTTERANCE_TEXTS,
    RATER_COMMENTS,
)

logger = logging.getLogger(__name__)


def _synthesise(espeak: str, utterance: Utterance) -> np.ndarray:
    """16 kHz int16 waveform of one turn, shape (num_samples,)."""
    # espeak-ng gives "!" an excited intonation: a voice that does not carry the emotion reads it as a full stop.
    spoken = utterance.text if utterance.voice_emotion != "neu" else utterance.text.replace("!", ".")
    settings = SpeechSettings(
        voice=utterance.espeak_voice,
        base_pitch=utterance.base_pitch,
        speed=utterance.speed,
        rate_pct=utterance.rate_pct,
        pitch_pct=utterance.pitch_pct,
        range_pct=utterance.range_pct,
        gain_db=utterance.gain_db,
        noise_seed=utterance.noise_seed,
    )
    return synthesise(espeak, spoken, settings, utterance.id)


def _write_wav(espeak: str, utterance: Utterance, wav_dir: Path) -> float:
    """Synthesise and write `<wav_dir>/<dialog>/<id>.wav`; return its duration in seconds."""
    waveform = _synthesise(espeak, utterance)
    sf.write(wav_dir / utterance.dialog / f"{utterance.id}.wav", waveform, SAMPLING_RATE, subtype="PCM_16")
    return waveform.size / SAMPLING_RATE


def _assign_times(utterances: list[Utterance], durations: list[float]) -> None:
    """Lay each dialog's turns on a timeline (planned order, planned gaps), end = start + wav duration."""
    previous: dict[str, tuple[float, float]] = {}
    for utterance, duration in zip(utterances, durations):
        prev_start, prev_end = previous.get(utterance.dialog, (0.0, 2.0))
        start = round(max(prev_start + 0.05, prev_end + utterance.gap), 4)
        utterance.start, utterance.end = start, round(start + duration, 4)
        previous[utterance.dialog] = (utterance.start, utterance.end)


def _rate_dimensions(utterance: Utterance, rng: np.random.Generator) -> list[str]:
    """`A-E*` / `A-F1` rater lines; sets the utterance's V/A/D to the evaluators' averages (as the release does)."""
    raters = [f"A-E{k}" for k in sorted(rng.choice(np.arange(1, 5), size=rng.integers(2, 4), replace=False))]
    self_rater = f"A-{utterance.gender}1"
    ratings = {}
    for rater in [*raters, self_rater]:
        values = np.clip(np.round(np.array(CODE_VAD[utterance.emotion]) + rng.normal(0, 0.7, size=3)), 1, 5)
        # Rare out-of-scale ratings give averages such as 5.5 or 0.5, as found in the release.
        if rng.random() < 0.03:
            dim = rng.integers(3)
            values[dim] = 6 if values[dim] >= 3 else 0
        # Some dimensional lines lack the dominance value.
        ratings[rater] = values if rater == raters[0] or rng.random() > 0.05 else values[:2]
    for dim, name in enumerate(("valence", "arousal", "dominance")):
        setattr(utterance, name, round(float(np.mean([ratings[r][dim] for r in raters if len(ratings[r]) > dim])), 4))
    lines = []
    for rater, values in ratings.items():
        fields = f"val {values[0]:.0f}; act {values[1]:.0f};" + (f" dom  {values[2]:.0f};" if len(values) == 3 else "")
        lines.append(f"{rater}:\t{fields}\t({_comment(rng)})")
    return lines


def _comment(rng: np.random.Generator) -> str:
    return RATER_COMMENTS[rng.integers(len(RATER_COMMENTS))] if rng.random() < 0.15 else ""


def _rate_categories(utterance: Utterance, rng: np.random.Generator) -> list[tuple[str, list[str], str]]:
    """(rater, labels, comment) of three `C-E*` evaluators and the actor (`C-F1`/`C-M1`); majority = the code."""
    names = list(CODE_NAMES.values())
    raters = [f"C-E{k}" for k in sorted(rng.choice(np.arange(1, 7), size=3, replace=False))]
    if utterance.emotion == "xxx":  # no majority: three different labels
        labels = [[name] for name in rng.choice(names, size=3, replace=False)]
    else:
        own = CODE_NAMES[utterance.emotion]
        others = [name for name in names if name != own]
        agreeing = 3 if rng.random() < 0.6 else 2
        labels = [[own]] * agreeing + [[others[rng.integers(len(others))]] for _ in range(3 - agreeing)]
        labels = [labels[i] for i in rng.permutation(3)]
    labels = [
        lab + [names[rng.integers(len(names))]] if rng.random() < 0.1 and lab[0] != "Other" else lab for lab in labels
    ]
    self_label = CODE_NAMES.get(utterance.emotion, "Other") if rng.random() < 0.7 else names[rng.integers(len(names))]
    rated = [(rater, list(dict.fromkeys(lab)), _comment(rng)) for rater, lab in zip(raters, labels)]
    return rated + [(f"C-{utterance.gender}1", [self_label], _comment(rng))]


def _write_text_files(root: Path, utterances: list[Utterance], seed: int) -> None:
    """EmoEvaluation (+ Categorical/Attribute/Self-evaluation) and transcriptions files of every dialog."""
    rng = np.random.default_rng([seed, 1])
    by_dialog: dict[str, list[Utterance]] = {}
    for utterance in utterances:
        by_dialog.setdefault(utterance.dialog, []).append(utterance)
    for dialog, turns in by_dialog.items():
        session = turns[0].session
        dialog_dir = root / f"Session{session}" / "dialog"
        blocks, categorical, attribute, self_evaluation = [], {}, {}, []
        for utterance in sorted(turns, key=lambda u: u.id):  # blocks are ordered by id, not time
            categories = _rate_categories(utterance, rng)
            dimensions = _rate_dimensions(utterance, rng)
            header = (
                f"[{utterance.start:.4f} - {utterance.end:.4f}]\t{utterance.id}\t{utterance.emotion}\t"
                f"[{utterance.valence:.4f}, {utterance.arousal:.4f}, {utterance.dominance:.4f}]"
            )
            rater_lines = [
                f"{rater}:\t{''.join(f'{lab}; ' for lab in labels).rstrip()}\t({comment})"
                for rater, labels, comment in categories
            ]
            blocks.append("\n".join([header, *rater_lines, *dimensions]) + "\n")
            for rater, labels, comment in categories[:3]:
                evaluator = rater.split("-")[1].lower()
                cat_labels = " ".join(f"{'Neutral state' if lab == 'Neutral' else lab};" for lab in labels)
                categorical.setdefault(evaluator, []).append(f"{utterance.id} :{cat_labels} ({comment})")
            for line in dimensions:
                rater, fields = line.split(":\t", 1)
                attribute.setdefault(rater.split("-")[1].lower(), []).append(
                    f"{utterance.id} :{fields.replace(chr(9), ' ')}"
                )
            self_label = categories[3][1][0]
            self_evaluation.append(f"{utterance.id} :{'Neutral state' if self_label == 'Neutral' else self_label};")
        newline = "\r\n" if session in CRLF_SESSIONS else "\n"
        emo_text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(blocks) + "\n"
        _write_text(dialog_dir / "EmoEvaluation" / f"{dialog}.txt", emo_text, newline)
        for evaluator, lines in categorical.items():
            _write_text(dialog_dir / "EmoEvaluation" / "Categorical" / f"{dialog}_{evaluator}_cat.txt", lines)
        for evaluator, lines in attribute.items():
            _write_text(dialog_dir / "EmoEvaluation" / "Attribute" / f"{dialog}_{evaluator}_atr.txt", lines)
        _write_text(dialog_dir / "EmoEvaluation" / "Self-evaluation" / f"{dialog}.txt", self_evaluation)

        # Transcripts are in time order and also hold turns that are not labelled utterances (`XX` ids).
        lines = [(u.start, f"{u.id} [{u.start:08.4f}-{u.end:08.4f}]: {u.text}") for u in turns]
        for k, anchor in enumerate(sorted(rng.choice(len(turns), size=max(1, len(turns) // 10), replace=False))):
            gender = "FM"[rng.integers(2)]
            start = turns[anchor].end + 0.01
            text = NON_UTTERANCE_TEXTS[rng.integers(len(NON_UTTERANCE_TEXTS))]
            lines.append((start, f"{dialog}_{gender}XX{k} [{start:08.4f}-{start + 0.35:08.4f}]: {text}"))
        _write_text(dialog_dir / "transcriptions" / f"{dialog}.txt", [line for _, line in sorted(lines)])


def _write_text(path: Path, content: str | list[str], newline: str = "\n") -> None:
    text = content if isinstance(content, str) else "".join(line + "\n" for line in content)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))


README_TEXT = """\
SYNTHETIC IEMOCAP_full_release -- NOT THE REAL CORPUS

This folder was generated by `emodistill-synthetic-iemocap` (emodistill.data_scripts.synthetic_iemocap).
It imitates the layout and file formats of the USC IEMOCAP release (Busso et al., 2008) so that code written for
the real corpus can be tested without it. All speech is synthesised with espeak-ng; all labels are made up.
Do not report results on it as IEMOCAP results.

Emotion is carried by the words only, by the voice only, or by both (see synthetic_manifest.jsonl for the truth
per utterance and synthetic_config.json for the settings). Only sentences/wav, dialog/EmoEvaluation and
dialog/transcriptions are populated; dialog/wav, lab, avi, MOCAP_* and ForcedAlignment are absent.
"""


def _apple_double(path: Path) -> None:
    """A macOS AppleDouble resource file (`._name`), as found among the real release's wavs."""
    header = bytes.fromhex("00051607") + bytes.fromhex("00020000") + b"Mac OS X        " + b"\x00" * 8
    path.write_bytes(header + b"\x00" * (4096 - len(header)))


def _corpus_settings(
    utterances_per_speaker: int, other_utterances_per_speaker: int, carrier_proportions: dict[str, float], seed: int
) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "espeak_ng": espeak_version(find_espeak()),
        "utterances_per_speaker": utterances_per_speaker,
        "other_utterances_per_speaker": other_utterances_per_speaker,
        "carrier_proportions": carrier_proportions,
        "seed": seed,
    }


def generate_synthetic_iemocap(
    output_dir: str | os.PathLike,
    *,
    utterances_per_speaker: int = 45,
    other_utterances_per_speaker: int = 9,
    carrier_proportions: dict[str, float] | None = None,
    seed: int = 0,
    num_workers: int | None = None,
) -> Path:
    """Write a synthetic corpus to `<output_dir>/IEMOCAP_full_release` and return that path.

    Args:
        output_dir: folder that receives `IEMOCAP_full_release/` (created if missing).
        utterances_per_speaker: turns per speaker with a 4-class code (neu, ang, sad, hap, exc), 10 speakers.
            The default (45, i.e. 450 after the 4-class protocol, ~1-2.5 s each) suits a CPU demo.
        other_utterances_per_speaker: turns per speaker with a code the 4-class protocol drops
            (xxx, fru, sur, fea, oth, dis); all six appear once there are at least 6 in total.
        carrier_proportions: share of utterances whose emotion is carried by `"words"`, `"voice"` or `"both"`
            (default 0.3 / 0.3 / 0.4), spread evenly over emotions and speakers.
        seed: the same seed and settings give byte-identical files.
        num_workers: parallel espeak-ng processes (default: number of CPUs).

    A corpus generated with the same settings is reused; one with other settings is replaced. A folder of that
    name that this function did not generate (no `synthetic_config.json`) is never touched.
    """
    if utterances_per_speaker < 1 or other_utterances_per_speaker < 0:
        raise ValueError(
            f"Need utterances_per_speaker >= 1 and other_utterances_per_speaker >= 0, got "
            f"{utterances_per_speaker} and {other_utterances_per_speaker}"
        )
    carrier_proportions = validate_proportions(carrier_proportions or DEFAULT_CARRIER_PROPORTIONS)
    espeak = find_espeak()
    output_dir = Path(output_dir)
    root = output_dir / CORPUS_DIRNAME
    settings = _corpus_settings(utterances_per_speaker, other_utterances_per_speaker, carrier_proportions, seed)
    if reusable(root, settings, CONFIG_FILENAME):
        return root

    started = time.perf_counter()
    utterances = plan_corpus(utterances_per_speaker, other_utterances_per_speaker, carrier_proportions, seed)
    partial = partial_folder(root)
    for session in sorted({u.session for u in utterances}):
        for sub in (
            "EmoEvaluation/Categorical",
            "EmoEvaluation/Attribute",
            "EmoEvaluation/Self-evaluation",
            "transcriptions",
        ):
            (partial / f"Session{session}" / "dialog" / sub).mkdir(parents=True, exist_ok=True)
    for dialog, session in sorted({(u.dialog, u.session) for u in utterances}):
        (partial / f"Session{session}" / "sentences" / "wav" / dialog).mkdir(parents=True, exist_ok=True)

    with ThreadPoolExecutor(max_workers=num_workers or os.cpu_count() or 1) as pool:
        durations = list(
            pool.map(
                lambda u: _write_wav(espeak, u, partial / f"Session{u.session}" / "sentences" / "wav"), utterances
            )
        )
    _assign_times(utterances, durations)
    _write_text_files(partial, utterances, seed)
    for dialog, session in sorted({(u.dialog, u.session) for u in utterances}):
        if session in APPLEDOUBLE_SESSIONS:
            first_id = min(u.id for u in utterances if u.dialog == dialog)
            _apple_double(partial / f"Session{session}" / "sentences" / "wav" / dialog / f"._{first_id}.wav")
    (partial / "Documentation").mkdir()
    (partial / "Documentation" / "README.txt").write_text(README_TEXT)
    with open(partial / MANIFEST_FILENAME, "w") as manifest:
        for utterance in sorted(utterances, key=lambda u: u.id):
            row = asdict(utterance)
            del row["gap"]
            manifest.write(json.dumps(row) + "\n")
    publish(partial, root, settings, CONFIG_FILENAME)
    logger.info(
        "Wrote %d synthetic utterances (%.1f s of speech) to %s in %.1f s",
        len(utterances), sum(durations), root, time.perf_counter() - started,
    )  # fmt: skip
    return root


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """Rows of `<root>/synthetic_manifest.jsonl` (ground truth per utterance), ordered by id."""
    with open(Path(root) / MANIFEST_FILENAME) as manifest:
        return [json.loads(line) for line in manifest]

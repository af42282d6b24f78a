"""Planning the synthetic corpus: every turn's id, dialog, emotion code, carrier, text and voice settings, drawn in a
fixed order from the seed (no audio yet)."""

import zlib
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from .tables import (
    AMBIGUOUS_VOICE_CODES,
    CARRIERS,
    CODE_TEXT_KIND,
    EMOTION_PROSODY,
    FOUR_CLASS_CODE_WEIGHTS,
    IRREGULAR_DIALOG_NAMES,
    OTHER_CODE_WEIGHTS,
    PROSODY_JITTER,
    SCRIPT_NAMES,
    SPEAKER_VOICES,
    TURNS_PER_DIALOG,
    Prosody,
)
from .text import make_sentence


@dataclass
class Utterance:
    """One planned turn, everything but its audio; also the row of `synthetic_manifest.jsonl`."""

    id: str
    session: int
    speaker: str
    gender: str
    dialog: str
    improvised: bool
    emotion: str
    carrier: str
    text_kind: str
    voice_emotion: str
    text: str
    espeak_voice: str
    base_pitch: int
    speed: int
    rate_pct: int
    pitch_pct: int
    range_pct: int
    gain_db: float
    noise_seed: int
    gap: float
    start: float = 0.0
    end: float = 0.0
    valence: float = 0.0
    arousal: float = 0.0
    dominance: float = 0.0


def _spread(weights: dict[str, float], n: int) -> list[str]:
    """`n` labels whose running counts track `weights` as closely as possible (every prefix is near-proportional).

    Used instead of random draws so that proportions hold exactly even for tiny corpora and every speaker's share is
    near-proportional too.
    """
    counts = Counter()
    labels = []
    for i in range(n):
        label = max(weights, key=lambda k: weights[k] * (i + 1) - counts[k])
        counts[label] += 1
        labels.append(label)
    return labels


def validate_proportions(carrier_proportions: dict[str, float]) -> dict[str, float]:
    if set(carrier_proportions) != set(CARRIERS):
        raise ValueError(
            f"carrier_proportions must have exactly the keys {CARRIERS}, got {sorted(carrier_proportions)}"
        )
    if any(p < 0 for p in carrier_proportions.values()) or abs(sum(carrier_proportions.values()) - 1) > 1e-6:
        raise ValueError(f"carrier_proportions must be non-negative and sum to 1, got {carrier_proportions}")
    return {carrier: float(carrier_proportions[carrier]) for carrier in CARRIERS}


def _dialog_names(session: int, num_dialogs: int) -> list[str]:
    """Alternate improvised and scripted dialogs, each done once with the female and once with the male marker."""
    names = []
    for slot in range(num_dialogs):
        pair, marker = divmod(slot // 2, 2)
        marker_letter = "FM"[marker]
        if slot % 2 == 0:
            name = f"Ses{session:02d}{marker_letter}_impro{pair + 1:02d}"
        else:
            name = f"Ses{session:02d}{marker_letter}_script{SCRIPT_NAMES[pair % len(SCRIPT_NAMES)]}"
        names.append(IRREGULAR_DIALOG_NAMES.get((session, slot), name))
    if len(set(names)) != len(names):
        raise ValueError(f"Too many dialogs for session {session}: names repeat ({names})")
    return names


def _script_key(dialog: str) -> str:
    """`Ses05M_script01_1b` -> `script01_1`: the script whose lines a scripted dialog speaks."""
    return dialog.split("_", 1)[1].rstrip("ab")


def _script_line(seed: int, script: str, text_kind: str, index: int) -> str:
    """The `index`-th line of `text_kind` in `script`: the same in every session, as the real scripts are."""
    rng = np.random.default_rng([seed, zlib.crc32(script.encode()), zlib.crc32(text_kind.encode()), index])
    return make_sentence(text_kind, rng)


def _voice_prosody(code: str, carrier: str, rng: np.random.Generator) -> tuple[str, Prosody]:
    """(voice emotion, jittered prosody) of a turn: the code's own prosody when the voice carries it, else neutral."""
    voice_code = code if carrier in ("voice", "both") else "neu"
    if voice_code == "xxx":
        voice_code = AMBIGUOUS_VOICE_CODES[rng.integers(len(AMBIGUOUS_VOICE_CODES))]
        target, neutral = EMOTION_PROSODY[voice_code], EMOTION_PROSODY["neu"]
        mean = Prosody(*((a + b) / 2 for a, b in zip(asdict(target).values(), asdict(neutral).values())))
        voice_code = f"{voice_code}/2"
    else:
        mean = EMOTION_PROSODY[voice_code]
    jittered = Prosody(
        rate=mean.rate * (1 + rng.normal(0, PROSODY_JITTER.rate / 100)),
        pitch=mean.pitch + rng.normal(0, PROSODY_JITTER.pitch),
        range=mean.range * (1 + rng.normal(0, PROSODY_JITTER.range / 100)),
        gain_db=mean.gain_db + rng.normal(0, PROSODY_JITTER.gain_db),
    )
    return voice_code, jittered


def plan_corpus(
    utterances_per_speaker: int, other_utterances_per_speaker: int, carrier_proportions: dict[str, float], seed: int
) -> list[Utterance]:
    """Every turn of the corpus (ids, dialogs, labels, texts, voice settings), drawn in a fixed order from `seed`."""
    rng = np.random.default_rng(seed)
    num_speakers = len(SPEAKER_VOICES)
    four_class = _spread(FOUR_CLASS_CODE_WEIGHTS, utterances_per_speaker * num_speakers)
    others = _spread(OTHER_CODE_WEIGHTS, other_utterances_per_speaker * num_speakers)
    codes_per_speaker = [
        four_class[i * utterances_per_speaker : (i + 1) * utterances_per_speaker]
        + others[i * other_utterances_per_speaker : (i + 1) * other_utterances_per_speaker]
        for i in range(num_speakers)
    ]
    # Carriers are spread per code, so every emotion (and every speaker) gets the requested mix.
    carrier_iters = {
        code: iter(_spread(carrier_proportions, sum(codes.count(code) for codes in codes_per_speaker)))
        for code in CODE_TEXT_KIND
    }
    turns_per_speaker = [
        [(voice, codes[i], next(carrier_iters[codes[i]])) for i in rng.permutation(len(codes))]
        for voice, codes in zip(SPEAKER_VOICES, codes_per_speaker)
    ]

    utterances = []
    for session in sorted({voice.session for voice in SPEAKER_VOICES}):
        female, male = (turns for voice, turns in zip(SPEAKER_VOICES, turns_per_speaker) if voice.session == session)
        num_dialogs = max(2, round((len(female) + len(male)) / TURNS_PER_DIALOG))
        f_splits, m_splits = (
            np.array_split(np.arange(len(female)), num_dialogs),
            np.array_split(np.arange(len(male)), num_dialogs),
        )
        for dialog, f_indices, m_indices in zip(_dialog_names(session, num_dialogs), f_splits, m_splits):
            improvised = "_impro" in dialog
            turns = [female[i] for i in f_indices] + [male[i] for i in m_indices]
            order = rng.permutation(len(turns))
            numbers = Counter()
            script_lines = Counter()
            for i in order:
                voice, code, carrier = turns[i]
                text_kind = CODE_TEXT_KIND[code] if carrier in ("words", "both") else "neutral"
                if improvised:
                    text = make_sentence(text_kind, rng)
                else:
                    text = _script_line(seed, _script_key(dialog), text_kind, script_lines[text_kind])
                    script_lines[text_kind] += 1
                voice_emotion, prosody = _voice_prosody(code, carrier, rng)
                utterances.append(
                    Utterance(
                        id=f"{dialog}_{voice.gender}{numbers[voice.gender]:03d}",
                        session=session,
                        speaker=voice.speaker,
                        gender=voice.gender,
                        dialog=dialog,
                        improvised=improvised,
                        emotion=code,
                        carrier=carrier,
                        text_kind=text_kind,
                        voice_emotion=voice_emotion,
                        text=text,
                        espeak_voice=voice.espeak_voice,
                        base_pitch=voice.pitch,
                        speed=voice.speed,
                        rate_pct=int(round(np.clip(prosody.rate, 40, 250))),
                        pitch_pct=int(round(np.clip(prosody.pitch, -60, 100))),
                        range_pct=int(round(np.clip(prosody.range, 10, 400))),
                        gain_db=round(float(voice.level_db + prosody.gain_db), 2),
                        noise_seed=int(rng.integers(2**31)),
                        # Pause before the turn; a negative one makes it overlap the previous turn, as in dialogs.
                        gap=float(rng.uniform(0.15, 1.2) if rng.random() > 0.1 else -rng.uniform(0.1, 0.5)),
                    )
                )
                numbers[voice.gender] += 1
    return utterances

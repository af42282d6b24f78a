"""espeak-ng as a speech source: text and voice settings in, a 16 kHz 16-bit waveform (and its phonemes) out.

Shared by the two synthetic corpora: the emotional IEMOCAP-layout corpus (`synthetic_iemocap/`) and the unlabelled
corpus the student is pretrained on (`unlabelled_speech.py`).
"""

import shutil
import subprocess
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np
from scipy.signal import resample_poly

from .audio import SAMPLING_RATE

ESPEAK_SAMPLING_RATE = 22_050
REFERENCE_LEVEL_DBFS = -24.0  # RMS level of an utterance rendered with gain_db 0
SILENCE_PAD = 0.12  # seconds of (noise-only) silence before and after the speech
NOISE_LEVEL_DBFS = -62.0  # faint background noise, so that no sample run is digital silence


class EspeakNotFoundError(RuntimeError):
    pass


def find_espeak() -> str:
    """Path of the espeak-ng executable, or a clear error telling how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFoundError(
            "espeak-ng is required to synthesise the synthetic corpora but was not found on PATH. "
            "Install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)."
        )
    return path


def espeak_version(espeak: str) -> str:
    """e.g. 'eSpeak NG text-to-speech: 1.51', without the data folder that `--version` also prints (a machine path,
    which must not reach a shipped corpus config or checkpoint)."""
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True).stdout
    return version.split("Data at:")[0].strip()


@dataclass(frozen=True)
class SpeechSettings:
    """How one utterance is spoken.

    `voice` is an espeak-ng voice (`"en-us+f2"`: language + variant), `base_pitch` its pitch (0-99) and `speed` its
    rate in words per minute; `rate_pct`, `pitch_pct` and `range_pct` are the SSML `<prosody>` adjustments relative
    to them (percent of the rate and the pitch range, signed percent offset of the pitch); `gain_db` is the loudness
    relative to `REFERENCE_LEVEL_DBFS`, applied to the waveform (espeak-ng's own volume clips easily); `noise_seed`
    draws the background noise.
    """

    voice: str
    base_pitch: int
    speed: int
    rate_pct: int = 100
    pitch_pct: int = 0
    range_pct: int = 100
    gain_db: float = 0.0
    noise_seed: int = 0


def read_espeak_wav(data: bytes, what: str) -> np.ndarray:
    """Samples (float64 in [-1, 1]) of the 16-bit mono wav espeak-ng writes to stdout (its size fields are bogus)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError(f"espeak-ng did not return a wav for {what}: {data[:64]!r}")
    sampling_rate = int.from_bytes(data[24:28], "little")
    if sampling_rate != ESPEAK_SAMPLING_RATE:
        raise RuntimeError(f"espeak-ng wrote {sampling_rate} Hz for {what}, expected {ESPEAK_SAMPLING_RATE} Hz")
    data_start = data.index(b"data", 12) + 8
    samples = np.frombuffer(data[data_start : data_start + (len(data) - data_start) // 2 * 2], dtype="<i2")
    if samples.size == 0:
        raise RuntimeError(f"espeak-ng returned no audio for {what}")
    return samples / 32768.0


def synthesise(espeak: str, text: str, settings: SpeechSettings, what: str) -> np.ndarray:
    """`text` spoken with `settings`: a 16 kHz int16 waveform `(num_samples,)`; `what` names it in errors."""
    ssml = (
        f'<speak><prosody rate="{settings.rate_pct}%" pitch="{settings.pitch_pct:+d}%" '
        f'range="{settings.range_pct}%">{escape(text)}</prosody></speak>'
    )
    command = [espeak, "-v", settings.voice, "-p", str(settings.base_pitch), "-s", str(settings.speed)]
    result = subprocess.run([*command, "-m", "--stdout", ssml], capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"espeak-ng failed on {what} ({command}): {result.stderr.decode(errors='replace')}")
    speech = resample_poly(read_espeak_wav(result.stdout, what), SAMPLING_RATE, ESPEAK_SAMPLING_RATE)
    # espeak-ng ends with up to 0.7 s of silence: keep SILENCE_PAD seconds around the speech instead.
    voiced = np.flatnonzero(np.abs(speech) > 0.01 * np.abs(speech).max())
    pad = int(SILENCE_PAD * SAMPLING_RATE)
    speech = np.pad(speech[voiced[0] : voiced[-1] + 1], pad)
    rms = np.sqrt(np.mean(speech**2))
    speech *= 10 ** ((REFERENCE_LEVEL_DBFS + settings.gain_db) / 20) / max(rms, 1e-9)
    noise = np.random.default_rng(settings.noise_seed).standard_normal(speech.size) * 10 ** (NOISE_LEVEL_DBFS / 20)
    # tanh is a soft limiter: loud turns saturate smoothly instead of wrapping around int16.
    return np.round(np.tanh(speech + noise) * 32767).astype(np.int16)


def phonemes(espeak: str, text: str, voice: str) -> list[str]:
    """The phonemes espeak-ng speaks for `text` in `voice` (its ASCII mnemonics, stress marks removed).

    `["h", "@", "l", "oU", "w", "3:", "l", "d"]` for "hello world" in `en-us`. Prosody does not change them.
    """
    result = subprocess.run(
        [espeak, "-v", voice, "-q", "-x", "--sep= ", text], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"espeak-ng could not transcribe {text!r} in {voice}: {result.stderr}")
    # Stress (' and ,) and syllable marks are prosody, not phone identity.
    return [p.strip("',%=") for p in result.stdout.split() if p.strip("',%=")]

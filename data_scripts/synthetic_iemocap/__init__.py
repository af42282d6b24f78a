"""Generate a synthetic corpus in the exact `IEMOCAP_full_release` layout, with speech synthesised by espeak-ng.

The real IEMOCAP is licensed and cannot ship with the project, so tests and CPU demos run on this stand-in. It mirrors
the release's folders, file names and file formats (see `docs/iemocap_format.md` in the repository), including the details a
reader must get right: cross-gender turns (`Ses01F_impro01_M000` is spoken by the *male* actor), irregular dialog
names (`Ses03M_impro05a`, `Ses05M_script01_1b`), transcript lines that are not labelled turns (`..._MXX0`), CRLF line
ends (session 5's EmoEvaluation files), AppleDouble `._*` files among the wavs (session 2), every categorical code
(`xxx`, `oth`, `dis`, ... for the protocol to drop), V/A/D averages outside 1-5, and scripted dialogs whose lines
repeat in every session.

Emotion is carried by the words only, by the voice only, or by both (the utterance's *carrier*), so that neither a
text-only nor a prosody-only model can be perfect:

- `"words"`: an emotion-bearing sentence ("I am so furious about the report!") in the speaker's neutral voice;
- `"voice"`: an emotionally flat sentence ("The key is in the drawer.") with the emotion's prosody (rate, pitch,
  pitch range, loudness);
- `"both"`: an emotion-bearing sentence with the emotion's prosody.

The ground truth per utterance (carrier, text, voice settings) goes to `synthetic_manifest.jsonl` next to the
`Session*` folders, where a reader of the real layout never looks. Output is deterministic for a seed: the same
settings give byte-identical files.

Example:

```python
from emodistill.data_scripts.synthetic_iemocap import generate_synthetic_iemocap

root = generate_synthetic_iemocap("data/synthetic", utterances_per_speaker=45, seed=0)  # .../IEMOCAP_full_release
```

The generator is split by phase: `tables.py` (codes, prosody, voices), `text.py` (sentence templates), `plan.py`
(every turn, no audio), `release.py` (audio through `data_scripts/espeak.py`, the release's files, the manifest) and
`cli.py` (`emodistill-synthetic-iemocap`).
"""

from ..espeak import EspeakNotFoundError
from .cli import main
from .release import generate_synthetic_iemocap, read_manifest
from .tables import CARRIERS, CODE_TEXT_KIND, CONFIG_FILENAME, CORPUS_DIRNAME, GENERATOR_VERSION, MANIFEST_FILENAME

__all__ = [
    "CARRIERS",
    "CODE_TEXT_KIND",
    "CONFIG_FILENAME",
    "CORPUS_DIRNAME",
    "GENERATOR_VERSION",
    "MANIFEST_FILENAME",
    "EspeakNotFoundError",
    "generate_synthetic_iemocap",
    "main",
    "read_manifest",
]

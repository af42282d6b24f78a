"""Shared pytest fixtures."""

import os
import tempfile

import pytest

# Tests never read or write the user's cache (~/.cache/emodistill): the default cache of this process and of every
# command a test launches is a folder of this session. Set before emodistill is imported, which reads it then.
SESSION_CACHE = tempfile.TemporaryDirectory(prefix="emodistill-test-cache-")
os.environ["EMODISTILL_CACHE"] = SESSION_CACHE.name

from emodistill.data_scripts.synthetic_iemocap import generate_synthetic_iemocap  # noqa: E402

from tiny_models import feature_extractor, tiny_student  # noqa: E402

TINY_CORPUS_SETTINGS = {"utterances_per_speaker": 4, "other_utterances_per_speaker": 2, "seed": 0}


@pytest.fixture(scope="session")
def tiny_iemocap_root(tmp_path_factory):
    """Path of a tiny synthetic `IEMOCAP_full_release` folder (about 1 s to generate).

    10 speakers x (4 turns with a 4-class code + 2 with other codes) = 60 turns; every code appears, both
    improvised and scripted dialogs, cross-gender turns, irregular dialog names. Ground truth per turn is in
    `<root>/synthetic_manifest.jsonl` (see `emodistill.data_scripts.synthetic_iemocap.read_manifest`).
    """
    return generate_synthetic_iemocap(tmp_path_factory.mktemp("synthetic_iemocap"), **TINY_CORPUS_SETTINGS)


@pytest.fixture(scope="session")
def saved_student(tmp_path_factory):
    """A tiny student saved as a user's fold model is: `save_pretrained` plus its feature extractor."""
    path = tmp_path_factory.mktemp("student")
    tiny_student().save_pretrained(path)
    feature_extractor().save_pretrained(path)
    return path

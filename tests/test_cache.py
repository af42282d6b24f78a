"""`emodistill-cache`: what it finds in a cache, which entries it calls stale, and that it deletes those only."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emodistill.data_scripts.generated_folder import SYNTHETIC_CORPORA, settings_folder
from emodistill.data_scripts.synthetic_iemocap import generate_synthetic_iemocap
from emodistill.trainers import cache
from emodistill.trainers.cache import scan_cache

TINY = {"utterances_per_speaker": 1, "other_utterances_per_speaker": 0}


def teacher_entry(root: Path, name: str, meta: dict | None, size: int = 100) -> Path:
    folder = root / "teachers" / "prosodic" / name
    folder.mkdir(parents=True)
    (folder / "outputs.safetensors").write_bytes(b"\0" * size)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps({"teacher": "prosodic", "seed": 0, **meta}))
    return folder


@pytest.fixture
def filled_cache(tmp_path):
    """A cache with a current and a former-layout corpus, teacher entries of each version, one being trained, and
    Arrow files. Returns the cache folder and the paths that are stale."""
    current = generate_synthetic_iemocap(
        settings_folder(tmp_path, SYNTHETIC_CORPORA, {"utterances_per_speaker": 1}), **TINY
    )
    former = generate_synthetic_iemocap(tmp_path / SYNTHETIC_CORPORA, **TINY)  # the layout before settings folders
    assert current.parent.parent == former.parent
    current_meta = {"cache_version": cache.CACHE_VERSION, "float_path": {}, "test_speakers": ["Ses01_F"]}
    teacher_entry(tmp_path, "recorded_version", current_meta)
    older = teacher_entry(tmp_path, "version_2", {"cache_version": 2, "float_path": {}})  # no test predictions
    recorded_late = teacher_entry(tmp_path, "float_path_without_version", {"float_path": {}})  # before versions were
    unkeyed = teacher_entry(tmp_path, "before_the_float_path", {}, size=300)
    teacher_entry(tmp_path, "being_trained", None)
    teacher_entry(tmp_path, "being_trained.checkpoints", None)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "data.arrow").write_bytes(b"\0" * 50)
    return tmp_path, {former, older, recorded_late, unkeyed}


def test_scan_finds_every_entry_its_size_and_what_is_stale(filled_cache):
    root, stale = filled_cache
    entries = scan_cache(root)
    assert {e.path for e in entries if e.stale} == stale
    assert sorted(e.kind for e in entries) == ["arrow"] + ["corpus"] * 2 + ["teacher"] * 6
    by_path = {e.path: e for e in entries}
    unkeyed = root / "teachers" / "prosodic" / "before_the_float_path"
    assert by_path[unkeyed].size == 300 + (unkeyed / "meta.json").stat().st_size
    assert by_path[root / "datasets"].size == 50
    corpus = by_path[settings_folder(root, SYNTHETIC_CORPORA, {"utterances_per_speaker": 1}) / "IEMOCAP_full_release"]
    assert corpus.size == sum(f.stat().st_size for f in corpus.path.rglob("*") if f.is_file()) > 0
    assert "seed 0, test Ses01_F" in by_path[root / "teachers" / "prosodic" / "recorded_version"].description


def test_delete_stale_deletes_only_the_stale_entries(filled_cache, capsys):
    root, stale = filled_cache
    before = {e.path for e in scan_cache(root)}
    assert cache.main(["--cache_dir", str(root), "--delete_stale", "--yes"]) == 0
    assert "Deleted 4 stale entries" in capsys.readouterr().out
    assert not any(path.exists() for path in stale)
    assert {e.path for e in scan_cache(root)} == before - stale
    # The current corpus, beside the deleted former one, is whole.
    assert (settings_folder(root, SYNTHETIC_CORPORA, {"utterances_per_speaker": 1}) / "IEMOCAP_full_release").is_dir()


def test_delete_stale_asks_first_and_deletes_nothing_without_an_answer(filled_cache, capsys, monkeypatch):
    root, stale = filled_cache
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cache.main(["--cache_dir", str(root), "--delete_stale"]) == 1
    assert "pass --yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert cache.main(["--cache_dir", str(root), "--delete_stale", "--verbose"]) == 0
    output = capsys.readouterr().out
    assert (
        "4 stale entries" in output
        and "STALE: cache version 1" in output
        and "STALE: cache version 2" in output
        and "Nothing deleted" in output
    )
    assert all(path.exists() for path in stale)


def test_a_missing_cache_is_named(tmp_path, capsys):
    assert cache.main(["--cache_dir", str(tmp_path / "nowhere")]) == 1
    assert f"No cache at {tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_the_cache_command_starts_without_torch_or_transformers():
    # `emodistill.trainers` imports its names on first use: a scan must not pay for loading the training stack.
    code = "import sys, emodistill.trainers.cache; print(sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_training_package_still_exports_its_names():
    import emodistill.trainers as trainers

    assert trainers.EmoDistillTrainer.__name__ == "EmoDistillTrainer" and "EmoDistillTrainer" in dir(trainers)
    with pytest.raises(AttributeError, match="no attribute 'Trainer'"):
        trainers.Trainer  # noqa: B018 (the lookup is what is tested)

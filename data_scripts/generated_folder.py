"""The life of a folder a generator writes (the synthetic corpora): reused when its recorded settings match, built
in a side folder and moved in place at the end (an interrupted run never looks complete), and never touched when it
was not written by the generator (no settings file in it). In the cache, each settings has its own folder."""

import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

# Where the generated corpora and the job's caches go unless a command is told otherwise.
DEFAULT_CACHE_DIR = os.environ.get("EMODISTILL_CACHE", str(Path.home() / ".cache" / "emodistill"))
# The folders of the cache where the generated corpora go (one sub-folder per settings, `settings_folder`): the
# synthetic emotion corpus, and the unlabelled speech the student is pretrained on by default.
SYNTHETIC_CORPORA = "synthetic_iemocap"
PRETRAINING_CORPORA = "pretraining_corpora"


def settings_folder(cache_dir: str | os.PathLike, name: str, settings: dict) -> Path:
    """`<cache_dir>/<name>/<setting>_<value>_...`: where a generator's output with these `settings` lives in a cache.

    One folder per settings, so that a run with other settings (a quick check, a smaller corpus) generates beside the
    default output instead of over it, and the next default run finds its own again.
    """
    return Path(cache_dir) / name / "_".join(f"{key}_{value}" for key, value in sorted(settings.items()))


def reusable(root: Path, settings: dict, config_filename: str) -> bool:
    """Whether `root` holds a complete earlier output with the same `settings` (recorded in `config_filename`).

    Raises:
        FileExistsError: `root` exists without that file, so another program (or the user) wrote it.
    """
    if not root.exists():
        return False
    config = root / config_filename
    if not config.exists():
        raise FileExistsError(
            f"{root} exists but has no {config_filename}: it was not written by this generator (maybe a real corpus), "
            "refusing to overwrite it. Choose another output_dir."
        )
    if json.loads(config.read_text()) == settings:
        logger.info("Reusing %s (same settings)", root)
        return True
    logger.info("Settings differ from %s: generating %s again", config, root.name)
    return False


def partial_folder(root: Path) -> Path:
    """An empty side folder beside `root` to build the new output in."""
    partial = root.with_name(f".{root.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def publish(partial: Path, root: Path, settings: dict, config_filename: str) -> Path:
    """Records `settings` in the finished side folder and moves it in place of `root` (an older output is removed)."""
    (partial / config_filename).write_text(json.dumps(settings, indent=2) + "\n")
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)
    return root

"""`emodistill-cache`: what the job keeps in its cache, how much room each part takes, and which entries this version
never reads again, as `huggingface-cli scan-cache` does for the hub cache. Stale entries are deleted only on request.

    emodistill-cache                       # the summary; --verbose lists every entry
    emodistill-cache --delete_stale        # asks before deleting; --yes does not ask

The cache (`$EMODISTILL_CACHE` or `~/.cache/emodistill`, `--cache_dir` of the job) holds:
- `synthetic_iemocap/<settings>/IEMOCAP_full_release` and `pretraining_corpora/<settings>/unlabelled_speech`: the
  generated corpora, one folder per settings (`settings_folder`);
- `teachers/<teacher>/<key>`: each fold's trained teacher and its outputs, keyed by everything that determines them;
- `datasets/`: the Arrow files `datasets` builds from a corpus (rebuilt when deleted).

Stale: a corpus outside the folder of its settings (the layout before one folder per settings), and a teacher entry
written under an older cache version (its key has changed since, so no run looks it up again). Entries a run may be
writing (a teacher without `meta.json`, its `.checkpoints`, a corpus's `.partial` folder) are listed, never stale.
"""

import argparse
import datetime
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emodistill.data_scripts.generated_folder import (
    DEFAULT_CACHE_DIR,
    PRETRAINING_CORPORA,
    SYNTHETIC_CORPORA,
    settings_folder,
)
from emodistill.data_scripts.synthetic_iemocap import CONFIG_FILENAME as SYNTHETIC_CONFIG_FILENAME
from emodistill.data_scripts.unlabelled_speech import CONFIG_FILENAME as UNLABELLED_CONFIG_FILENAME
from emodistill.data_scripts.unlabelled_speech import DIRNAME as UNLABELLED_DIRNAME

# The folder of the cache where each fold's teachers are kept (`teachers/<teacher>/<key>`), and the version of those
# entries: bump it when what a cached teacher computes or records, or what its key is made of, changes (3: the test
# predictions joined `meta.json`; 4: the CPU model joined the float path).
TEACHER_CACHE = "teachers"
CACHE_VERSION = 4


@dataclass
class CacheEntry:
    """One thing in the cache: `kind` ("corpus", "teacher", "arrow"), its folder, size in bytes, what it is, and why
    this version never reads it (`stale`, None when it may)."""

    kind: str
    path: Path
    size: int
    description: str
    stale: str | None = None


def cache_version(meta: dict) -> int:
    """The cache version a teacher entry was written under (its `meta.json`). Entries written before it was recorded
    tell it by their float path, which joined the key without a version bump: with one, 2; without, 1."""
    return meta.get("cache_version", 2 if "float_path" in meta else 1)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def format_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def _corpus_entries(cache_dir: Path) -> Iterator[CacheEntry]:
    layouts = (
        # (folder in the cache, the generator's settings file, the settings its folder is named after)
        (SYNTHETIC_CORPORA, SYNTHETIC_CONFIG_FILENAME, ("utterances_per_speaker",)),
        (PRETRAINING_CORPORA, UNLABELLED_CONFIG_FILENAME, ("num_utterances", "seed")),
        (UNLABELLED_DIRNAME, UNLABELLED_CONFIG_FILENAME, ("num_utterances", "seed")),  # pretraining's former default
    )
    for name, config_filename, named_after in layouts:
        for config in sorted((cache_dir / name).rglob(config_filename)):
            root = config.parent
            settings = json.loads(config.read_text())
            own = settings_folder(cache_dir, name, {key: settings[key] for key in named_after})
            description = ", ".join(f"{key} {settings[key]}" for key in named_after)
            stale = None if root.parent == own else "outside its settings' folder (the layout before those)"
            yield CacheEntry("corpus", root, folder_size(root), description, stale)
        for partial in sorted((cache_dir / name).rglob(".*.partial")):
            yield CacheEntry("corpus", partial, folder_size(partial), "being generated, or interrupted")


def _teacher_entries(cache_dir: Path) -> Iterator[CacheEntry]:
    for folder in sorted((cache_dir / TEACHER_CACHE).glob("*/*")):
        if not folder.is_dir():
            continue
        meta_file = folder / "meta.json"
        if folder.name.endswith(".checkpoints") or not meta_file.exists():
            yield CacheEntry("teacher", folder, folder_size(folder), "being trained, or interrupted")
            continue
        meta = json.loads(meta_file.read_text())
        test_speakers = ", ".join(meta.get("test_speakers", [])) or "?"
        description = f"{meta.get('teacher', folder.parent.name)}, seed {meta.get('seed')}, test {test_speakers}"
        version = cache_version(meta)
        stale = None if version == CACHE_VERSION else f"cache version {version}, this version reads {CACHE_VERSION}"
        yield CacheEntry("teacher", folder, folder_size(folder), description, stale)


def scan_cache(cache_dir: str | Path) -> list[CacheEntry]:
    """Every corpus, teacher entry and the Arrow folder under `cache_dir`, with sizes and staleness."""
    cache_dir = Path(cache_dir)
    entries = [*_corpus_entries(cache_dir), *_teacher_entries(cache_dir)]
    if (cache_dir / "datasets").is_dir():
        arrow = cache_dir / "datasets"
        entries.append(CacheEntry("arrow", arrow, folder_size(arrow), "built by `datasets`, rebuilt when deleted"))
    return entries


def delete_entries(entries: list[CacheEntry], cache_dir: str | Path) -> int:
    """Deletes the entries' folders (each must lie inside `cache_dir`); returns the bytes freed."""
    cache_dir = Path(cache_dir).resolve()
    freed = 0
    for entry in entries:
        if cache_dir not in entry.path.resolve().parents:
            raise ValueError(f"{entry.path} is not inside the cache {cache_dir}: not deleting it")
        shutil.rmtree(entry.path)
        freed += entry.size
    return freed


def summary(entries: list[CacheEntry], cache_dir: Path, verbose: bool) -> str:
    lines = [f"EmoDistill cache: {cache_dir} ({format_size(sum(e.size for e in entries))})", ""]
    rows = [("KIND", "ENTRIES", "SIZE", "STATE")]
    for kind in ("corpus", "teacher", "arrow"):
        for stale in (False, True):
            group = [e for e in entries if e.kind == kind and bool(e.stale) == stale]
            if group:
                state = "stale" if stale else "in use or reusable"
                rows.append((kind, str(len(group)), format_size(sum(e.size for e in group)), state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if verbose:
        lines.append("")
        for entry in entries:
            modified = datetime.datetime.fromtimestamp(entry.path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            state = f"  STALE: {entry.stale}" if entry.stale else ""
            relative = entry.path.relative_to(cache_dir)
            lines.append(
                f"{entry.kind:8} {format_size(entry.size):>9}  {modified}  {relative}  ({entry.description}){state}"
            )
    stale = [e for e in entries if e.stale]
    if stale:
        lines += [
            "",
            f"{len(stale)} stale entries, {format_size(sum(e.size for e in stale))}: "
            "`emodistill-cache --delete_stale` deletes them (--verbose lists them).",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emodistill-cache", description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR, help="the job's --cache_dir (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="list every entry, with its size and date")
    parser.add_argument("--delete_stale", action="store_true", help="delete the entries this version never reads")
    parser.add_argument("--yes", action="store_true", help="with --delete_stale: do not ask first")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache_dir = Path(args.cache_dir)
    if not cache_dir.is_dir():
        print(f"No cache at {cache_dir}", file=sys.stderr)
        return 1
    entries = scan_cache(cache_dir)
    print(summary(entries, cache_dir, args.verbose))
    if not args.delete_stale:
        return 0
    stale = [e for e in entries if e.stale]
    if not stale:
        print("Nothing stale to delete.")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("Not deleting without a terminal to ask: pass --yes.", file=sys.stderr)
            return 1
        answer = input(f"Delete {len(stale)} stale entries ({format_size(sum(e.size for e in stale))})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 0
    freed = delete_entries(stale, cache_dir)
    print(f"Deleted {len(stale)} stale entries, {format_size(freed)} freed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

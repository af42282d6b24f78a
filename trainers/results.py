"""What a run records and how it is trusted again: the per-fold result with the fingerprint of everything that
determined it, the run's provenance, damaged-file handling, the output folder's ownership marker, gathering the
finished folds of fold-parallel jobs, and publishing one fold's student.

A fold's fingerprint has named parts (`code`, `data`, `fold`, `student`, `teachers`, `training`): a rerun continues a
fold only when they all match, and otherwise stops naming the settings that differ.
"""

import csv
import datetime
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

RESULT_FILENAME = "result.json"
FINGERPRINT_FILENAME = "fingerprint.json"
PREDICTIONS_FILENAME = "predictions.csv"
RUN_MARKER = ".emodistill-run"  # in every output folder train.py creates; --overwrite_output_dir deletes only those
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("modeling_emodistill", "trainers", "data_scripts")
# TrainingArguments that cannot change a fold's result (where it is written, how it is logged or shown, resources).
# Not `dataloader_num_workers`: torch seeds NumPy afresh in each worker, so the random crops depend on it.
TRAINING_FIELDS_WITHOUT_EFFECT = {
    "output_dir", "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter",
    "log_on_each_node", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name", "project",
    "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "push_to_hub", "hub_token",
    "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision", "save_total_limit",
    "save_on_each_node", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "skip_memory_metrics", "ddp_timeout",
    "local_rank", "include_num_input_tokens_seen", "torch_empty_cache_steps", "enable_jit_checkpoint",
}  # fmt: skip
PACKAGES = ("emodistill", "torch", "torchaudio", "transformers", "datasets", "accelerate", "evaluate", "opensmile")


class ConfigurationMismatchError(RuntimeError):
    """Finished work in an output folder was produced with other settings than this run's."""


@functools.cache
def source_digest() -> str:
    """SHA-256 of the package's Python sources: any code change makes earlier folds another experiment. Read once per
    process, so that a file edited while a job runs does not relabel the folds the job still trains with the old code."""
    digest = hashlib.sha256()
    for folder in SOURCE_FOLDERS:
        for path in sorted((PACKAGE_ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


@functools.cache
def git_commit() -> dict | None:
    """The checkout's commit and whether it has uncommitted changes, when the package runs from a git checkout. Read
    once per process, like `source_digest`: a commit made while a job runs is not the code the job runs."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "uncommitted_changes": bool(status.strip())}


# Environment variables that cap (or pin) the instruction set of the kernels under torch below what the CPU has:
# ATen's own, oneDNN's (convolutions, linear layers, bf16) and MKL's (BLAS). Set, they make this CPU stand in for an
# older one (e.g. `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`) and change which kernels, hence which float sums,
# run; torch's `get_cpu_capability` reflects only the first.
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


def isa_caps() -> dict:
    """The `ISA_CAPS` set in this process's environment, by name (empty when none is)."""
    return {name: os.environ[name] for name in ISA_CAPS if name in os.environ}


def cpu_arithmetic() -> dict:
    """This process's CPU float path: torch's intra-op thread count, the kernels it picked for this CPU (AVX2,
    AVX512, ...), the CPU itself (`cpu_model`) and, when any is set, the instruction-set caps (`isa_caps`). Float sums,
    hence a trained model, depend on all of them."""
    arithmetic = {
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
    }
    # Only when set: an uncapped run's float path, hence every teacher cache key made before the caps were recorded,
    # stays as it was.
    if caps := isa_caps():
        arithmetic["isa_caps"] = caps
    return arithmetic


@functools.cache
def cpu_model() -> str:
    """
    The CPU: vendor, family, model, stepping and name from Linux's `/proc/cpuinfo` (implementer and part on Arm),
    elsewhere what `platform` knows. The math libraries under torch choose kernels and blocking by vendor and model
    too, beyond the instruction set torch reports: an AMD and an Intel machine, both AVX512 at two threads, trained
    different prosodic teachers on every fold of the embedded default.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return describe_cpu(cpuinfo) or platform.processor() or platform.machine()


def describe_cpu(cpuinfo: str) -> str | None:
    """The first processor of a `/proc/cpuinfo` text, as `cpu_model` names it; None when the text names none."""
    first = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if not colon:  # a blank line ends a processor's fields
            if first:
                break
            continue
        first.setdefault(key.strip(), value.strip())
    if "vendor_id" in first:
        return "{} family {} model {} stepping {}: {}".format(
            *(first.get(k) for k in ("vendor_id", "cpu family", "model", "stepping", "model name"))
        )
    if "CPU implementer" in first:
        return f"implementer {first['CPU implementer']} part {first.get('CPU part')}"
    return None


def provenance() -> dict:
    """Package versions, git commit, date, thread count and CPU kernels: what `results.json` records about how it
    was made."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": {"python": platform.python_version(), **versions},
        "git": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **cpu_arithmetic(),
    }


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def fingerprint_hash(components: dict) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True, default=str).encode()).hexdigest()[:20]


def differences(recorded: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """`"part.setting: recorded -> current"` for every setting that differs (parts in `ignore` left out)."""
    old, new = _flatten(recorded), _flatten(current)
    # The settings a user types first; the derived parts (teacher recipes of the teachers used, code) after them.
    order = {part: i for i, part in enumerate(("data", "fold", "student", "training", "teachers", "code"))}
    keys = sorted(
        (k for k in old.keys() | new.keys() if k.split(".")[0] not in ignore),
        key=lambda k: (order.get(k.split(".")[0], len(order)), k),
    )
    missing = "(absent)"
    return [
        f"{k}: {old.get(k, missing)} -> {new.get(k, missing)}"
        for k in keys
        if old.get(k, missing) != new.get(k, missing)
    ]


def read_json(path: Path, what: str) -> dict | None:
    """A JSON file the job wrote; `None` when absent or damaged (with a warning naming it: it is then redone)."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    except (OSError, ValueError) as error:
        logger.warning("%s %s is damaged (%s): it is recomputed", what, path, error)
        return None


def write_json(path: Path, value) -> None:
    """Writes atomically (a temporary file renamed), so an interrupted or concurrent writer never leaves half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1, default=str) + "\n")
    temporary.replace(path)


def check_fold_fingerprint(recorded: dict | None, current: dict, where: Path) -> None:
    """Stops when `where` (a fold's result or partial state) was produced by other settings than `current`."""
    if recorded is None or recorded == current:
        return
    changes = differences(recorded, current)
    raise ConfigurationMismatchError(
        f"{where} was produced with other settings than this run's ({len(changes)} differ): "
        + "; ".join(changes[:30])
        + ("; ..." if len(changes) > 30 else "")
        + ". Run into another --output_dir, or add --overwrite_output_dir to start the --output_dir over."
    )


def require_fingerprint(record: dict, path: Path) -> dict:
    """The fingerprint of a fold's `result.json`; a record without one cannot be compared, so it is refused."""
    if "fingerprint" not in record:
        raise ConfigurationMismatchError(
            f"{path} records no settings (an older EmoDistill wrote it), so it cannot be reused. Run into another "
            "--output_dir, or add --overwrite_output_dir to start over."
        )
    return record["fingerprint"]["components"]


def claim_output_dir(output_dir: Path, overwrite: bool, is_main_process: bool) -> None:
    """Creates `output_dir` with the marker of this program, or checks that it is this program's.

    `overwrite` deletes the folder first, only if it carries the marker (it was created by train.py); a folder with
    other content is refused, never deleted.
    """
    marker = output_dir / RUN_MARKER
    # Occupied first: another process of the job may write the marker in between, never remove it.
    occupied = output_dir.exists() and any(output_dir.iterdir())
    owned = marker.exists()
    if occupied and not owned:
        raise ConfigurationMismatchError(
            f"{output_dir} exists, is not empty and was not created by train.py (no {RUN_MARKER} file): refusing to "
            "write into it" + (" or delete it" if overwrite else "") + ". Choose another --output_dir."
        )
    if not is_main_process:
        return
    if overwrite and owned:
        import shutil

        logger.info("--overwrite_output_dir: deleting %s (created by train.py)", output_dir)
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text("This folder was created by EmoDistill's train.py; --overwrite_output_dir may delete it.\n")


def write_predictions(
    path: Path, ids: list[str], labels: np.ndarray, probabilities: np.ndarray, label_names: list[str]
) -> None:
    """One CSV row per test utterance: id, label, prediction and the probability of every class."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "prediction", *[f"p_{name}" for name in label_names]])
        for utterance, label, row in zip(ids, labels, probabilities):
            writer.writerow(
                [utterance, label_names[int(label)], label_names[int(row.argmax())], *[f"{p:.6f}" for p in row]]
            )


def read_predictions(path: Path) -> list[dict]:
    """A `predictions.csv` (of the main job or `emodistill-evaluate`) as one dict of strings per utterance, for
    analyses such as per-speaker or per-carrier accuracy."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def gather_fold_results(output_dir: Path) -> list[dict]:
    """The finished folds in `output_dir` (e.g. written by fold-parallel jobs), refusing any whose configuration
    differs from the others' (every fingerprint part but the fold's own membership must match)."""
    results, fingerprints = [], []
    for path in sorted(output_dir.glob(f"fold_*/{RESULT_FILENAME}")):
        result = read_json(path, "Fold result")
        if result is not None:
            fingerprints.append(require_fingerprint(result, path))
            results.append(result)
    if not results:
        raise FileNotFoundError(f"No finished fold (fold_XX/{RESULT_FILENAME}) in {output_dir}.")
    reference = results[0]
    for result, fingerprint in zip(results[1:], fingerprints[1:]):
        changes = differences(fingerprints[0], fingerprint, ignore=("fold",))
        if changes:
            raise ConfigurationMismatchError(
                f"Folds {reference['fold']} and {result['fold']} in {output_dir} were run with different settings: "
                + "; ".join(changes[:12])
                + ". Gather only folds of one configuration."
            )
    numbers = [r["fold"] for r in results]
    if len(set(numbers)) != len(numbers):
        raise ConfigurationMismatchError(f"Fold numbers repeat in {output_dir}: {numbers}")
    return results


def push_fold_to_hub(model_dir: Path, repo_id: str, token: str | None, private: bool | None, fold: int) -> str:
    """Uploads one fold's student folder (weights, feature extractor, code files, model card); returns the URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=url.repo_id, folder_path=model_dir, commit_message=f"EmoDistill student, fold {fold}")
    return str(url)

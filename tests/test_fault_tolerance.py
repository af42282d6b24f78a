"""SIGKILL in the middle of a fold, rerun, and the final results equal those of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
RUN = [
    "--synthetic_utterances_per_speaker", "4",
    "--folds", "1",
    "--num_train_epochs", "4",
    "--linguistic_teacher_epochs", "1",
    "--prosodic_teacher_epochs", "1",
    "--per_device_train_batch_size", "8",
    "--max_train_seconds", "1.5",
    "--preprocessing_num_workers", "1",
]  # fmt: skip


def command(cache_dir: Path, output_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        "--cache_dir",
        str(cache_dir),
        "--output_dir",
        str(output_dir),
        *RUN,
    ]


def comparable(results_path: Path) -> dict:
    """results.json without what legitimately differs between two runs (paths, wall time, the command)."""
    results = json.loads(results_path.read_text())
    for fold in results["folds"]:
        fold.pop("wall_seconds")
        fold["config"].pop("command")  # names the output folder
    results["config"].pop("command")
    results.pop("provenance")  # the date
    return results


@pytest.mark.slow
def test_sigkill_mid_fold_then_rerun_gives_the_uninterrupted_results(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(command(tmp_path / "cache", reference), check=True, env=env, capture_output=True, timeout=600)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        command(tmp_path / "cache", interrupted), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = interrupted / "fold_01" / "checkpoints"
    deadline = time.time() + 300
    # Kill as soon as the first epoch's checkpoint is complete: the fold is then half done.
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "fold_01" / "result.json").exists()

    resumed = subprocess.run(
        command(tmp_path / "cache", interrupted), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert comparable(interrupted / "results.json") == comparable(reference / "results.json")
    final, expected = (load_file(run / "fold_01" / "model" / "model.safetensors") for run in (interrupted, reference))
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, rtol=0, atol=0, msg=name)

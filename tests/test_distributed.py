"""A real two-process (gloo) CPU run of EmoDistillTrainer, launched with accelerate as a user would."""

import json
import os
import subprocess
from pathlib import Path

from tiny_models import two_cpu_processes_command

TESTS = Path(__file__).parent


def test_two_cpu_processes_form_one_distributed_job(tmp_path):
    # The trainer's `use_cpu=True` (in distributed_trainer_run.py) makes the two processes one gloo group.
    command = two_cpu_processes_command(str(TESTS / "distributed_trainer_run.py"), str(tmp_path), port=29533)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2 and report["backend"] == "gloo" and report["num_processes"] == 2
        # Each of the 6 test rows is predicted once in total, not once per process.
        assert report["num_predictions"] == 6
        assert len(report["train_logs"]) == 2 and all("logits_kd" in log for log in report["train_logs"])
    # Logged losses are reduced across processes, so both ranks report the same values.
    assert reports[0]["train_logs"][0]["loss"] == reports[1]["train_logs"][0]["loss"]

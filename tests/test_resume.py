"""Interrupted runs resume from their partial results and end with the uninterrupted run's numbers."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import headlens
import headlens.sweep  # noqa: F401  (the module; headlens.sweep is also the function)

from conftest import synthetic, tiny_adapter

sweep_module = sys.modules["headlens.sweep"]

OPTIONS = dict(methods=["grad", "random"], protocols=["per_example", "global"], batch_size=4, progress=False)


def test_an_interrupted_sweep_resumes_and_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    adapter = tiny_adapter("lxmert")
    data, scoring = synthetic(adapter, 22, labels="model"), synthetic(adapter, 8, seed=5, labels="model")
    whole = headlens.sweep(adapter, data, score_data=scoring, **OPTIONS)
    computed = []
    original_batch = sweep_module._Batches.soft_scores

    def interrupted(self, batch):
        if len(computed) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the fourth batch
        computed.append(batch.ids)
        return original_batch(self, batch)

    monkeypatch.setattr(sweep_module._Batches, "soft_scores", interrupted)
    checkpoint = tmp_path / "partial.npz"
    with pytest.raises(KeyboardInterrupt):
        headlens.sweep(adapter, data, score_data=scoring, checkpoint=checkpoint, checkpoint_every=4, **OPTIONS)
    assert checkpoint.is_file() and len(computed) == 3
    monkeypatch.setattr(sweep_module._Batches, "soft_scores", lambda self, batch: (computed.append(batch.ids), original_batch(self, batch))[1])
    resumed = headlens.sweep(adapter, data, score_data=scoring, checkpoint=checkpoint, checkpoint_every=4, **OPTIONS)
    assert len(computed) == 3 + 3  # 6 batches of 4 (the last of 2): only the 3 missing ones ran again
    np.testing.assert_array_equal(resumed.soft, whole.soft)
    assert [c.accuracy for c in resumed.curves] == [c.accuracy for c in whole.curves]
    assert resumed.example_ids == whole.example_ids and resumed.score_ids == whole.score_ids


def test_other_settings_do_not_resume_from_a_checkpoint(tmp_path):
    adapter = tiny_adapter("visual_bert")
    data = synthetic(adapter, 8, labels="model")
    checkpoint = tmp_path / "partial.npz"
    headlens.sweep(adapter, data, checkpoint=checkpoint, methods=["grad"], progress=False)
    other = headlens.sweep(adapter, data, checkpoint=checkpoint, methods=["grad"], levels=[0.0, 0.5], progress=False)
    assert other.soft.shape[-1] == 2  # computed afresh, not read from the 10-level checkpoint


def test_a_killed_command_resumes_to_the_same_results(tmp_path):
    args = ["--preset", "tiny-lxmert", "progress=false", "data.num_examples=1500", "data.score_examples=16",
            "sweep.methods=[grad]", "sweep.units=[head]", "sweep.checkpoint_every=16"]  # fmt: skip
    command = [sys.executable, "-m", "headlens.cli", "sweep", *args]
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + [f"out_dir={killed}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "partial.npz").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "results.json").exists()
    with np.load(killed / "partial.npz") as partial:
        assert 0 < partial["done"].sum() < len(partial["done"])
    subprocess.run(command + [f"out_dir={killed}"], check=True, capture_output=True)
    whole = tmp_path / "whole"
    subprocess.run(command + [f"out_dir={whole}"], check=True, capture_output=True)
    a = json.loads((killed / "results.json").read_text())["runs"][0]
    b = json.loads((whole / "results.json").read_text())["runs"][0]
    assert a["curves"] == b["curves"] and a["example_ids"] == b["example_ids"]
    a["config"]["out_dir"] = b["config"]["out_dir"]
    assert a["config"] == b["config"]

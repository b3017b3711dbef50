"""Data-parallel sweeps under torchrun: 2 CPU processes (gloo) give exactly the single-process results."""

import json
import subprocess
import sys

import numpy as np

from headlens.cli import main

SWEEP = ["sweep", "--preset", "tiny-visual_bert", "progress=false", "data.num_examples=30", "data.score_examples=20",
         "sweep.batch_size=8", "sweep.methods=[grad,lrp,random]"]  # fmt: skip


def test_two_gloo_processes_equal_one(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(SWEEP + [f"out_dir={single}"]) == 0
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--module", "headlens.cli", *SWEEP, f"out_dir={double}", "device=cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-2000:]
    a = json.loads((single / "results.json").read_text())["runs"][0]
    b = json.loads((double / "results.json").read_text())["runs"][0]
    assert a["curves"] == b["curves"]  # accuracies and AUCs, bit for bit
    assert a["example_ids"] == b["example_ids"] and a["score_ids"] == b["score_ids"]
    with np.load(single / "per_example.npz") as x, np.load(double / "per_example.npz") as y:
        np.testing.assert_array_equal(x["visual_bert_soft"], y["visual_bert_soft"])
    assert not list(double.glob("partial*"))  # each rank's partial results are removed once the set is written

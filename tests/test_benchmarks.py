"""benchmarks/gpu.sh: its dry run on the CPU writes every step's figures, and the figures file
records failures, budgets and interrupted runs as it says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_report  # noqa: E402

STEPS = ["machine", "pytest_gpu", "scoring_cost", "sweep_cost", "precision", "export_speed", "torchrun"]
DTYPE_KEYS = {"seconds", "time_ratio", "curves", "max_abs_delta_accuracy"}


def test_gpu_script_dry_run(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_figures.json").read_text())
    assert report["dry_run"] is True and report["status"] == "complete" and report["targets_met"] is None
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["cuda_devices"] == torch.cuda.device_count()
    steps = report["steps"]
    assert list(steps) == STEPS
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys(STEPS[:-1], "ok") | {"torchrun": "skipped"}
    assert steps["torchrun"]["reason"] == f"needs two GPUs; this machine has {torch.cuda.device_count()}"
    for name in STEPS[:-1]:
        assert 0 < steps[name]["seconds"] <= steps[name]["limit_s"] + 15, name
        assert steps[name]["targets_met"] is None  # a dry run measures no targets
    assert steps["scoring_cost"]["limit_s"] == 300  # 60 s, 5× in a dry run
    outcomes = {"skipped": 5} if not torch.cuda.is_available() else {"passed": 5}
    assert {k: v for k, v in steps["pytest_gpu"]["figures"].items() if k != "tests" and v} == outcomes

    scoring = steps["scoring_cost"]["figures"]["models"]
    assert set(scoring) == {"lxmert tiny", "visual_bert tiny"}
    assert all(row["grad_vs_floor"] == pytest.approx(row["grad_s"] / row["floor_s"]) for row in scoring.values())
    assert [t["what"] for t in steps["scoring_cost"]["targets"]][:2] == [
        "grad scoring / (forward + backward), lxmert tiny", "grad scoring / (forward + backward), visual_bert tiny"
    ]  # fmt: skip
    assert all(isinstance(t["met"], bool) for name in STEPS for t in steps[name]["targets"])

    sweep = steps["sweep_cost"]["figures"]["models"]["visual_bert tiny"]
    assert {"sweep_s", "floor_s", "original_s", "vs_floor", "speedup_vs_original", "examples_per_s"} <= set(sweep)
    assert sweep["examples_per_s"] == pytest.approx(4 / sweep["sweep_s"])

    precision = steps["precision"]["figures"]
    trained, random = precision["trained"]["visual_bert"], precision["random"]["visual_bert tiny"]
    for figures in (trained, random):
        assert DTYPE_KEYS <= set(figures["bfloat16"]) and DTYPE_KEYS <= set(figures["float16"])
        assert len(figures["bfloat16"]["curves"]) == 8  # grad, random × head, layer × positive, negative
    assert trained["examples"] == 8 and trained["trained_now"] is True and trained["training_steps"] == 30
    assert random["unpruned_accuracy"] == 100.0  # its labels are the float32 model's answers

    export = steps["export_speed"]["figures"]["models"]["visual_bert tiny"]
    assert set(export["fractions"]) == {"0.3", "0.5", "0.7"}
    assert [round(f["removed"], 2) for f in export["fractions"].values()] == [0.25, 0.5, 0.69]  # 16 heads
    log = (tmp_path / "gpu_run.log").read_text()
    assert "step precision: ok" in log and (tmp_path / "pytest_gpu.xml").is_file()


def test_targets_and_an_interrupted_run(tmp_path):
    assert gpu_report.target("x", 1.3, "<= 1.3")["met"] is True
    assert gpu_report.target("x", 1.31, "<= 1.3")["met"] is False
    assert gpu_report.target("x", 49.9, ">= 50")["met"] is False
    assert gpu_report.target("x", None, ">= 50")["met"] is False  # nothing measured meets nothing
    out, raw = tmp_path / "figures.json", tmp_path / "raw.json"
    raw.write_text(json.dumps({"scoring_cost": {"models": {"m": {"grad_vs_floor": 1.2, "lrp_vs_floor": 2.5}}}}))
    gpu_report.main(["init", "--out", str(out), "--plan", "device=cuda", "--plan", "note=a=b"])
    common = ["step", "--out", str(out), "--raw", str(raw), "--seconds", "3", "--limit", "60"]
    gpu_report.main(common + ["--name", "scoring_cost", "--status", "ok"])
    gpu_report.main(common + ["--name", "precision", "--status", "running"])
    gpu_report.main(["finish", "--out", str(out), "--status", "interrupted"])
    report = json.loads(out.read_text())
    assert report["plan"] == {"device": "cuda", "note": "a=b"} and report["status"] == "interrupted"
    scoring = report["steps"]["scoring_cost"]
    assert [(t["value"], t["met"]) for t in scoring["targets"]] == [(1.2, True), (2.5, False)]
    assert scoring["targets_met"] is False and report["targets_met"] is False
    assert report["steps"]["precision"]["status"] == "timeout"  # the run was stopped inside it
    assert report["steps"]["precision"]["reason"] == "the whole run was stopped during this step"


def test_junit_outcomes(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite><testcase classname="t" name="a"/><testcase classname="t" name="b">'
        '<failure message="assert 1 == 2"/></testcase><testcase classname="t" name="c">'
        '<skipped message="needs a CUDA GPU"/></testcase></testsuite></testsuites>'
    )
    figures = gpu_report.junit(path)
    assert {k: figures[k] for k in ("passed", "failed", "errors", "skipped")} == dict(passed=1, failed=1, errors=0, skipped=1)
    assert figures["tests"]["t::b"] == {"outcome": "failed", "message": "assert 1 == 2"}
    assert [t["met"] for t in gpu_report.pytest_targets(figures)] == [False, True]

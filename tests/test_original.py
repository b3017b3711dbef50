"""The original command lines, end to end on tiny files in the real formats."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from headlens.digest import tree_sha256
from headlens.original import main, run_lxmert_perturbation, run_lxmert_visualization, run_mmf
from headlens.report import page_data

from conftest import mmf_args

import real_formats as rf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lxmert_files(tmp_path):
    valid, label2ans = rf.lxmert_questions(tmp_path)
    return [
        "--valid", str(valid), "--label2ans", str(label2ans), "--features", str(rf.obj36_tsv(tmp_path / "f.tsv")),
        "--model", str(rf.lxmert_checkpoint(tmp_path / "ckpt")), "--tokenizer", str(rf.tokenizer_folder(tmp_path / "tok")),
        "--COCO_path", str(rf.coco_images(tmp_path / "val2014")), "--no-progress",
    ]  # fmt: skip


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["runs"][0]


@pytest.mark.parametrize(
    "flags, method, order, unit",
    [
        (["--method", "ours", "--is-positive-pert", "False", "--prune_type", "head"], "grad", "negative", "head"),
        (["--method", "lrp", "--is-positive-pert", "True", "--prune_type", "layer"], "lrp", "positive", "layer"),
        (["--method", "ours", "--prune_type", "head", "--no-report"], "grad", "negative", "head"),  # no flag: negative
    ],
)
def test_lxmert_perturbation(tmp_path, lxmert_files, capsys, flags, method, order, unit):
    out = tmp_path / "out"
    assert main(run_lxmert_perturbation, lxmert_files + flags + ["--num-samples", "4", "--seed", "3", "--out-dir", str(out)]) == 0
    run = results(out)
    (curve,) = run["curves"]
    assert (curve["method"], curve["order"], curve["unit"], curve["protocol"]) == (method, order, unit, "per_example")
    assert run["n_examples"] == 4 and set(run["example_ids"]) <= {str(1000 + i) for i in range(6)}
    assert curve["pruned"] == ([0, 4, 8, 12, 16, 20, 24, 28, 33, 37] if unit == "head" else [0, 1, 2, 3, 4, 5, 6, 7, 9, 10])  # (1 - 0.8)·10 = 1.99…
    printed = capsys.readouterr().out
    assert "accuracy: [" in printed and f"lxmert {unit} pruning, {method}, {order}: 4 examples" in printed
    report = set() if "--no-report" in flags else {"report.html"}
    assert {p.name for p in out.iterdir()} == {"results.json", "curves.csv", "per_example.npz", "curves.png"} | report
    assert run["provenance"]["model"] == "lxmert" and run["provenance"]["seeds"] == {"sample": 3}
    assert run["provenance"]["checkpoint_sha256"] == tree_sha256(lxmert_files[lxmert_files.index("--model") + 1])


def test_lxmert_generate_visualization(tmp_path, lxmert_files):
    out = tmp_path / "pictures"
    assert main(run_lxmert_visualization, lxmert_files + ["--num-samples", "2", "--seed", "1", "--out-dir", str(out)]) == 0
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 2 and (out / "heads_mean.png").is_file()
    names = {p.name for p in folders[0].iterdir()}
    image = next(n for n in names if n.endswith("_orig.jpg"))[: -len("_orig.jpg")]
    assert image in rf.IMAGES
    assert {f"{image}_prune_{p}.{ext}" for p in (0, 40, 60, 90) for ext in ("jpg", "tex")} <= names
    (model,) = page_data(out)["models"]  # the report of pictures alone: two examples, no curves
    assert (out / "report.html").is_file() and len(model["examples"]) == 2 and model["curves"] == []
    assert model["levels"] == [0.0, 0.4, 0.6, 0.9] and model["examples"][0]["image"].startswith("data:image/")


@pytest.mark.parametrize("trainer, unit", [("mmf_head_prun", "head"), ("mmf_layer_prun", "layer")])
def test_run_py_pruning(tmp_path, mmf_data_dir, capsys, trainer, unit):
    out = tmp_path / "out"
    args = mmf_args(mmf_data_dir, out, trainer, "prune.num_of_examples=5", "prune.is_grad=False", "prune.positive_prune=True")
    assert main(run_mmf, args) == 0
    run = results(out)
    (curve,) = run["curves"]
    assert (curve["method"], curve["order"], curve["unit"]) == ("lrp", "positive", unit)
    assert curve["pruned"] == ([0, 0, 1, 2, 3, 4, 4, 5, 6, 7] if unit == "head" else [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert run["n_examples"] == 5 and run["config"]["settings"]["training"]["batch_size"] == 3
    assert "accuracy: [" in capsys.readouterr().out


def test_run_py_divides_by_the_requested_count_only_when_asked(tmp_path, mmf_data_dir):
    correct, quirk = tmp_path / "a", tmp_path / "b"
    assert main(run_mmf, mmf_args(mmf_data_dir, correct, "mmf_head_prun", "prune.num_of_examples=40")) == 0
    assert main(run_mmf, mmf_args(mmf_data_dir, quirk, "mmf_head_prun", "prune.num_of_examples=40",
                                  "prune.divide_by_requested=true", "report=false")) == 0  # fmt: skip
    assert (correct / "report.html").is_file() and not (quirk / "report.html").exists()
    archive = mmf_data_dir / "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz"
    assert results(correct)["provenance"]["checkpoint_sha256"] == tree_sha256(archive)
    a, b = results(correct)["curves"][0]["accuracy"], results(quirk)["curves"][0]["accuracy"]
    assert results(correct)["n_examples"] == 6  # only 6 questions exist
    assert b == pytest.approx([x * 6 / 40 for x in a])


def test_run_py_pictures(tmp_path, mmf_data_dir):
    out = tmp_path / "pictures"
    assert main(run_mmf, mmf_args(mmf_data_dir, out, "mmf_exp", "prune.num_of_examples=2")) == 0
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 2
    names = {p.name for p in folders[0].iterdir()}
    stems = {n[: -len("_0.jpg")] for n in names if n.endswith("_0.jpg")}
    assert len(stems) == 1 and stems.pop() in rf.IMAGES
    assert not any(n.endswith("_orig.jpg") for n in names)  # VisualBERT's naming has none
    assert (out / "explained.npz").is_file() and (out / "report.html").is_file()


def test_bad_input_is_one_clear_error_and_leaves_no_result_files(tmp_path, mmf_data_dir, lxmert_files, capsys):
    out = tmp_path / "out"
    (mmf_data_dir / "datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt").write_text("<unk>\nyes\nno\n")
    assert main(run_mmf, mmf_args(mmf_data_dir, out, "mmf_head_prun")) == 2
    assert "the answer list has 3 answers but the model predicts 8" in capsys.readouterr().err
    assert main(run_mmf, mmf_args(tmp_path / "nowhere", out, "mmf_head_prun")) == 2
    nowhere = (tmp_path / "nowhere").absolute()  # where the files go: the hint says so
    assert f"fetch it with `headlens download mmf-visual-bert-vqa2 --dir {nowhere}`" in capsys.readouterr().err
    assert main(run_mmf, ["training.trainer=mmf_prune_all"]) == 2
    assert "key 'training.trainer': 'mmf_prune_all' is not supported" in capsys.readouterr().err
    assert main(run_mmf, ["prune.num_of_example=3"]) == 2
    assert "key 'prune.num_of_example'" in capsys.readouterr().err
    broken = rf.obj36_tsv(tmp_path / "broken.tsv", skip=("COCO_val2014_000000000042",))
    args = lxmert_files + ["--features", str(broken), "--num-samples", "6", "--out-dir", str(out)]
    assert main(run_lxmert_perturbation, args) == 2
    assert "image 'COCO_val2014_000000000042' has no features in" in capsys.readouterr().err
    assert not out.exists() or not (out / "results.json").exists()


def test_run_py_reads_the_config_file_and_the_command_line_overrides_it(tmp_path, capsys):
    from headlens.original import mmf_config

    shipped = ROOT / "projects/visual_bert/configs/vqa2/defaults.yaml"
    config = mmf_config([f"config={shipped}", "prune.is_grad=false", "env.data_dir=/d"])
    assert config.training.batch_size == 16 and config.prune.num_of_examples == 10000  # from the file
    assert config.prune.is_grad is False  # the command line wins
    mine = tmp_path / "mine.yaml"
    mine.write_text("prune:\n  num_of_examples: 7\n  is_grads: true\n")
    assert main(run_mmf, [f"config={mine}"]) == 2
    error = capsys.readouterr().err
    assert str(mine) in error and "prune.is_grads" in error
    assert main(run_mmf, [f"config={tmp_path / 'absent.yaml'}"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_scripts_run_as_files(tmp_path):
    run = subprocess.run([sys.executable, "run.py", "training.trainer=mmf_prune_all"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "mmf_prune_all" in run.stderr
    perturb = subprocess.run([sys.executable, "lxmert/lxmert/perturbation.py", "--is-positive-pert", "maybe"],
                             cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert perturb.returncode == 2 and "expected True or False, got 'maybe'" in perturb.stderr
    help_text = subprocess.run([sys.executable, "lxmert/lxmert/generate_visualization.py", "--help"], cwd=ROOT,
                               capture_output=True, text=True).stdout  # fmt: skip
    assert "--COCO_path" in help_text and "--num-samples" in help_text

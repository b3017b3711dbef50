"""No stale numbers: a rerun resumes only when nothing that decides the numbers changed, and a
run's result files are one set even when the run dies while writing them."""

import json
import os
import sys

import numpy as np
import pytest
import torch

import headlens.files
import headlens.sweep  # noqa: F401  (the module; headlens.sweep is also the function)
from headlens.cli import main
from headlens.digest import file_sha256
from headlens.results import read_results

import real_formats as rf

sweep_module = sys.modules["headlens.sweep"]


def prune(model, data, out, *extra):
    return main(["prune", "--model", str(model), "--data", str(data), f"out_dir={out}", "progress=false",
                 "data.num_examples=12", "data.score_examples=4", "sweep.batch_size=4", "sweep.checkpoint_every=4",
                 "sweep.methods=[grad,random]", "sweep.units=[head]", *extra])  # fmt: skip


def interrupted(monkeypatch, *args) -> None:
    """Run ``prune`` and stop it (as Ctrl-C would) in its third evaluation batch."""
    original = sweep_module._Batches.soft_scores
    seen = []

    def stop(self, batch):
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(batch.ids)
        return original(self, batch)

    monkeypatch.setattr(sweep_module._Batches, "soft_scores", stop)
    assert prune(*args) == 130
    monkeypatch.setattr(sweep_module._Batches, "soft_scores", original)


def curves(out):
    return [(c["method"], c["order"], c["protocol"], c["accuracy"]) for c in read_results(out)["runs"][0]["curves"]]


@pytest.fixture
def subject(tmp_path):
    return rf.text_classifier_folder(tmp_path / "model"), rf.labelled_csv(tmp_path / "data.csv")


def test_an_unchanged_rerun_resumes_to_the_uninterrupted_numbers(subject, tmp_path, monkeypatch, capsys):
    model, data = subject
    assert prune(model, data, tmp_path / "whole") == 0
    interrupted(monkeypatch, model, data, tmp_path / "run")
    assert (tmp_path / "run/partial.npz").is_file() and not (tmp_path / "run/results.json").exists()
    capsys.readouterr()
    assert prune(model, data, tmp_path / "run") == 0
    assert "resuming: 2 of 3 batches already done, inputs unchanged" in capsys.readouterr().err
    assert curves(tmp_path / "run") == curves(tmp_path / "whole")
    assert not (tmp_path / "run/partial.npz").exists()


def relabel(model, data):
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + ",pos" for line in lines[1:]]) + "\n")


def retrain_head(model, data):
    import transformers

    classifier = transformers.BertForSequenceClassification.from_pretrained(model)
    with torch.no_grad():
        classifier.classifier.bias += torch.tensor([0.0, 0.0, 5.0])  # fine-tuned in place: same file names
    classifier.save_pretrained(model)


def swap_vocabulary(model, data):
    path = model / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    words = [w for w, i in sorted(vocab.items(), key=lambda item: item[1]) if i >= 5]
    vocab.update({word: 5 + i for i, word in enumerate(reversed(words))})  # same size, other ids
    path.write_text(json.dumps(tokenizer))


@pytest.mark.parametrize(
    "change, said",
    [
        (relabel, "the data read for batch 0"),
        (retrain_head, "partial results of other settings or another model's weights"),
        (swap_vocabulary, "the data read for batch 0"),
    ],
    ids=["data relabelled", "weights fine-tuned in place", "tokenizer changed"],
)
def test_a_changed_input_starts_afresh_and_gives_the_fresh_numbers(subject, tmp_path, monkeypatch, capsys, change, said):
    model, data = subject
    interrupted(monkeypatch, model, data, tmp_path / "run")
    change(model, data)
    capsys.readouterr()
    assert prune(model, data, tmp_path / "run") == 0
    err = capsys.readouterr().err
    assert said in err and "starting afresh" in err
    assert prune(model, data, tmp_path / "fresh") == 0  # the same inputs, never interrupted
    assert curves(tmp_path / "run") == curves(tmp_path / "fresh")


def test_a_fault_between_two_writes_never_leaves_files_of_two_runs(subject, tmp_path, monkeypatch):
    model, data = subject
    out = tmp_path / "run"
    (out / "notes").mkdir(parents=True)
    (out / "notes/mine.txt").write_text("a user's file")
    assert prune(model, data, out, "sweep.seed=1") == 0
    old = json.loads((out / "results.json").read_text())["files"]
    moves = []
    replace = os.replace

    def dies_on_the_second_move(source, target):
        if ".headlens-staging" in str(source) and not str(source).endswith(".headlens-tmp"):  # a commit move
            moves.append(target)
            if len(moves) == 2:
                raise OSError("disk pulled out")  # a kill between two writes of the set
        return replace(source, target)

    monkeypatch.setattr(headlens.files.os, "replace", dies_on_the_second_move)
    assert prune(model, data, out, "sweep.seed=2") == 2
    monkeypatch.setattr(headlens.files.os, "replace", replace)
    assert not (out / "results.json").exists()  # no manifest: visibly incomplete
    left = {name for name in old if (out / name).exists()}
    assert left == {os.path.relpath(moves[0], out)}  # only the new run's first file: nothing of the old set
    assert file_sha256(out / left.pop()) != old[os.path.relpath(moves[0], out)]
    assert (out / "notes/mine.txt").read_text() == "a user's file"
    assert prune(model, data, out, "sweep.seed=2") == 0  # the rerun writes a whole set again
    document = read_results(out)
    assert sorted(document["files"]) == ["curves.csv", "curves.png", "per_example.npz", "report.html"]
    with np.load(out / "per_example.npz") as arrays:
        assert str(arrays["run_id"]) == document["run_id"]
    assert not list(out.rglob("*.headlens-tmp")) and not (out / ".headlens-staging").exists()


def test_a_file_replaced_after_the_run_is_caught_by_the_reader(subject, tmp_path):
    model, data = subject
    assert prune(model, data, tmp_path / "a") == 0
    (tmp_path / "a/curves.csv").write_text("model,protocol\n")
    with pytest.raises(ValueError, match="curves.csv: changed since .*results.json was written"):
        read_results(tmp_path / "a")

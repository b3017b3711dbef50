import json

import pytest
import torch

from headlens.config import load_config
from headlens.data.easy_vqa import Split, load_split
from headlens.subjects.easy_vqa import cached_folder, fingerprint, load_subject, train_subject


def first_questions(split: Split, n: int) -> Split:
    return Split(split.name, split.questions[:n], split.answers[:n], split.image_ids[:n], split.images, split.image_index)


@pytest.fixture(scope="module")
def small_splits():
    return {"train": first_questions(load_split("train"), 2000), "test": first_questions(load_split("test"), 300)}


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_few_steps_decrease_the_loss_and_the_model_round_trips(tmp_path, small_splits, family):
    config = load_config(["train.steps=60", "train.lr=1e-3", "progress=false"], preset=f"easy-vqa-{family}")
    report = train_subject(config, tmp_path / "model", small_splits, progress=False)
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert record["report"]["steps"] == 60 and record["config"]["model"]["family"] == family
    assert record["report"]["final_loss"] < 2.0  # from ln(13) ≈ 2.56 at the start
    assert 0 <= report.zeroed_image_accuracy <= 100 and report.test_questions == 300
    subject = load_subject(tmp_path / "model")
    assert subject.adapter.family == family and len(subject.answers) == 13
    batch = subject.dataset(small_splits["test"]).collate(range(8))
    again = load_subject(tmp_path / "model")
    with torch.no_grad():
        torch.testing.assert_close(subject.adapter.logits(batch.inputs), again.adapter.logits(batch.inputs))
    test = subject.dataset(small_splits["test"])  # the report's accuracy is the VQA score of its own answers
    with torch.no_grad():
        scored = [test.collate(range(i, min(i + 100, len(test)))) for i in range(0, len(test), 100)]
        won = sum(float(b.labels.gather(1, subject.adapter.predict(subject.adapter.logits(b.inputs))[:, None]).sum())
                  for b in scored)  # fmt: skip
    assert report.test_accuracy == pytest.approx(100 * won / len(test), abs=1e-6)


def test_loss_decreases_over_training(small_splits, tmp_path):
    from headlens.train import fit

    config = load_config(["train.steps=1", "progress=false"], preset="easy-vqa-lxmert")
    train_subject(config, tmp_path / "m", small_splits, progress=False)
    subject = load_subject(tmp_path / "m")
    report = fit(subject.adapter, subject.dataset(small_splits["train"]), steps=80, lr=1e-3, log_every=20, progress=False)
    assert len(report.losses) == 4 and report.losses[-1] < report.losses[0] - 0.3


def test_cache_key_follows_the_training_settings_only():
    a = load_config(preset="easy-vqa-lxmert")
    assert fingerprint(a) == fingerprint(load_config(["sweep.batch_size=3", "data.num_examples=9"], "easy-vqa-lxmert"))
    assert fingerprint(a) != fingerprint(load_config(["train.steps=10"], "easy-vqa-lxmert"))
    assert fingerprint(a) != fingerprint(load_config(["model.arch.hidden=32"], "easy-vqa-lxmert"))
    assert cached_folder(a, "/cache").name.startswith("easy-vqa-lxmert-")


def test_loading_a_folder_that_is_not_a_model_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a trained easy-VQA model: config.json is missing"):
        load_subject(tmp_path)

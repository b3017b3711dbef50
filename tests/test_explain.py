import pytest
import torch

from headlens.adapters import adapter_for
from headlens.adapters.configs import make_config, new_model
from headlens.data.batch import sample
from headlens.data.easy_vqa import FeatureSpec, answer_list, build_tokenizer, load_split
from headlens.explain import PICTURE_LEVELS, explain
from headlens.edits import gates
from headlens.masks import pruned_count
from headlens.relevance import relevance_maps
from headlens.subjects.easy_vqa import Subject
from headlens.visualize import pointing_table, visualize_examples


@pytest.fixture(scope="module")
def test_split():
    return load_split("test")


def untrained_subject(family, split, tmp_path):
    """A random-init model on the real easy-VQA inputs (tokenizer, features, answers)."""
    tokenizer = build_tokenizer(split.questions)
    spec = FeatureSpec.fit(split.region_features(4)[0][:50], 4)
    config = make_config(family, vocab_size=len(tokenizer), feature_dim=len(spec.mean), n_answers=13, hidden=16, heads=4,
                             layers={}, intermediate=32, init_range=0.3)  # fmt: skip
    torch.manual_seed(0)
    model = new_model(family, config).eval()
    return Subject(adapter_for(model), tokenizer, answer_list(), spec, tmp_path)


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_explain_prunes_the_least_important_heads_and_answers_with_the_pruned_model(test_split, tmp_path, family):
    subject = untrained_subject(family, test_split, tmp_path)
    adapter = subject.adapter
    batch = sample(subject.dataset(test_split), 5, seed=1).collate(range(5))
    explained = explain(adapter, batch, map_methods=("ours", "raw"))
    total = adapter.num_sites * adapter.num_heads
    for level_index, level in enumerate(PICTURE_LEVELS):
        keep = explained.keep[:, level_index]
        assert ((1 - keep).flatten(1).sum(1) == pruned_count(total, level, adapter.count_rule)).all()
        for row in range(5):  # the pruned heads are the lowest-scored ones
            scores = explained.head_scores[row]
            if (keep[row] == 0).any() and (keep[row] == 1).any():
                assert scores[keep[row] == 0].max() <= scores[keep[row] == 1].min()
        with torch.no_grad(), gates(adapter, keep):
            torch.testing.assert_close(explained.predictions[:, level_index], adapter.logits(batch.inputs).argmax(-1))
    unpruned = relevance_maps(adapter, batch.inputs, "ours")
    torch.testing.assert_close(explained.text["ours"][:, 0], unpruned.text)
    torch.testing.assert_close(explained.image["ours"][:, 0], unpruned.image)
    assert explained.image["ours"].shape == (5, 4, 16)


def test_visualize_examples_writes_the_original_and_new_pictures(test_split, tmp_path):
    subject = untrained_subject("lxmert", test_split, tmp_path)
    written = visualize_examples(subject, test_split, tmp_path / "viz", n=2, seed=3)
    assert len(written) == 2
    folder = written[0]["figure"].parent
    names = {p.name for p in folder.iterdir()}
    orig = [n for n in names if n.endswith("_orig.jpg")]
    assert len(orig) == 1 and orig[0].startswith("test_")
    stem = orig[0][: -len("_orig.jpg")]
    assert {f"{stem}_prune_{p}.{ext}" for p in (0, 40, 60, 90) for ext in ("jpg", "tex")} <= names
    from PIL import Image

    assert Image.open(folder / f"{stem}_prune_0.jpg").size == (256, 256)  # 64 px × scale 4
    assert (tmp_path / "viz" / "heads_mean.png").is_file()


def test_pointing_table_rows(test_split, tmp_path):
    subject = untrained_subject("visual_bert", test_split, tmp_path)
    data = sample(subject.dataset(test_split), 12, seed=0)
    table = pointing_table(subject, data, levels=[0.0, 0.5], batch_size=5)
    assert [(r["method"], r["level"]) for r in table["rows"]] == [
        (m, l) for m in ("ours", "lrp", "raw", "rollout") for l in (0.0, 0.5)
    ]
    assert all(0 <= r["pointing"] <= 100 and 0 <= r["share"] <= 100 for r in table["rows"])
    assert 0 < table["chance"] < 100
    shape = data.base.shape_boxes(torch.tensor([0, 1]))
    assert shape.shape == (2, 16) and shape.any(1).all()

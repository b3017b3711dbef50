import numpy as np
import pytest
import torch

from headlens.data.easy_vqa import (
    EasyVQA, FeatureSpec, SHAPES, answer_list, build_tokenizer, grid_boxes, load_split, object_descriptors,
    region_features,
)  # fmt: skip

from conftest import tiny_adapter


@pytest.fixture(scope="module")
def test_split():
    return load_split("test")


def test_real_split_is_read_whole(test_split):
    assert len(test_split.questions) == len(test_split.answers) == len(test_split.image_ids) == 9673
    assert test_split.images.shape == (1000, 64, 64, 3) and test_split.images.dtype == np.uint8
    assert len(answer_list()) == 13 and set(test_split.answers) <= set(answer_list())


def known_shapes(split):
    """Image row → shape name, from the split's 'what shape …' questions."""
    return {
        split.image_index[int(i)]: a for q, a, i in zip(split.questions, split.answers, split.image_ids) if a in SHAPES
    }


def test_region_features_and_boxes_of_real_images(test_split):
    features, fg = region_features(test_split.images[:50], grid=4)
    assert features.shape == (50, 16, 121) and fg.shape == (50, 64, 64)
    assert np.isfinite(features).all()
    boxes = grid_boxes(4)
    assert boxes.shape == (16, 4)
    np.testing.assert_allclose(boxes[5], [0.25, 0.25, 0.5, 0.5])  # row 1, column 1
    # the foreground is a minority of each image but never empty: one shape on a plain background
    share = (fg > 0.5).mean((1, 2))
    assert (share > 0.005).all() and (share < 0.6).all()
    # each region's foreground fraction is the mean of the mask over its cell
    np.testing.assert_allclose(features[:, 0, 112], fg[:, :16, :16].mean((1, 2)), rtol=1e-5)


def test_object_descriptors_separate_the_three_shapes(test_split):
    shapes = known_shapes(test_split)
    rows = sorted(shapes)
    fill = object_descriptors(region_features(test_split.images[rows])[1])[:, 0]
    by_shape = {s: fill[[shapes[r] == s for r in rows]] for s in SHAPES}
    assert np.median(by_shape["rectangle"]) > 0.9
    assert 0.7 < np.median(by_shape["circle"]) < 0.85
    assert np.median(by_shape["triangle"]) < 0.6


def test_tokenizer_is_a_real_bert_tokenizer_of_the_question_words(tmp_path):
    tokenizer = build_tokenizer(["What color is the shape?", "is there a red shape?"])
    encoded = tokenizer("what color is the blue shape?")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", "what", "color", "is", "the", "[UNK]", "shape", "?", "[SEP]"]
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path)("is there a red shape?")["input_ids"] == tokenizer(
        "is there a red shape?"
    )["input_ids"]


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_dataset_yields_model_inputs(test_split, family):
    adapter = tiny_adapter(family)
    tokenizer = build_tokenizer(test_split.questions)
    spec = FeatureSpec.fit(region_features(test_split.images[:20])[0], grid=4)
    data = adapter.examples(EasyVQA(test_split, tokenizer, spec, answer_list()))
    batch = data.collate([0, 5, 9])
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    assert ids.shape[0] == 3 and (ids[:, 0] == tokenizer.cls_token_id).all()
    lengths = mask.sum(1)
    assert (ids[torch.arange(3), lengths - 1] == tokenizer.sep_token_id).all()
    assert tokenizer.decode(ids[1, 1 : lengths[1] - 1]) == test_split.questions[5].lower()
    image_key = "visual_feats" if family == "lxmert" else "visual_embeds"
    assert batch.inputs[image_key].shape == (3, 16, 121)
    if family == "lxmert":
        assert batch.inputs["visual_pos"].shape == (3, 16, 4)
    else:
        assert batch.inputs["visual_token_type_ids"].eq(0).all() and batch.inputs["visual_attention_mask"].eq(1).all()
    answers = answer_list()
    assert [answers[i] for i in batch.labels.argmax(1)] == [test_split.answers[i] for i in (0, 5, 9)]
    assert batch.labels.sum(1).tolist() == [1.0, 1.0, 1.0]
    assert batch.ids == ["test-0", "test-5", "test-9"]


def test_feature_spec_round_trip_and_version_check(tmp_path):
    spec = FeatureSpec.fit(np.random.default_rng(0).normal(size=(4, 16, 3)).astype(np.float32), grid=4)
    spec.save(tmp_path)
    assert FeatureSpec.load(tmp_path) == spec
    (tmp_path / "features.json").write_text((tmp_path / "features.json").read_text().replace('"version": 1', '"version": 0'))
    with pytest.raises(ValueError, match="features version 0"):
        FeatureSpec.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no features.json"):
        FeatureSpec.load(tmp_path / "missing")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="easy-VQA questions not found"):
        load_split("test", root=tmp_path)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "questions.json").write_text('[["is there a shape?", "yes", 7]]')
    with pytest.raises(FileNotFoundError, match=r"easy-VQA image 7 .* not found: .*7\.png"):
        load_split("test", root=tmp_path)

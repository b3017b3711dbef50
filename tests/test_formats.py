import re
import json

import numpy as np
import pytest
import torch

from headlens.adapters import adapter_for
from headlens.data.regions import LmdbFeatures, MissingFeatures, NpzFolder, Obj36TSV, convert_tsv
from headlens.data.vqa import RegionVQA, read_answers_vqa, read_label2ans, read_lxmert_questions, read_mmf_imdb
from headlens.models import load_model, load_tokenizer, resolve
from headlens.models.mmf import convert

import real_formats as rf


def test_obj36_tsv_is_read_by_image_id_through_a_reused_offset_index(tmp_path):
    path = rf.obj36_tsv(tmp_path / "val2014_obj36.tsv")
    tsv = Obj36TSV(path)
    assert len(tsv) == 3 and "COCO_val2014_000000000073" in tsv
    regions = tsv.get("COCO_val2014_000000000073")
    boxes, features, height, width = rf.regions("COCO_val2014_000000000073", 5, 12, 1)
    np.testing.assert_array_equal(regions.boxes, boxes)
    np.testing.assert_array_equal(regions.features, features)
    assert (regions.height, regions.width) == (height, width)
    np.testing.assert_allclose(regions.normalised_boxes(), boxes / np.array([width, height, width, height]))
    index = tmp_path / "val2014_obj36.tsv.index.json"
    assert set(json.loads(index.read_text())["offsets"]) == set(rf.IMAGES)
    index.write_text(index.read_text().replace('"offsets": {', '"offsets": {"only-in-the-index": 0, '))
    assert "only-in-the-index" in Obj36TSV(path)  # reused while the TSV is unchanged
    with pytest.raises(MissingFeatures, match="image 'COCO_val2014_999' has no features in .*val2014_obj36.tsv"):
        tsv.get("COCO_val2014_999")


def test_tsv_rows_with_the_wrong_columns_are_named(tmp_path):
    path = rf.obj36_tsv(tmp_path / "bad.tsv")
    lines = path.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:9])
    path.write_text("\n".join(lines) + "\n")
    tsv = Obj36TSV(path)
    with pytest.raises(ValueError, match=r"bad.tsv \(image COCO_val2014_000000000073\): 9 tab-separated columns, expected 10"):
        tsv.get("COCO_val2014_000000000073")


def test_npz_folder_holds_what_the_tsv_held(tmp_path):
    tsv = Obj36TSV(rf.obj36_tsv(tmp_path / "f.tsv"))
    assert convert_tsv(tsv, tmp_path / "npz") == 3
    folder = NpzFolder(tmp_path / "npz")
    for image in rf.IMAGES:
        np.testing.assert_array_equal(folder.get(image).features, tsv.get(image).features)
    with pytest.raises(MissingFeatures, match="no COCO_x.npz"):
        folder.get("COCO_x")


def test_mmf_lmdb_imdb_and_answers(tmp_path):
    data_dir = rf.mmf_data(tmp_path)
    features = LmdbFeatures(data_dir / "datasets/coco/defaults/features/trainval2014.lmdb")
    regions = features.get("COCO_val2014_000000000042")  # found under its numeric id, as MMF does
    np.testing.assert_array_equal(regions.boxes, rf.regions("COCO_val2014_000000000042", 5, 12, 0)[0])
    answers = read_answers_vqa(data_dir / "datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt")
    assert answers[0] == "<unk>" and len(answers) == 8
    questions = read_mmf_imdb(data_dir / "datasets/vqa2/defaults/annotations/imdb_val2014.npy", answers)
    assert len(questions) == 6  # the header record is skipped
    first = questions[0]
    assert first.text == "what color is the cat ?" and first.image_name == "COCO_val2014_000000000042"
    # 7 of 10 humans said "red", 2 "yes", 1 "no": MMF's leave-one-out soft scores
    assert first.labels[answers.index("red")] == pytest.approx(1.0)
    assert first.labels[answers.index("yes")] == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert first.labels[answers.index("no")] == pytest.approx(9 * (1 / 3) / 10)


def test_lxmert_questions_and_answer_list(tmp_path):
    valid, label2ans = rf.lxmert_questions(tmp_path)
    answers = read_label2ans(label2ans)
    questions = read_lxmert_questions(valid, answers)
    assert [q.question_id for q in questions] == [str(1000 + i) for i in range(6)]
    assert questions[0].labels == {answers.index("red"): 1.0, answers.index("blue"): 0.3}
    valid.write_text(json.dumps([{"sent": "no image id"}]))
    with pytest.raises(ValueError, match="record 0: missing or malformed field 'question_id'"):
        read_lxmert_questions(valid, answers)
    with pytest.raises(FileNotFoundError, match="fetch it with `headlens download lxmert-valid`"):
        read_lxmert_questions(tmp_path / "missing.json", answers)


def test_region_dataset_batches_and_checks_the_answer_count(tmp_path):
    valid, label2ans = rf.lxmert_questions(tmp_path)
    answers = read_label2ans(label2ans)
    adapter = adapter_for(load_model("lxmert", str(rf.lxmert_checkpoint(tmp_path / "ckpt"))))
    tokenizer = load_tokenizer(str(rf.tokenizer_folder(tmp_path / "tok")))
    data = adapter.examples(RegionVQA(read_lxmert_questions(valid, answers), Obj36TSV(rf.obj36_tsv(tmp_path / "f.tsv")),
                                      tokenizer, len(answers), max_length=20))  # fmt: skip
    batch = data.collate([0, 2])
    assert batch.inputs["visual_feats"].shape == (2, 5, 12) and batch.inputs["visual_pos"].max() <= 1
    assert tokenizer.convert_ids_to_tokens(batch.inputs["input_ids"][0, :7].tolist()) == [
        "[CLS]", "what", "color", "is", "the", "cat", "?"]  # fmt: skip
    assert batch.labels[0, answers.index("blue")] == pytest.approx(0.3) and batch.ids == ["1000", "1002"]
    with torch.no_grad():
        assert adapter.logits(batch.inputs).shape == (2, 7)
    with pytest.raises(ValueError, match="answers.txt: the answer list has 8 answers but the model predicts 7"):
        adapter.expect_answers(8, "answers.txt")
    missing = RegionVQA(read_lxmert_questions(valid, answers), Obj36TSV(rf.obj36_tsv(tmp_path / "g.tsv", skip=("COCO_val2014_000000000073",))),
                        tokenizer, len(answers))  # fmt: skip
    with pytest.raises(MissingFeatures, match="image 'COCO_val2014_000000000073' has no features in .*g.tsv"):
        missing.collate([2])


def test_mmf_checkpoint_converts_to_the_same_logits(tmp_path):
    original = rf.mmf_model()
    archive = rf.mmf_archive(tmp_path / "zoo.tar.gz", original)
    converted = convert(archive)
    assert converted.config.num_attention_heads == 4 and converted.config.num_labels == 8
    adapter = adapter_for(converted)
    inputs = adapter.inputs({
        "input_ids": torch.tensor([[2, 5, 6, 7, 15, 3], [2, 8, 9, 15, 3, 0]]),
        "attention_mask": torch.tensor([[1] * 6, [1] * 5 + [0]]), "features": torch.randn(2, 5, 12),
        "boxes": torch.rand(2, 5, 4), "box_mask": torch.tensor([[1] * 5, [1] * 4 + [0]]),
    })  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(converted(**inputs).logits, original(**inputs).logits)
    converted.save_pretrained(tmp_path / "hf")  # and it round-trips through HF format
    reloaded = load_model("visual_bert", str(tmp_path / "hf"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, original(**inputs).logits)


def test_missing_checkpoint_names_where_it_looked_and_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint 'unc-nlp/lxmert-vqa-uncased' not found: .*"
                       r"models/unc-nlp/lxmert-vqa-uncased.*fetch it with "
                       rf"`headlens download lxmert-vqa --dir {re.escape(str(tmp_path))}`"):  # fmt: skip
        resolve("unc-nlp/lxmert-vqa-uncased", tmp_path)
    (tmp_path / "models").mkdir()
    archive = rf.mmf_archive(tmp_path / "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz", rf.mmf_model())
    assert resolve("visual_bert.finetuned.vqa2.from_coco_train", tmp_path) == archive
    with pytest.raises(ValueError, match="holds a visual_bert model, not lxmert"):
        load_model("lxmert", str(archive))

"""No code runs from a user's file, and readers refuse bad data with an error naming the file.

Every malicious file here pickles a :class:`Planted` object, whose unpickling creates a
marker file: each test asserts that the marker does not exist after the refusal (and, for
``trust_pickle=True``, that it does: the opt-in runs the file's code, as documented).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tarfile

import numpy as np
import pytest
import torch

from headlens import safe_pickle
from headlens.adapters import adapter_for
from headlens.data.regions import LmdbFeatures, NpzFolder, Obj36TSV, Regions, write_npz
from headlens.data.vqa import read_answers_vqa, read_label2ans, read_lxmert_questions, read_mmf_imdb
from headlens.errors import InputError, UnsafeFileError
from headlens.models import load_model
from headlens.models.mmf import convert
from headlens.original import main, run_mmf

import real_formats as rf
from conftest import mmf_args

IMDB = "datasets/vqa2/defaults/annotations/imdb_val2014.npy"
ANSWERS = "datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt"
LMDB = "datasets/coco/defaults/features/trainval2014.lmdb"
OPT_IN = "load it with trust_pickle=True (config key trust_pickle=true), which runs any code the file holds"


class Planted:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): the proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def same_logits(a, b) -> None:
    adapter = adapter_for(a)
    inputs = adapter.inputs({"input_ids": torch.tensor([[2, 5, 6, 7, 15, 3]]), "attention_mask": torch.ones(1, 6, dtype=torch.long),
                             "features": torch.randn(1, 5, 12), "boxes": torch.rand(1, 5, 4)})  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(a(**inputs).logits, b(**inputs).logits)


# --- MMF checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_real_mmf_checkpoints_load_with_their_omegaconf_config(tmp_path, legacy):
    original = rf.mmf_model()
    for name, config in (("dictconfig", rf.mmf_config()), ("dict", rf.mmf_config(container=True))):
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(rf.mmf_checkpoint(original, config, legacy=legacy))
        converted = convert(path)  # no yaml: the head count comes from the checkpoint's config
        assert converted.config.num_attention_heads == 4
        same_logits(converted, original)


def test_the_head_count_comes_from_the_settings_or_is_an_error_naming_the_key(tmp_path):
    wide = rf.mmf_model(hidden=24, heads=12)  # bert_model_name: bert-base-uncased ⇒ 12 heads, as MMF builds it
    path = tmp_path / "base.pth"
    path.write_bytes(rf.mmf_checkpoint(wide, rf.mmf_config(heads=None, bert="bert-base-uncased")))
    converted = convert(path)
    assert converted.config.num_attention_heads == 12
    same_logits(converted, wide)

    narrow = tmp_path / "narrow.pth"  # 32 wide, nothing says how many heads: never guessed
    narrow.write_bytes(rf.mmf_checkpoint(rf.mmf_model(hidden=32, heads=2), config=False))
    with pytest.raises(InputError) as error:
        convert(narrow)
    assert str(error.value) == (
        f"{narrow}: the head count of this 32-wide model is in neither a yaml beside the weights nor the "
        "checkpoint's config; give model_config.visual_bert.num_attention_heads in a yaml beside the weights, "
        "as MMF's zoo ships it (model_config: {visual_bert: {num_attention_heads: N}}), or call convert(..., heads=N)"
    )
    assert convert(narrow, heads=2).config.num_attention_heads == 2
    zoo = rf.mmf_archive(tmp_path / "zoo.tar.gz", rf.mmf_model(hidden=32, heads=2),
                         weights=narrow.read_bytes(), yaml=rf.MMF_YAML.replace(b": 4", b": 2"))  # fmt: skip
    assert convert(zoo).config.num_attention_heads == 2  # the yaml beside the weights says
    odd = tmp_path / "odd.pth"
    odd.write_bytes(rf.mmf_checkpoint(rf.mmf_model(), rf.mmf_config(heads=3)))
    with pytest.raises(InputError, match=r"3 attention heads do not divide the model's width 16"):
        convert(odd)


def test_a_checkpoint_that_pickles_code_is_refused_and_runs_nothing(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "model.pth"
    original = rf.mmf_model()
    path.write_bytes(rf.mmf_checkpoint(original, payload=Planted(marker)))
    with pytest.raises(UnsafeFileError) as error:
        load_model("visual_bert", str(path))
    assert str(error.value) == (
        f"{path}: refusing to load: the checkpoint's pickle names io.open, which is neither a tensor nor what MMF "
        f"checkpoints hold, and could run code; if you trust the file and where it came from, {OPT_IN}"
    )
    assert not marker.exists()

    legacy = tmp_path / "legacy.pth"  # torch's pre-1.6 format, as 2020 checkpoints are
    legacy.write_bytes(rf.mmf_checkpoint(original, legacy=True, payload=Planted(marker)))
    with pytest.raises(UnsafeFileError, match=rf"^{re.escape(str(legacy))}: refusing to load: .*open.*trust_pickle=True"):
        convert(legacy)
    assert not marker.exists()

    for cut in (3000, len(path.read_bytes()) // 2):  # a truncated copy is damaged, and still runs nothing
        truncated = tmp_path / f"cut{cut}.pth"
        truncated.write_bytes(path.read_bytes()[:cut])
        with pytest.raises(InputError, match=rf"^{re.escape(str(truncated))}: damaged or truncated checkpoint \("):
            convert(truncated)
        assert not marker.exists()

    # the opt-in loads it, and runs its code: that is what it is documented to do
    same_logits(load_model("visual_bert", str(path), trust_pickle=True), original)
    assert marker.exists()


def test_a_zoo_archive_with_a_planted_checkpoint_or_a_link_is_refused(tmp_path):
    marker = tmp_path / "ran"
    weights = rf.mmf_checkpoint(rf.mmf_model(), payload=Planted(marker))
    zoo = rf.mmf_archive(tmp_path / "zoo.tar.gz", None, weights=weights)
    member = "visual_bert.finetuned.vqa2.from_coco_train/model.pth"
    with pytest.raises(UnsafeFileError, match=rf"^{re.escape(f'{zoo}:{member}')}: refusing to load: .*io\.open.*trust_pickle=True"):
        load_model("visual_bert", str(zoo))
    assert not marker.exists()

    linked = tmp_path / "linked.tar.gz"
    with tarfile.open(linked, "w:gz") as archive:
        data = rf.mmf_checkpoint(rf.mmf_model())
        info = tarfile.TarInfo("zoo/real.pth")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("zoo/config.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(UnsafeFileError) as error:
        convert(linked)
    assert str(error.value).startswith(f"{linked}: unsafe member 'zoo/config.yaml' (link: a symbolic link to '/etc/passwd')")


def test_run_py_refuses_a_planted_checkpoint_unless_trust_pickle(tmp_path, mmf_data_dir, capsys):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pth"
    evil.write_bytes(rf.mmf_checkpoint(rf.mmf_model(), payload=Planted(marker)))
    args = mmf_args(mmf_data_dir, tmp_path / "out", "mmf_head_prun", "prune.num_of_examples=2",
                    f"checkpoint.resume_file={evil}")  # fmt: skip
    assert main(run_mmf, args) == 2
    err = capsys.readouterr().err
    assert f"error: {evil}: refusing to load: the checkpoint's pickle names io.open" in err and "trust_pickle=true" in err
    assert not marker.exists()
    assert main(run_mmf, args + ["trust_pickle=true"]) == 0
    assert marker.exists()


# --- MMF imdb and LMDB ---------------------------------------------------------------------------------
def test_imdb_records_hold_numpy_arrays_and_load_as_plain_data(tmp_path):
    data_dir = rf.mmf_data(tmp_path)
    records = safe_pickle.read_npy(data_dir / IMDB)
    assert records.dtype == object and records.shape == (7,)
    np.testing.assert_array_equal(records[1]["question_tokens"], np.array("what color is the cat ?".split()))
    assert records[1]["all_answers"].dtype == object and type(records[1]["question_id"]) is np.int64
    np.testing.assert_array_equal(records[1]["answer_weights"], np.full(10, 0.1, dtype=np.float32))
    numeric = tmp_path / "numeric.npy"  # plain numeric .npy files read as np.load reads them
    np.save(numeric, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(safe_pickle.read_npy(numeric), np.arange(6.0).reshape(2, 3))


def test_a_planted_imdb_is_refused_and_a_damaged_one_named(tmp_path):
    data_dir, marker = rf.mmf_data(tmp_path), tmp_path / "ran"
    imdb, answers = data_dir / IMDB, read_answers_vqa(data_dir / ANSWERS)
    records = list(safe_pickle.read_npy(imdb))
    records[2] = {**records[2], "extra": Planted(marker)}
    np.save(imdb, np.array(records, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError) as error:
        read_mmf_imdb(imdb, answers)
    assert str(error.value) == (
        f"{imdb}: refusing to load: its pickle names io.open, which is not plain data (numbers, strings, lists, "
        f"dicts, numpy arrays) and could run code; if you trust the file and where it came from, {OPT_IN}"
    )
    assert not marker.exists()
    assert len(read_mmf_imdb(imdb, answers, trust_pickle=True)) == 6 and marker.exists()  # the opt-in runs it

    data = imdb.read_bytes()
    imdb.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"^{re.escape(str(imdb))}: damaged or truncated pickle \("):
        read_mmf_imdb(imdb, answers)
    imdb.write_bytes(b"not an npy file at all")
    with pytest.raises(InputError, match=rf"^{re.escape(str(imdb))}: not a readable .npy file"):
        read_mmf_imdb(imdb, answers)


def plant_lmdb(folder, key: bytes, value: bytes) -> None:
    import lmdb

    env = lmdb.open(str(folder), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_planted_lmdb_keys_and_records_are_refused(tmp_path):
    marker = tmp_path / "ran"
    features = rf.mmf_data(tmp_path / "a") / LMDB
    np.testing.assert_array_equal(  # the real format loads: numpy arrays and scalars, as plain data
        LmdbFeatures(features).get("COCO_val2014_000000000074").features, rf.regions("COCO_val2014_000000000074", 5, 12, 2)[1]
    )
    plant_lmdb(features, b"73", pickle.dumps({"features": np.zeros((2, 12)), "bbox": Planted(marker)}))
    source = LmdbFeatures(features)
    with pytest.raises(UnsafeFileError) as error:
        source.get("COCO_val2014_000000000073")
    assert str(error.value).startswith(f"{features}, image '73': refusing to load: its pickle names io.open,")
    assert OPT_IN in str(error.value) and not marker.exists()

    keys = rf.mmf_data(tmp_path / "b") / LMDB
    plant_lmdb(keys, b"keys", pickle.dumps([b"42", Planted(marker)]))
    with pytest.raises(UnsafeFileError, match=rf"^{re.escape(str(keys))}, entry 'keys': refusing to load: .*io\.open"):
        LmdbFeatures(keys)
    assert not marker.exists()
    LmdbFeatures(keys, trust_pickle=True)
    assert marker.exists()


# --- region and question readers ---------------------------------------------------------------------
def test_npz_features_refuse_object_arrays_and_mismatched_rows(tmp_path):
    marker, folder = tmp_path / "ran", tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "evil.npz", boxes=np.array([Planted(marker)], dtype=object), features=np.zeros((1, 4)),
             img_h=10, img_w=10, allow_pickle=True)  # fmt: skip
    with pytest.raises(UnsafeFileError) as error:
        NpzFolder(folder).get("evil")
    assert str(error.value) == (
        f"{folder / 'evil.npz'}: refusing to load array 'boxes': it is a pickled object array, which could run "
        "code; headlens' feature files hold numbers only (write them with headlens.data.regions.write_npz)"
    )
    assert not marker.exists()
    g = np.random.default_rng(0)
    write_npz(folder, "short", Regions(g.random((3, 4), np.float32), g.random((5, 8), np.float32), 10, 10))
    with pytest.raises(InputError) as error:
        NpzFolder(folder).get("short")
    assert str(error.value) == f"{folder / 'short.npz'}: 3 boxes but 5 feature rows; each box needs one row"


def test_a_stale_tsv_index_is_rebuilt_and_every_row_is_checked(tmp_path):
    path = rf.obj36_tsv(tmp_path / "val2014_obj36.tsv")
    first = Obj36TSV(path)
    before = path.stat()
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[::-1]) + "\n")  # same rows, another order: same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == before.st_size
    tsv = Obj36TSV(path)
    assert tsv.offsets == first.offsets  # the stored index is reused: it no longer fits the file
    for seed, image in enumerate(rf.IMAGES):
        np.testing.assert_array_equal(tsv.get(image).features, rf.regions(image, 5, 12, seed)[1])
    stored = json.loads((tmp_path / "val2014_obj36.tsv.index.json").read_text())["offsets"]
    assert stored == tsv.offsets != first.offsets  # rebuilt once, and saved

    tsv.offsets = dict(tsv.offsets, COCO_val2014_000000000042=0)  # an index that rebuilding cannot fix
    tsv._load_index = lambda rebuild=False: dict(tsv.offsets)
    with pytest.raises(InputError, match=r"the row at byte 0 is image 'COCO_val2014_000000000074', not "
                                         r"'COCO_val2014_000000000042', even after rebuilding"):  # fmt: skip
        tsv.get("COCO_val2014_000000000042")


@pytest.mark.parametrize("score", [1.5, -0.1, "0.3", None, True, float("nan")])
def test_lxmert_soft_scores_must_be_numbers_in_0_1(tmp_path, score):
    valid, label2ans = rf.lxmert_questions(tmp_path)
    records = json.loads(valid.read_text())
    records[3]["label"]["cat"] = score
    valid.write_text(json.dumps(records))
    with pytest.raises(InputError) as error:
        read_lxmert_questions(valid, read_label2ans(label2ans))
    shown = "nan" if score != score else repr(score)
    assert str(error.value) == f"{valid}, record 3, answer 'cat': soft score {shown} is not a number in [0, 1]"


def test_an_hf_folder_whose_bin_pickles_code_is_refused(tmp_path):
    from safetensors.torch import load_file

    marker, folder = tmp_path / "ran", rf.lxmert_checkpoint(tmp_path / "ckpt")
    state = load_file(folder / "model.safetensors")
    torch.save({**state, "extra": Planted(marker)}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnsafeFileError, match=rf"^{re.escape(str(folder))}: refusing to load the weights: .*open.*no opt-in"):
        load_model("lxmert", str(folder), progress=False)
    assert not marker.exists()


def test_the_headlens_config_key_trust_pickle_reaches_the_loader(tmp_path, capsys):
    from headlens.cli import main as headlens
    from headlens.config import load_config
    from headlens.pipeline import load_model_and_data

    marker, evil = tmp_path / "ran", tmp_path / "evil.pth"
    evil.write_bytes(rf.mmf_checkpoint(rf.mmf_model(), payload=Planted(marker)))
    overrides = ["model.family=visual_bert", f"model.path={evil}", "data.num_examples=2", "data.score_examples=2"]
    with pytest.raises(UnsafeFileError, match=rf"^{re.escape(str(evil))}: refusing to load"):
        load_model_and_data(load_config(overrides), torch.device("cpu"))
    assert not marker.exists()
    adapter, evaluated, _ = load_model_and_data(load_config(overrides + ["trust_pickle=true"]), torch.device("cpu"))
    assert adapter.family == "visual_bert" and len(evaluated) == 2 and marker.exists()
    marker.unlink()
    assert headlens(["sites", *overrides[:2], "trust_pickle=true"]) == 0 and marker.exists()
    assert "visual_bert: 2 sites × 4 heads" in capsys.readouterr().out

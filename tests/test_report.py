"""The report's data (what the page embeds) and the page itself, without a browser."""

import base64
import json
import re

import numpy as np
import pytest
import torch

import headlens
from conftest import synthetic, tiny_adapter
from headlens.cli import main
from headlens.errors import InputError
from headlens.faithfulness import ORDERS, perturbation_test
from headlens.masks import pruned_count
from headlens.report import build_page, page_data, write_report
from headlens.report.data import quantise, rounded
from headlens.report.explained import Shown, explain_examples, read_explained, write_explained
from headlens.results import write_results

LEVELS = [0.0, 0.25, 0.5, 0.75]


def shown_of(adapter, batch, side: int = 32) -> list[Shown]:
    """A grey image per example and a pixel box for every real image position (tiny models)."""
    real = adapter.streams(batch.inputs)["image"].mask
    shown = []
    for row in range(len(batch)):
        count = int(real[row].sum())
        boxes = [[4 * i, 0, 4 * i + 8, side] for i in range(count)]
        shown.append(Shown(f"question <{row}>", np.full((side, side, 3), 128, np.uint8),
                           [f"box {i}" for i in range(count)], boxes))  # fmt: skip
    return shown


@pytest.fixture(params=["lxmert", "visual_bert"])
def run_dir(request, tmp_path):
    """A run folder: a sweep with both protocols and an explained.npz of three examples."""
    adapter = tiny_adapter(request.param)
    data = synthetic(adapter, 6, seed=1, labels="model")
    score = synthetic(adapter, 4, seed=2, labels="model")
    result = headlens.sweep(adapter, data, methods=["grad", "entropy"], protocols=["per_example", "global"],
                            score_data=score, levels=LEVELS, progress=False)  # fmt: skip
    write_results(result, tmp_path, plot=False)
    batch = data.collate([0, 1, 2])
    records = explain_examples(adapter, batch, shown_of(adapter, batch), LEVELS, answers=[f"a{i}" for i in range(7)])
    write_explained(tmp_path / "viz" / adapter.family / "explained.npz", adapter.family, adapter.family, LEVELS,
                    adapter.sites, adapter.num_heads, records)  # fmt: skip
    return tmp_path, adapter, batch, records


def test_page_data_matches_results_json_and_prunes_as_the_sweep_counts(run_dir):
    folder, adapter, _, _ = run_dir
    (run,) = json.loads((folder / "results.json").read_text())["runs"]
    data = page_data(folder)
    (model,) = data["models"]
    assert model["name"] == run["model"] == adapter.family and model["levels"] == run["levels"] == LEVELS
    assert [c["auc"] for c in model["curves"]] == [c["auc"] for c in run["curves"]]
    assert [c["auc_low"] for c in model["curves"]] == [c["auc_low"] for c in run["curves"]]
    assert all(c["accuracy_low"][0] <= c["accuracy"][0] <= c["accuracy_high"][0] for c in model["curves"])
    assert [s["name"] for s in model["sites"]] == adapter.site_names and model["heads"] == adapter.num_heads
    assert set(model["scores"]) == {"grad", "entropy"}
    assert np.asarray(model["scores"]["grad"]).shape == (adapter.num_sites, adapter.num_heads)
    heads = adapter.num_heads
    for curve in run["curves"]:
        if curve["protocol"] != "global":
            continue
        pruned = model["pruned"][curve["method"]][curve["order"]][curve["unit"]]
        assert len(pruned) == len(LEVELS)
        per_unit = [len(p) if curve["unit"] == "head" else len(p) // heads for p in pruned]
        assert per_unit == curve["pruned"]  # the same counts as the sweep's curve
    # an independent reference: negative order prunes the lowest mean scores (ties: lower index first)
    scores = np.asarray(run["mean_scores"]["grad"]).ravel()
    lowest = np.argsort(scores, kind="stable")
    for level, pruned in zip(LEVELS, model["pruned"]["grad"]["negative"]["head"]):
        count = pruned_count(scores.size, level, adapter.count_rule)
        assert sorted(pruned) == sorted(lowest[:count].tolist())
    for pruned in model["pruned"]["entropy"]["positive"]["layer"]:  # whole sites
        sites = {i // heads for i in pruned}
        assert sorted(pruned) == [s * heads + h for s in sorted(sites) for h in range(heads)]


def test_examples_embed_their_levels_maps_and_answers(run_dir):
    folder, adapter, batch, records = run_dir
    (model,) = page_data(folder)["models"]
    assert [e["id"] for e in model["examples"]] == [str(i) for i in batch.ids] and model["examples_total"] == 3
    streams = adapter.streams(batch.inputs)
    for row, (example, record) in enumerate(zip(model["examples"], records)):
        length = int(streams["text"].mask[row].sum())
        boxes = int(streams["image"].mask[row].sum())
        assert len(example["tokens"]) == length and len(example["image_labels"]) == boxes
        assert np.asarray(example["text"]).shape == (len(LEVELS), length)
        assert np.asarray(example["image_relevance"]).shape == (len(LEVELS), boxes)
        assert example["at"] == [0, 1, 2, 3] and len(example["answers"]) == len(LEVELS)
        assert example["image"].startswith("data:image/png;base64,") and example["width"] == 32
        counts = [len(p) for p in example["pruned"]]
        assert counts == [pruned_count(adapter.num_sites * adapter.num_heads, level, adapter.count_rule) for level in LEVELS]
        sizes = {"text": length, "image": boxes, "joint": length + boxes}
        for site, attn, kept in zip(adapter.sites, example["maps"]["attn"], record["attn"]):
            assert attn["shape"] == [adapter.num_heads, sizes[site.query], sizes[site.key]]
            q = np.frombuffer(base64.b64decode(attn["data"]), dtype=np.int8).reshape(attn["shape"])
            decoded = q / 127 * np.asarray(attn["scale"])[:, None, None]
            np.testing.assert_allclose(decoded, kept.astype(np.float64), atol=max(attn["scale"]) / 127 + 1e-3)
    # the maps are the unpruned model's A and ∂z/∂A ⊙ A at the real positions (an independent capture)
    cap = headlens.capture(adapter, batch.inputs)
    for row, record in enumerate(records):
        for index, site in enumerate(adapter.sites):
            rows, cols = streams[site.query].mask[row], streams[site.key].mask[row]
            attn = cap.attn[index][row][:, rows][:, :, cols]
            grad = cap.grad[index][row][:, rows][:, :, cols]
            np.testing.assert_allclose(record["attn"][index], attn.numpy(), atol=1e-3)
            np.testing.assert_allclose(record["gradattn"][index], (grad * attn).numpy(), atol=1e-3, rtol=1e-2)
            if site.key != "image":  # padding dropped: each real query's attention over real keys sums to 1
                np.testing.assert_allclose(record["attn"][index].astype(np.float64).sum(-1), 1.0, atol=2e-2)


def test_explained_file_round_trip_and_errors(run_dir, tmp_path):
    folder, adapter, _, records = run_dir
    meta, back = read_explained(folder / "viz" / adapter.family / "explained.npz")
    assert meta["levels"] == LEVELS and meta["format"] == 1 and meta["provenance"]["headlens"] == headlens.__version__
    assert [s["name"] for s in meta["sites"]] == adapter.site_names
    for record, loaded in zip(records, back):
        assert loaded["tokens"] == record["tokens"] and loaded["answers"] == record["answers"]
        np.testing.assert_array_equal(loaded["keep"], record["keep"])
        np.testing.assert_array_equal(loaded["attn"][-1], record["attn"][-1])
        assert loaded["attn"][-1].dtype == np.float16 and len(loaded["gradattn"]) == adapter.num_sites
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, meta=np.asarray(json.dumps({"format": 99})))
    with pytest.raises(InputError, match="wrong.npz: format 99, this headlens reads 1"):
        read_explained(wrong)
    np.savez(wrong, other=np.zeros(2))
    with pytest.raises(InputError, match="wrong.npz: no 'meta' entry"):
        read_explained(wrong)


def test_page_is_one_self_contained_file_with_its_data_escaped(run_dir):
    folder, _, _, _ = run_dir
    data = page_data(folder)
    data["models"][0]["examples"][0]["question"] = "</script><!-- <b>"
    page = build_page(data)
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page) and "url(" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data and the code, nothing loaded
    embedded = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    assert "</" not in embedded and "<!--" not in embedded
    assert json.loads(embedded) == json.loads(json.dumps(data))
    with pytest.raises(ValueError):
        build_page({**data, "models": [{"bad": float("nan")}]})


def test_report_command_writes_the_page_and_names_what_is_missing(run_dir, tmp_path, capsys):
    folder, _, _, _ = run_dir
    assert main(["report", str(folder)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (folder / "report.html").read_text().startswith("<!doctype html>")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    error = capsys.readouterr().err
    assert f"{empty / 'results.json'}: no such file, and no explained.npz" in error
    (empty / "results.json").write_text("{nope")
    with pytest.raises(InputError, match=r"results.json: not JSON \(Expecting property name"):
        write_report(empty)


def test_a_sweep_without_examples_and_examples_without_a_sweep(run_dir):
    folder, adapter, _, _ = run_dir
    explained = folder / "viz" / adapter.family / "explained.npz"
    moved = explained.read_bytes()
    explained.unlink()
    (model,) = page_data(folder)["models"]
    assert model["examples"] == [] and model["curves"] and model["explain"] is None
    explained.write_bytes(moved)
    (folder / "results.json").unlink()
    (model,) = page_data(folder)["models"]
    assert model["curves"] == [] and model["levels"] == LEVELS and len(model["examples"]) == 3
    assert [s["name"] for s in model["sites"]] == adapter.site_names


def write_faithfulness(folder, adapter, bootstrap: int) -> dict:
    """``faithfulness.json`` as the demo writes it: the real perturbation test of two maps, by model."""
    data = synthetic(adapter, 4, seed=3, labels="model")
    test = perturbation_test(adapter, data, methods=["rollout", "raw"], fractions=[0.0, 0.5, 0.75], bootstrap=bootstrap,
                             name=adapter.family).to_dict()  # fmt: skip
    (folder / "faithfulness.json").write_text(json.dumps({adapter.family: test, "a model not in this run": test}))
    return test


def test_page_data_carries_the_perturbation_test_of_the_maps(run_dir):
    folder, adapter, _, _ = run_dir
    written = write_faithfulness(folder, adapter, bootstrap=20)
    data = page_data(folder)
    (model,) = data["models"]  # a test of a model the run does not hold adds none
    test = model["faithfulness"]
    assert test["unit"] == "boxes" and test["n_examples"] == 4
    assert [(c["method"], c["order"]) for c in test["curves"]] == [(m, o) for m in ("rollout", "raw", "random") for o in ORDERS]
    assert test["curves"] == written["curves"]  # accuracy per fraction, AUC and the intervals, as the file has them
    assert all(c["fractions"] == [0.0, 0.5, 0.75] and c["auc_low"] <= c["auc"] <= c["auc_high"] for c in test["curves"])
    assert all(len(c["accuracy_low"]) == 3 for c in test["curves"])
    assert set(data["colours"]["maps"]) == {"rollout", "raw", "random"}
    assert set(data["colours"]["methods"]) == {"grad", "entropy"}  # the head scores keep their own colours
    write_faithfulness(folder, adapter, bootstrap=0)  # no bootstrap: no interval to show
    (model,) = page_data(folder)["models"]
    assert all(c["auc_low"] is None and c["accuracy_low"] is None for c in model["faithfulness"]["curves"])


def test_without_faithfulness_json_no_model_has_a_perturbation_test(run_dir):
    folder, _, _, _ = run_dir
    data = page_data(folder)
    assert [model["faithfulness"] for model in data["models"]] == [None] and data["colours"]["maps"] == {}
    (folder / "faithfulness.json").write_text("{nope")
    with pytest.raises(InputError, match=r"faithfulness.json: not JSON"):
        page_data(folder)
    (folder / "faithfulness.json").write_text(json.dumps({"lxmert": {"curves": []}}))
    with pytest.raises(InputError, match=r"faithfulness.json: 'lxmert' has no 'unit' and 'curves'"):
        page_data(folder)


def test_quantise_and_rounding():
    maps = np.array([[[0.5, -1.0], [0.25, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    q = quantise(maps)
    assert q["shape"] == [2, 2, 2] and q["scale"] == [1.0, 0.0]
    assert np.frombuffer(base64.b64decode(q["data"]), dtype=np.int8).tolist() == [64, -127, 32, 0, 0, 0, 0, 0]
    assert rounded([123456.0, 0.000123456, -2.71828, 0.0]) == [123500.0, 0.0001235, -2.718, 0.0]
    assert torch.equal(torch.tensor(rounded(np.eye(2))), torch.eye(2, dtype=torch.float64))


def test_curves_of_a_file_written_before_intervals_have_none():
    from headlens.report.data import UNCERTAINTY, model_from_run

    curve = {"method": "grad", "order": "negative", "protocol": "per_example", "unit": "head", "levels": [0.0, 0.5],
             "pruned": [0, 2], "accuracy": [90.0, 60.0], "auc": 37.5}  # fmt: skip
    (read,) = model_from_run({"model": "m", "levels": [0.0, 0.5], "curves": [curve]}, "old")["curves"]
    assert read == {**curve, **{key: None for key in UNCERTAINTY}, "metrics": {}}  # and no language-model curves

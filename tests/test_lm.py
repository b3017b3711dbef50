"""Language-model data (text/JSONL prompts), score targets and the perplexity / next-token metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from headlens.data.lm import IGNORE, PromptExamples, PromptRow, read_prompts
from headlens.errors import InputError
from headlens.lm import LanguageModelMetric, token_sums


class CharTokenizer:
    """One token per character (id = code point − 90, at least 3), a BOS (1) before every prompt; pad 0."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [max(3, ord(c) - 90) for c in text]}


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_text_file_is_one_prompt_per_line(tmp_path):
    path = write(tmp_path, "p.txt", ["abc", "", "  ", "de f"])
    rows = read_prompts(path)
    assert rows == [PromptRow("abc", None, "p-1", f"{path}, line 1"), PromptRow("de f", None, "p-4", f"{path}, line 4")]


def test_jsonl_rows_and_their_ids(tmp_path):
    path = write(tmp_path, "p.jsonl", [json.dumps({"prompt": "ab", "continuation": "cd", "id": 7}), "",
                                       json.dumps({"prompt": "xy"})])  # fmt: skip
    rows = read_prompts(path)
    assert [(r.prompt, r.continuation, r.id) for r in rows] == [("ab", "cd", "7"), ("xy", None, "p-3")]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "expected a JSON object with 'prompt' (and optionally 'continuation')"),
    ('{"text": "a"}', "'prompt' must be a non-empty string (keys: 'text')"),
    ('{"prompt": ""}', "'prompt' must be a non-empty string (keys: 'prompt')"),
    ('{"prompt": "a", "continuation": 3}', "'continuation' must be a non-empty string, got 3"),
    ('{"prompt": "a", "label": 3}', "unknown keys ['label']; a row holds 'prompt', 'continuation' and 'id'"),
])  # fmt: skip
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "bad.jsonl", ['{"prompt": "fine"}', line])
    with pytest.raises(InputError) as error:
        read_prompts(path)
    assert str(error.value) == f"{path}, line 2: {message}"


def test_empty_missing_and_binary_files(tmp_path):
    empty = write(tmp_path, "empty.txt", ["", " "])
    with pytest.raises(InputError, match=f"^{empty}: no prompts$"):
        read_prompts(empty)
    with pytest.raises(FileNotFoundError, match="language-model data not found"):
        read_prompts(tmp_path / "none.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(InputError, match=r", line 2: not UTF-8 text"):
        read_prompts(binary)


def test_collate_scores_the_given_token_and_targets_every_given_one():
    rows = [PromptRow("ab", "cde", "x", "x"), PromptRow("fghi", None, "y", "y")]
    tok = CharTokenizer()
    examples = PromptExamples(rows, tok, vocab_size=40, position=-1)
    batch = examples.collate([0, 1])
    a, b = tok("ab")["input_ids"] + tok("cde", False)["input_ids"], tok("fghi")["input_ids"]
    # inputs: everything before the last given token; label: that token (teacher forcing)
    assert batch.fields["input_ids"].tolist() == [a[:-1], b[:-1] + [0]]
    assert batch.fields["attention_mask"].tolist() == [[1] * 5, [1] * 4 + [0]]
    assert batch.labels.argmax(-1).tolist() == [a[-1], b[-1]] and batch.labels.shape == (2, 40)
    lm = batch.extras["lm"]
    assert lm["input_ids"].tolist() == [a, b + [0]] and lm["attention_mask"].tolist() == [[1] * 6, [1] * 5 + [0]]
    # row 0 predicts the continuation only (after the prompt's 3 tokens), row 1 every token after the first
    assert lm["targets"].tolist() == [[IGNORE, IGNORE, *a[3:], IGNORE], [*b[1:], IGNORE, IGNORE]]
    first = PromptExamples(rows, tok, vocab_size=40, position=0).collate([0, 1])
    assert first.fields["input_ids"].tolist() == [a[:3], b[:1] + [0, 0]]
    assert first.labels.argmax(-1).tolist() == [a[3], b[1]]


def test_rows_with_nothing_to_predict_are_errors():
    tok = CharTokenizer()
    with pytest.raises(InputError, match=r"^f, line 3: no token to predict: its prompt fills data.max_length \(4 of at most 4"):
        PromptExamples([PromptRow("abcdef", "g", "i", "f, line 3")], tok, 40, max_length=4)
    with pytest.raises(InputError, match=r"^f, line 1: no token to predict: it is one token long"):
        PromptExamples([PromptRow("a", None, "i", "f, line 1")], tok, 40, max_length=1)
    with pytest.raises(InputError, match=r"^f, line 1: lm.position=3, but the row gives 3 tokens$"):
        PromptExamples([PromptRow("a", "bcd", "i", "f, line 1")], tok, 40, position=3)


# --- the metric on tiny decoders -------------------------------------------------------------------
from decoders import decoder_adapter, tiny_lm_folder  # noqa: E402

from headlens.edits import gates  # noqa: E402

ROWS = [PromptRow("abc", "defg", "0", "0"), PromptRow("hijklm", None, "1", "1"), PromptRow("no", "p", "2", "2")]


def lm_batch(adapter, rows=ROWS, position=-1):
    examples = adapter.examples(PromptExamples(rows, CharTokenizer(), adapter.num_answers, position=position))
    return examples.collate(range(len(rows)))


def reference_sums(model, rows) -> torch.Tensor:
    """Σ NLL, Σ right, Σ tokens of each row run alone, from the full logits and cross-entropy."""
    out = []
    for row in rows:
        batch = PromptExamples([row], CharTokenizer(), 50).collate([0]).extras["lm"]
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"]).logits[0].double()
        targets = batch["targets"][0]
        given = targets != IGNORE
        nll = torch.nn.functional.cross_entropy(logits[given], targets[given], reduction="sum")
        out.append([nll.item(), (logits[given].argmax(-1) == targets[given]).sum().item(), given.sum().item()])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_token_sums_equal_cross_entropy_of_each_row_alone(family):
    adapter = decoder_adapter(family)
    batch = lm_batch(adapter)
    lm = batch.extras["lm"]
    with torch.no_grad():
        found = token_sums(adapter.model, adapter.inputs(lm), lm["targets"])
    expected = reference_sums(adapter.model, ROWS)
    assert torch.allclose(found, expected, atol=1e-9)
    assert found[:, 2].tolist() == [4, 6, 1]


def test_masked_sums_equal_each_row_alone_under_its_gates():
    adapter = decoder_adapter("llama")
    batch = lm_batch(adapter)
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 2, adapter.num_sites, adapter.num_heads, generator=generator) > 0.4).double()
    masks[:, 0] = 1  # the first mask keeps every head: the unpruned values
    masks[2, 1] = masks[0, 1]
    found = LanguageModelMetric(budget=50 * 4).measure(adapter, batch, masks, eval_batch_size=2)
    assert found.shape == (3, 2, 3)
    for example in range(3):
        for grid in range(2):
            with gates(adapter, masks[example, grid][None]):
                alone = reference_sums(adapter.model, [ROWS[example]])[0]
            assert torch.allclose(found[example, grid], alone, atol=1e-9), (example, grid)
    assert not torch.equal(found[:, 0], found[:, 1])  # the gates changed something


def test_per_level_weighs_every_token_the_same():
    sums = np.array([[[2.0, 1, 4], [4.0, 0, 4]], [[1.0, 1, 1], [3.0, 1, 1]]])  # [examples, levels, 3]
    metrics = LanguageModelMetric.per_level(sums)
    assert np.allclose(metrics["nll"], [3 / 5, 7 / 5])
    assert np.allclose(metrics["perplexity"], [math.exp(3 / 5), math.exp(7 / 5)])
    assert np.allclose(metrics["token_accuracy"], [40.0, 20.0])


def test_sweep_of_language_model_data_has_perplexity_curves():
    from headlens.sweep import sweep

    adapter = decoder_adapter("llama", dtype=torch.float32)
    rows = [PromptRow("abcdefg"[: 3 + i % 4], "hij"[: 1 + i % 3], str(i), str(i)) for i in range(6)]
    examples = adapter.examples(PromptExamples(rows, CharTokenizer(), adapter.num_answers))
    result = sweep(adapter, examples, None, methods=["grad", "random"], units=["head"], orders=["negative"],
                   levels=[0.0, 0.5, 0.75], batch_size=4, target="label", metric=LanguageModelMetric(), progress=False)
    expected = reference_sums(adapter.model.double(), rows).sum(0)
    adapter.model.float()
    for curve in result.curves:
        assert set(curve.metrics) == {"nll", "perplexity", "token_accuracy"}
        assert curve.metrics["perplexity"][0] == pytest.approx(math.exp(expected[0] / expected[2]), rel=1e-5)
        assert curve.metrics["token_accuracy"][0] == pytest.approx(100 * expected[1] / expected[2])
        assert curve.metrics["perplexity"][2] != pytest.approx(curve.metrics["perplexity"][0])


def test_label_target_differentiates_the_given_token():
    from headlens.scoring import score_batch
    from headlens.sweep import labelled_target

    adapter = decoder_adapter("llama")
    batch = lm_batch(adapter, position=0)
    target = labelled_target(batch, "label")
    # the first given token: the continuation's first, or (no continuation) the prompt's after BOS
    assert target.tolist() == [ord("d") - 90, ord("h") - 90, ord("p") - 90]
    cap, _ = score_batch(adapter, batch.inputs, ["grad"], target=target)
    assert cap.target.tolist() == target.tolist()
    assert labelled_target(batch, "predicted") is None


def test_a_metric_sweep_keeps_no_partial_results(tmp_path):
    from headlens.sweep import SweepOptions

    with pytest.raises(InputError, match="^a sweep with the language_model metric keeps no partial results"):
        SweepOptions(metric=LanguageModelMetric(), checkpoint=tmp_path / "p.npz")


# --- headlens prune on a causal LM -------------------------------------------------------------------
def test_prune_a_causal_lm_on_prompts_and_continuations(tmp_path):
    from headlens.cli import main
    from headlens.results import read_results

    folder = tiny_lm_folder(tmp_path)
    rows = [{"prompt": " ".join(f"w{(3 * i + j) % 48}" for j in range(3 + i % 3)), "continuation": f"w{i} w{i + 1}"}
            for i in range(10)]  # fmt: skip
    data = write(tmp_path, "lm.jsonl", [json.dumps(row) for row in rows])
    out = tmp_path / "out"
    code = main(["prune", "--model", str(folder), "--data", str(data), "progress=false", f"out_dir={out}",
                 "data.num_examples=6", "data.score_examples=4", "sweep.methods=[taylor,random]", "sweep.units=[head]",
                 "sweep.levels=[0,0.5]", "report=false"])  # fmt: skip
    assert code == 0
    run = read_results(out)["runs"][0]
    assert run["model"] == "decoder" and run["n_examples"] == 6 and len(run["score_ids"]) == 4
    assert run["config"]["sweep"]["target"] is None  # language-model data: the given token (teacher forcing)
    for curve in run["curves"]:
        assert curve["metrics"]["perplexity"][0] > 1 and len(curve["metrics"]["token_accuracy"]) == 2
    assert not list(out.glob("partial*.npz"))
    header, first = (out / "curves.csv").read_text().splitlines()[:2]
    assert header.endswith(",accuracy,nll,perplexity,token_accuracy")
    curve = run["curves"][0]
    assert float(first.split(",")[-2]) == pytest.approx(curve["metrics"]["perplexity"][0], rel=1e-5)
    assert (out / "curves_perplexity.png").stat().st_size > 1000


def test_token_accuracy_metric_makes_the_sweeps_accuracy_next_token_accuracy():
    """accuracy="tokens": each example's soft score is its share of given tokens right, so a curve's
    accuracy at each level is the mean of those shares, with its AUC and intervals. A tiny random
    model predicts no token right, so the measured counts of right tokens are replaced by seeded
    ones: what is checked is that the sweep's accuracy is made of them."""
    from headlens.sweep import sweep

    class Counted(LanguageModelMetric):
        def __init__(self):
            super().__init__(accuracy="tokens")
            self.generator, self.seen = torch.Generator().manual_seed(0), []

        def measure(self, *args, **kwargs):
            sums = super().measure(*args, **kwargs).clone()
            right = torch.rand(sums.shape[:-1], generator=self.generator, dtype=torch.float64) * (sums[..., 2] + 1)
            sums[..., 1] = right.floor().clamp_max(sums[..., 2])
            self.seen.append(sums)
            return sums

    adapter = decoder_adapter("llama", dtype=torch.float32)
    rows = [PromptRow("abcdefg"[: 3 + i % 4], "hij"[: 1 + i % 3], str(i), str(i)) for i in range(6)]
    examples = adapter.examples(PromptExamples(rows, CharTokenizer(), adapter.num_answers))
    metric = Counted()
    result = sweep(adapter, examples, None, methods=["grad", "random"], units=["head"], orders=["negative"],
                   levels=[0.0, 0.5, 0.75], batch_size=4, target="label", progress=False, bootstrap=50, metric=metric)
    sums = torch.cat(metric.seen).numpy()  # [examples, arms, levels, 3]
    shares = sums[..., 1] / sums[..., 2]
    assert shares.std() > 0.1  # not all alike: the check below can fail
    for arm, curve in enumerate(result.curves):
        assert curve.accuracy == pytest.approx(100 * shares[:, arm].mean(0), abs=1e-4)
        assert curve.metrics["token_accuracy"] == pytest.approx(100 * sums[:, arm, :, 1].sum(0) / sums[:, arm, :, 2].sum(0))
        assert curve.auc_low <= curve.auc <= curve.auc_high
    assert LanguageModelMetric().soft(torch.ones(2, 3, 3)) is None  # the default: the target's accuracy
    with pytest.raises(ValueError, match="accuracy='words'"):
        LanguageModelMetric(accuracy="words")

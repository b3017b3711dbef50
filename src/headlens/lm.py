"""Language-model metrics of a pruning sweep: the perplexity of the given tokens and the
next-token accuracy, per level (docs/method.md#language-model-metrics).

A sweep given a :class:`LanguageModelMetric` calls it once per batch with every arm's masks
at every level; it runs the whole sequences of the batch (``extras["lm"]`` of
:class:`headlens.data.lm.PromptExamples`) under those masks — batched, each distinct
(example, mask) pair once (:func:`headlens.evaluate.masked_values`) — and keeps per example
and mask three sums over the given tokens: negative log-likelihood (nats), tokens predicted
right (argmax = the given token), and tokens. Per level, over the examples:

* ``nll`` = Σ NLL / Σ tokens (mean per given token, every token weighing the same);
* ``perplexity`` = exp(``nll``);
* ``token_accuracy`` = 100 · Σ right / Σ tokens.

With ``accuracy="tokens"`` the metric also gives the sweep its per-example soft scores: each
example's share of its given tokens predicted right (:meth:`LanguageModelMetric.soft`). The
sweep's accuracy curves, their bootstrap intervals and AUCs are then next-token accuracy over
every given token instead of the one score target's, and the target's own masked predictions
are not computed (one set of masked forwards instead of two).

Only the positions that predict a given token go through the output layer
(``logits_to_keep``), and rows run in chunks whose logits stay under :attr:`budget` floats.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor

from .adapters import Adapter, Inputs
from .data.batch import Batch
from .data.lm import IGNORE
from .evaluate import masked_values

#: the metrics :meth:`LanguageModelMetric.per_level` returns, in order.
METRICS = ("nll", "perplexity", "token_accuracy")


def token_sums(model, inputs: Inputs, targets: Tensor) -> Tensor:
    """``float64[batch, 3]``: Σ NLL (nats), Σ right, Σ tokens over the positions ``t`` with
    ``targets[b, t] != -100`` (the token given after position ``t``)."""
    kept = (targets != IGNORE).any(0).nonzero()[:, 0]
    logits = model(**inputs, use_cache=False, logits_to_keep=kept).logits.float()  # [batch, kept, vocabulary]
    wanted = targets[:, kept]
    given = wanted != IGNORE
    chosen = wanted.clamp_min(0)
    nll = -(logits.log_softmax(-1).gather(-1, chosen[..., None])[..., 0])
    right = (logits.argmax(-1) == chosen) & given
    return torch.stack([(nll * given).sum(-1).double(), right.sum(-1).double(), given.sum(-1).double()], dim=-1)


class LanguageModelMetric:
    """Perplexity and next-token accuracy of the given tokens (see the module docstring).

    ``budget``: at most this many logits (rows × kept positions × vocabulary) per forward pass.
    ``accuracy``: ``"target"`` (the sweep's accuracy is the score target's, as for any data) or
    ``"tokens"`` (the sweep's accuracy is next-token accuracy, :meth:`soft`).
    """

    name = "language_model"
    ACCURACIES = ("target", "tokens")

    def __init__(self, budget: int = 2**26, accuracy: str = "target"):
        if accuracy not in self.ACCURACIES:
            raise ValueError(f"accuracy={accuracy!r}: one of {', '.join(self.ACCURACIES)}")
        self.budget, self.accuracy = budget, accuracy

    def soft(self, measured: Tensor) -> Tensor | None:
        """The sweep's per-example soft scores ``[batch, *grid]`` from :meth:`measure`'s sums:
        right / tokens of each example with ``accuracy="tokens"``; None (the target's) otherwise."""
        if self.accuracy != "tokens":
            return None
        return (measured[..., 1] / measured[..., 2].clamp_min(1)).float()

    def measure(self, adapter: Adapter, batch: Batch, masks: Tensor, eval_batch_size: int,
                autocast_dtype: torch.dtype | None = None) -> Tensor:  # fmt: skip
        """``float64[batch, *grid, 3]``: the sums of every example under every mask of
        ``masks`` (``[batch, *grid, sites, heads]``)."""
        lm = batch.extras.get("lm")
        if lm is None:
            raise TypeError("the language-model metric needs batches of headlens.data.lm.PromptExamples")
        inputs = dict(adapter.inputs({"input_ids": lm["input_ids"], "attention_mask": lm["attention_mask"]}))
        inputs["targets"] = lm["targets"].to(adapter.device)
        vocabulary = adapter.model.config.vocab_size
        kept = int((lm["targets"] != IGNORE).any(0).sum())
        rows = max(1, min(eval_batch_size, self.budget // max(1, kept * vocabulary)))

        def sums(chunk: Inputs) -> Tensor:
            chunk = dict(chunk)
            targets = chunk.pop("targets")
            return token_sums(adapter.model, chunk, targets)

        precision = torch.autocast(adapter.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with torch.no_grad(), precision:
            unpruned = torch.cat([sums({k: v[i : i + rows] for k, v in inputs.items()})
                                  for i in range(0, len(batch), rows)])  # fmt: skip
        return masked_values(adapter, inputs, masks, unpruned, rows, sums, autocast_dtype)

    @staticmethod
    def per_level(values: np.ndarray) -> dict[str, np.ndarray]:
        """From the sums ``[..., examples, levels, 3]``: every metric of :data:`METRICS`, ``[..., levels]``."""
        totals = np.asarray(values, dtype=np.float64).sum(axis=-3)
        tokens = totals[..., 2]
        if (tokens <= 0).any():
            raise ValueError("language-model metrics of zero given tokens")
        nll = totals[..., 0] / tokens
        return {"nll": nll, "perplexity": np.exp(nll), "token_accuracy": 100.0 * totals[..., 1] / tokens}


def language_model_examples(config, adapter: Adapter):
    """The prompts of ``config.data.file`` for ``adapter``'s causal LM (tokenizer: ``data.tokenizer``
    or the model's folder; ``data.max_length`` tokens; score target at ``data.position``)."""
    from .data.lm import PromptExamples, read_prompts
    from .models import load_tokenizer

    data = config.data
    tokenizer = load_tokenizer(data.tokenizer or config.model.path, model=adapter.model)
    rows = read_prompts(data.file)
    return adapter.examples(PromptExamples(rows, tokenizer, adapter.num_answers, data.max_length, data.position))

"""Retraining-free compression after Kwon et al. 2022, "A Fast Post-Training Pruning Framework
for Transformers" (NeurIPS 2022): which heads to remove under a budget, chosen from the
Fisher information of head-mask gradients on unlabelled examples, rearranged within sites,
and the kept heads rescaled by least squares so each pruned site reproduces the unpruned
model's outputs; ``headlens export --compress kwon`` writes the smaller model.

* :mod:`.fisher` — per-example mask gradients, block-diagonal empirical Fisher, loss estimate.
* :mod:`.search` — mask search under a head budget, mask rearrangement.
* :mod:`.tuning` — least-squares mask tuning, folding the scales into the output projections.
* :mod:`.kwon` — the three steps end to end, export and accuracies.
"""

from .kwon import Compression, accuracies, accuracy_under, compress, export_compressed, folded_copy

__all__ = ["Compression", "accuracies", "accuracy_under", "compress", "export_compressed", "folded_copy"]

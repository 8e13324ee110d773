"""The offline task world: instructions with program-checkable answers, a ground-truth oracle,
simulated annotators, and the tiny-model recipe (π_{-1}, offline pairs, π_0) that the demo runs DICE on.

Modules: ``tasks`` (families, demonstrations, splits), ``oracle`` (quality ∈ [0, 1]), ``annotators``
(noisy, verbosity-biased preference labels), ``judge`` (the oracle as a pairwise judge),
``tokenizer`` (word-level chat tokenizer), ``sft`` (π_{-1}), ``recipe`` (build or reuse everything,
cached by content), ``evaluate`` and ``metrics`` (win rate, quality, length, reward accuracy).
"""

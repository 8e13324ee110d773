"""Torch-free readers of run folders: ``runs`` (loaders), ``plots`` (figures), ``report`` (markdown).

They never import torch, transformers, trl or any writer (``dicekit.round``, ``dicekit.analysis``);
tests/test_layout.py enforces it. The dashboard (app/) reads run folders through this package only."""

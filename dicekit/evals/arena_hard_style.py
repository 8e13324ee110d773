"""Arena-Hard style counts: each answer's length and markdown counts (headers, list items, bold spans),
for style control in both versions (``dicekit.evals.arena_hard`` v0.1, ``dicekit.evals.arena_hard_v2``).

The counts come from the answer files' metadata when every answer has it (v0.1's ``conv_metadata``,
v2.0's ``metadata``: ``token_len`` in tiktoken tokens, ``header_count``, ``list_count``,
``bold_count``, each an int or a dict of ints), else every answer is counted from its text with
arena-hard-auto's patterns (``utils/add_markdown_info.py``: code blocks removed first) and its length
in words — dicekit does not ship tiktoken — so both sides of a battle are measured alike.
"""

from __future__ import annotations

import re

import numpy as np

from dicekit.errors import UserError

CODE_BLOCK = re.compile(r"```[^`]*```")
STYLE_KEYS = ("header_count", "list_count", "bold_count")


def metadata_counts(metadata: dict | None) -> tuple[float, np.ndarray] | None:
    """(token_len, [headers, lists, bold]) from arena-hard-auto answer metadata (``conv_metadata`` in
    v0.1, ``metadata`` in v2.0): each count an int or a dict of ints summed; None if incomplete.

    >>> metadata_counts({"token_len": 9, "header_count": {"h1": 1, "h2": 2}, "list_count": 3, "bold_count": {}})
    (9.0, array([3., 3., 0.]))
    """
    if not isinstance(metadata, dict) or not all(k in metadata for k in ("token_len", *STYLE_KEYS)):
        return None
    try:
        counts = [v if isinstance(v, (int, float)) else sum(v.values()) for v in (metadata[k] for k in STYLE_KEYS)]
        return float(metadata["token_len"]), np.array(counts, dtype=float)
    except (AttributeError, TypeError):
        return None


def text_counts(text: str) -> tuple[float, np.ndarray]:
    """(words, [headers, list items, bold spans]) counted from an answer's text with code blocks
    removed, with arena-hard-auto's patterns (``add_markdown_info.count_markdown_elements``)."""
    plain = CODE_BLOCK.sub("", text)
    headers = len(re.findall(r"^#{1,6}\s", plain, re.M))
    lists = len(re.findall(r"^\s*\d+\.\s", plain, re.M)) + len(re.findall(r"^\s*[-*+]\s", plain, re.M))
    bold = len(re.findall(r"\*\*[^*\n]+\*\*", plain)) + len(re.findall(r"__[^_\n]+__", plain))
    return float(len(text.split())), np.array([headers, lists, bold], dtype=float)


def style_counts(answers: list[dict]) -> tuple[np.ndarray, np.ndarray, str]:
    """(lengths (n,), markdown counts (n, 3), source) of answers ``{"text", "metadata"}``: from their
    metadata when every one has it, else every one from its text (so both sides of a battle are
    measured the same way)."""
    meta = [metadata_counts(a.get("metadata")) for a in answers]
    source = "metadata (tokens)"
    if any(m is None for m in meta):
        meta, source = [text_counts(a["text"]) for a in answers], "text (words)"
    return (np.array([m[0] for m in meta]), np.array([m[1] for m in meta]).reshape(-1, 3), source)


def style_pairs(models: list[str], baselines: list[str], question_ids: list[str],
                answers: dict[str, dict[str, dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(len_model, len_baseline, md_model, md_baseline, source) per battle; a missing answer is a
    UserError naming the model and question."""
    for name, base, qid in zip(models, baselines, question_ids):
        for who in (name, base):
            if who not in answers or qid not in answers[who]:
                raise UserError(f"style control needs {who!r}'s answer to question {qid} (model_answer/{who}.jsonl)")
    n = len(models)
    lengths, md, source = style_counts([answers[m][q] for m, q in zip(models + baselines, question_ids + question_ids)])
    return lengths[:n], lengths[n:], md[:n], md[n:], source

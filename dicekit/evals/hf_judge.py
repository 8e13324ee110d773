"""A local HF causal LM as the weighted_alpaca_eval_gpt4_turbo judge (offline, no endpoint).

Same prompt, same position swap and its undo as the API judge (``dicekit.evals.judges``). The
prompt's chat messages are rendered with the judge model's own chat template (generation prompt
appended), one forward pass gives the next-token distribution, and the preference is
2 − P(m) / (P(m) + P(M)) from the model's exact probabilities of the tokens "m" and "M" — not
truncated to a top 5, so a label outside the top 5 still counts. The stored raw_completion has the
OpenAI shape (top-5 entries plus the two labels), so ``--reparse`` re-derives the same preference.

Deviation from the API judge: no sampling, no price (0), and the labels must each be one token of
the judge's tokenizer (checked at start).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from dicekit.errors import UserError
from dicekit.evals.judges import (LABEL_FIRST, LABEL_SECOND, PROTOCOL, TOP_LOGPROBS, Comparison, Judgement,
                                  comparison_messages, judge_template, preference_from_top_logprobs,
                                  template_sha256, unswitch)


def label_token_id(tokenizer, label: str) -> int:
    ids = tokenizer.encode(label, add_special_tokens=False)
    if len(ids) != 1:
        raise UserError(f"judge tokenizer {tokenizer.name_or_path!r} splits the label {label!r} into "
                        f"{len(ids)} tokens; the weighted judge needs one token per label")
    return int(ids[0])


class HFJudge:
    """PairwiseJudge from a local model's next-token probabilities of "m" vs "M"."""

    def __init__(self, spec: str, dtype: str = "float32", template: str | None = None, model=None, tokenizer=None):
        from dicekit.models import load_model

        self.spec = spec
        if model is None:
            model, tokenizer = load_model(spec, dtype=dtype)
        self.model, self.tokenizer = model, tokenizer
        self.template = template if template is not None else judge_template()
        self.label_ids = (label_token_id(tokenizer, LABEL_FIRST), label_token_id(tokenizer, LABEL_SECOND))
        self.name = f"{PROTOCOL}@hf:{spec}"
        self.dtype = dtype

    def identity(self) -> dict:
        from dicekit.models import model_fingerprint

        return {"protocol": PROTOCOL, "model": f"hf:{self.spec}", "fingerprint": model_fingerprint(self.spec),
                "dtype": self.dtype, "template_sha256": template_sha256(self.template)}

    def next_token_logprobs(self, messages: list[dict]):
        """log-softmax of the next-token logits after the templated messages, shape (vocab,)."""
        import torch

        from dicekit.models import prompt_ids

        ids = torch.tensor([prompt_ids(self.tokenizer, messages)], device=self.model.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1)

    def raw_completion(self, logprobs) -> dict:
        import torch

        top = torch.topk(logprobs, k=min(TOP_LOGPROBS, logprobs.numel()))
        ids = list(dict.fromkeys([*top.indices.tolist(), *self.label_ids]))
        names = {i: label for label, i in zip((LABEL_FIRST, LABEL_SECOND), self.label_ids)}
        entries = sorted(({"token": names.get(i) or self.tokenizer.decode([i]), "logprob": float(logprobs[i])}
                          for i in ids), key=lambda e: -e["logprob"])
        return {"logprobs": {"content": [{**entries[0], "top_logprobs": entries}]}, "text": entries[0]["token"],
                "finish_reason": "length"}

    def judge_one(self, item: Comparison) -> Judgement:
        messages, switched = comparison_messages(self.template, item)
        start = time.perf_counter()
        logprobs = self.next_token_logprobs(messages)
        raw = self.raw_completion(logprobs)
        label_lps = [{"token": lab, "logprob": float(logprobs[i])}
                     for lab, i in zip((LABEL_FIRST, LABEL_SECOND), self.label_ids)]
        pref = unswitch(preference_from_top_logprobs(label_lps), switched)
        return Judgement(preference=pref, raw_completion=raw, price=0.0, time=time.perf_counter() - start)

    def judge_detailed(self, items: Sequence[Comparison],
                       on_result: Callable[[int, Judgement], None] | None = None) -> list[Judgement]:
        out = []
        for i, item in enumerate(items):
            out.append(self.judge_one(item))
            if on_result is not None:
                on_result(i, out[-1])
        return out

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        return [j.preference for j in self.judge_detailed(items)]

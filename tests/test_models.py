"""Model loading, templating, stop tokens, scoring and sampling on the tiny model."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from dicekit.errors import UserError
from dicekit.models import end_of_turn_id, load_model, load_tokenizer, prompt_ids, stop_token_ids


def test_prompt_ids_template_once_bos_once(tiny_world):
    tok = load_tokenizer(tiny_world["policy"])
    ids = prompt_ids(tok, "red cat")
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    text = tok.decode(ids)
    assert text.count("<|im_start|>user") == 1 and text.endswith("<|im_start|>assistant\n")
    # a template that itself emits BOS must not get a second one
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    ids2 = prompt_ids(tok, "red cat")
    assert ids2.count(tok.bos_token_id) == 1 and ids2 == ids


def test_stop_tokens_include_every_generation_config_eos(tiny_world):
    model, tok = load_model(tiny_world["policy"])
    stops = stop_token_ids(model, tok)
    assert set(stops) == {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("</s>")}
    assert end_of_turn_id(tok, stops) == tok.convert_tokens_to_ids("<|im_end|>")


def test_folder_without_tokenizer_is_a_user_error(tiny_world, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(f"{tiny_world['policy']}/{f}", bare / f)
    with pytest.raises(UserError, match="no tokenizer"):
        load_tokenizer(str(bare))
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(str(tmp_path / "missing"))


def test_logp_equals_plain_forward(tiny_world):
    """dicekit's scorer vs a plain HF forward with full logits, on the same IDs (batched, padded)."""
    from dicekit.round.score import score_sequences

    model, tok = load_model(tiny_world["policy"])
    prompts = [prompt_ids(tok, q) for q in ("red cat", "one two three four", "sun")]
    responses = [tok("blue dog", add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                 [tok.eos_token_id], tok("a big tree is the moon", add_special_tokens=False)["input_ids"]]
    got = score_sequences(model, prompts, responses, tokens_per_batch=40, chunk_size=3)
    for p, r, g in zip(prompts, responses, got):
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        want = sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(r))
        assert abs(g - want) < 1e-4


def test_samples_do_not_depend_on_batch_composition(tiny_world, tmp_path):
    from dicekit.round.generate import generate_samples

    model, tok = load_model(tiny_world["policy"])
    stops = stop_token_ids(model, tok)
    prompts = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["red cat", "one two", "big sun"]})
    prompts["prompt_ids"] = [prompt_ids(tok, p) for p in prompts["prompt"]]
    kw = dict(seed=3, round_=1, samples_per_prompt=4, max_new_tokens=12, temperature=1.0, top_p=0.95, quiet=True)
    together = generate_samples(model, tok, stops, prompts, tmp_path / "g1", batch_size=12, **kw)
    alone = generate_samples(model, tok, stops, prompts.iloc[[1]], tmp_path / "g2", batch_size=4, **kw)
    b = together[together.prompt_id == "b"].reset_index(drop=True)
    assert [list(x) for x in b.response_ids] == [list(x) for x in alone.response_ids]
    assert len({tuple(x) for x in b.response_ids}) > 1  # the K samples differ
    for row in together.itertuples():
        ids = list(row.response_ids)
        if row.finish_reason == "stop":
            assert ids[-1] in stops and not set(ids[:-1]) & set(stops)
        else:
            assert len(ids) == 12 and not set(ids) & set(stops)


def test_hf_sampler_logp_equals_the_scorer(tiny_world, tmp_path):
    """logp_sampler (the log-probs the keyed draw read off the raw logits, left-padded batch with a KV
    cache) equals dicekit's scorer on the same IDs, for finished and truncated samples alike."""
    from dicekit.round.generate import generate_samples
    from dicekit.round.score import score_sequences

    model, tok = load_model(tiny_world["policy"])
    stops = stop_token_ids(model, tok)
    prompts = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["red cat", "one two three", "sun"]})
    prompts["prompt_ids"] = [prompt_ids(tok, p) for p in prompts["prompt"]]
    out = generate_samples(model, tok, stops, prompts, tmp_path / "g", seed=5, round_=1, samples_per_prompt=4,
                           max_new_tokens=6, temperature=1.0, top_p=0.9, batch_size=12, quiet=True)
    assert set(out.finish_reason) == {"stop", "length"}  # both kinds are checked
    want = score_sequences(model, list(out.prompt_ids), list(out.response_ids))
    got = out.logp_sampler.to_numpy()
    assert np.isfinite(got).all() and np.abs(got - want).max() < 1e-4
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).min()  # not a coincidence of tiny values


def test_identical_samples_are_scored_once(tiny_world):
    """Repeated (prompt, response) sequences get the same values as when scored apart, and the
    decoder sees each only once."""
    from dicekit.round.score import score_sequences

    model, tok = load_model(tiny_world["policy"])
    p = prompt_ids(tok, "red cat")
    a = tok("blue dog", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    b = tok("a big tree", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seen = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
    try:
        total, per_tok = score_sequences(model, [p] * 4, [a, b, a, a], per_token=True)
        once = sum(seen)
        seen.clear()
        alone = [score_sequences(model, [p], [r])[0] for r in (a, b)]
    finally:
        hook.remove()
    assert np.allclose(total, [alone[0], alone[1], alone[0], alone[0]], atol=1e-5)
    assert [len(x) for x in per_tok] == [len(a), len(b), len(a), len(a)] and np.allclose(per_tok[3], per_tok[0])
    assert once <= len(p) + 2 * max(len(a), len(b))  # the prompt once, two distinct responses (padded)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 0.9), (1.0, 1.0), (0.0, 1.0)])
def test_decode_loop_draws_what_hf_generate_draws(tiny_world, temperature, top_p):
    """dicekit's decode loop (rows leave the batch at their stop token) gives the same tokens, finish
    reasons and sampler log-probs as ``generate`` with the keyed draw as a logits processor."""
    from dicekit.round.generate import _generate_batch, _generate_batch_hf
    from dicekit.round.sampling import sample_key

    model, tok = load_model(tiny_world["policy"])
    stops = stop_token_ids(model, tok)
    ps = [prompt_ids(tok, p) for p in ["red cat", "one two three", "sun", "big"] for _ in range(3)]
    keys = [sample_key(7, 1, str(i), 0) for i in range(len(ps))]
    kw = dict(max_new_tokens=10, temperature=temperature, top_p=top_p)
    ours = _generate_batch(model, int(tok.pad_token_id), stops, ps, keys, **kw)
    ref = _generate_batch_hf(model, int(tok.pad_token_id), stops, ps, keys, **kw)
    assert [(r, f) for r, f, _ in ours] == [(r, f) for r, f, _ in ref]
    reasons = {f for _, f, _ in ours}
    assert reasons == {"stop", "length"} or temperature == 0  # rows did leave the batch early
    assert np.abs(np.array([lp for *_, lp in ours]) - np.array([lp for *_, lp in ref])).max() < 1e-5


def test_half_precision_decodes_with_eager_attention_on_cpu_and_both_paths_agree(tiny_world):
    """A bf16 model on the CPU decodes with eager attention (SDPA's CPU kernel is slow in bf16 against
    a long cache) in both decode paths, which stay token-equal; the model's attention is restored
    afterwards, and an fp32 model is left alone."""
    import torch

    from dicekit.models import decode_attention
    from dicekit.round.generate import _generate_batch, _generate_batch_hf
    from dicekit.round.sampling import sample_key

    model, tok = load_model(tiny_world["policy"], dtype="bfloat16", device=None)
    before = model.config._attn_implementation
    assert before != "eager"
    seen = []
    hook = model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda mod, args: seen.append(mod.config._attn_implementation))
    stops = stop_token_ids(model, tok)
    ps = [prompt_ids(tok, p) for p in ["red cat", "one two three", "sun"] for _ in range(2)]
    keys = [sample_key(3, 1, str(i), 0) for i in range(len(ps))]
    try:
        ours = _generate_batch(model, int(tok.pad_token_id), stops, ps, keys, max_new_tokens=8, temperature=1.0, top_p=0.9)
        ref = _generate_batch_hf(model, int(tok.pad_token_id), stops, ps, keys, max_new_tokens=8, temperature=1.0, top_p=0.9)
    finally:
        hook.remove()
    assert seen and set(seen) == {"eager"}
    assert [(r, f) for r, f, _ in ours] == [(r, f) for r, f, _ in ref]
    assert model.config._attn_implementation == before
    fp32, _ = load_model(tiny_world["policy"], device=None)
    with decode_attention(fp32):
        assert fp32.config._attn_implementation == before and next(fp32.parameters()).dtype == torch.float32

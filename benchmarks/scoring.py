"""Scoring throughput: dicekit's scorer vs the official code's approach, on the same samples.

Both compute, for each sample, the summed response log-probs under the policy and under the
reference (two models of SmolLM2-135M's shape: 30 layers, hidden 576, vocab 49,152; randomly
initialised — speed does not depend on the weights, and no download is needed). Samples come
``--per-prompt`` (K, default 16 as in the paper) to a prompt; prompts 40–120 tokens, responses 16–256.

* official approach: each (prompt + response) alone, batch 1, full (length × vocab) logits and
  log-softmax, then gather the response tokens — through both models;
* dicekit scorer: ``dicekit.round.score.score_sequences`` with its defaults for the device — each prompt's
  KV cache shared by its K samples, batches of ``tokens_per_batch`` padded tokens, the LM head and
  log-softmax only at response positions, chunked — through both models (like for like);
* dicekit scoring stage with ``policy_logp_from_sampler: true``: the sampler already read the policy's
  log-prob of every token it drew off the logits it drew from, so only the reference is scored. The
  sampler's extra work (a log-sum-exp over the vocabulary per generated token) is timed here on
  random logits of the same shape, generation batch ``--gen-batch``, and added.

Also measured in the same run: this CPU's fp32 matmul rate (torch.mm, 1024³), and the share of it
each side reaches on the FLOPs it does (decoder 2·params per token, attention 4·layers·hidden per
query-key pair, LM head 2·hidden·vocab per position): the official approach runs every sequence whole
with logits everywhere; dicekit needs each distinct prompt once and the LM head at response positions
only. The ratio of the two is the speed-up to expect at equal FLOP rates.

    python benchmarks/scoring.py [--samples 64] [--per-prompt 16] [--threads 2] [--tokens-per-batch N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def smollm2_shaped(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def matmul_gflops(n: int = 1024, reps: int = 20, trials: int = 3, dtype=torch.float32) -> float:
    """Best of ``trials`` timings of ``reps`` (n × n) @ (n × n) products in ``dtype`` (fp32 default)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


@torch.no_grad()
def official_logps(model, prompts, responses) -> np.ndarray:
    out = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        tgt = ids[0, len(p):]
        out.append(logp[len(p) - 1:].gather(1, tgt[:, None]).sum().item())
    return np.array(out)


def _sizes(model) -> tuple[int, int, int, int]:
    cfg = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    return body, cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size


def needed_flops(model, prompts, responses) -> float:
    """FLOPs the scores need: each distinct prompt through the decoder once, each response's tokens
    (attending to prompt + response), the LM head at response positions only."""
    body, layers, hidden, vocab = _sizes(model)
    total = 0.0
    for p in {tuple(p) for p in prompts}:
        total += 2 * body * len(p) + 4 * layers * hidden * len(p) ** 2
    for p, r in zip(prompts, responses):
        total += 2 * body * len(r) + 4 * layers * hidden * len(r) * (len(p) + len(r)) + 2 * hidden * vocab * len(r)
    return total


def official_flops(model, prompts, responses) -> float:
    """FLOPs of the official approach: every (prompt + response) whole, logits at every position."""
    body, layers, hidden, vocab = _sizes(model)
    return sum(2 * body * (T := len(p) + len(r)) + 4 * layers * hidden * T * T + 2 * hidden * vocab * T
               for p, r in zip(prompts, responses))


def sampler_logp_seconds(lengths: list[int], vocab: int, batch: int) -> float:
    """Time of the sampler's extra work for responses of ``lengths`` generated ``batch`` rows at a time:
    every decoding step of a batch (as many as its longest response; finished rows are still
    computed) takes the drawn token's log-softmax (gather − logsumexp over the vocabulary) of fp32
    logits for all its rows."""
    steps = sum(max(lengths[lo : lo + batch]) for lo in range(0, len(lengths), batch))
    from dicekit.core.objectives import logits_logps

    logits, tok = torch.randn(batch, vocab), torch.randint(0, vocab, (batch,))
    t0 = time.perf_counter()
    for _ in range(steps):
        logits_logps(logits, tok).double()
    return time.perf_counter() - t0


def main() -> None:
    from dicekit.round.score import batch_sizes, score_sequences

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--per-prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens-per-batch", type=int, default=None, help="default: dicekit's for the device")
    ap.add_argument("--gen-batch", type=int, default=64, help="rows per decoding step (round default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    k = args.per_prompt
    prompts = [rng.integers(0, 49152, rng.integers(40, 120)).tolist() for _ in range(args.samples // k)] * k
    responses = [rng.integers(0, 49152, rng.integers(16, 256)).tolist() for _ in range(len(prompts))]
    policy, reference = smollm2_shaped(1), smollm2_shaped(2)
    tpb, chunk = batch_sizes(policy, args.tokens_per_batch, None)
    peak = matmul_gflops()

    score_sequences(policy, prompts[:2], responses[:2])  # warm-up
    t0 = time.perf_counter()
    theirs = [official_logps(m, prompts, responses) for m in (policy, reference)]
    t_theirs = time.perf_counter() - t0
    times = []
    ours = []
    for m in (policy, reference):
        t0 = time.perf_counter()
        ours.append(score_sequences(m, prompts, responses, tokens_per_batch=tpb, chunk_size=chunk))
        times.append(time.perf_counter() - t0)
    t_ours, t_ref = sum(times), times[1]
    by_prompt = sorted(range(len(prompts)), key=lambda i: (i % (len(prompts) // k), i))  # generation order
    t_sampler = sampler_logp_seconds([len(responses[i]) for i in by_prompt], policy.config.vocab_size, args.gen_batch)
    peak = max(peak, matmul_gflops())  # the better of two readings, before and after
    err = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    flops = 2 * needed_flops(policy, prompts, responses)
    theirs_flops = 2 * official_flops(policy, prompts, responses)
    n_tok = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    print(f"samples={len(prompts)} ({len(prompts) // k} prompts x {k}) tokens/model={n_tok} threads={args.threads} "
          f"tokens_per_batch={tpb} chunk={chunk} max |logp diff|={err:.2e} nats")
    print(f"fp32 matmul rate (1024^3, best of before/after): {peak:7.1f} GFLOP/s")
    print(f"work: official {theirs_flops / 1e12:.2f} TFLOP, needed {flops / 1e12:.2f} TFLOP "
          f"(ratio {theirs_flops / flops:.2f}: the speed-up at equal FLOP rates)")
    print(f"official approach, both models:   {t_theirs:7.1f} s   ({theirs_flops / t_theirs / 1e9:6.1f} GFLOP/s = "
          f"{theirs_flops / t_theirs / 1e9 / peak:.0%} of the matmul rate)")
    print(f"dicekit scorer, both models:      {t_ours:7.1f} s   ({flops / t_ours / 1e9:6.1f} GFLOP/s = "
          f"{flops / t_ours / 1e9 / peak:.0%} of the matmul rate)   speed-up {t_theirs / t_ours:.2f}x")
    print(f"dicekit stage, policy logp from sampler: {t_ref:7.1f} s reference + {t_sampler:5.2f} s in the sampler   "
          f"speed-up {t_theirs / (t_ref + t_sampler):.2f}x")
    print("targets: >= 4x, >= 50% of the matmul rate")


if __name__ == "__main__":
    main()

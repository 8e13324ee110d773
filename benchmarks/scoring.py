"""Scoring throughput: dicekit's scorer vs the official code's approach, on the same samples.

Both compute, for each sample, the summed response log-probs under the policy and under the
reference (two models of SmolLM2-135M's shape: 30 layers, hidden 576, vocab 49,152; randomly
initialised — speed does not depend on the weights, and no download is needed).

* official approach: each (prompt + response) alone, batch 1, full (length × vocab) logits and
  log-softmax, then gather the response tokens;
* dicekit: ``dicekit.score.score_sequences`` — length-sorted token-budget batches, the LM head and
  log-softmax only at response positions, chunked.

Also measured in the same run: this CPU's fp32 matmul rate (torch.mm, 1024³), and the share of it
the scorer reaches, counting the FLOPs the scorer needs (2·params·tokens for the decoder, attention
4·layers·hidden·T² per sequence, LM head 2·hidden·vocab per response token).

    python benchmarks/scoring.py [--samples 32] [--threads 2]
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


def matmul_gflops(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


@torch.no_grad()
def official_logps(model, prompts, responses) -> np.ndarray:
    out = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        tgt = ids[0, len(p):]
        out.append(logp[len(p) - 1:].gather(1, tgt[:, None]).sum().item())
    return np.array(out)


def needed_flops(model, prompts, responses) -> float:
    cfg = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    total = 0.0
    for p, r in zip(prompts, responses):
        T = len(p) + len(r)
        total += 2 * body * T + 4 * cfg.num_hidden_layers * cfg.hidden_size * T * T + 2 * cfg.hidden_size * cfg.vocab_size * len(r)
    return total


def main() -> None:
    from dicekit.score import score_sequences

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens-per-batch", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 49152, rng.integers(40, 120)).tolist() for _ in range(args.samples // 8)] * 8
    responses = [rng.integers(0, 49152, rng.integers(16, 256)).tolist() for _ in range(len(prompts))]
    policy, reference = smollm2_shaped(1), smollm2_shaped(2)
    peak = matmul_gflops()

    score_sequences(policy, prompts[:2], responses[:2])  # warm-up
    t0 = time.perf_counter()
    ours = [score_sequences(m, prompts, responses, tokens_per_batch=args.tokens_per_batch) for m in (policy, reference)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = [official_logps(m, prompts, responses) for m in (policy, reference)]
    t_theirs = time.perf_counter() - t0
    err = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    flops = 2 * needed_flops(policy, prompts, responses)
    n_tok = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    print(f"samples={len(prompts)} tokens/model={n_tok} threads={args.threads} max |logp diff|={err:.2e} nats")
    print(f"fp32 matmul peak (1024^3):  {peak:7.1f} GFLOP/s")
    print(f"official approach: {t_theirs:7.1f} s   ({flops / t_theirs / 1e9:6.1f} GFLOP/s of needed work)")
    print(f"dicekit scorer:    {t_ours:7.1f} s   ({flops / t_ours / 1e9:6.1f} GFLOP/s = {flops / t_ours / 1e9 / peak:.0%} of peak)")
    print(f"speed-up: {t_theirs / t_ours:.2f}x  (targets: >= 4x, >= 50% of peak)")


if __name__ == "__main__":
    main()

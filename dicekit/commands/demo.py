"""`dicekit demo [--out DIR] [--seed N] [--rounds 2] [--scale full|ci] [--no-ablations] [--quiet]`.

The embedded default, end to end, offline, on CPU:

1. build (or reuse from the cache) the task world and its tiny-model recipe — π_{-1}, the offline
   pairs labelled by simulated annotators, π_0 (dicekit.world.recipe);
2. run the DICE rounds with ``run_round`` into ``DIR`` (π_0 → π_1 → π_2), with the round diagnostic
   (implicit reward vs the oracle on the policy's own samples) switched on;
3. ablations, unless ``--no-ablations``: the same rounds with α = 0 (no length regularisation) in
   ``DIR/ablations/alpha0`` and with γ = 1 (offline pairs only) in ``DIR/ablations/offline_only``,
   and the oracle-pairs control of round 1 in ``DIR/controls/oracle_pairs`` (dicekit.world.control);
4. evaluate every model on the held-out eval prompts (dicekit.world.evaluate): oracle win rate
   against the fixed reference responses (no LC win rate: see the report's notes), mean length, mean
   true quality, and the implicit reward's accuracy on held-out pairs against the annotators and
   against the oracle;
5. compute the table from the files step 4 wrote, save it as ``DIR/demo_summary.json``, print it
   and write the report (``dicekit.view.report.write_report``) into ``DIR/report/``.

Everything is seeded by ``--seed``; re-running the same command reuses every finished stage.
``--scale ci`` is a reduced size (few prompts, K = 4, a briefly trained π_{-1}) for tests: the
numbers it prints show the pipeline works, not what DICE does.
"""

from __future__ import annotations

import time
from pathlib import Path

from dicekit.commands.cliutil import parser

# The round settings of the demo (a DICE round on the world's tiny models). Paper values where they
# transfer (β 0.1, best-vs-worst, α* search on characters, γ = 0.5, batch 32); the rest is set for a
# sub-million-parameter model: K = 8 samples at T = 1 (T < 1 concentrates π_0's samples where its
# implicit reward is noise — measured: own-sample agreement 0.52 at T = 0.7 vs 0.61 at T = 1), a
# learning rate of 2e-4 for 2 epochs (5e-7 for 300 steps does not move a tiny model; 5e-4 for 4
# epochs drives the implicit reward below chance on the policy's own samples), and an SFT term on the
# chosen response (weight 1.0) against drift. π_0 is trained with the same stage and settings.
ROUND = dict(
    samples_per_prompt=8, temperature=1.0, top_p=1.0, max_new_tokens=40, generate_batch_size=256, shard_prompts=100,
    min_valid_samples=4, length_unit="chars", replay_ratio=0.5, beta=0.1, loss_type=["sigmoid", "sft"],
    loss_weights=[1.0, 1.0], learning_rate=2e-4, max_steps=None, num_epochs=2.0, global_batch_size=32,
    per_device_batch_size=32, logging_steps=1, diagnose=True, diagnose_judge="oracle", diagnose_max_pairs=400,
)
CI_ROUND = dict(ROUND, samples_per_prompt=4, min_valid_samples=2, diagnose_max_pairs=50, shard_prompts=16)
ABLATIONS = {"alpha0": {"alpha": 0.0}, "offline_only": {"replay_ratio": 1.0}}
# One thread: these models are too small for intra-op parallelism to pay, and on a shared 2-core
# machine two OpenMP threads per process slowed training 3x (SFT, 100 steps: 33 s with 1 thread,
# 102 s with 2, while other jobs ran).
THREADS = 1
EVAL_SAMPLES = 2  # sampled responses per eval prompt (decoding as in the rounds), besides one greedy


def world_config(scale: str, seed: int):
    from dicekit.world.recipe import WorldConfig

    if scale == "ci":
        return WorldConfig(seed=seed, sft_examples=600, offline_prompts=48, dice_prompts=16, eval_prompts=24,
                           hidden_size=32, sft_steps=120, sft_learning_rate=1e-2, pi0_epochs=1.0)
    return WorldConfig(seed=seed)


def round_config(world, run_dir: Path, seed: int, scale: str, rounds: int, quiet: bool, **changes):
    from dicekit.config import RoundConfig, build

    values = dict(CI_ROUND if scale == "ci" else ROUND)
    values.update(run_dir=str(run_dir), policy=str(world.pi_0), reference=str(world.pi_m1),
                  prompts=str(world.dice_prompts), offline_data=str(world.offline_pairs), seed=seed,
                  num_rounds=rounds, quiet=quiet, **changes)
    return build(RoundConfig, values, "demo round settings")


def models_of(run_dir: Path, world, rounds: int) -> dict[str, tuple[str, str | None]]:
    """name -> (model folder, the reference its implicit reward is measured against)."""
    out = {"π_-1": (str(world.pi_m1), None), "π_0": (str(world.pi_0), str(world.pi_m1))}
    prev = str(world.pi_0)
    for t in range(1, rounds + 1):
        model = str(run_dir / f"round_{t}" / "model")
        out[f"π_{t}"] = (model, prev)
        prev = model
    return out


def run_demo(out: Path, seed: int = 0, rounds: int = 2, scale: str = "full", ablations: bool = True,
             quiet: bool = False) -> Path:
    from dicekit import rundir
    from dicekit.progress import say
    from dicekit.round.run import run_round
    from dicekit.world import control, demo_eval, recipe

    import torch

    torch.set_num_threads(THREADS)
    t_start = time.time()
    timings = {}
    world = recipe.build(world_config(scale, seed), quiet=quiet)
    timings["world_s"] = round(time.time() - t_start, 1)
    runs = {"DICE": out}
    if ablations:
        runs.update({f"DICE {name}": out / "ablations" / name for name in ABLATIONS})
    cfgs = {}
    for label, run_dir in runs.items():
        changes = ABLATIONS[label.split()[1]] if label != "DICE" else {}
        cfg = cfgs[label] = round_config(world, run_dir, seed, scale, rounds, quiet, **changes)
        t0 = time.time()
        for t in range(1, rounds + 1):
            say(f"demo: {label}, round {t} of {rounds}", quiet)
            run_round(cfg, t)
        timings[f"rounds_s ({label})"] = round(time.time() - t0, 1)
    to_eval = [(label, name, model, ref) for label, run_dir in runs.items()
               for name, (model, ref) in models_of(run_dir, world, rounds).items()
               if label == "DICE" or name not in ("π_-1", "π_0")]  # π_-1, π_0 are shared with the main run
    if ablations:
        t0 = time.time()
        say("demo: oracle-pairs control (round 1 with the oracle as ranker)", quiet)
        ctrl = control.run_oracle_control(out, cfgs["DICE"], seed)
        to_eval.append((demo_eval.CONTROL, "π_1", str(ctrl / "model"), str(world.pi_0)))
        timings["control_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    cfg = cfgs["DICE"]
    for label, name, model, ref in to_eval:
        demo_eval.evaluate_model(model, ref, world, demo_eval.eval_dir(out, label, name), seed=seed,
                                 temperature=cfg.temperature, top_p=cfg.top_p, samples=EVAL_SAMPLES,
                                 max_new_tokens=cfg.max_new_tokens, quiet=quiet)
    demo_eval.write_round_evals(out, runs, rounds)
    demo_eval.copy_world_files(world, out)
    timings["eval_s"] = round(time.time() - t0, 1)
    timings["total_s"] = round(time.time() - t_start, 1)
    summary = demo_eval.summarize_demo(out, runs, rounds)
    summary["Timings (seconds, this invocation)"] = [timings]
    rundir.write_json(out / "demo_summary.json", summary)
    report = write_demo_report(out)
    print(demo_eval.format_summary(summary))
    print(f"\nrun folder: {out}\nreport:     {report}")
    return out


def write_demo_report(run_dir: Path) -> Path:
    """The report of the demo's run folder (the full report reads demo_summary.json itself)."""
    from dicekit.view.report import write_report

    return write_report(run_dir)


def main(argv: list[str]) -> int:
    p = parser("demo", "The embedded default: task world, tiny model, DICE rounds, evaluation and report (offline, CPU).")
    p.add_argument("--out", default=None, help="run folder (default: a new folder under runs/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the models and the rounds (default 0)")
    p.add_argument("--rounds", type=int, default=2, help="DICE rounds (default 2)")
    p.add_argument("--scale", choices=("full", "ci"), default="full",
                   help="full (default) or ci: a reduced size that checks the pipeline in well under a minute")
    p.add_argument("--no-ablations", action="store_true", help="skip the α = 0 and γ = 1 runs and the oracle-pairs control")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage summaries")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    out = Path(args.out) if args.out else Path("runs") / time.strftime(f"demo-%Y%m%d-%H%M%S-seed{args.seed}")
    if out.exists() and not out.is_dir():
        p.error(f"--out {out}: exists and is not a folder")
    run_demo(out, seed=args.seed, rounds=args.rounds, scale=args.scale, ablations=not args.no_ablations,
             quiet=args.quiet)
    return 0

"""`dicekit check-recipe CONFIG [key=value ...] [--accelerate FILE] [--gpus N] [--gpu NAME] [--json]`."""

from __future__ import annotations

from dicekit.commands.cliutil import parser


def main(argv: list[str]) -> int:
    from dicekit.analysis.recipe_check import GPUS, Assumptions

    d = Assumptions()
    p = parser("check-recipe", "Validate a DICE recipe offline (config keys, model ids, accelerate config) and "
                               "estimate per-GPU memory and time per stage. Downloads nothing.")
    p.add_argument("config", help="round config YAML (e.g. benchmarks/zephyr-7b/round.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, as run-round")
    p.add_argument("--accelerate", help="accelerate config the round will be launched with (default: "
                                        "estimate DDP, FSDP and ZeRO-3)")
    p.add_argument("--gpus", type=int, default=d.gpus,
                   help=f"GPUs (default {d.gpus}; --accelerate's num_processes wins)")
    p.add_argument("--gpu", choices=sorted(GPUS), default=d.gpu, help=f"GPU model (default {d.gpu})")
    p.add_argument("--gpu-mem-gib", type=float, help="memory per GPU (default: the GPU model's)")
    p.add_argument("--mfu", type=float, default=d.mfu, help=f"assumed model FLOPs utilisation (default {d.mfu})")
    p.add_argument("--gen-tokens-per-s", type=float, default=d.gen_tokens_per_s,
                   help=f"assumed generated tokens/s per vLLM engine (default {d.gen_tokens_per_s:g})")
    p.add_argument("--mean-prompt-tokens", type=int, default=d.mean_prompt_tokens)
    p.add_argument("--mean-response-tokens", type=int, default=d.mean_response_tokens)
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens,
                   help="longest prompt, for the worst-case activation estimate")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    for name in ("gpus", "mean_prompt_tokens", "mean_response_tokens", "max_prompt_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.mfu <= 1:
        p.error("--mfu must be in (0, 1]")
    if args.gen_tokens_per_s <= 0 or (args.gpu_mem_gib is not None and args.gpu_mem_gib <= 0):
        p.error("--gen-tokens-per-s and --gpu-mem-gib must be > 0")
    from dicekit.analysis.recipe_check import check_recipe, format_report

    a = Assumptions(gpus=args.gpus, gpu=args.gpu, gpu_mem_gib=args.gpu_mem_gib, mfu=args.mfu,
                    gen_tokens_per_s=args.gen_tokens_per_s, mean_prompt_tokens=args.mean_prompt_tokens,
                    mean_response_tokens=args.mean_response_tokens, max_prompt_tokens=args.max_prompt_tokens)
    report = check_recipe(args.config, args.overrides, args.accelerate, a)
    if args.json:
        import json

        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0

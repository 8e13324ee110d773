"""Worker for tests/test_vllm_backend.py's data-parallel test, run under torchrun (gloo): each rank
builds its own vLLM engine, samples every world_size-th prompt, and rank 0 writes the merged samples
as JSON ``{prompt_id: [[response_ids, finish_reason, logp_sampler], ...]}``.

usage: python -m torch.distributed.run --nproc-per-node N tests/vllm_dp_worker.py POLICY PROMPTS OUT MEM
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SAMPLING = dict(seed=42, round_=1, samples_per_prompt=4, max_new_tokens=12, temperature=0.7, top_p=0.9)


def sample_share(policy: str, prompts_file: str, rank: int, world: int, mem: float) -> dict:
    from dicekit.data import load_prompts
    from dicekit.models import load_model, prompt_ids, stop_token_ids
    from dicekit.round.vllm_backend import VLLMEngine, sample_prompts

    model, tok = load_model(policy)
    stop = stop_token_ids(model, tok)
    prompts = load_prompts(prompts_file)
    mine = list(range(rank, len(prompts), world))
    ids = [prompt_ids(tok, prompts["prompt"].iloc[i]) for i in mine]
    pids = [prompts["prompt_id"].iloc[i] for i in mine]
    with VLLMEngine(policy, dtype="float32", gpu_memory_utilization=mem, max_model_len=256, enforce_eager=True) as eng:
        flat = sample_prompts(eng, ids, pids, stop_ids=stop, **SAMPLING)
    k = SAMPLING["samples_per_prompt"]
    return {p: [list(s) for s in flat[j * k:(j + 1) * k]] for j, p in enumerate(pids)}


def main(argv):
    import torch.distributed as dist

    policy, prompts_file, out, mem = argv[0], argv[1], argv[2], float(argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    share = sample_share(policy, prompts_file, rank, world, mem)
    gathered = [None] * world
    dist.all_gather_object(gathered, share)
    if rank == 0:
        Path(out).write_text(json.dumps({k: v for g in gathered for k, v in g.items()}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])

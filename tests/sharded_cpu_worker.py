"""Test harness: ``dicekit`` under ``accelerate launch`` with the FSDP plugin honoured on CPU processes.

accelerate (1.15) turns FSDP on only for accelerator devices. On CPU processes (gloo) its
AcceleratorState is MULTI_CPU and the plugin built from ``accelerate_fsdp.yaml`` is dropped without a
word: the round trains as plain DDP. This worker does, for CPU, what AcceleratorState.__init__ does
for GPUs (distributed_type FSDP, the plugin attached, its mixed-precision policy set), so that
accelerate's FSDP2 wrapping and full-state-dict gathering, TRL's DPOTrainer and dicekit's saving all
run for real on 2 CPU processes. Nothing else is changed.

At save time it records which path accelerate's ``get_state_dict`` took (distributed type, whether
the parameters were sharded, how many tensors this rank got) in ``$DICEKIT_SHARDED_RECORD.rank<r>.json``
and what reached ``save_pretrained`` (on the rank that writes) in
``$DICEKIT_SHARDED_RECORD.save_pretrained.json``, so a test can tell a sharded run from a silent DDP
fallback. DeepSpeed needs no such switch: accelerate runs it on CPU processes as it is.

usage: python -m accelerate.commands.launch --config_file CFG tests/sharded_cpu_worker.py run-round --config RUN.yaml
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def force_fsdp_on_cpu() -> None:
    import accelerate.state as S
    from accelerate.utils import DistributedType

    original = S.AcceleratorState.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = plugin
            # every later AcceleratorState() re-reads PartialState's copy
            S.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    S.AcceleratorState.__init__ = init


def record_saving(path_prefix: str) -> None:
    from accelerate import Accelerator
    from torch.distributed.tensor import DTensor

    original = Accelerator.get_state_dict

    def get_state_dict(self, model, unwrap=True):
        params = list(model.parameters())
        # FSDP2: DTensor shards; ZeRO-3: parameters with a ds_id
        sharded = any(isinstance(p, DTensor) for p in params) or any(hasattr(p, "ds_id") for p in params)
        state = original(self, model, unwrap)
        rec = {"distributed_type": str(self.distributed_type.value), "is_fsdp2": bool(self.is_fsdp2),
               "sharded_params": sharded, "n_tensors": len(state or {}),
               "dtypes": sorted({str(v.dtype) for v in (state or {}).values()})}
        Path(f"{path_prefix}.rank{self.process_index}.json").write_text(json.dumps(rec))
        return state

    Accelerator.get_state_dict = get_state_dict

    from transformers import PreTrainedModel

    original_save = PreTrainedModel.save_pretrained

    def save_pretrained(self, save_directory, *args, state_dict=None, **kwargs):
        from accelerate.state import AcceleratorState

        st = AcceleratorState()
        params = list(self.parameters())
        rec = {"rank": st.process_index, "distributed_type": str(st.distributed_type.value),
               "zero_stage": st.deepspeed_plugin.zero_stage if st.deepspeed_plugin is not None else None,
               # ZeRO-3: the share of the weights this rank's own partitions hold (1/world size)
               "zero3_local_fraction": (sum(p.ds_tensor.numel() for p in params if hasattr(p, "ds_tensor"))
                                        / max(1, sum(p.ds_numel for p in params if hasattr(p, "ds_tensor")))),
               "param_dtypes": sorted({str(p.dtype) for p in params}),
               "saved_dtypes": sorted({str(v.dtype) for v in (state_dict or {}).values()})}
        Path(f"{path_prefix}.save_pretrained.json").write_text(json.dumps(rec))
        return original_save(self, save_directory, *args, state_dict=state_dict, **kwargs)

    PreTrainedModel.save_pretrained = save_pretrained


if __name__ == "__main__":
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        force_fsdp_on_cpu()
    if os.environ.get("DICEKIT_SHARDED_RECORD"):
        record_saving(os.environ["DICEKIT_SHARDED_RECORD"])
    from dicekit.cli import main

    sys.argv[0] = "dicekit"
    sys.exit(main())

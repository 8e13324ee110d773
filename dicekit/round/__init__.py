"""The DICE round and its stages — the modules that write a run folder.

``run`` (``run_round(cfg)``: generate -> score -> pairs -> train, resumable) and its stages:
``chain`` (which models, one in memory at a time), ``collect`` (samples, scored, filtered),
``monitor`` (previous rewards, the round monitor), ``pairing`` (α*, pairs, stabilisers, replay).
Their parts: ``generate`` (K samples per prompt, HF), ``vllm_backend`` (the same on vLLM),
``sampling`` (per-sample keyed randomness), ``score`` (policy/reference log-probs on the exact token
IDs), ``train`` (DPO through TRL), ``dist`` (multi-process helpers). Heavy imports (torch,
transformers, trl) live here."""

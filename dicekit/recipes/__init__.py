"""Code behind the recipes on real models in benchmarks/: ``smollm2`` (SmolLM2-135M-Instruct from a
GGUF inside a PyPI package, converted once to a safetensors folder) and ``ifeval_prompts`` (seeded
training prompts with verifiable instructions, for rounds judged by IFEval)."""

"""Code behind the recipes in benchmarks/ that run on real models."""

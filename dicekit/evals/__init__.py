"""Evaluation library, callable from Python: AlpacaEval 2 (``alpaca``), Arena-Hard (``arena_hard``),
implicit-reward accuracy (``reward_accuracy``), the judges behind them (``judges``, ``openai_judge``,
``hf_judge``, ``judge_factory``), their cache and the pure metrics (``metrics``, ``lc_glm``,
``bradley_terry``). The `dicekit eval ...` commands in :mod:`dicekit.commands` only parse flags and
call ``evaluate_*`` here."""

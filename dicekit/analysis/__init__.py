"""Model-based analysis of runs: they load models (torch) and write their own files next to a round.

``diagnose`` (implicit reward vs a judge on a round's samples), ``credit`` (per-token log-ratio),
``rankers`` (implicit reward vs reward model vs judge), ``rm`` (scalar reward model through TRL),
``recipe_check`` (offline validation of a recipe: keys, memory, time)."""

"""Pure math of DICE, no I/O and no model loading: the implicit reward (``reward``), sequence
log-probs and DPO-family losses (``objectives``), length-regularised scores, α search, pair selection
and replay mixing (``pairs``). Each function is small and tested against hand-worked values."""

"""Evaluation: AlpacaEval 2, Arena-Hard, implicit-reward accuracy, and the judges behind them."""

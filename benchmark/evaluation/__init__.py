"""Evaluation: evaluate -> accumulate -> summarize, with the protocol in ``params.EvalParams``."""

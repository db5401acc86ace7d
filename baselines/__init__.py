"""Promptable segmentation models behind one interface (`baselines.base.Predictor`)."""

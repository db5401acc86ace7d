"""FLIP re-implementation: encoder, pixel predictor, patch sampler and inference modes."""

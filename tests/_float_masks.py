"""Comparing masks thresholded from float32 logits that two code paths computed (other kernels, batch shapes or
CPUs): float32 results are not bit-identical across those, so a pixel whose logit lies within float noise of the
threshold may fall on either side. Agreement is asserted up to that noise, which still catches real errors (a
shifted box, a wrong normalisation or resize moves logits by tenths or whole units, and flips pixels far from the
threshold)."""

from __future__ import annotations

import numpy as np

#: float32 noise allowed between two paths' logits (logits of order 0.1-10; the paths differ by ~1e-6 here)
LOGIT_ATOL = 1e-4
#: most pixels of a mask that may fall on the other side of the threshold (all within LOGIT_ATOL of it)
MAX_FLIPPED_FRACTION = 1e-4


def assert_mask_matches_logits(mask: np.ndarray, logits: np.ndarray, threshold: float = 0.0,
                               near: float = LOGIT_ATOL, max_fraction: float = MAX_FLIPPED_FRACTION) -> None:
    """``mask`` (bool [H, W], one path) equals ``logits > threshold`` (float [H, W], the other path) except at
    pixels whose logit lies within ``near`` of the threshold, and those are at most ``max_fraction`` of the mask."""
    assert mask.shape == logits.shape, (mask.shape, logits.shape)
    flipped = mask != (logits > threshold)
    margin = np.abs(logits - threshold)
    far = flipped & (margin >= near)
    assert not far.any(), (f"{int(far.sum())} pixels differ with |logit - {threshold}| >= {near} "
                           f"(largest {float(margin[far].max()):.4g})")
    assert flipped.mean() <= max_fraction, f"{int(flipped.sum())} of {flipped.size} pixels differ near the threshold"


def assert_logits_and_masks_close(masks, logits, reference_logits, threshold: float = 0.0,
                                  atol: float = LOGIT_ATOL) -> None:
    """Per object: ``logits`` (float [H, W]) within ``atol`` of ``reference_logits`` and the object's ``masks``
    (bool [H, W]) equal to ``reference_logits > threshold`` up to pixels within ``atol`` of the threshold."""
    for k, (mask, ours, reference) in enumerate(zip(masks, logits, reference_logits, strict=True)):
        np.testing.assert_allclose(ours, reference, atol=atol, rtol=0, err_msg=f"object {k}")
        assert_mask_matches_logits(mask, reference, threshold, near=atol)

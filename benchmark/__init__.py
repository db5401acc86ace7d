"""flipbench: benchmark suite for promptable single-object segmentation (FLIP vs SAM family)."""

__version__ = "0.1.0"

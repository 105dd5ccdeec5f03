"""Data: loading and validating frames, named datasets, synthetic data."""

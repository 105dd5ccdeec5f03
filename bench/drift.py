"""A drift check's time and peak memory against per-column scipy KS on raw data.

20 numeric features. The reference profile is built from a raw reference of 100k or
1M rows; windows of 10k, 100k and 1M rows (a small shift on 5 features). Side by side
in one run, medians of the repeats: `check_drift` on the profile, and
`scipy.stats.ks_2samp` per column on the 1M-row raw reference and the window.
Run: `.venv/bin/python -m bench.drift [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy import stats

from common.config import Settings
from common.models.profile import build_reference_profile
from common.models.schemas import FeatureSpec
from common.monitoring.drift import check_drift

FEATURES = [f"f{i:02d}" for i in range(20)]
WINDOWS = (10_000, 100_000, 1_000_000)


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    data = np.random.default_rng(seed).normal(size=(rows, len(FEATURES)))
    data[:, :5] += shift
    return pd.DataFrame(data, columns=FEATURES)


def profile_of(reference: pd.DataFrame) -> dict:
    schema = [FeatureSpec(name, "number") for name in FEATURES]
    return build_reference_profile(
        reference,
        schema,
        np.zeros(len(reference)),
        bins=10,
        sample_size=1000,
        random_state=0,
    )


def measure(action, repeats: int) -> tuple[float, float]:
    times, peaks = [], []
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    return statistics.median(times), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(home="/tmp/modelops-bench")
    raw = {size: frame(size, 1) for size in (100_000, 1_000_000)}
    profiles = {size: profile_of(data) for size, data in raw.items()}
    out = sys.stdout
    out.write(f"20 features, repeats={args.repeats} (medians)\n")
    out.write(
        f"{'window':>9}{'ours s':>9}{'scipy s':>9}{'ratio':>7}"
        f"{'ours MB':>9}{'ours MB (100k ref)':>20}{'scipy MB':>10}\n"
    )
    for rows in WINDOWS:
        window = frame(rows, 2, shift=0.02)
        ours, ours_mb = measure(
            lambda w=window: check_drift(profiles[1_000_000], w, None, settings),
            args.repeats,
        )
        _, small_ref_mb = measure(
            lambda w=window: check_drift(profiles[100_000], w, None, settings), 1
        )
        scipy_s, scipy_mb = measure(
            lambda w=window: [
                stats.ks_2samp(raw[1_000_000][c].to_numpy(), w[c].to_numpy())
                for c in FEATURES
            ],
            args.repeats,
        )
        out.write(
            f"{rows:>9,}{ours:>9.3f}{scipy_s:>9.3f}{ours / scipy_s:>7.2f}"
            f"{ours_mb:>9.1f}{small_ref_mb:>20.1f}{scipy_mb:>10.1f}\n"
        )


if __name__ == "__main__":
    main()

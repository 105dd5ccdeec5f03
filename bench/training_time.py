"""Training time of each model type on the synthetic dataset, side by side in one run.

Prints the median of several fits per model type and its ratio to the fastest, so the
figures compare on a shared, noisy machine. Run: `make bench` or
`.venv/bin/python -m bench.training_time [--rows N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common.config import MODEL_TYPES, Settings
from common.data import synthetic
from common.models.training import ModelTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = synthetic.generate("baseline", args.rows, seed=1)
    trainer = ModelTrainer(Settings(home="/tmp/modelops-bench"))
    timings: dict[str, list[float]] = {model_type: [] for model_type in MODEL_TYPES}
    accuracy: dict[str, float] = {}
    for _ in range(args.repeats):  # interleave the types so noise hits all alike
        for model_type in MODEL_TYPES:
            start = time.perf_counter()
            result = trainer.train_model(frame, synthetic.TARGET, model_type)
            timings[model_type].append(time.perf_counter() - start)
            accuracy[model_type] = result.metrics.accuracy
    medians = {name: statistics.median(values) for name, values in timings.items()}
    fastest = min(medians.values())
    out = sys.stdout
    out.write(f"rows={args.rows} repeats={args.repeats}\n")
    out.write(f"{'model type':<24}{'median s':>10}{'ratio':>8}{'accuracy':>10}\n")
    for model_type, seconds in medians.items():
        out.write(
            f"{model_type:<24}{seconds:>10.3f}{seconds / fastest:>8.2f}"
            f"{accuracy[model_type]:>10.4f}\n"
        )


if __name__ == "__main__":
    main()

"""Code of a user's own: a custom transformer (a type skops does not trust), and
files that misbehave when loaded (a pickle runs whatever its objects ask for)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Doubler(TransformerMixin, BaseEstimator):
    """Multiplies numbers by two: harmless, but not a type skops knows."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X, dtype=float) * 2


def _sleep_forever() -> None:
    time.sleep(3600)


def _eat_memory() -> bytes:
    return bytes(64 * 1024**3)  # 64 GB: more than any limit a test sets


class SleepsWhenLoaded:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_sleep_forever, ())


class EatsMemoryWhenLoaded:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_eat_memory, ())


class RefusesToRefit(TransformerMixin, BaseEstimator):
    """Fitted once (elsewhere), it refuses to be fitted again: a retrain of a
    pipeline holding it must fail with that reason."""

    def __init__(self, fitted: bool = False) -> None:
        self.fitted = fitted

    def fit(self, X: Any, y: Any = None) -> RefusesToRefit:
        if not self.fitted:
            raise ValueError("this transformer was fitted on data only its author has")
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X, dtype=float)

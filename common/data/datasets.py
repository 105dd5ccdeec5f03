"""Named datasets: scikit-learn's built-ins, the synthetic one, and files in `data_dir`.

Names are resolved inside the data directory only: a name with a path separator, `..`
or an absolute path is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn import datasets as sk_datasets

from common.config import Settings
from common.data import synthetic
from common.data.processing import READERS, DataProcessor
from common.errors import DatasetNotFoundError, InvalidInputError


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset and the column to predict."""

    name: str
    frame: pd.DataFrame
    target: str


def _sklearn(loader: Callable[..., object]) -> Callable[[Settings], pd.DataFrame]:
    def load(_settings: Settings) -> pd.DataFrame:
        bunch = loader(as_frame=True)
        frame: pd.DataFrame = bunch.frame.copy()  # type: ignore[attr-defined]
        names = list(bunch.target_names)  # type: ignore[attr-defined]
        frame["target"] = [names[i] for i in frame["target"]]  # readable class labels
        return frame

    return load


def _synthetic(settings: Settings) -> pd.DataFrame:
    return synthetic.generate("baseline", settings.demo_rows, settings.random_state)


BUILTIN: dict[str, tuple[Callable[[Settings], pd.DataFrame], str]] = {
    "iris": (_sklearn(sk_datasets.load_iris), "target"),
    "wine": (_sklearn(sk_datasets.load_wine), "target"),
    "breast_cancer": (_sklearn(sk_datasets.load_breast_cancer), "target"),
    "synthetic": (_synthetic, synthetic.TARGET),
}


BUILTIN_EXPORTS = "builtin"  # folder of the data directory for exported built-ins


def list_datasets(settings: Settings) -> list[str]:
    """Built-in names, then files in the data directory."""
    return [*BUILTIN, *_data_files(settings)]


def _data_files(settings: Settings) -> list[str]:
    directory = Path(settings.data_dir)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.suffix.lower() in READERS)


def export_builtin(settings: Settings, name: str) -> str:
    """Write built-in dataset `name` as a CSV under the data directory, for jobs that
    read files (batch scoring); return its path relative to the data directory.

    The same settings give the same rows, so an existing export is reused.
    """
    loader, _ = BUILTIN[name]
    folder = Path(settings.data_dir) / BUILTIN_EXPORTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{settings.demo_rows}-{settings.random_state}.csv"
    if not path.is_file():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        loader(settings).to_csv(partial, index=False)
        partial.replace(path)  # readers never see half a file
    return f"{BUILTIN_EXPORTS}/{path.name}"


def resolve_data_file(settings: Settings, name: str) -> Path:
    """Return the path of dataset file `name` inside the data directory.

    Raises
    ------
    InvalidInputError
        For names that could reach outside the data directory.
    DatasetNotFoundError
        When no such file exists.
    """
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise InvalidInputError(
            f"dataset name {name!r} must be a plain file name "
            "inside the data directory",
            field="dataset",
        )
    root = Path(settings.data_dir).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise InvalidInputError(
            f"dataset name {name!r} is not allowed", field="dataset"
        )
    if not path.is_file():
        files = ", ".join(_data_files(settings)) or "none"
        raise DatasetNotFoundError(
            f"no file named {name!r} in the data directory {root} (files there: "
            f"{files}; built-in datasets: {', '.join(BUILTIN)})",
            dataset=name,
        )
    return path


def load_dataset(settings: Settings, name: str, target: str | None = None) -> Dataset:
    """Load a built-in dataset or a file of the data directory by name."""
    if name in BUILTIN:
        loader, default_target = BUILTIN[name]
        return Dataset(name, loader(settings), target or default_target)
    path = resolve_data_file(settings, name)
    return Dataset(name, DataProcessor(settings).load_data(path), target or "target")


def load_training_source(
    settings: Settings, source: str, target: str | None
) -> Dataset:
    """For the CLI: a dataset name, or a path to a CSV or Parquet file."""
    path = Path(source)
    if source not in BUILTIN and path.suffix.lower() in READERS and path.exists():
        frame = DataProcessor(settings).load_data(path)
        return Dataset(str(path), frame, target or "target")
    return load_dataset(settings, source, target)

from __future__ import annotations

import pytest

from common.data.datasets import BUILTIN, list_datasets, load_dataset, resolve_data_file
from common.errors import DatasetNotFoundError, InvalidInputError


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_datasets_load_with_their_target(settings, name):
    dataset = load_dataset(settings, name)
    assert dataset.target in dataset.frame.columns
    assert dataset.frame[dataset.target].nunique() >= 2


def test_iris_labels_are_class_names(settings):
    labels = set(load_dataset(settings, "iris").frame["target"])
    assert labels == {"setosa", "versicolor", "virginica"}


def test_files_in_the_data_directory_are_named_datasets(settings, tiny_frame):
    data_dir = settings.data_dir
    import pathlib

    pathlib.Path(data_dir).mkdir(parents=True)
    tiny_frame.to_csv(f"{data_dir}/mine.csv", index=False)
    assert "mine.csv" in list_datasets(settings)
    dataset = load_dataset(settings, "mine.csv", target="label")
    assert len(dataset.frame) == 120


@pytest.mark.parametrize("name", ["../secret.csv", "/etc/passwd", "a/b.csv", "..", ""])
def test_names_cannot_leave_the_data_directory(settings, name):
    with pytest.raises(InvalidInputError):
        resolve_data_file(settings, name)


def test_unknown_name_lists_the_known_ones(settings):
    with pytest.raises(DatasetNotFoundError, match="iris"):
        load_dataset(settings, "nope.csv")

"""Response shapes: plain functions from domain objects to JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from common.clock import to_iso
from common.storage.tables import Champion, ModelVersion
from services.api.model_cache import LoadedModel


def model_version_out(version: ModelVersion) -> dict[str, Any]:
    return {
        "model_id": f"{version.name}:{version.version}",
        "name": version.name,
        "version": version.version,
        "state": version.state,
        "created_at": to_iso(version.created_at),
        "model_type": version.model_type,
        "target": version.target,
        "accuracy": version.accuracy,
        "f1_score": version.f1_score,
        "training_data_size": version.training_data_size,
        "feature_names": version.feature_names,
        "classes": version.classes,
        "sha256": version.sha256,
        "params": version.params,
        "dataset": version.dataset,
        "data_fingerprint": version.data_fingerprint,
        "reason": version.reason,
        "job_id": version.job_id,
    }


def model_status_out(champion: Champion, loaded: LoadedModel | None) -> dict[str, Any]:
    version = champion.model_version
    serving = loaded is not None and loaded.model_version_id == version.id
    return {
        **model_version_out(version),
        "generation": champion.generation,
        "loaded_at": to_iso(loaded.loaded_at) if serving and loaded else None,
        "metrics": version.metrics,
        "input_schema": version.input_schema,
    }

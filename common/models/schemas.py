"""Plain data classes shared across layers: the input schema and the seed's records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

FeatureType = Literal["number", "category"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature as the model was trained on it."""

    name: str
    type: FeatureType
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            name=data["name"],
            type=data["type"],
            min=data.get("min"),
            max=data.get("max"),
            categories=data.get("categories"),
        )


@dataclass(frozen=True)
class ModelMetadata:
    """What `GET /model/status` reports about the serving model."""

    model_id: str
    version: int
    created_at: datetime
    accuracy: float
    f1_score: float
    training_data_size: int
    feature_names: list[str]
    model_type: str
    sha256: str = ""
    generation: int = 0
    loaded_at: datetime | None = None
    input_schema: list[FeatureSpec] = field(default_factory=list)


@dataclass(frozen=True)
class PredictionLog:
    """One answered prediction as the API logs it."""

    prediction_id: str
    timestamp: datetime
    features: dict[str, Any]
    prediction: Any
    confidence: float | None
    model_version: int
    response_time_ms: float
    probabilities: dict[str, float] | None = None


@dataclass(frozen=True)
class PerformanceMetrics:
    """Live performance of the serving model over one window."""

    accuracy: float | None
    precision: float | None
    recall: float | None
    f1_score: float | None
    prediction_count: int
    avg_response_time: float | None
    error_rate: float
    timestamp: datetime

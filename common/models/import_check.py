"""The child process of a registration: load a user's model file, check it, and
describe it. Run as `python -m common.models.import_check REQUEST.json`.

Loading a model file runs code (a pickle always; a skops file through the types it
is allowed to build), and a broken or hostile file may hang, exhaust memory or crash
the interpreter. So it happens here, in a process of its own that the parent starts
with a time and memory limit: whatever the file does, the API or CLI that asked only
sees an answer or a refusal. The parent never unpickles what this writes; the API
loads the bundle later, built of objects this process accepted.

Input (JSON): artifact, format ("skops" or "pickle"), trusted (type names),
reference, target, task (or null), settings (the values checks need), out (a
directory). Output: `out/result.json` ({"ok": ...} or {"error": {code, message,
details}}) and, when ok, `out/bundle.joblib`.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

EVALUATE_ROWS = 100_000  # the reference rows scored for metrics and the profile
SAMPLE_ROWS = 200  # predicted first, so a model that cannot predict fails fast


class RefusedError(Exception):
    """Why the file is refused: a code, a message for a person, and details."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def load_model(path: Path, fmt: str, trusted: list[str]) -> tuple[Any, list[str]]:
    """The model, and the types beyond skops' set it was trusted with."""
    if fmt == "pickle":
        try:
            return joblib.load(path), []
        except MemoryError:
            raise  # the limit: said as such by main()
        except Exception as exc:
            raise RefusedError(
                "not_a_model",
                f"the file cannot be loaded as joblib or "
                f"pickle: {type(exc).__name__}: {exc}",
            ) from exc
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise RefusedError(
            "not_a_model", f"the file is not a skops file: {type(exc).__name__}: {exc}"
        ) from exc
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise RefusedError(
            "untrusted_types",
            f"the skops file holds types outside skops' trusted set: "
            f"{', '.join(refused)}. Loading them may run their code; if you trust "
            "them, name them with --trust (trusted_types in the API, or "
            "MODELOPS_TRUSTED_TYPES)",
            types=refused,
        )
    try:
        return sio.load(path, trusted=list(untrusted)), sorted(untrusted)
    except MemoryError:
        raise
    except Exception as exc:
        raise RefusedError(
            "not_a_model",
            f"the skops file cannot be loaded: {type(exc).__name__}: {exc}",
        ) from exc


def describe_type(model: Any) -> str:
    """`Pipeline/LogisticRegression`, `RandomForestRegressor`: what the user sees."""
    name = type(model).__name__
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        name = f"{name}/{type(steps[-1][1]).__name__}"
    return name[:50]


def task_of(model: Any, asked: str | None) -> str:
    from sklearn.base import is_classifier, is_regressor

    classifier, regressor = is_classifier(model), is_regressor(model)
    if asked:
        if (asked == "classification" and regressor) or (
            asked == "regression" and classifier
        ):
            raise RefusedError(
                "wrong_task", f"{describe_type(model)} is not a model for {asked}"
            )
        return asked
    if classifier or (not regressor and hasattr(model, "classes_")):
        return "classification"
    if regressor:
        return "regression"
    raise RefusedError(
        "unknown_task",
        f"{describe_type(model)} says neither that it is a classifier nor a "
        "regressor; give the task (--task, or task in the API)",
    )


def check(request: dict[str, Any]) -> tuple[dict[str, Any], Any, pd.DataFrame]:
    """Everything the registry records of the file, the model itself, and the
    reference's features."""
    from common.config import Settings
    from common.data.processing import DataProcessor, coerce_features
    from common.models.evaluation import ModelEvaluator, evaluate_regression
    from common.models.prediction import model_classes, predict_rows, to_plain
    from common.models.profile import build_reference_profile

    model, trusted = load_model(
        Path(request["artifact"]), request["format"], request["trusted"]
    )
    if not callable(getattr(model, "predict", None)):
        raise RefusedError(
            "no_predict",
            f"the file holds a {type(model).__module__}."
            f"{type(model).__name__}, which has no predict method; "
            "register a fitted estimator or pipeline",
        )
    task = task_of(model, request.get("task"))
    settings = Settings(**request["settings"])
    processor = DataProcessor(settings)
    target = request["target"]
    try:
        reference = processor.load_data(request["reference"])
    except Exception as exc:
        raise RefusedError("bad_reference", getattr(exc, "message", str(exc))) from exc
    if target not in reference.columns:
        raise RefusedError(
            "missing_target",
            f"the reference has no target column {target!r}; its columns are "
            f"{[str(c) for c in reference.columns][:50]}",
        )
    expected = getattr(model, "feature_names_in_", None)
    if expected is not None:
        features = [str(f) for f in expected]
        missing = [f for f in features if f not in reference.columns]
        if missing:
            raise RefusedError(
                "missing_features",
                f"the model was fitted on features the reference lacks: {missing}",
                features=missing,
            )
    else:
        features = [str(c) for c in reference.columns if c != target]
    frame = reference[[*features, target]].head(EVALUATE_ROWS)
    validation = processor.validate_data(frame, target, task=task)
    if validation.problems:
        raise RefusedError(
            "bad_reference",
            "the reference is not usable: "
            + "; ".join(p.message for p in validation.problems),
            problems=[p.to_dict() for p in validation.problems],
        )
    frame = frame.dropna(subset=[target])
    schema = validation.schema
    X = coerce_features(frame, schema)
    y = frame[target]
    try:
        predict_rows(model, X.head(SAMPLE_ROWS))
        predicted = np.asarray(model.predict(X))
    except Exception as exc:
        raise RefusedError(
            "predict_failed",
            f"predicting on the reference failed: {type(exc).__name__}: {exc}",
        ) from exc
    if len(predicted) != len(X):
        raise RefusedError(
            "predict_failed",
            f"predict returned {len(predicted)} values for {len(X)} rows",
        )
    if task == "regression":
        try:
            y = y.astype(float)
            metrics = evaluate_regression(model, X, y).to_dict()
        except (TypeError, ValueError) as exc:
            raise RefusedError(
                "predict_failed", f"the predictions are not numbers: {exc}"
            ) from exc
        classes: list[Any] = []
        accuracy = f1 = 0.0
    else:
        classes = model_classes(model) or sorted(
            {to_plain(v) for v in (*y.tolist(), *predicted.tolist())}, key=str
        )
        if all(isinstance(c, int | float) for c in classes) and y.dtype == object:
            y = pd.to_numeric(y, errors="coerce")
        report = ModelEvaluator().evaluate_predictions(y, predicted, classes)
        metrics, accuracy, f1 = report.to_dict(), report.accuracy, report.f1_score
    profile = build_reference_profile(
        X,
        schema,
        predicted,
        bins=settings.profile_bins,
        sample_size=settings.profile_sample_size,
        random_state=settings.random_state,
        task=task,
    )
    described = {
        "task": task,
        "model_type": describe_type(model),
        "feature_names": [spec.name for spec in schema],
        "classes": [to_plain(c) for c in classes],
        "input_schema": [spec.to_dict() for spec in schema],
        "reference_profile": profile,
        "metrics": {**metrics, "holdout_size": len(X), "evaluated_on": "reference"},
        "accuracy": accuracy,
        "f1_score": f1,
        "rows": len(X),
        "trusted_types": trusted,
        "warnings": [p.message for p in validation.warnings],
    }
    return described, model, X


def main(argv: list[str]) -> int:
    from common.models.compilation import compile_pipeline
    from common.models.registry import ARTIFACT_FORMAT
    from common.models.schemas import FeatureSpec

    request = json.loads(Path(argv[1]).read_text())
    out = Path(request["out"])
    try:
        described, model, reference = check(request)
        compiled = compile_pipeline(
            model,
            [FeatureSpec.from_dict(spec) for spec in described["input_schema"]],
            reference,
            task=described["task"],
            classes=described["classes"],
        )
        if compiled.onnx is not None:
            (out / "model.onnx").write_bytes(compiled.onnx)
        described["compilation"] = {"reason": compiled.reason,
                                    "check": compiled.check}  # fmt: skip
        bundle = {
            "format": ARTIFACT_FORMAT,
            "pipeline": model,
            "feature_names": described["feature_names"],
            "classes": described["classes"],
            "model_type": described["model_type"],
            "task": described["task"],
        }
        joblib.dump(bundle, out / "bundle.joblib", compress=3)
        answer: dict[str, Any] = {"ok": described}
    except RefusedError as refusal:
        answer = {
            "error": {
                "code": refusal.code,
                "message": refusal.message,
                "details": refusal.details,
            }
        }
    except MemoryError:
        answer = {
            "error": {
                "code": "out_of_memory",
                "message": "the model needs more memory than the registration "
                "allows (MODELOPS_REGISTER_MEMORY_MB)",
                "details": {},
            }
        }
    except Exception as exc:  # anything else the file's code did
        trace = traceback.format_exc()[-2000:]
        answer = {
            "error": {
                "code": "failed",
                "message": f"checking the model failed: {type(exc).__name__}: {exc}",
                "details": {"traceback": trace},
            }
        }
    (out / "result.json").write_text(json.dumps(answer, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The /predict path of one API process: route, validate, batch, answer, hand over
the log (and, in a shadow rollout, the challenger's copy of the request)."""

from __future__ import annotations

import collections
import time
from typing import Any

import orjson

from common.clock import utcnow
from common.config import Settings
from common.errors import InvalidInputError, PredictionTimeoutError
from common.models.prediction import Prediction
from common.models.validation import validate_instances
from common.monitoring.prediction_log import new_prediction_id
from common.rollouts import arms, routing
from services.api.batcher import MicroBatcher
from services.api.log_process import LogProcess
from services.api.model_cache import LoadedModel, ModelCache, ServingRollout
from services.api.prediction_log import PredictionLogWriter
from services.api.schemas import PredictRequest
from services.api.shadow import ShadowRequest, ShadowScorer


class Predictor:
    """Ties the model cache, the micro-batcher and the log writer together."""

    def __init__(
        self,
        settings: Settings,
        cache: ModelCache,
        batcher: MicroBatcher,
        log_writer: LogProcess | PredictionLogWriter | None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.batcher = batcher
        self.log_writer = log_writer
        self.shadow = ShadowScorer(settings)
        self.quality_counts: collections.Counter[str] = collections.Counter()
        self._schema_pair: tuple[LoadedModel, LoadedModel, bool] | None = None

    def predict(
        self,
        name: str,
        body: PredictRequest,
        started: float,
        routing_key: str | None = None,
    ) -> tuple[dict[str, Any], int, str]:
        """Answer one request for model `name`; returns the body, the version that
        answered and its arm. During a rollout the request's routing key (the
        body's, else `routing_key`) places it: a canary's or A/B test's share is
        answered by the challenger; a shadow's share is also scored by it, later.

        Raises
        ------
        ModelNotFoundError
            No model of that name (404).
        ModelNotReadyError
            Its champion is not loaded within the time budget, or cannot be (503).
        InvalidInputError
            Every problem with the instances, by field (400).
        PredictionTimeoutError
            The answer did not come within `predict_timeout_ms` (408).
        """
        budget = self.settings.predict_timeout_ms / 1000
        model = self.cache.require(name, budget - (time.perf_counter() - started))
        instances, paths = self._instances(body)
        arm, shadow = "champion", None
        rollout, chosen = self._route(name, body.routing_key or routing_key, started)
        if rollout is not None and chosen:
            if rollout.plan.mode == "shadow":
                shadow = rollout.challenger
            else:
                model, arm = rollout.challenger, "challenger"
        checked = validate_instances(model.input_schema, instances, paths)
        if checked.problems:
            raise InvalidInputError(
                f"{len(checked.problems)} problem(s) with the input",
                problems=[p.to_dict() for p in checked.problems],
            )
        predictions = self._score(model, checked.rows, started)
        ids = [new_prediction_id() for _ in predictions]
        latency_ms = (time.perf_counter() - started) * 1000
        logged = arms.logged_arm(arm, rollout.plan.id) if rollout is not None else ""
        self._log(model, instances, predictions, ids, checked.quality, latency_ms,
                  logged)  # fmt: skip
        if shadow is not None and rollout is not None:
            self.shadow.start()
            same_schema = self._same_schema(shadow, model)
            self.shadow.submit(ShadowRequest(
                shadow.name, shadow.model_version_id, rollout.plan.id,
                [p.prediction for p in predictions], ids,
                rows=checked.rows if same_schema else None,
                instances=None if same_schema else instances))  # fmt: skip
        items = [
            {
                "prediction": p.prediction,
                "confidence": p.confidence,
                "probabilities": p.probabilities,
                "prediction_id": prediction_id,
                "data_quality": flags,
            }
            for p, prediction_id, flags in zip(
                predictions, ids, checked.quality, strict=True
            )
        ]
        names = {"model": model.name, "model_version": model.version, "arm": arm}
        if body.instances is None:
            return {**items[0], **names}, model.version, arm
        return {"predictions": items, **names}, model.version, arm

    def _route(
        self, name: str, key: str | None, started: float
    ) -> tuple[ServingRollout | None, bool]:
        """The rollout of `name` this process follows, and whether this request
        belongs to its challenger. A request for the challenger of a rollout whose
        challenger is still loading here waits for it, within its time budget, so
        that a customer's first answers in a new canary or A/B test come from the
        arm of all the later ones (past the budget, the champion answers)."""
        plan = self.cache.plan(name)
        if plan is None:
            return None, False
        chosen = routing.to_challenger(plan.id, plan.share, key)
        wait = 0.0
        if chosen and plan.mode != "shadow":  # half the budget at most: it must score
            budget = self.settings.predict_timeout_ms / 1000
            wait = max(0.0, budget / 2 - (time.perf_counter() - started))
        rollout = self.cache.rollout(name, wait=wait)
        if rollout is None:
            return None, False
        if rollout.plan != plan:  # the rollout changed meanwhile: place it afresh
            chosen = routing.to_challenger(rollout.plan.id, rollout.plan.share, key)
        return rollout, chosen

    def _same_schema(self, challenger: LoadedModel, champion: LoadedModel) -> bool:
        """Whether a shadow can reuse the champion's validated rows. Asked for every
        shadowed request, so the last pair's answer is kept (comparing two schemas
        field by field cost a few per cent of a shadowed request's time)."""
        known = self._schema_pair
        if known is None or known[0] is not challenger or known[1] is not champion:
            same = challenger.input_schema == champion.input_schema
            known = self._schema_pair = (challenger, champion, same)
        return known[2]

    def log_failure(self, name: str, status_code: int, latency_ms: float) -> None:
        """Record a refused or failed request (no features kept) for the error rate
        of model `name`."""
        if self.log_writer is None:
            return
        model = self.cache.get(name)
        self.log_writer.add([{
            "prediction_id": new_prediction_id(),
            "model": name,
            "model_version_id": model.model_version_id if model else None,
            "model_version": model.version if model else 0,
            "features": {},
            "prediction": "",
            "confidence": None,
            "probabilities": None,
            "latency_ms": latency_ms,
            "status_code": status_code,
            "data_quality": None,
            "request_rows": 1,
            "created_at": utcnow(),
        }])  # fmt: skip

    def _instances(self, body: PredictRequest) -> tuple[list[Any], list[str]]:
        """The rows of the request and how messages name them."""
        if body.instances is None:
            return [body.features], ["features"]
        if len(body.instances) > self.settings.max_batch_instances:
            raise InvalidInputError(
                f"at most {self.settings.max_batch_instances} instances per call",
                problems=[
                    {
                        "field": "instances",
                        "code": "too_long",
                        "message": f"got {len(body.instances)} instances",
                    }
                ],
            )
        return body.instances, [f"instances[{i}]" for i in range(len(body.instances))]

    def _score(
        self, model: LoadedModel, rows: list[list[Any]], started: float
    ) -> list[Prediction]:
        budget = self.settings.predict_timeout_ms / 1000
        try:
            return self.batcher.predict(
                model, rows, timeout=budget - (time.perf_counter() - started)
            )
        except TimeoutError:
            raise PredictionTimeoutError(
                f"prediction took longer than {self.settings.predict_timeout_ms} ms",
                timeout_ms=self.settings.predict_timeout_ms,
            ) from None

    def _log(
        self,
        model: LoadedModel,
        instances: list[Any],
        predictions: list[Prediction],
        ids: list[str],
        quality: list[list[str]],
        latency_ms: float,
        arm: str,
    ) -> None:
        for flags in quality:
            if flags:  # most rows have none: no update at all, a request's cost
                self.quality_counts.update([flag.split(":", 1)[0] for flag in flags])
        if self.log_writer is None:
            return
        now = utcnow()
        self.log_writer.add(
            [
                {
                    "prediction_id": prediction_id,
                    "model": model.name,
                    "model_version_id": model.model_version_id,
                    "model_version": model.version,
                    # Encoded here, once: pickling the dict to the log process
                    # and encoding it there cost that process twice as much. As
                    # text: orjson's bytes, held by the thousand until sent, cost
                    # glibc's malloc 2.7 us a row, the text decoded from them
                    # (the bytes freed at once) 0.8 us (measured).
                    "features": orjson.dumps(instance).decode(),
                    "prediction": str(p.prediction),
                    "confidence": p.confidence,
                    "probabilities": p.probabilities,
                    "latency_ms": latency_ms,
                    "status_code": 200,
                    "data_quality": flags or None,
                    "request_rows": len(instances) if index == 0 else 0,
                    "created_at": now,
                    "arm": arm,
                }
                for index, (instance, p, prediction_id, flags) in enumerate(
                    zip(instances, predictions, ids, quality, strict=True)
                )
            ]
        )

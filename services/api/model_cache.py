"""The champions this API process serves, loaded on demand within a memory budget
and swapped when a champion's generation changes.

A watcher thread polls every champion's (cheap) generation in one query. A model is
loaded on its first request, in the background: the request waits for it up to its
time budget. A loaded model whose generation changed is reloaded in the background
(verified, warmed) and swapped as one reference, so a swap never fails or mixes a
request. Loaded champions stay within `model_cache_mb`, least recently used out; the
default model is never dropped (`/readyz` depends on it), and a model larger than the
whole budget still serves, alone beside it.

The same poll reads the running rollouts: a model with one gets its challenger
loaded beside the champion (in the background; a request for the challenger waits
for the load within its budget, the others go on to the champion), and dropped when
the rollout ends.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common import memory
from common.clock import utcnow
from common.config import Settings
from common.data.processing import example_features
from common.errors import AppError, ArtifactError, ModelNotReadyError
from common.models import catalog, registry
from common.models.runtime import Scorer, SklearnScorer
from common.models.schemas import FeatureSpec
from common.monitoring import alerts
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import Alert, Champion, ModelVersion, Rollout

log = logging.getLogger(__name__)

# A refused champion is tried again every this many polls (10 s at the default
# 500 ms): cheap, and a restored artifact serves without another promotion.
RETRY_REFUSED_POLLS = 20
LOAD_THREADS = 1  # one load at a time: its transient buffers count against memory too


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed pipeline and what identifies it."""

    name: str
    model_version_id: int
    version: int
    generation: int
    sha256: str
    scorer: Scorer  # ONNX Runtime or scikit-learn: `scorer.runtime` says which
    input_schema: list[FeatureSpec]
    classes: list[Any]
    task: str
    loaded_at: datetime
    size_bytes: int  # its pickled (or ONNX) size: what it holds in memory, near enough

    @property
    def runtime(self) -> str:
        return self.scorer.runtime

    @property
    def runtime_reason(self) -> str | None:
        """Why scikit-learn serves, where it does."""
        return self.scorer.reason


@dataclass(frozen=True)
class RolloutPlan:
    """A running rollout as the request path needs it."""

    id: int
    challenger_version_id: int
    mode: str
    share: float


@dataclass(frozen=True)
class ServingRollout:
    """A running rollout whose challenger this process has loaded."""

    plan: RolloutPlan
    challenger: LoadedModel


@dataclass
class _Slot:
    """One model in this process: what serves, what loads, what failed."""

    current: LoadedModel | None = None
    last_error: str | None = "not loaded yet"
    loading: Future[LoadedModel | None] | None = None
    failed: tuple[int, int] | None = None  # (generation, version id) refused
    failed_at: float = 0.0
    used_at: float = field(default_factory=time.monotonic)


class ModelCache:
    """Champions by model name; a failed load keeps the previous version serving."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        on_alert: Callable[[int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.on_alert = on_alert  # told (alert id, event) of each alert it changes
        self.budget_bytes = settings.model_cache_mb * 1024 * 1024
        self.default = settings.default_model
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recent first
        # name -> (generation, version id), from the last poll
        self._champions: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="model-load")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loads = 0
        self.evictions = 0
        self._sizes: dict[int, int] = {}  # version id -> bytes, of models seen
        self._plans: dict[str, RolloutPlan] = {}  # model -> its running rollout
        self._challengers: dict[str, ServingRollout] = {}  # loaded for a plan
        self._challenger_loads: dict[str, Future[None]] = {}
        self._challenger_failed: dict[int, float] = {}  # rollout id -> when

    # -- what the request path asks -------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        """The default model, if loaded."""
        return self.get(self.default)

    @property
    def last_error(self) -> str | None:
        slot = self._slots.get(self.default)
        return slot.last_error if slot else "not loaded yet"

    def get(self, name: str) -> LoadedModel | None:
        """The loaded champion of `name`, or None (nothing is loaded by asking)."""
        slot = self._slots.get(name)
        return slot.current if slot else None

    def error_of(self, name: str) -> str | None:
        slot = self._slots.get(name)
        return slot.last_error if slot else "not loaded yet"

    def loaded(self) -> list[LoadedModel]:
        return [s.current for s in list(self._slots.values()) if s.current]

    def plan(self, name: str) -> RolloutPlan | None:
        """`name`'s running rollout as this process last read it, loaded or not."""
        return self._plans.get(name)

    def rollout(self, name: str, wait: float = 0.0) -> ServingRollout | None:
        """`name`'s running rollout, once its challenger is loaded here; with `wait`,
        up to that long for a load in progress."""
        serving = self._serving(name)
        loading = self._challenger_loads.get(name)
        if serving is None and wait > 0 and loading is not None:
            with contextlib.suppress(FutureTimeout):
                loading.result(timeout=wait)  # failures are logged by the load
            serving = self._serving(name)
        return serving

    def _serving(self, name: str) -> ServingRollout | None:
        serving = self._challengers.get(name)
        plan = self._plans.get(name)
        if serving is None or plan is None or serving.plan != plan:
            return None
        return serving

    def following(self) -> dict[str, dict[str, int]]:
        """Each model's running rollout whose challenger this process has loaded,
        so routes requests to: `/readyz` says it."""
        return {
            name: {"rollout_id": serving.plan.id,
                   "challenger_version": serving.challenger.version}
            for name in list(self._challengers)
            if (serving := self._serving(name)) is not None
        }  # fmt: skip

    def put(self, loaded: LoadedModel) -> None:
        """Serve `loaded` for its model now (tests swap in a slow pipeline)."""
        with self._lock:
            self._slots.setdefault(loaded.name, _Slot()).current = loaded

    def require(self, name: str, timeout: float) -> LoadedModel:
        """The champion of `name`, loading it if needed and waiting up to `timeout`.

        Raises
        ------
        ModelNotFoundError
            No model of that name (404, naming the models there are).
        ModelNotReadyError
            It has no champion, its artifact is refused, or it is still loading
            after `timeout` (503 with Retry-After; the load goes on).
        """
        slot = self._slots.get(name)
        if slot is not None and slot.current is not None:
            self._touch(name, slot)
            return slot.current
        if name not in self._champions:
            self._learn_champion(name)
        if slot is not None and slot.failed is not None and not self._changed(name):
            raise ModelNotReadyError(  # refused a moment ago: the watcher retries
                f"model {name!r} cannot serve: {slot.last_error}", model=name
            )
        future = self._load_async(name)
        try:
            loaded = future.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            raise ModelNotReadyError(
                f"model {name!r} is loading; retry in a moment", model=name
            ) from None
        if loaded is None:
            raise ModelNotReadyError(
                f"model {name!r} cannot serve: {self.error_of(name)}", model=name
            )
        return loaded

    def _touch(self, name: str, slot: _Slot) -> None:
        slot.used_at = time.monotonic()
        if next(reversed(self._slots)) != name:
            with self._lock:
                if name in self._slots:
                    self._slots.move_to_end(name)

    def _learn_champion(self, name: str) -> None:
        """A model not seen at the last poll: registered since, or unknown (404)."""
        with session_scope(self.session_factory) as session:
            pointer = repo.find_champion_generation(session, name)
            if pointer is None:
                if name != self.default:  # the default model is always expected
                    catalog.get_model(session, name)  # 404 naming the known ones
                raise ModelNotReadyError(no_champion(name), model=name)
        self._champions[name] = pointer

    # -- loading ---------------------------------------------------------------

    def _load_async(self, name: str) -> Future[LoadedModel | None]:
        with self._lock:
            slot = self._slots.setdefault(name, _Slot())
            if slot.loading is None or slot.loading.done():
                slot.loading = self._loader.submit(self._load_champion, name)
            return slot.loading

    def refresh(self, name: str | None = None) -> LoadedModel | None:
        """Load the champion of `name` (default: the default model) now if its
        generation differs from the one served; returns what serves."""
        name = name or self.default
        try:
            self._poll()
        except SQLAlchemyError as exc:
            self._slots.setdefault(name, _Slot()).last_error = str(exc)
            return self.get(name)
        if name not in self._champions:
            self._slots.setdefault(name, _Slot()).last_error = no_champion(name)
        elif self._changed(name):
            try:
                self._load_async(name).result()
            except Exception:  # recorded on the slot by the load itself
                log.debug("load of %s failed", name, exc_info=True)
        return self.get(name)

    def _changed(self, name: str) -> bool:
        """Loaded (or wanted: the default) with another generation than its
        champion's, and not refused a moment ago."""
        pointer = self._champions.get(name)
        slot = self._slots.get(name)
        if pointer is None or (slot is None and name != self.default):
            return False
        if (
            slot is not None
            and slot.current is not None
            and (slot.current.generation == pointer[0])
        ):
            return False
        if slot is not None and slot.failed == pointer:
            retry = RETRY_REFUSED_POLLS * self.settings.model_poll_ms / 1000
            return time.monotonic() - slot.failed_at >= retry
        return True

    def _load_champion(self, name: str) -> LoadedModel | None:
        target: tuple[ModelVersion, int] | None = None
        slot = self._slots.setdefault(name, _Slot())
        try:
            target = self._champion(name)
            if target is None:
                slot.last_error = no_champion(name)
                return slot.current
            version, generation = target
            if slot.current is not None and slot.current.generation == generation:
                return slot.current
            # A model seen before (dropped, coming back) makes its room first, so
            # the peak is the budget, not the budget and the model.
            self._fit_budget(keep=name, incoming=self._sizes.get(version.id, 0))
            loaded = load_serving(
                self.settings, self.session_factory, name, version, generation
            )
            self._sizes[version.id] = loaded.size_bytes
        except Exception as exc:  # a user's pipeline may fail its warm-up any way
            if not isinstance(exc, AppError | SQLAlchemyError):
                log.exception("model %s failed to load", name)
            slot.last_error = str(exc) or type(exc).__name__
            if target is not None:
                slot.failed = (target[1], target[0].id)
                slot.failed_at = time.monotonic()
            log.warning("load of model %s failed; what it served keeps serving: %s",
                        name, exc)  # fmt: skip
            if target is not None and isinstance(exc, ArtifactError):
                self._alert_refused(name, target[0], exc)
            return slot.current
        healed, replaced = slot.failed is not None, slot.current is not None
        slot.current, slot.last_error, slot.failed = loaded, None, None
        self.loads += 1
        if healed:
            self._resolve_refused(name, loaded.version)
        self._fit_budget(keep=name)
        # Models are long-lived: keep their many objects out of the cyclic GC's
        # scans, which otherwise show up as latency spikes under load. A hot swap
        # unfreezes and collects first, so the replaced version's cycles are freed;
        # a model loaded into the cache (or dropped from it) needs no full
        # collection: it holds no cycles to speak of, refcounting frees it, and a
        # collection with every model in memory takes over 100 ms of held GIL.
        if replaced:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        log.info("serving model=%s version=%d generation=%d (%.1f MB)", name,
                 loaded.version, loaded.generation,
                 loaded.size_bytes / 2**20)  # fmt: skip
        return loaded

    def _champion(self, name: str) -> tuple[ModelVersion, int] | None:
        with session_scope(self.session_factory) as session:
            pointer = repo.find_champion_generation(session, name)
            if pointer is None:
                return None
            self._champions[name] = pointer
            version = session.get(ModelVersion, pointer[1])
            assert version is not None  # foreign key
            session.expunge(version)
            return version, pointer[0]

    def _fit_budget(self, keep: str, incoming: int = 0) -> None:
        """Drop least recently used models until the loaded ones (and `incoming`
        bytes about to load) fit the budget; never the default model or `keep`."""
        dropped = 0
        with self._lock:
            total = incoming + sum(
                s.current.size_bytes for s in self._slots.values() if s.current
            )
            for name in list(self._slots):
                if total <= self.budget_bytes:
                    break
                slot = self._slots[name]
                if name in (keep, self.default) or slot.current is None:
                    continue
                total -= slot.current.size_bytes
                log.info("model %s dropped from memory (budget %d MB)", name,
                         self.settings.model_cache_mb)  # fmt: skip
                del self._slots[name]
                self.evictions += 1
                dropped += 1
        if dropped:
            memory.give_back()  # else the dropped models' heap stays in the RSS

    # -- watching --------------------------------------------------------------

    def start(self) -> None:
        """Start the watcher thread (once per process, after any fork)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="model-watcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._loader.shutdown(wait=False, cancel_futures=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.model_poll_ms / 1000):
            try:
                self._poll()
            except SQLAlchemyError as exc:
                log.warning("champion poll failed; models keep serving: %s", exc)
                continue
            for name in [self.default, *list(self._slots)]:
                if self._changed(name):
                    self._load_async(name)

    def _poll(self) -> None:
        """Every champion's generation, and every running rollout."""
        with session_scope(self.session_factory) as session:
            rows = session.execute(
                select(Champion.name, Champion.generation, Champion.model_version_id)
            ).all()
            plans = session.execute(
                select(Rollout.model, Rollout.id, Rollout.challenger_version_id,
                       Rollout.mode, Rollout.share)
                .where(Rollout.state == "running")
            ).all()  # fmt: skip
        self._champions = {name: (gen, vid) for name, gen, vid in rows}
        self._plans = {
            model: RolloutPlan(id_, version_id, mode, share)
            for model, id_, version_id, mode, share in plans
        }
        self._follow_rollouts()

    def _follow_rollouts(self) -> None:
        """Load the challenger of each new rollout (of a model served here), drop
        the challengers of rollouts that ended."""
        for name in list(self._challengers):
            if self._challengers[name].plan != self._plans.get(name):
                log.info("rollout of model %s ended here: challenger dropped", name)
                del self._challengers[name]
        for name, plan in self._plans.items():
            if name not in self._slots or name in self._challengers:
                continue
            loading = self._challenger_loads.get(name)
            failed = self._challenger_failed.get(plan.id)
            retry = RETRY_REFUSED_POLLS * self.settings.model_poll_ms / 1000
            if failed is not None and time.monotonic() - failed < retry:
                continue
            if loading is None or loading.done():
                self._challenger_loads[name] = self._loader.submit(
                    self._load_challenger, name, plan
                )

    def _load_challenger(self, name: str, plan: RolloutPlan) -> None:
        try:
            with session_scope(self.session_factory) as session:
                version = session.get(ModelVersion, plan.challenger_version_id)
                assert version is not None  # foreign key
                session.expunge(version)
            loaded = load_serving(
                self.settings, self.session_factory, name, version, generation=0
            )
        except Exception as exc:  # the champion goes on answering everything
            self._challenger_failed[plan.id] = time.monotonic()
            log.warning("challenger of rollout %d (model %s) failed to load: %s",
                        plan.id, name, exc)  # fmt: skip
            return
        if self._plans.get(name) == plan:
            self._challengers[name] = ServingRollout(plan, loaded)
            log.info("rollout %d: model=%s challenger version=%d loaded (%s, %.0f%%)",
                     plan.id, name, loaded.version, plan.mode,
                     plan.share * 100)  # fmt: skip

    # -- alerts ----------------------------------------------------------------

    def _alert_refused(
        self, name: str, version: ModelVersion, exc: ArtifactError
    ) -> None:
        """Open one alert for a champion whose artifact is refused (every API process
        that refuses it tries; the database keeps one open)."""
        current = self.get(name)
        serving = current.version if current else None
        self._change_alert("opened", lambda session: alerts.artifact_refused(
            session, name, version.version, exc.message, serving
        ))  # fmt: skip

    def _resolve_refused(self, name: str, version: int) -> None:
        """The version's artifact loads again (it was restored): close its alert."""
        self._change_alert(
            "resolved",
            lambda session: alerts.artifact_accepted(session, name, version),
        )

    def _change_alert(
        self, event: str, change: Callable[[Session], Alert | None]
    ) -> None:
        """Apply an alert change in its own transaction, then pass it on (webhook);
        a database error is logged, never raised into the loader."""
        try:
            with session_scope(self.session_factory) as session:
                alert = change(session)
                changed = alert.id if alert else None
        except SQLAlchemyError as error:
            log.error("could not record the artifact alert (%s): %s", event, error)
            return
        if changed is not None and self.on_alert is not None:
            self.on_alert(changed, event)


def no_champion(name: str) -> str:
    return f"no version of model {name!r} has been promoted yet"


class _Counter:
    """A write-only file that counts bytes: a model's pickled size, no copy made."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes  # bytes, or a PickleBuffer (protocol 5)
        self.size += size
        return size


def load_serving(
    settings: Settings,
    session_factory: sessionmaker[Session],
    name: str,
    version: ModelVersion,
    generation: int,
) -> LoadedModel:
    """`version` of model `name` verified, loaded and warmed (compiled first when it
    was registered before compilation existed)."""
    if version.runtime is None and settings.inference_runtime != "sklearn":
        # Registered before compilation existed: compiled on its first load.
        pipeline = registry.load_model(settings, version)
        with session_scope(session_factory) as session:
            registry.compile_version(session, settings, version, pipeline)
    scorer = registry.load_scorer(settings, version)
    schema = registry.input_schema(version)
    # One prediction before serving, so the first request pays no lazy set-up.
    example = example_features(schema)
    scorer.score_rows(schema, [[example[s.name] for s in schema]])
    if isinstance(scorer, SklearnScorer):
        counter = _Counter()
        pickle.dump(scorer.pipeline, counter, protocol=5)
        size = counter.size
    else:
        size = version.onnx_size_bytes or 0
    return LoadedModel(
        name=name,
        model_version_id=version.id,
        version=version.version,
        generation=generation,
        sha256=version.sha256,
        scorer=scorer,
        input_schema=schema,
        classes=list(version.classes),
        task=version.task,
        loaded_at=utcnow(),
        size_bytes=size,
    )

"""Quantile sketches that merge exactly across processes and minutes (DDSketch).

Values are added to a `ddsketch.DDSketch` (relative accuracy 1%). A sketch is
stored as its bins, `{"o": offset, "c": counts, "no": .., "nc": .., "z": zeros}`, the
counts base64 little-endian int32: a day of minutes of several processes then merges
with NumPy in milliseconds, bin by bin, which is exact. Reading a quantile walks the
merged bins by rank as `DDSketch.get_quantile_value` does and maps the key back with
the sketch's own `LogarithmicMapping` (a unit test holds the two equal).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb.proto import DDSketchProto
from ddsketch.store import DenseStore

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
Encoded = dict[str, Any]


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def add_values(sketch: DDSketch, values: Iterable[float]) -> None:
    """Add `values` to `sketch`: the bins `sketch.add` would fill, by the sketch's
    own mapping, with one weighted add per distinct bin instead of a call per value
    (a batch of latencies falls in a few dozen bins). Its count and bins change, as
    when a sketch is read back from the database; not its min, max or sum, which
    nothing here reads (rollups keep their own sums)."""
    positive: Counter[int] = Counter()
    negative: Counter[int] = Counter()
    zeros = 0
    smallest = MAPPING.min_possible
    for value in values:
        if value > smallest:
            positive[MAPPING.key(value)] += 1
        elif value < -smallest:
            negative[MAPPING.key(-value)] += 1
        else:
            zeros += 1
    if positive or negative or zeros:
        _add_bins(sketch, positive.items(), negative.items(), zeros)


def encode(sketch: BaseDDSketch) -> Encoded:
    """The sketch's bins, JSON-ready (read through the library's serialisation)."""
    proto = DDSketchProto.to_proto(sketch)
    offset, counts = _dense(proto.positiveValues)
    negative_offset, negative_counts = _dense(proto.negativeValues)
    return {"o": offset, "c": _pack(counts), "no": negative_offset,
            "nc": _pack(negative_counts), "z": int(proto.zeroCount)}  # fmt: skip


def to_sketch(encoded: Encoded) -> DDSketch:
    """A sketch holding the encoded bins, to add more values to."""
    sketch = new_sketch()
    _add_bins(sketch, _bins(encoded["o"], encoded["c"]),
              _bins(encoded["no"], encoded["nc"]), encoded["z"])  # fmt: skip
    return sketch


def _bins(offset: int, packed: str) -> Iterable[tuple[int, int]]:
    """The non-empty (key, count) bins of one encoded side."""
    return ((offset + index, int(count))
            for index, count in enumerate(_unpack(packed)) if count)  # fmt: skip


def _add_bins(
    sketch: DDSketch,
    positive: Iterable[tuple[int, int]],
    negative: Iterable[tuple[int, int]],
    zeros: float,
) -> None:
    """Merge counts per key (each side) and zeros into `sketch`, through the
    library's stores: as its `add` would have counted them."""
    stores = DenseStore(), DenseStore()
    for store, bins in zip(stores, (positive, negative), strict=True):
        for key, count in bins:
            store.add(key, float(count))
    sketch.merge(BaseDDSketch(MAPPING, *stores, float(zeros)))


def _dense(store: Any) -> tuple[int, np.ndarray]:
    counts = np.asarray(store.contiguousBinCounts, dtype=np.int64)
    offset = int(store.contiguousBinIndexOffset)
    if store.binCounts:  # the sparse form: not what DenseStore writes, but valid
        keys = [int(k) for k in store.binCounts]
        low = min(keys + ([offset] if len(counts) else []))
        high = max(keys + ([offset + len(counts) - 1] if len(counts) else []))
        dense = np.zeros(high - low + 1, dtype=np.int64)
        dense[offset - low : offset - low + len(counts)] += counts
        for key, count in store.binCounts.items():
            dense[int(key) - low] += int(count)
        offset, counts = low, dense
    nonzero = np.flatnonzero(counts)
    if not len(nonzero):
        return 0, counts[:0]
    return offset + int(nonzero[0]), counts[nonzero[0] : nonzero[-1] + 1]


def _pack(counts: np.ndarray) -> str:
    return base64.b64encode(counts.astype("<i4").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i4").astype(np.int64)


class _Bins:
    """Counts per key: parts are kept as added and summed once, when read."""

    def __init__(self) -> None:
        self._parts: list[tuple[int, np.ndarray]] = []
        self._summed: tuple[int, np.ndarray] | None = None

    def add(self, offset: int, counts: np.ndarray) -> None:
        if len(counts):
            self._parts.append((offset, counts))
            self._summed = None

    @property
    def offset(self) -> int:
        return self._sum()[0]

    @property
    def counts(self) -> np.ndarray:
        return self._sum()[1]

    def _sum(self) -> tuple[int, np.ndarray]:
        if self._summed is None:
            if not self._parts:
                self._summed = (0, np.zeros(0, dtype=np.int64))
            else:
                low = min(offset for offset, _ in self._parts)
                high = max(offset + len(counts) for offset, counts in self._parts)
                total = np.zeros(high - low, dtype=np.int64)
                for offset, counts in self._parts:
                    total[offset - low : offset - low + len(counts)] += counts
                self._parts = [(low, total)]
                self._summed = (low, total)
        return self._summed

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def key_at_rank(self, rank: float, lower: bool = True) -> int:
        offset, counts = self._sum()
        running = np.cumsum(counts)
        if lower:
            index = int(np.searchsorted(running, rank, side="right"))
        else:
            index = int(np.searchsorted(running, rank + 1, side="left"))
        return offset + min(index, len(running) - 1)


class SketchSum:
    """Adds encoded sketches bin by bin; `quantiles` reads the total."""

    def __init__(self) -> None:
        self.positive = _Bins()
        self.negative = _Bins()
        self.zero = 0

    def add(self, encoded: Encoded | None) -> SketchSum:
        if encoded:
            self.positive.add(encoded["o"], _unpack(encoded["c"]))
            self.negative.add(encoded["no"], _unpack(encoded["nc"]))
            self.zero += encoded["z"]
        return self

    def add_all(self, encoded: Iterable[Encoded | None]) -> SketchSum:
        for one in encoded:
            self.add(one)
        return self

    @property
    def count(self) -> int:
        return self.positive.total + self.negative.total + self.zero

    def quantiles(self, *qs: float) -> list[float | None]:
        """As `DDSketch.get_quantile_value` on the merged sketch."""
        count, negatives = self.count, self.negative.total
        values: list[float | None] = []
        for q in qs:
            if count == 0:
                values.append(None)
                continue
            rank = q * (count - 1)
            if rank < negatives:
                key = self.negative.key_at_rank(negatives - rank - 1, lower=False)
                values.append(-MAPPING.value(key))
            elif rank < negatives + self.zero:
                values.append(0.0)
            else:
                key = self.positive.key_at_rank(rank - self.zero - negatives)
                values.append(MAPPING.value(key))
        return values

    def encode(self) -> Encoded:
        return {"o": self.positive.offset, "c": _pack(self.positive.counts),
                "no": self.negative.offset, "nc": _pack(self.negative.counts),
                "z": self.zero}  # fmt: skip

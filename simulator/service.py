"""The service model of one exchange node: workers, a service-time distribution and a bounded queue.

Pure and deterministic: :meth:`ServiceModel.submit` takes an arrival time and returns the completion time computed
from the node's seeded generator, or ``None`` when the queue is full (the caller answers with the rate-limit
error reply). Requests are served first come, first served by ``workers`` identical servers, so latency grows
with the arrival rate as in an M/G/c queue. Two hooks serve the fault engine: ``latency_factor`` (multiplies the
service times of requests arriving while it is set) and :meth:`ServiceModel.set_workers` (capacity drop).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsfinal.exceptions import ConfigurationError

from .service_csv import read_service_csv

#: How many service times are drawn from the generator at once (draws are consumed in order, so batching does
#: not change the sequence a seed gives).
_BATCH = 1024
#: Completion times kept at least before ServiceModel.submit prunes the past ones (see ServiceModel._completions).
_PRUNE_MIN = 1024

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

#: The shared empirical example: EC2 request latencies (ms) from the Numenta Anomaly Benchmark.
NAB_LATENCY_CSV = Path("/work/shared/data/nab/ec2_request_latency_system_failure.csv")


@dataclass(frozen=True, slots=True)
class ServiceDistribution:
    """A service-time distribution in seconds. Build with one of the ``constant``/``exponential``/... helpers."""

    kind: str
    draw: Callable[[np.random.Generator, int], np.ndarray]
    mean_s: float

    @staticmethod
    def constant(value_s: float) -> ServiceDistribution:
        _check_positive("value", value_s, allow_zero=True)
        return ServiceDistribution("constant", lambda rng, n: np.full(n, float(value_s)), float(value_s))

    @staticmethod
    def exponential(mean_s: float) -> ServiceDistribution:
        _check_positive("mean", mean_s)
        return ServiceDistribution("exponential", lambda rng, n: rng.exponential(mean_s, n), float(mean_s))

    @staticmethod
    def lognormal(median_s: float, sigma: float) -> ServiceDistribution:
        _check_positive("median", median_s)
        _check_positive("sigma", sigma, allow_zero=True)
        mu = math.log(median_s)
        mean = median_s * math.exp(sigma * sigma / 2)
        return ServiceDistribution("lognormal", lambda rng, n: rng.lognormal(mu, sigma, n), mean)

    @staticmethod
    def empirical(samples_s: Sequence[float] | np.ndarray) -> ServiceDistribution:
        """Resample (bootstrap) the given measured service times, each equally likely.

        Every sample must be a finite number >= 0 and there must be at least one: a bad one raises
        :class:`~wsfinal.exceptions.ConfigurationError` naming its index and value (none is dropped).
        """
        values = np.asarray(samples_s, dtype=float).ravel()
        if values.size == 0:
            raise ConfigurationError("service.samples", [], "no samples: give at least one service time")
        bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0)))
        if bad.size:
            i = int(bad[0])
            raise ConfigurationError(
                f"service.samples[{i}]", float(values[i]), "a service time must be a finite number >= 0"
            )
        return ServiceDistribution(
            "empirical", lambda rng, n: values[rng.integers(0, values.size, n)], float(values.mean())
        )

    @staticmethod
    def from_csv(
        path: str | Path, column: str | int = "value", *, unit: str = "ms", scale: float = 1.0
    ) -> ServiceDistribution:
        """Resample the measured latencies in one column of a CSV (``unit`` in s/ms/us/ns, then times ``scale``).

        The format is :mod:`simulator.service_csv`'s (the scenario loader reads the same way): a bad row, a
        missing column or an empty file raises :class:`~simulator.service_csv.ServiceCsvError` (a
        ``ConfigurationError``) naming the file, the line, the column and the value.
        """
        if unit not in _UNITS:
            raise ConfigurationError("service.unit", unit, f"expected one of {', '.join(_UNITS)}")
        _check_positive("scale", scale)
        samples = read_service_csv(path, column, factor=_UNITS[unit] * scale)
        return ServiceDistribution.empirical(samples)


def _column(value: Any) -> str | int:
    """A column index stays an index (``0``, not the header name ``"0"``); anything else is a name."""
    return value if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ConfigurationError(f"service.{name}", value, "must be a non-negative number")
    if value == 0 and not allow_zero:
        raise ConfigurationError(f"service.{name}", value, "must be > 0")


def distribution_from_params(
    kind: str, params: Mapping[str, Any], *, base_dir: str | Path | None = None
) -> ServiceDistribution:
    """Build a distribution from a scenario's ``ServiceSpec`` fields (times already in seconds).

    ``constant {value}``, ``exponential {mean}``, ``lognormal {median, sigma}``,
    ``empirical {csv, column="value", unit="ms", scale=1}``; a relative ``csv`` is looked up under ``base_dir``.
    """
    try:
        if kind == "constant":
            return ServiceDistribution.constant(float(params["value"]))
        if kind == "exponential":
            return ServiceDistribution.exponential(float(params["mean"]))
        if kind == "lognormal":
            return ServiceDistribution.lognormal(float(params["median"]), float(params.get("sigma", 0.5)))
        if kind == "empirical":
            path = Path(str(params.get("csv", NAB_LATENCY_CSV)))
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            return ServiceDistribution.from_csv(
                path,
                _column(params.get("column", "value")),
                unit=str(params.get("unit", "ms")),
                scale=float(params.get("scale", 1.0)),
            )
    except KeyError as exc:
        raise ConfigurationError(f"service.{exc.args[0]}", None, f"required for distribution {kind!r}") from exc
    raise ConfigurationError("service.distribution", kind, "expected constant, exponential, lognormal or empirical")


class ServiceModel:
    """FCFS queue with ``workers`` servers and at most ``queue_limit`` requests waiting.

    Feed arrivals in non-decreasing time order. Each accepted request gets a fixed completion time at arrival:
    the caller schedules its reply for then (``loop.call_at``) and need not tell the model when it happens.
    """

    def __init__(
        self,
        distribution: ServiceDistribution,
        *,
        workers: int,
        queue_limit: int,
        rng: np.random.Generator,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError("service.workers", workers, "must be an integer >= 1")
        if isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 0:
            raise ConfigurationError("queue_limit", queue_limit, "must be an integer >= 0")
        self.distribution = distribution
        self.queue_limit = queue_limit
        self.nominal_workers = workers
        #: Multiplies service times of requests arriving while set (fault ``latency_factor``).
        self.latency_factor = 1.0
        self._rng = rng
        self._free: list[float] = [-math.inf] * workers  # heap: when each worker is next free
        self._waiting: deque[float] = deque()  # start times of accepted requests not yet started
        #: Completion times of accepted requests, for in_system() only: appended per request and pruned now and
        #: then (a heap kept in order per request cost two heap operations per request for a rarely asked count).
        self._completions: list[float] = []
        self._prune_at = _PRUNE_MIN
        self._draws: list[float] = []  # the current batch of draws, as Python floats
        self._next_draw = 0
        self._last_arrival = -math.inf
        self.accepted = 0
        self.rejected = 0

    @property
    def workers(self) -> int:
        return len(self._free)

    def _sample(self) -> float:
        if self._next_draw >= len(self._draws):
            self._draws = np.asarray(self.distribution.draw(self._rng, _BATCH), dtype=float).tolist()
            self._next_draw = 0
        value = float(self._draws[self._next_draw])
        self._next_draw += 1
        return value

    def queue_length(self, now: float) -> int:
        """Requests accepted but not started by ``now``."""
        waiting = self._waiting
        while waiting and waiting[0] <= now:
            waiting.popleft()
        return len(waiting)

    def in_system(self, now: float) -> int:
        """Requests accepted and not completed by ``now`` (at or after the latest arrival)."""
        self._completions = [done for done in self._completions if done > now]
        return len(self._completions)

    def submit(self, now: float) -> float | None:
        """A request arrives at ``now``: its completion time, or ``None`` if the queue is full (rejected).

        Arrivals must not go back in time (a request arriving earlier than the previous one is treated as
        arriving with it).
        """
        # One call per request on the hot path: in_system(), queue_length() and _sample() written inline.
        if now < self._last_arrival:
            now = self._last_arrival
        self._last_arrival = now
        completions = self._completions
        if len(completions) > self._prune_at:  # forget the completions that are past (in_system(), inline)
            completions = self._completions = [done for done in completions if done > now]
            self._prune_at = max(_PRUNE_MIN, 2 * len(completions))  # amortised O(1) per request, however long
        free = self._free
        start = free[0]
        if start > now:
            waiting = self._waiting
            while waiting and waiting[0] <= now:
                waiting.popleft()
            if len(waiting) >= self.queue_limit:
                self.rejected += 1
                return None
            waiting.append(start)
        else:
            start = now
        i = self._next_draw
        try:  # no len() per request: the batch runs out once in _BATCH draws
            service = self._draws[i]
        except IndexError:
            self._draws = np.asarray(self.distribution.draw(self._rng, _BATCH), dtype=float).tolist()
            i = 0
            service = self._draws[0]
        done = start + service * self.latency_factor
        self._next_draw = i + 1
        heapq.heapreplace(free, done)
        completions.append(done)
        self.accepted += 1
        return done

    def set_workers(self, workers: int, now: float) -> None:
        """Change the number of workers from ``now`` (capacity drop and its end).

        Fewer: the workers that free up last retire once their current request is done (requests already
        accepted keep their completion times). More: new workers are free at ``now``.
        """
        if workers < 1:
            raise ConfigurationError("service.workers", workers, "must be >= 1")
        free = sorted(self._free)
        if workers < len(free):
            free = free[:workers]
        else:
            free.extend([now] * (workers - len(free)))
        heapq.heapify(free)
        self._free = free


def mmc_mean_wait(arrival_rate: float, mean_service_s: float, workers: int) -> float:
    """Mean time in system of an M/M/c queue (Erlang C), for comparison; ``inf`` when unstable."""
    a = arrival_rate * mean_service_s
    rho = a / workers
    if rho >= 1:
        return math.inf
    total = sum(a**k / math.factorial(k) for k in range(workers))
    last = a**workers / math.factorial(workers) / (1 - rho)
    p_wait = last / (total + last)
    return p_wait * mean_service_s / (workers * (1 - rho)) + mean_service_s

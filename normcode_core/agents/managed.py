"""The wrapper every agent is used through: retries, a shared concurrency limit, accounting.

Providers make one attempt and report failures as `LLMError(status, retryable, retry_after)`;
their SDKs' own retries are off, so the retries here are the only ones, and each is counted.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import asdict, dataclass

import structlog

from normcode_core.agents.limits import ConcurrencyLimit
from normcode_core.agents.types import Agent, AgentConfig, LLMError, LLMRequest, LLMResponse

log = structlog.get_logger("normcode.agents")


class LLMCallFailed(LLMError):
    """The call failed for good (after `attempts` tries over `latency_ms`)."""

    def __init__(self, cause: LLMError, *, agent: str, attempts: int, latency_ms: float) -> None:
        detail = f"after {attempts} attempts" if attempts > 1 else "on the first attempt"
        super().__init__(
            f"agent {agent!r} failed {detail}: {cause}",
            status=cause.status,
            retryable=cause.retryable,
            retry_after=cause.retry_after,
        )
        self.agent = agent
        self.attempts = attempts
        self.latency_ms = latency_ms


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After is a floor, up to `max_retry_after_s`."""

    max_retries: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    @classmethod
    def for_agent(cls, config: AgentConfig) -> RetryPolicy:
        extra = config.extra or {}
        return cls(
            max_retries=max(0, int(config.max_retries)),
            base_delay_s=float(extra.get("retry_base_delay_s", cls.base_delay_s)),
            max_delay_s=float(extra.get("retry_max_delay_s", cls.max_delay_s)),
            max_retry_after_s=float(extra.get("retry_after_max_s", cls.max_retry_after_s)),
        )

    def delay(self, retry_number: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `retry_number` (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry_number - 1))
        backoff = ceiling * random.uniform(0.5, 1.0)  # jitter keeps parallel runs from retrying in step
        if retry_after is not None:
            return max(retry_after, backoff)
        return backoff


@dataclass
class AgentStats:
    """Counters since the server started (per-run usage is summed from the run's event log)."""

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms_total: float = 0.0
    in_flight: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class ManagedAgent:
    """An Agent with retries, a concurrency limit shared by all runs, and usage accounting."""

    def __init__(self, inner: Agent, limit: ConcurrencyLimit | None = None) -> None:
        self.inner = inner
        self.config: AgentConfig = inner.config
        self.policy = RetryPolicy.for_agent(self.config)
        self.limit = limit or ConcurrencyLimit(max(1, int(self.config.max_concurrency)))
        self.stats = AgentStats()
        self._stats_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        return await self.complete(request)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        self._count(calls=1, in_flight=1)
        attempt = 0
        try:
            while True:
                attempt += 1
                self._count(attempts=1)
                try:
                    response = await self._attempt(request)
                except LLMError as error:
                    retry = error.retryable and attempt <= self.policy.max_retries
                    wait = self.policy.delay(attempt, error.retry_after) if retry else 0.0
                    if retry and error.retry_after is not None and error.retry_after > self.policy.max_retry_after_s:
                        retry = False
                        error = LLMError(
                            f"{error} (server asked to retry after {error.retry_after:g}s, "
                            f"longer than the {self.policy.max_retry_after_s:g}s this agent waits)",
                            status=error.status,
                            retryable=False,
                            retry_after=error.retry_after,
                        )
                    if not retry:
                        latency = _ms_since(started)
                        self._count(failed=1, latency_ms_total=latency)
                        log.warning("llm_call_failed", agent=self.name, status=error.status,
                                    attempts=attempt, error=str(error))
                        raise LLMCallFailed(error, agent=self.name, attempts=attempt, latency_ms=latency) from error
                    self._count(retries=1)
                    log.info("llm_call_retry", agent=self.name, status=error.status, attempt=attempt,
                             wait_s=round(wait, 3), error=str(error))
                    await asyncio.sleep(wait)
                    continue
                latency = _ms_since(started)
                self._count(succeeded=1, latency_ms_total=latency, input_tokens=response.input_tokens,
                            output_tokens=response.output_tokens)
                return LLMResponse(
                    text=response.text,
                    model=response.model,
                    input_tokens=response.input_tokens,
                    output_tokens=response.output_tokens,
                    latency_ms=latency,
                    attempts=attempt,
                )
        finally:
            self._count(in_flight=-1)

    async def _attempt(self, request: LLMRequest) -> LLMResponse:
        """One try, holding a concurrency slot (not while backing off) and bounded by the timeout."""
        async with self.limit.slot():
            try:
                async with asyncio.timeout(self.config.timeout):
                    return await self.inner.complete(request)
            except TimeoutError:
                raise LLMError(f"{self.config.provider}: request timed out after {self.config.timeout:g}s",
                               retryable=True) from None
            except LLMError:
                raise
            except Exception as exc:  # a provider bug must still reach the engine as an LLM failure
                raise LLMError(f"{self.config.provider}: {type(exc).__name__}: {exc}") from exc

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for field_name, delta in deltas.items():
                setattr(self.stats, field_name, getattr(self.stats, field_name) + delta)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)

"""Optimiser LLMs for the methods that ask one (APE, APO, TextGrad, PE2, OPRO, GEPA).

A :class:`ChatEngine` answers single-turn user messages and counts what it costs in a
:class:`~greater.cost.CostMeter`. Two engines:

* :class:`LocalEngine` wraps :meth:`greater.lm.LM.chat` (by default the task model itself, as in
  the paper's small-model setting); its meter *is* the model's meter.
* :class:`OpenAIEngine` talks to any OpenAI-compatible ``/v1/chat/completions`` endpoint with
  the official ``openai`` client, retrying timeouts, connection errors, 429 and 5xx with
  exponential back-off, and failing with :class:`EngineError` after the last retry.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Protocol, Sequence, runtime_checkable

from greater.cost import CostMeter

logger = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The optimiser LLM could not produce a reply (after retries, or a malformed reply)."""


@runtime_checkable
class ChatEngine(Protocol):
    """What the baselines need from an optimiser LLM."""

    name: str
    meter: CostMeter

    def complete(self, messages: Sequence[str], *, max_new_tokens: int, temperature: float,
                 seed: int | None) -> list[str]:
        """One reply per single-turn user message, in order."""
        ...


class LocalEngine:
    """An :class:`~greater.lm.LM` as optimiser (its ``chat``; LLM calls counted by the LM)."""

    def __init__(self, lm, *, batch_size: int = 8) -> None:
        self.lm = lm
        self.name = lm.name
        self.meter = lm.meter
        self.batch_size = batch_size

    def complete(self, messages: Sequence[str], *, max_new_tokens: int, temperature: float,
                 seed: int | None) -> list[str]:
        if not messages:
            return []
        return self.lm.chat(list(messages), max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed, batch_size=self.batch_size)


class OpenAIEngine:
    """An OpenAI-compatible chat endpoint as optimiser.

    Args:
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://127.0.0.1:8000/v1"``.
        model: the model name sent with every request.
        api_key_env: environment variable holding the key (any value for keyless servers).
        timeout: seconds per request before it counts as a timeout.
        max_retries: retries after the first attempt on timeouts, connection errors, 429, 5xx.
        backoff: seconds before the first retry; doubled after each further retry.

    Cost: every request is one ``llm_calls``; ``usage.completion_tokens`` are added to
    ``generated_tokens`` and ``usage.prompt_tokens`` to ``forward_tokens`` (one forward pass
    per request: the endpoint's prefill). The totals are also kept in ``prompt_tokens`` and
    ``completion_tokens``.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60, max_retries: int = 3, backoff: float = 1.0) -> None:
        import openai

        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise EngineError(f"environment variable {api_key_env} is not set (the API key for "
                              f"{base_url}; any non-empty value works for a keyless server)")
        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                                    max_retries=0)
        self.base_url = base_url
        self.model = model
        self.name = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.meter = CostMeter()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def check(self, timeout: float = 5.0) -> None:
        """Fail fast on an endpoint that cannot work: one ``GET /models``, no retries.

        Raises :class:`EngineError` (a one-line message) when the server cannot be reached,
        rejects the key, or has no ``/models`` (a wrong base URL); a model name the server
        does not list is only logged (some servers answer under any name).
        """
        o = self._openai
        try:
            page = self.client.with_options(timeout=timeout, max_retries=0).models.list()
        except o.APIConnectionError as exc:  # includes timeouts
            raise EngineError(f"cannot reach the optimiser endpoint {self.base_url} ({exc}); "
                              "is the server running and the URL right?") from exc
        except (o.AuthenticationError, o.PermissionDeniedError) as exc:
            raise EngineError(f"the optimiser endpoint {self.base_url} refused the API key "
                              f"(HTTP {exc.status_code})") from exc
        except o.NotFoundError as exc:
            raise EngineError(f"the optimiser endpoint {self.base_url} has no /models (HTTP "
                              "404); the base URL is usually the API root, ending in /v1") \
                from exc
        except o.APIStatusError as exc:
            raise EngineError(f"the optimiser endpoint {self.base_url} answered HTTP "
                              f"{exc.status_code} to GET /models") from exc
        served = [m.id for m in getattr(page, "data", None) or []]
        if served and self.model not in served:
            logger.warning("%s does not list model %r (it lists %s)", self.base_url, self.model,
                           ", ".join(served[:10]))

    def complete(self, messages: Sequence[str], *, max_new_tokens: int, temperature: float,
                 seed: int | None) -> list[str]:
        return [self._one(m, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
                for m in messages]

    def _retryable(self, exc: Exception) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError, o.RateLimitError,
                            o.InternalServerError)):
            return True
        return isinstance(exc, o.APIStatusError) and exc.status_code >= 500

    def _one(self, message: str, *, max_new_tokens: int, temperature: float,
             seed: int | None) -> str:
        kwargs: dict[str, Any] = dict(model=self.model,
                                      messages=[{"role": "user", "content": message}],
                                      max_tokens=max_new_tokens, temperature=temperature)
        if seed is not None:
            kwargs["seed"] = seed
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                logger.warning("%s: retry %d/%d in %.2fs after %s", self.base_url, attempt,
                               self.max_retries, delay, last)
                time.sleep(delay)
            try:
                raw = self.client.chat.completions.with_raw_response.create(**kwargs)
            except Exception as exc:  # noqa: BLE001 - classified just below
                if isinstance(exc, self._openai.OpenAIError) and self._retryable(exc):
                    last = exc
                    continue
                if isinstance(exc, self._openai.OpenAIError):
                    raise EngineError(f"{self.base_url}: request failed: {exc}") from exc
                raise
            self.meter.add_llm_calls(1)
            return self._parse(raw.text)
        raise EngineError(f"{self.base_url}: no reply after {self.max_retries + 1} attempts "
                          f"(timeout {self.timeout}s): {last}") from last

    def _parse(self, body: str) -> str:
        """The reply text of a raw response body; :class:`EngineError` if it is malformed."""
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise EngineError(f"{self.base_url}: malformed reply (not JSON): {body[:200]!r}") \
                from exc
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise EngineError(f"{self.base_url}: malformed reply (no choices[0].message."
                              f"content): {body[:200]!r}") from exc
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.meter.add_generated(completion)
            self.meter.add_forward(prompt, passes=1)
        return content if isinstance(content, str) else ""

"""The weighted_alpaca_eval_gpt4_turbo judge through any OpenAI-compatible chat endpoint.

OpenAI itself, or a local server (``vllm serve MODEL`` exposes ``/v1/chat/completions``) — chosen by
model name, base URL and the *name* of an environment variable holding the API key. The key is read
from the environment when the client is built, sent only in the Authorization header, and never
written anywhere (not in the cache identity, annotations, logs or error messages).

Each comparison is one request: the protocol's prompt (``dicekit.evals.judges``), ``max_tokens=1``,
``temperature=1``, ``logprobs=true``, ``top_logprobs=5`` (upstream's settings). Requests run on a
thread pool (``concurrency``) through one ``openai.OpenAI`` client (the ``eval`` extra): its HTTP
connection pool, timeouts and typed errors. The retry policy is dicekit's, over those typed errors,
because the judge config sets it (``max_retries``, ``backoff_s``, ``max_backoff_s``) and a 200 with
an unparseable body must be retried too, which the client does not do: the client is built with
``max_retries=0``. 408/409/425/429, 5xx, timeouts, dropped connections and unparseable bodies are
retried with exponential backoff and jitter, waiting at least what the server's ``Retry-After`` (or
``retry-after-ms``) asks, capped at ``max_backoff_s``; 401/403/404 stop the run with a one-line
error; other 4xx fail that item only, without a retry. A 200 answer without logprobs stops the run:
the weighted judge cannot work on such an endpoint. Cost = prompt and completion tokens (from
``usage``) × the model's price per million tokens (known OpenAI models, or given).

Without a key in ``api_key_env`` the client sends the placeholder key ``EMPTY`` (a local server
started without ``--api-key`` ignores it); it never falls back to another variable such as
``OPENAI_API_KEY``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dicekit.errors import UserError
from dicekit.evals.judges import (PROTOCOL, TOP_LOGPROBS, Comparison, Judgement, comparison_messages,
                                  judge_template, preference_from_top_logprobs, template_sha256,
                                  top_logprobs_of, unswitch)

# USD per million (prompt, completion) tokens, from OpenAI's price list.
KNOWN_PRICES = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-turbo-2024-04-09": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-08-06": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
}
OFFICIAL_JUDGE_MODEL = "gpt-4-1106-preview"
OPENAI_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429} | set(range(500, 600))
FATAL_STATUS = {401: "rejected the API key", 403: "refused access", 404: "has no such model or route"}
NO_KEY = "EMPTY"  # sent when api_key_env is unset (the openai client insists on a key)


@dataclass(frozen=True)
class Endpoint:
    model: str
    base_url: str = OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    concurrency: int = 8
    price_per_mtok: tuple[float, float] | None = None  # (prompt, completion) USD; None: known table

    def public_url(self) -> str:
        """The base URL without any user:password part (safe to store and print)."""
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def prices(self) -> tuple[float, float] | None:
        return self.price_per_mtok or KNOWN_PRICES.get(self.model)


class CallFailed(Exception):
    """One request failed for good (after retries, or a non-retryable 4xx)."""


@dataclass
class CallStats:
    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def retry_after_s(headers) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms`` / 1000, else ``Retry-After`` in seconds
    (an HTTP date is not honoured); None when absent or unreadable. ``{"Retry-After": "7"}`` → 7.0,
    ``{"retry-after-ms": "250", "Retry-After": "7"}`` → 0.25."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            wait = float(value) / scale
        except ValueError:
            continue
        if wait >= 0 and wait != float("inf"):
            return wait
    return None


class ChatClient:
    """POST /chat/completions through the openai client, with dicekit's retries; returns the parsed
    JSON body exactly as the server sent it."""

    def __init__(self, endpoint: Endpoint, sleep: Callable[[float], None] = time.sleep):
        try:
            import openai
        except ImportError:
            raise UserError("the OpenAI-compatible judge needs the openai package: pip install 'dicekit[eval]'") from None
        self.endpoint = endpoint
        self._openai = openai
        self._client = openai.OpenAI(api_key=os.environ.get(endpoint.api_key_env) or NO_KEY,
                                     base_url=endpoint.base_url.rstrip("/"), timeout=endpoint.timeout_s, max_retries=0)
        self._sleep = sleep
        self.stats = CallStats()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = self.endpoint.backoff_s * (2 ** attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.endpoint.max_backoff_s)

    def chat(self, body: dict) -> dict:
        openai = self._openai
        url = self.endpoint.public_url()
        last = "no attempt"
        for attempt in range(self.endpoint.max_retries + 1):
            retry_after = None
            try:
                # every other field as given (extra_body): the JSON sent is ``body`` whatever its keys
                rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
                raw = self._client.chat.completions.with_raw_response.create(model=body["model"], messages=body["messages"],
                                                                             extra_body=rest)
                data = json.loads(raw.http_response.content)
                if not isinstance(data, dict) or not data.get("choices"):
                    raise ValueError("no 'choices' in the response")
                with self.stats.lock:
                    self.stats.calls += 1
                    usage = data.get("usage") or {}
                    self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
                return data
            except openai.APIStatusError as e:
                if e.status_code in FATAL_STATUS:
                    raise UserError(f"judge endpoint {url} {FATAL_STATUS[e.status_code]} (HTTP {e.status_code}) for "
                                    f"model {self.endpoint.model!r}; check the model name, base URL and "
                                    f"${self.endpoint.api_key_env}") from None
                if e.status_code not in RETRY_STATUS:
                    raise CallFailed(f"HTTP {e.status_code} from {url}") from None
                retry_after = retry_after_s(e.response.headers)
                last = f"HTTP {e.status_code}"
            except openai.APIConnectionError as e:  # refused, dropped, timed out (APITimeoutError)
                last = f"{type(e).__name__}: {e}"
            except ValueError as e:  # unparseable or malformed body
                last = f"bad response body ({str(e)[:80]})"
            if attempt < self.endpoint.max_retries:
                with self.stats.lock:
                    self.stats.retries += 1
                self._sleep(self._backoff(attempt, retry_after))
        raise CallFailed(f"{last} from {url} after {self.endpoint.max_retries + 1} attempts")


class OpenAIJudge:
    """PairwiseJudge running the weighted_alpaca_eval_gpt4_turbo protocol on a chat endpoint."""

    def __init__(self, endpoint: Endpoint, template: str | None = None, client: ChatClient | None = None):
        self.endpoint = endpoint
        self.template = template if template is not None else judge_template()
        self.client = client or ChatClient(endpoint)
        official = endpoint.model == OFFICIAL_JUDGE_MODEL and endpoint.public_url() == OPENAI_BASE_URL
        self.name = PROTOCOL if official else f"{PROTOCOL}@{endpoint.model}"

    def identity(self) -> dict:
        """What determines an annotation (the cache key): never the API key."""
        return {"protocol": PROTOCOL, "model": self.endpoint.model, "endpoint": self.endpoint.public_url(),
                "template_sha256": template_sha256(self.template), "top_logprobs": TOP_LOGPROBS,
                "max_tokens": 1, "temperature": 1}

    def _price(self, usage: dict) -> float:
        prices = self.endpoint.prices()
        if not prices:
            return 0.0
        return (int(usage.get("prompt_tokens") or 0) * prices[0]
                + int(usage.get("completion_tokens") or 0) * prices[1]) / 1e6

    def judge_one(self, item: Comparison) -> Judgement:
        messages, switched = comparison_messages(self.template, item)
        body = {"model": self.endpoint.model, "messages": messages, "max_tokens": 1, "temperature": 1,
                "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        start = time.perf_counter()
        try:
            data = self.client.chat(body)
        except CallFailed as e:
            return Judgement(preference=None, time=time.perf_counter() - start, error=str(e))
        elapsed = time.perf_counter() - start
        choice = dict(data["choices"][0])
        usage = data.get("usage") or {}
        choice["total_tokens"] = usage.get("total_tokens")
        top = top_logprobs_of(choice)
        if top is None:
            raise UserError(f"judge endpoint {self.endpoint.public_url()} returned no logprobs for model "
                            f"{self.endpoint.model!r}: the weighted judge needs logprobs=true and top_logprobs=5 "
                            "(OpenAI chat models and vLLM's OpenAI server support them)")
        pref = unswitch(preference_from_top_logprobs(top), switched)
        error = None if pref is not None else "neither 'm' nor 'M' among the top logprobs"
        return Judgement(preference=pref, raw_completion=choice, price=self._price(usage), time=elapsed, error=error)

    def judge_detailed(self, items: Sequence[Comparison],
                       on_result: Callable[[int, Judgement], None] | None = None) -> list[Judgement]:
        out: list[Judgement | None] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=max(1, self.endpoint.concurrency)) as pool:
            futures = {pool.submit(self.judge_one, item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    if on_result is not None:
                        on_result(i, out[i])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return out  # type: ignore[return-value]

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        return [j.preference for j in self.judge_detailed(items)]

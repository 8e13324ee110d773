"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

import json
import math
import re
import threading
import time
from pathlib import Path

import pytest

from dicekit.evals import judges
from tests.evals.conftest import LocalEndpoint, run_cli

API_KEY = "sk-test-5ecret-d1cek1t-0000"
OUTPUT_RE = re.compile(r'"output": """(.*?)"""', re.S)
INSTRUCTION_RE = re.compile(r'"instruction": """(.*?)"""', re.S)


class FakeJudgeServer(LocalEndpoint):
    """Answers /v1/chat/completions like OpenAI with logprobs. The judge it plays prefers the longer
    output shown: P(m) = 0.8 if the first shown output is at least as long, else 0.3.
    ``faults`` is consumed one per request: 429, 500, "timeout", "garbage", "no_logprobs", 401, or
    (status, headers) for a status with chosen headers (e.g. ``(429, {"Retry-After": "7"})``)."""

    def __init__(self, faults=()):
        self.faults = list(faults)
        self.lock = threading.Lock()
        self.answered: list[str] = []  # instructions of successful answers, in order
        self.requests = 0
        self.auth_headers: set[str] = set()
        super().__init__()

    def respond(self, body, headers):
        with self.lock:
            self.requests += 1
            self.auth_headers.add(headers.get("Authorization", ""))
            self.last_body = body
            fault = self.faults.pop(0) if self.faults else None
        if fault == "timeout":
            time.sleep(1.5)
            return None
        if isinstance(fault, int):
            return fault, b'{"error": {"message": "try later"}}', {"Retry-After": "0"}
        if isinstance(fault, tuple):
            return fault[0], b'{"error": {"message": "not this one"}}', fault[1]
        if fault == "garbage":
            return 200, b"<html>\x00 not json", {}
        return 200, json.dumps(self.answer(body, with_logprobs=fault != "no_logprobs")).encode(), {}

    def answer(self, body, with_logprobs=True):
        prompt = body["messages"][-1]["content"]
        first, second = OUTPUT_RE.findall(prompt)
        p_m = 0.8 if len(first) >= len(second) else 0.3
        with self.lock:
            self.answered.append(INSTRUCTION_RE.search(prompt).group(1))
        top = [{"token": "m", "logprob": math.log(p_m)}, {"token": "M", "logprob": math.log(1 - p_m)},
               {"token": "The", "logprob": -9.0}]
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "m"}}
        if with_logprobs:
            choice["logprobs"] = {"content": [{"token": "m", "logprob": math.log(p_m), "top_logprobs": top}]}
        return {"choices": [choice], "usage": {"prompt_tokens": 1000, "completion_tokens": 1, "total_tokens": 1001}}



def expected_preference(instruction, baseline, model):
    if baseline == model:
        return 1.5
    switched = judges.is_switched(instruction)
    first, second = (model, baseline) if switched else (baseline, model)
    p_m = 0.8 if len(first) >= len(second) else 0.3
    return judges.unswitch(2 - p_m, switched)


@pytest.fixture
def task(tmp_path, monkeypatch):
    monkeypatch.setenv("DICEKIT_TEST_JUDGE_KEY", API_KEY)
    instructions = [f"Write item {i} about {'cats' if i % 2 else 'dogs'}." for i in range(8)]
    reference = [{"instruction": s, "output": "base " * (i + 1), "generator": "gpt4_1106_preview",
                  "dataset": "test"} for i, s in enumerate(instructions)]
    outputs = [{"instruction": s, "output": "model answer " * (4 - i % 5), "generator": "tiny"}
               for i, s in enumerate(instructions)]
    outputs[3]["output"] = reference[3]["output"]  # identical: a draw without a call
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    (tmp_path / "out.json").write_text(json.dumps(outputs))
    return tmp_path, reference, outputs


def judge_config(path: Path, server, **extra):
    settings = {"model": "gpt-4-1106-preview", "base_url": server.url, "api_key_env": "DICEKIT_TEST_JUDGE_KEY",
                "timeout_s": 0.5, "backoff_s": 0.01, "max_backoff_s": 0.05, "max_retries": 6, "concurrency": 2,
                **extra}
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()))
    return str(path)


def run_alpaca(task_dir, config, capsys, name="run"):
    return run_cli(["eval", "alpaca", "--outputs", str(task_dir / "out.json"), "--reference-outputs",
                    str(task_dir / "ref.json"), "--judge", config, "--cache-dir", str(task_dir / "cache"),
                    "--out", str(task_dir / name), "--json"], capsys)


def all_text_under(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_retries_then_exact_preferences_and_no_key_on_disk(task, capsys):
    task_dir, reference, outputs = task
    server = FakeJudgeServer(faults=[429, 500, "timeout", "garbage", 503])
    try:
        rc, out, err = run_alpaca(task_dir, judge_config(task_dir / "judge.yaml", server), capsys)
    finally:
        server.close()
    assert rc == 0, err
    result = json.loads(out)
    annotations = json.loads((task_dir / "run" / "annotations.json").read_text())
    for ref, mo, row in zip(reference, outputs, annotations):
        assert row["preference"] == pytest.approx(expected_preference(ref["instruction"], ref["output"], mo["output"]),
                                                  abs=1e-12)
    assert {judges.is_switched(r["instruction"]) for r in reference} == {True, False}  # both orders seen
    assert annotations[3]["preference"] == 1.5 and annotations[3]["raw_completion"] is None
    assert sorted(server.answered) == sorted(r["instruction"] for i, r in enumerate(reference) if i != 3)
    assert server.requests == 7 + 5  # one success per judged item + one request per injected fault
    assert result["judge_n_called"] == 7 and result["judge_n_identical"] == 1
    assert result["judge_price_usd"] == pytest.approx(7 * (1000 * 10 + 1 * 30) / 1e6)
    assert server.auth_headers == {f"Bearer {API_KEY}"}
    for text in (all_text_under(task_dir / "run"), all_text_under(task_dir / "cache"), out, err):
        assert API_KEY not in text


def test_cache_prevents_repeated_calls_after_a_crash(task, capsys, monkeypatch):
    from dicekit.evals.cache import AnnotationCache

    task_dir, reference, _ = task
    server = FakeJudgeServer()
    config = judge_config(task_dir / "judge.yaml", server, concurrency=1)
    real_put, stored = AnnotationCache.put, []

    def put_then_crash(self, item, judgement):
        real_put(self, item, judgement)
        stored.append(item.instruction)
        if len(stored) == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(AnnotationCache, "put", put_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_alpaca(task_dir, config, capsys, name="crashed")
    monkeypatch.setattr(AnnotationCache, "put", real_put)
    before = list(server.answered)
    try:
        rc, out, err = run_alpaca(task_dir, config, capsys, name="resumed")
        assert rc == 0, err
        after_resume = server.answered[len(before):]
        rc, out, err = run_alpaca(task_dir, config, capsys, name="again")
        assert rc == 0, err
    finally:
        server.close()
    assert not set(stored) & set(after_resume)  # nothing cached was asked again
    assert len(after_resume) == 7 - 3  # every other judged item exactly once
    assert len(server.answered) == len(before) + len(after_resume)  # the third run made no call
    assert json.loads(out)["judge_n_cached"] == 7
    first = json.loads((task_dir / "resumed" / "annotations.json").read_text())
    again = json.loads((task_dir / "again" / "annotations.json").read_text())
    assert [r["preference"] for r in first] == [r["preference"] for r in again]


def test_failed_calls_exit_nonzero_and_are_retried_next_run(task, capsys):
    task_dir, _, _ = task
    server = FakeJudgeServer(faults=[500] * 3)
    try:
        config = judge_config(task_dir / "judge.yaml", server, max_retries=2, concurrency=1)
        rc, _, err = run_alpaca(task_dir, config, capsys)
        assert rc == 1 and "rerun the same command" in err
        rc, out, err = run_alpaca(task_dir, config, capsys)
    finally:
        server.close()
    assert rc == 0, err
    assert json.loads(out)["judge_n_called"] == 1 and json.loads(out)["judge_n_cached"] == 6


def test_endpoint_without_logprobs_is_a_clear_error(task, capsys):
    task_dir, _, _ = task
    server = FakeJudgeServer(faults=["no_logprobs"] * 20)
    try:
        rc, _, err = run_alpaca(task_dir, judge_config(task_dir / "judge.yaml", server, concurrency=1), capsys)
    finally:
        server.close()
    assert rc == 2 and "returned no logprobs" in err and len(err.strip().splitlines()) == 1


def test_rejected_key_stops_without_echoing_it(task, capsys):
    task_dir, _, _ = task
    server = FakeJudgeServer(faults=[401] * 20)
    try:
        rc, out, err = run_alpaca(task_dir, judge_config(task_dir / "judge.yaml", server, concurrency=1), capsys)
    finally:
        server.close()
    assert rc == 2 and "HTTP 401" in err and API_KEY not in err + out


def test_retry_after_is_honoured_and_capped(monkeypatch):
    """The wait before a retry is at least what the server asks (Retry-After in seconds, or OpenAI's
    retry-after-ms), never more than max_backoff_s; the backoff alone would be ≤ 0.01·2^attempt s."""
    from dicekit.evals.openai_judge import ChatClient, Endpoint

    monkeypatch.setenv("DICEKIT_TEST_JUDGE_KEY", API_KEY)
    server = FakeJudgeServer(faults=[(429, {"Retry-After": "7"}), (503, {"Retry-After": "120"}),
                                     (429, {"retry-after-ms": "250", "Retry-After": "9"})])
    slept = []
    try:
        client = ChatClient(Endpoint(model="judge", base_url=server.url, api_key_env="DICEKIT_TEST_JUDGE_KEY",
                                     timeout_s=5, backoff_s=0.01, max_backoff_s=60.0, max_retries=3), sleep=slept.append)
        data = client.chat({"model": "judge", "max_tokens": 1, "top_logprobs": 5, "messages": [
            {"role": "user", "content": '"instruction": """q"""\n"output": """aa"""\n"output": """b"""'}]})
    finally:
        server.close()
    assert data["choices"][0]["message"]["content"] == "m"
    assert slept == [7.0, 60.0, 0.25]
    assert server.last_body["max_tokens"] == 1 and server.last_body["top_logprobs"] == 5  # the body as given
    assert (client.stats.calls, client.stats.retries, server.requests) == (1, 3, 4)


def test_non_retryable_error_fails_that_item_once_and_the_run_asks_for_a_rerun(task, capsys):
    """A 400 (the request itself is wrong) is not retried: that item fails after one request, the
    other six are judged, and the command exits 1 saying to rerun it."""
    task_dir, _, _ = task
    server = FakeJudgeServer(faults=[(400, {})])
    try:
        config = judge_config(task_dir / "judge.yaml", server, concurrency=1)
        rc, _, err = run_alpaca(task_dir, config, capsys)
    finally:
        server.close()
    assert rc == 1 and "HTTP 400" in err and "rerun the same command" in err
    assert server.requests == 7 and len(server.answered) == 6

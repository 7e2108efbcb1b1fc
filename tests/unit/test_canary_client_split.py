"""The local canary's own traffic: the split it makes (which model each request names), the timed streamed
request, and the per-adapter numbers computed from what it measured."""

import json
import threading
import time

import httpx
import pytest

from steps.canary.client_stats import ClientTally, RequestSample, adapter_stats, quantile
from steps.canary.load import generate_load
from steps.canary.routing import ClientSplit, interleave
from steps.canary.serving import ReplicaClient
from steps.canary.settings import CanarySettings, LoadSettings
from steps.common.residency import ResidencyPolicy


def test_the_split_interleaves_each_name_by_its_weight() -> None:
    assert interleave({"a-v1": 1, "a-v2": 1}) == ["a-v1", "a-v2"]
    nine_to_one = interleave({"a-v1": 9, "a-v2": 1})
    assert nine_to_one.count("a-v2") == 1 and len(nine_to_one) == 10
    three_to_one = interleave({"a-v1": 3, "a-v2": 1})
    assert sorted(three_to_one) == ["a-v1", "a-v1", "a-v1", "a-v2"]
    split = ClientSplit()
    with pytest.raises(ValueError):
        split.model_for(0)
    champion, challenger = CanarySettings(traffic_fraction=0.2).fraction_weights()
    split.set_weights({"a-v1": champion, "a-v2": challenger})
    names = [split.model_for(i) for i in range(100)]
    assert names.count("a-v2") == 20  # exactly the fraction over whole cycles ...
    assert all(names[i:i + 5].count("a-v2") == 1 for i in range(0, 100, 5))  # ... and spread evenly
    assert split.describe() == {"kind": "client_split", "weights": {"a-v1": 4, "a-v2": 1}}
    split.set_weights({"a-v1": 1, "a-v2": 0})  # absolute: the challenger gets nothing any more
    assert {split.model_for(i) for i in range(10)} == {"a-v1"}
    with pytest.raises(ValueError, match="nowhere"):
        split.set_weights({"a-v1": 0})


class TimedFake:
    """A replica whose answers take `seconds[model]` and whose challenger fails every `fail_every`th request."""

    def __init__(self, seconds: dict[str, float], fail: str = "") -> None:
        self.seconds, self.fail, self.calls = seconds, fail, []
        self.lock = threading.Lock()

    def timed_chat(self, model: str, content: str, max_tokens: int) -> RequestSample:
        with self.lock:
            self.calls.append(model)
        time.sleep(self.seconds[model])
        if model == self.fail:
            return RequestSample(status=500, e2e_s=self.seconds[model])
        return RequestSample(status=200, served=model, ttft_s=self.seconds[model] / 2, e2e_s=self.seconds[model])


def test_the_canary_s_own_load_makes_the_split_and_is_measured_per_adapter() -> None:
    split = ClientSplit()
    split.set_weights({"a-v1": 1, "a-v2": 1})
    replicas = [TimedFake({"a-v1": 0.01, "a-v2": 0.05}, fail=""), TimedFake({"a-v1": 0.01, "a-v2": 0.05})]
    settings = LoadSettings(requests_per_interval=12, concurrency=3, max_tokens=2)
    summary = generate_load(replicas, split.model_for, 0.6, settings)  # type: ignore[arg-type]
    assert summary.sent == 12
    assert sorted(replicas[0].calls + replicas[1].calls).count("a-v2") == 6  # half, as the split says
    assert len(replicas[0].calls) == len(replicas[1].calls) == 6  # the replicas in turn
    fast, slow = adapter_stats(summary.by_model["a-v1"], 0.95), adapter_stats(summary.by_model["a-v2"], 0.95)
    assert (fast.requests, fast.errors, slow.requests, slow.errors) == (6, 0, 6, 0)
    assert slow.e2e_p95_s == pytest.approx(0.05) and slow.ttft_p95_s == pytest.approx(0.025)
    assert fast.e2e_p95_s == pytest.approx(0.01)


def test_failed_requests_count_against_the_model_they_named() -> None:
    split = ClientSplit()
    split.set_weights({"a-v1": 1, "a-v2": 1})
    summary = generate_load([TimedFake({"a-v1": 0.0, "a-v2": 0.0}, fail="a-v2")], split.model_for, 0.2,  # type: ignore[list-item]
                            LoadSettings(requests_per_interval=10, concurrency=2))
    bad = adapter_stats(summary.by_model["a-v2"], 0.95)
    assert (bad.requests, bad.errors, bad.error_rate, bad.e2e_p95_s) == (5, 5, 1.0, None)
    assert adapter_stats(None, 0.95).requests == 0  # a model that got no request this interval


def test_quantile_and_tally() -> None:
    assert quantile([], 0.95) is None
    assert quantile([3.0], 0.95) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([float(i) for i in range(1, 21)], 0.95) == pytest.approx(19.05)
    tally = ClientTally()
    for sample in (RequestSample(status=200, served="m", ttft_s=0.1, e2e_s=0.4), RequestSample(status=0, e2e_s=9.0),
                   RequestSample(status=429, e2e_s=0.01)):
        tally.add(sample)
    assert (tally.requests, tally.errors, tally.ttft_s, tally.e2e_s) == (3, 2, [0.1], [0.4])


def _sse(*chunks: dict) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def test_timed_chat_streams_and_reads_vllm_s_chunks() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if body["model"] == "gone":
            return httpx.Response(404, json={"error": {"message": "The model `gone` does not exist.", "code": 404}})
        role = {"model": body["model"], "choices": [{"delta": {"role": "assistant", "content": ""}}]}
        text = {"model": body["model"], "choices": [{"delta": {"content": "Hi"}, "finish_reason": "length"}]}
        return httpx.Response(200, content=_sse(role, text), headers={"content-type": "text/event-stream"})

    client = ReplicaClient("http://127.0.0.1:8000/v1", ResidencyPolicy(), transport=httpx.MockTransport(handler))
    sample = client.timed_chat("a-v2", "Hello", 2)
    assert seen[0]["stream"] is True and seen[0]["max_tokens"] == 2
    assert (sample.status, sample.served) == (200, "a-v2")
    assert sample.ttft_s is not None and 0 <= sample.ttft_s <= sample.e2e_s
    assert client.timed_chat("gone", "Hello", 2).status == 404

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    broken = ReplicaClient("http://127.0.0.1:8000/v1", ResidencyPolicy(), transport=httpx.MockTransport(down))
    assert broken.timed_chat("a-v2", "Hello", 2).status == 0  # reported, never raised

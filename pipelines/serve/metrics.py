"""Prometheus metrics under vLLM's names, one registry per app (no global state).

Difference from vLLM, on purpose: `model_name` is the model that actually served the request (the
adapter's name for a LoRA request, else the base model's served name), so a canary can compare the
challenger with the champion by label. vLLM labels every request with the base model's served name
and reports adapters only in `vllm:lora_requests_info`; a canary against real vLLM must measure
per-adapter latency and errors on the client side.

`vllm:time_to_first_token_seconds` is measured where vLLM measures it, when the engine produced the
request's first token (after its batch's prefill). A streaming client still receives the text when the
batch finishes: the engine generates a batch in one call and streams nothing in between.

Extensions not in vLLM: `eurolora_request_errors_total{model_name,status,code}` (every error answer of
/v1/chat/completions, injected faults included; `model_name=""` when the model was unknown) and
`eurolora_batch_size` (requests per engine call). `http_requests_total{handler,method,status}` has the
shape of the instrumentator vLLM mounts (`status` as `2xx`, `4xx`, `5xx`).
"""

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# vLLM's buckets (vllm/v1/metrics/loggers.py), so dashboards and alert rules carry over.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class ServeMetrics:
    def __init__(self, max_loras: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        m = ("model_name",)
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", m,
                             registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", m,
                             registry=r)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               ("model_name", "finished_reason"), registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", m, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.", m,
                                         registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              m, buckets=TTFT_BUCKETS, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             m, buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("vllm:request_queue_time_seconds",
                                    "Histogram of time spent in WAITING phase for request.", m,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.inference_time = Histogram("vllm:request_inference_time_seconds",
                                        "Histogram of time spent in RUNNING phase for request.", m,
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.request_prompt_tokens = Histogram("vllm:request_prompt_tokens",
                                               "Number of prefill tokens processed.", m, buckets=TOKEN_BUCKETS,
                                               registry=r)
        self.request_generation_tokens = Histogram("vllm:request_generation_tokens",
                                                   "Number of generation tokens processed.", m,
                                                   buckets=TOKEN_BUCKETS, registry=r)
        self.lora_info = Gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                               ("max_lora", "running_lora_adapters", "waiting_lora_adapters"), registry=r)
        self.errors = Counter("eurolora_request_errors", "Error answers of /v1/chat/completions.",
                              ("model_name", "status", "code"), registry=r)
        self.batch_size = Histogram("eurolora_batch_size", "Requests per engine call.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.http = Counter("http_requests", "Total number of requests by method, status and handler.",
                            ("handler", "method", "status"), registry=r)
        self._max_loras = str(max_loras)
        self._lora_labels: tuple[str, str, str] | None = None

    def touch(self, model: str) -> None:
        """Create a model's series at zero, so a scrape sees them before its first request."""
        for metric in (self.running, self.waiting, self.prompt_tokens, self.generation_tokens):
            metric.labels(model)

    def lora_state(self, running: Iterable[str], waiting: Iterable[str]) -> None:
        """vLLM's `vllm:lora_requests_info`: one series whose labels list the adapters, value = timestamp."""
        labels = (self._max_loras, ",".join(sorted(set(running))), ",".join(sorted(set(waiting))))
        if labels != self._lora_labels:
            if self._lora_labels is not None:
                self.lora_info.remove(*self._lora_labels)
            self._lora_labels = labels
        self.lora_info.labels(*labels).set(time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics, one registry per app (no global state): vLLM's names, and the per-target-model
series of the Gateway API Inference Extension's endpoint picker (EPP), whose part this server plays too
(its weighted routes stand for the gateway's InferenceModelRewrite).

vLLM's names, with one difference on purpose: `model_name` is the model that actually served the request
(the adapter's name for a LoRA request, else the base model's served name). vLLM labels every request with
the base model's served name and reports adapters only in `vllm:lora_requests_info`.
`vllm:time_to_first_token_seconds` is observed when the engine produced the request's first token (after
its batch's prefill), which is also when a streaming client gets its first text.

The endpoint picker's names and semantics (what the canary reads on a cluster, manifests/serving/README.md):
- `inference_objective_request_total{model_name,target_model_name}`: every request whose model resolved
  (`model_name` as the client asked: a route, an adapter or the base; `target_model_name` what served),
  counted before it is answered, so its errors are included;
- `inference_objective_request_error_total{model_name,target_model_name,error_code}`: every error answer;
  `error_code="ModelServerError"` once the target is known (the EPP's code for any non-200 answer of the
  model server; a streamed generation that fails counts too), `"BadRequest"` with empty model labels
  before (malformed, unknown model: no label per client string);
- `inference_objective_request_duration_seconds{model_name,target_model_name}`: successful requests, from
  arrival to the last token, with the EPP's buckets.

Also `eurolora_batch_size` (requests per engine call) and `http_requests_total{handler,method,status}` in
the shape of the instrumentator vLLM mounts (`status` as `2xx`, `4xx`, `5xx`).
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
# The endpoint picker's request_duration_seconds buckets (gateway-api-inference-extension pkg/epp/metrics).
EPP_LATENCY_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                       30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600)
MODEL_SERVER_ERROR = "ModelServerError"
BAD_REQUEST = "BadRequest"


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
        targets = ("model_name", "target_model_name")
        self.objective_requests = Counter("inference_objective_request",
                                          "Counter of inference objective requests broken out for each model "
                                          "and target model.", targets, registry=r)
        self.objective_errors = Counter("inference_objective_request_error",
                                        "Counter of inference objective requests errors broken out for each "
                                        "model and target model.", (*targets, "error_code"), registry=r)
        self.objective_latency = Histogram("inference_objective_request_duration_seconds",
                                           "Inference objective response latency distribution in seconds for "
                                           "each model and target model.", targets, buckets=EPP_LATENCY_BUCKETS,
                                           registry=r)
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

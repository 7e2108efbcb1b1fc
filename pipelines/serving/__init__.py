"""Serving with vLLM's own OpenAI-compatible server, locally and on a cluster.

- `flags`: the one source of the server's flags and environment, used by the local launcher and by the
  Deployment in manifests/serving/20-vllm-deployment.yaml (a compile test keeps them equal);
- `server`: starts the real server on 127.0.0.1 and waits until it answers;
- `command`: `eurolora serve`, a thin launcher with the registry's champion and challenger loaded;
- `adapter_sync`: the vLLM pod's init container, sidecar and readiness probe.

Light to import (the readiness probe runs every 10 s); vLLM itself runs only in the server's process.
"""

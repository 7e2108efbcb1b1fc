"""`eurolora serve`: a local OpenAI-compatible server that mimics vLLM's multi-LoRA server.

It runs the `transformers` engine in-process (the embedded SmolLM2 by default) and offers what the
canary step and the `openai` engine use from vLLM: `/v1/chat/completions` (plain and streamed, JSON
schema constrained), `/v1/models`, runtime LoRA loading (`/v1/load_lora_adapter`,
`/v1/unload_lora_adapter`) and Prometheus metrics under vLLM's names, plus what vLLM lacks and a
canary needs: weighted routes between adapters (`/v1/routes`, the gateway's part, with the Inference
Extension endpoint picker's per-target metrics) and opt-in fault injection (`/v1/faults`). See
`pipelines.serve.app` for the API and where it differs from vLLM.

Only `pipelines.serve.command` is imported by the CLI; everything heavy is imported when serving.
"""

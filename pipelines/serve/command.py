"""`eurolora serve`: a local OpenAI-compatible, vLLM-like multi-LoRA server (see `pipelines.serve.app`)."""

import argparse
import ipaddress
import os
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FAULTS_ENV = "EUROLORA_SERVE_FAULTS"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the model and LoRA adapters over an OpenAI-compatible API (vLLM-like)",
        description="A local OpenAI-compatible server mimicking vLLM's multi-LoRA server: chat completions, "
                    "runtime adapter loading, weighted routes between adapters, Prometheus metrics.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (the API then reaches the network)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require `Authorization: Bearer $VAR` on /v1/* (the env var's name, not the key)")
    parser.add_argument("--model", default="embedded", help="'embedded' (SmolLM2-135M-Instruct) or an HF model folder")
    parser.add_argument("--served-model-name", default="base", help="the base model's name in the API (default base)")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                        help="a LoRA adapter folder to load at startup (repeatable)")
    parser.add_argument("--registry", nargs="?", const="", metavar="CONFIG",
                        help="also load the registry's champion and challenger as <family>-v<N>, from a pipeline "
                             "config (default: the shipped local config, pipelines/configs/local.yaml)")
    parser.add_argument("--routes-file", type=Path, metavar="FILE",
                        help='YAML/JSON routes applied at startup: {"routes": [{"name", "weights", "strategy"}]}')
    parser.add_argument("--max-prompt-tokens", type=int, metavar="N", help="refuse longer prompts (default: context-1)")
    parser.add_argument("--default-max-tokens", type=int, default=256, metavar="N",
                        help="max_tokens for requests that give none (default 256)")
    parser.add_argument("--max-batch", type=int, default=8, metavar="N", help="requests per engine call (default 8)")
    parser.add_argument("--batch-window-ms", type=float, default=25.0, metavar="MS",
                        help="how long to gather concurrent requests into one batch (default 25)")
    parser.add_argument("--max-loras", type=int, default=32, metavar="N", help="adapters loaded at most (default 32)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="temperature for requests that give none (default 0: greedy)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for requests that give none")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for the model (default: torch's choice; 1 helps on a crowded machine)")
    parser.add_argument("--enable-fault-injection", action="store_true",
                        help=f"expose /v1/faults (canary tests only; or {FAULTS_ENV}=1)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=handle)


def _fail(message: str) -> int:
    print(f"eurolora serve: {message}", file=sys.stderr)
    return 2


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_adapters(values: list[str]) -> dict[str, str]:
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter {value!r}: expected NAME=PATH")
        if name in adapters:
            raise ValueError(f"--adapter {name!r} given twice")
        adapters[name] = str(Path(path).expanduser().resolve())
    return adapters


def _with_registry_adapters(adapters: dict[str, str], config_path: str) -> dict[str, str]:
    """`adapters` plus the registry's champion and challenger; ValueError for a bad config or registry."""
    import tempfile

    from pipelines.config import ConfigError, load_config
    from pipelines.serve.registry_adapters import registry_adapters

    try:
        config = load_config(Path(config_path) if config_path else None)
    except ConfigError as exc:
        raise ValueError(f"--registry: {exc}") from None
    from steps.common.contract import TransientError
    from steps.common.registry import RegistryError
    from steps.common.storage import StorageError

    cache = Path(tempfile.gettempdir()) / "eurolora" / "serve-adapters"
    try:
        found = registry_adapters(config, cache)
    except (RegistryError, TransientError, StorageError) as exc:
        raise ValueError(f"--registry: {type(exc).__name__}: {exc}") from None
    taken = sorted(set(found) & set(adapters))
    if taken:
        raise ValueError(f"--adapter {taken} are also the registry's adapter names: give other names")
    print(f"eurolora serve: from the registry ({config.registry.model_name}): "
          f"{', '.join(sorted(found)) or 'no champion or challenger yet (the base model only)'}", file=sys.stderr)
    return {**adapters, **found}


def load_routes(path: Path) -> list:
    """Routes from a YAML/JSON file; ValueError listing every problem."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from pipelines.serve.protocol import RouteRequest

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--routes-file {path}: {exc}") from None
    if isinstance(data, dict):
        data = data.get("routes", [])
    try:
        return TypeAdapter(list[RouteRequest]).validate_python(data or [], strict=False)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"--routes-file {path}: {problems}") from None


def handle(args: argparse.Namespace) -> int:
    if not _is_loopback(args.host) and not args.allow_remote:
        return _fail(f"--host {args.host} is not a loopback address; add --allow-remote to expose the API "
                     "beyond this machine (consider --api-key-env as well)")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip()
        if not api_key:
            return _fail(f"--api-key-env {args.api_key_env}: the variable is empty or not set")
    try:
        adapters = parse_adapters(args.adapter)
        routes = load_routes(args.routes_file) if args.routes_file else []
        if args.registry is not None:
            adapters = _with_registry_adapters(adapters, args.registry)
    except ValueError as exc:
        return _fail(str(exc))

    import logging

    from steps.common.residency import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():  # no model hub, no telemetry, before transformers is imported
        os.environ.setdefault(key, value)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn
    from pydantic import ValidationError

    from pipelines.serve.app import ServeSettings, create_app
    from pipelines.serve.backend import EngineBackend
    from steps.common.models import EMBEDDED, ModelSourceError, embedded_checkpoint

    try:
        settings = ServeSettings(
            served_model_name=args.served_model_name, max_prompt_tokens=args.max_prompt_tokens,
            default_max_tokens=args.default_max_tokens, max_batch=args.max_batch,
            batch_window_ms=args.batch_window_ms, max_loras=args.max_loras, default_temperature=args.temperature,
            seed=args.seed,
            enable_fault_injection=args.enable_fault_injection or os.environ.get(FAULTS_ENV) == "1",
            api_key=api_key, adapters=adapters, routes=routes,
        )
    except ValidationError as exc:
        return _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    try:
        if args.model == EMBEDDED:
            model_dir = embedded_checkpoint()
        else:
            model_dir = Path(args.model).expanduser()
            if not (model_dir / "config.json").is_file():
                return _fail(f"--model {args.model}: expected 'embedded' or an HF model folder with config.json")
    except ModelSourceError as exc:
        return _fail(str(exc))

    if args.threads is not None and args.threads < 1:
        return _fail("--threads must be at least 1")
    backend = EngineBackend(model_dir, max_batch=settings.max_batch, seed=settings.seed, threads=args.threads)
    app = create_app(backend, settings)  # adapter snapshots in a temporary folder removed at shutdown
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server.run()  # on SIGTERM/SIGINT uvicorn shuts down, then re-raises the signal: nothing runs after
    backend.close()
    return 0 if server.started else 1

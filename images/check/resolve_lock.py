"""Dry-run of an image family's lock for the images' platform: proves it installs, downloading no wheel.

`python -m images.check.resolve_lock train-gpu --python-version 3.11 --python-platform
x86_64-manylinux_2_28 --uv .venv/bin/uv` resolves, with uv and from package metadata only, the lock's
pins together with the family's pyproject extra and build requirements for that platform, then checks:
the resolution is exactly the lock (nothing missing, nothing extra, the same versions), and for each
package a file the platform can install (its wheels, else its sdist) has a hash the lock allows, which is
what `pip install --require-hashes` in the Dockerfile needs. It prints what the image build downloads."""

import argparse
import re
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

UV_TIMEOUT_S = 600
_PIN = re.compile(r"^([A-Za-z0-9][\w.-]*)==(\S+)((?:\s+\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.MULTILINE)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, tuple[str, set[str]]]:
    """Canonical name -> (version, allowed sha256 hashes)."""
    return {_canonical(name): (version, set(re.findall(r"sha256:([0-9a-f]{64})", hashes)))
            for name, version, hashes in _PIN.findall(path.read_text())}


def resolve(family: str, lock: dict[str, tuple[str, set[str]]], platform: list[str], uv: str) -> list[dict]:
    """uv's resolution of the pins + extra + build requirements, as pylock.toml packages (index hashes)."""
    build = tomllib.loads(Path("pyproject.toml").read_text())["build-system"]["requires"]
    with tempfile.TemporaryDirectory() as tmp:
        pins, requires = Path(tmp, "pins.txt"), Path(tmp, "build-requires.txt")
        pins.write_text("".join(f"{name}=={version}\n" for name, (version, _) in lock.items()))
        requires.write_text("\n".join(build) + "\n")
        out = Path(tmp, f"pylock.{family}.toml")
        subprocess.run([uv, "pip", "compile", "--no-config", "--quiet", str(pins), str(requires),
                        "pyproject.toml", "--extra", family, "--no-emit-package", "eurolora", *platform,
                        "--format", "pylock.toml", "-o", str(out)], check=True, timeout=UV_TIMEOUT_S)
        return tomllib.loads(out.read_text())["packages"]


def check(lock: dict[str, tuple[str, set[str]]], packages: list[dict]) -> tuple[list[str], int]:
    """(problems, bytes the image build downloads: per package its largest installable locked file)."""
    problems, download = [], 0
    resolved = {_canonical(p["name"]): p for p in packages}
    for name in sorted(set(lock) - set(resolved)):
        problems.append(f"{name}=={lock[name][0]} is locked but nothing requires it")
    for name, package in sorted(resolved.items()):
        if name not in lock:
            problems.append(f"{name}=={package['version']} is required but not locked (make images-lock)")
            continue
        version, allowed = lock[name]
        if package["version"] != version:
            problems.append(f"{name}: resolved {package['version']}, locked {version}")
        files = package.get("wheels") or [package["sdist"]]
        locked = [f for f in files if f["hashes"]["sha256"] in allowed]
        if not locked:
            problems.append(f"{name}=={version}: no installable file for the platform has a locked hash "
                            f"(index: {sorted(f['hashes']['sha256'][:12] for f in files)})")
        download += max((f.get("size", 0) for f in locked), default=0)
    return problems, download


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--python-platform", required=True)
    parser.add_argument("--uv", default="uv")
    args = parser.parse_args(argv)
    started = time.monotonic()
    lock = read_lock(Path("images/requirements") / f"{args.family}.txt")
    platform = ["--python-version", args.python_version, "--python-platform", args.python_platform]
    problems, download = check(lock, resolve(args.family, lock, platform, args.uv))
    if problems:
        raise SystemExit(f"images-check {args.family}: the lock does not install on "
                         f"{args.python_platform}:\n  " + "\n  ".join(problems))
    print(f"images-check {args.family}: {len(lock)} locked packages resolve together on Python "
          f"{args.python_version} {args.python_platform}, each with a locked hash; the build downloads "
          f"{download / 1e9:.2f} GB; dry run {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()

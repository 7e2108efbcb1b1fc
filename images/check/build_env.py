"""Build an image family's Python environment from its lock without Docker, as its Dockerfile does.

`python3.11 -m images.check.build_env cpu` (from the repository root) replays the Dockerfile's build
stage on this machine: the base image's venv (Python minor version checked; pip and setuptools pinned
to what the base image's ensurepip gives, images/base-image-venv.txt), the build context reduced by the
family's .dockerignore, then every RUN as written (`--require-hashes`, `--no-index`,
`--no-build-isolation`, `pip check`). Then, with the final stage's environment, it runs the image's CMD
and imports every pod entry point of the family's templates in the compiled WorkflowTemplate.

Where it differs from `docker build`, on purpose: image paths (/opt/eurolora, /src, /home/eurolora) live
under --root; pip may use its cache (every file's hash is still checked) and reads no configuration of
this machine; the final stage's OS-level RUNs (users, apt packages) and USER are not replayed."""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from images.check.dockerfile import Stage, env_assignments, ignore_rules, ignored, parse

RUN_TIMEOUT_S = 1500  # one RUN: the cpu lock's cold install is ~3 min on 2 cores
MANIFEST = Path("manifests/argo/workflowtemplate.yaml")
BASE_VENV = Path("images/base-image-venv.txt")
# Only what reaching PyPI needs comes from this machine's environment; no pip configuration does.
PASSED_ENV = ("HOME", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT", "PIP_INDEX_URL", "PIP_CACHE_DIR",
              "PIP_DEFAULT_TIMEOUT")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Replay:
    """Applies a stage's instructions with image paths rebased under `root`."""

    def __init__(self, repo: Path, root: Path, ignore: list[str]) -> None:
        self.repo, self.root, self.ignore = repo, root, ignore
        shim = root / "base-python"
        shim.mkdir(parents=True, exist_ok=True)
        base = Path(getattr(sys, "_base_executable", sys.executable))
        for name in ("python", "python3"):
            (shim / name).unlink(missing_ok=True)
            (shim / name).symlink_to(base)
        self.base_python = base
        self.env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        self.env.update(PATH=f"{shim}:{IMAGE_PATH}", LANG="C.UTF-8", PIP_CONFIG_FILE=os.devnull)
        self.image_dirs: list[str] = []
        self.workdir = "/"

    def host(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def rebase(self, text: str) -> str:
        """Image directories the stage created, rewritten to their place under root."""
        for image_dir in sorted(self.image_dirs, key=len, reverse=True):
            text = re.sub(rf"(?<![\w./-]){re.escape(image_dir)}(?=/|:|\s|$)", str(self.host(image_dir)), text)
        return text

    def run(self, argv: list[str], cwd: Path | None = None) -> None:
        print(f"images-check $ {shlex.join(argv)}", flush=True)
        subprocess.run(argv, cwd=cwd or self.host(self.workdir), env=self.env, check=True,
                       timeout=RUN_TIMEOUT_S)

    def apply(self, keyword: str, argument: str) -> None:
        if keyword == "ENV":
            for key, value in env_assignments(self.rebase(argument)):
                if key != "PIP_NO_CACHE_DIR":  # the cache only saves downloads; hashes are still checked
                    self.env[key] = re.sub(r"\$(\w+)|\$\{(\w+)\}", self._variable, value)
        elif keyword == "WORKDIR":
            self.workdir = argument
            self.image_dirs.append(argument)
            self.host(argument).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            self._copy(shlex.split(argument))
        elif keyword == "RUN":
            venv = re.fullmatch(r"python -m venv (/\S+)", argument)
            if venv:
                self._base_venv(venv.group(1))
            else:
                self.run(["/bin/sh", "-c", self.rebase(argument)])
        else:
            raise ValueError(f"{keyword} {argument}: not replayed in a build stage")

    def _variable(self, match: re.Match[str]) -> str:
        return self.env.get(match[1] or match[2], "")

    def _base_venv(self, image_dir: str) -> None:
        """`python -m venv` as the base image runs it: its ensurepip's pip and setuptools, nothing else."""
        self.image_dirs.append(image_dir)
        target = self.host(image_dir)
        self.run([str(self.base_python), "-m", "venv", "--clear", str(target)], cwd=self.root)
        python = str(target / "bin" / "python")
        self.run([python, "-m", "pip", "install", "--require-hashes", "--no-deps", "-r",
                  str(self.repo / BASE_VENV)], cwd=self.root)
        listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], env=self.env, check=True,
                                capture_output=True, text=True, timeout=120).stdout
        have = {d["name"].lower(): d["version"] for d in json.loads(listed)}
        want = dict(re.findall(r"^([\w.-]+)==(\S+)", (self.repo / BASE_VENV).read_text(), re.MULTILINE))
        if have != want:
            raise RuntimeError(f"the base venv holds {have}, the base image's holds {want}")

    def _copy(self, words: list[str]) -> None:
        if any(w.startswith("--") for w in words):
            raise ValueError(f"COPY {' '.join(words)}: flags are not replayed in a build stage")
        *sources, dest = words
        target = self.host(self.workdir) / dest
        for source in sources:
            if ignored(self.ignore, source):
                raise ValueError(f"COPY {source}: excluded by the family's .dockerignore")
            origin = self.repo / source
            into = target / origin.name if dest.endswith("/") else target
            if origin.is_dir():
                for path in sorted(origin.rglob("*")):
                    relative = path.relative_to(self.repo).as_posix()
                    if path.is_file() and not ignored(self.ignore, relative):
                        (into / path.relative_to(origin)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, into / path.relative_to(origin))
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)


def _check_python(base_image: str) -> None:
    version = re.search(r":(\d+)\.(\d+)\.(\d+)", base_image)
    if not version or tuple(map(int, version.groups()[:2])) != sys.version_info[:2]:
        raise SystemExit(f"images-check: {base_image} needs Python {version and version.group(0)[1:]}, "
                         f"this is {sys.version.split()[0]} (run it with that minor version)")
    print(f"images-check: base image {base_image}, replayed with Python {sys.version.split()[0]}", flush=True)


def _runtime(replay: Replay, final: Stage, family: str) -> None:
    """The final stage's environment on the built venv: its CMD, then every pod entry point of the family."""
    replay.workdir = "/"
    command = None
    for keyword, argument in final.instructions:
        if keyword == "COPY":
            source, dest = shlex.split(argument)[-2:]
            if source != dest or not argument.startswith("--from="):
                raise ValueError(f"COPY {argument}: the runtime stage may only take the venv from the build")
        elif keyword in ("ENV", "WORKDIR"):
            replay.apply(keyword, argument)
        elif keyword == "CMD":
            command = json.loads(argument)
        else:
            print(f"images-check: not replayed (OS level): {keyword} {argument[:80]}", flush=True)
    replay.env["HOME"] = str(replay.host(replay.workdir))
    python = shutil.which("python", path=replay.env["PATH"])
    if command:
        replay.run([python if command[0] == "python" else command[0], *command[1:]])
    replay.run([python, "-I", str(replay.repo / "images/check/pod_imports.py"), family,
                str(replay.repo / MANIFEST)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("--root", type=Path, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    repo = Path.cwd()
    dockerfile = repo / "images" / f"{args.family}.Dockerfile"
    stages = parse(dockerfile)
    _check_python(stages[0].base)
    root = args.root.resolve() if args.root else Path(tempfile.mkdtemp(prefix=f"images-check-{args.family}-"))
    started = time.monotonic()
    try:
        replay = Replay(repo, root, ignore_rules(dockerfile.with_name(dockerfile.name + ".dockerignore")))
        for keyword, argument in stages[0].instructions:
            replay.apply(keyword, argument)
        built = time.monotonic() - started
        _runtime(replay, stages[-1], args.family)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    print(f"images-check {args.family}: environment built from its lock in {built:.0f} s; "
          f"image CMD and pod entry points imported; {time.monotonic() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()

"""The subset of a Dockerfile that the image checks replay: instructions per stage and .dockerignore rules.

Anything outside the subset raises instead of being skipped, so a Dockerfile change the replay cannot
follow fails the check rather than passing it unchecked."""

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, argument text)


def parse(path: Path) -> list[Stage]:
    """Stages in order; ARG defaults substituted into FROM; comments and line continuations folded."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            stages.append(Stage(image))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        else:
            raise ValueError(f"{path}: {keyword} before FROM is not replayed")
    return stages


def env_assignments(argument: str) -> list[tuple[str, str]]:
    """`ENV A=1 B=2` as pairs (the legacy `ENV A 1` form is not used here and is refused)."""
    pairs = [word.partition("=") for word in shlex.split(argument)]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError(f"ENV {argument}: only the KEY=VALUE form is replayed")
    return [(key, value) for key, _, value in pairs]


def _pattern(rule: str) -> re.Pattern[str]:
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", rule.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(out)


def ignored(rules: list[str], relative: str) -> bool:
    """Docker's .dockerignore semantics: a rule matches a path or any of its parents; the last match wins."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = _pattern(rule.removeprefix("!"))
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def ignore_rules(path: Path) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

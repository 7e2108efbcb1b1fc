"""Argo's template language, the part the compiled WorkflowTemplate uses: `{{...}}` references, a DAG task's
`depends` expression and its `when` condition.

Strict where Argo would be lenient: a reference with no value is an error here (a typo in the compiler
would otherwise pass as the literal text), and a `when` outside the forms the compiler writes is refused
rather than guessed at.
"""

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# depends: `task`, `task.Succeeded`, ... joined by &&, ||, ! and parentheses (Argo's "enhanced depends").
_DEPENDS_TOKEN = re.compile(r"\s*(&&|\|\||!|\(|\)|[a-zA-Z0-9][-a-zA-Z0-9]*(?:\.[A-Za-z]+)?)")
_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}
# A task is complete (its dependants may be decided) in these phases.
COMPLETED = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}
# when: `<left> == <right>` or `<left> != <right>`, each side bare or in single quotes.
_WHEN = re.compile(r"^\s*('?)(.*?)\1\s*(==|!=)\s*('?)(.*?)\4\s*$")


class UnresolvedReference(KeyError):
    """A `{{...}}` reference that nothing in scope provides."""


def substitute(text: str, scope: Mapping[str, str]) -> str:
    """Every `{{name}}` replaced by scope[name] (Argo's simple template tags)."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in scope:
            raise UnresolvedReference(f"{{{{{name}}}}} has no value here (in scope: {sorted(scope)[:20]})")
        return scope[name]

    return _REFERENCE.sub(value, text)


def references(text: str) -> list[str]:
    return _REFERENCE.findall(text)


def depends_tasks(expression: str) -> set[str]:
    """The task names a `depends` expression reads."""
    return {token.split(".")[0] for token in _tokens(expression) if token not in ("&&", "||", "!", "(", ")")}


def depends_holds(expression: str, phases: Mapping[str, str]) -> bool:
    """Evaluate `depends` once every task it names is complete (phases: task -> Argo node phase).

    A bare `task` means `task.Succeeded || task.Skipped || task.Daemoned`, as in Argo. `!` binds tightest,
    then `&&`, then `||`."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"depends {expression!r}: ends too early")
        position += 1
        return tokens[position - 1]

    def either() -> bool:
        value = both()
        while peek() == "||":
            take()
            value = both() or value
        return value

    def both() -> bool:
        value = single()
        while peek() == "&&":
            take()
            value = single() and value
        return value

    def single() -> bool:
        token = take()
        if token == "!":
            return not single()
        if token == "(":
            value = either()
            if take() != ")":
                raise ValueError(f"depends {expression!r}: unbalanced parentheses")
            return value
        return _result_holds(token, phases, expression)

    value = either()
    if position != len(tokens):
        raise ValueError(f"depends {expression!r}: unexpected {tokens[position]!r}")
    return value


def _result_holds(token: str, phases: Mapping[str, str], expression: str) -> bool:
    task, _, result = token.partition(".")
    phase = phases[task]
    if not result:
        return phase in ("Succeeded", "Skipped", "Daemoned")
    if result not in _RESULTS:
        raise ValueError(f"depends {expression!r}: unknown result {result!r}")
    return {"AnySucceeded": phase == "Succeeded", "AllFailed": phase == "Failed",
            "Errored": phase == "Error"}.get(result, phase == result)


def when_holds(condition: str) -> bool:
    """A substituted `when` (e.g. `true == true`, `'a b' == 'a b'`); Argo compares the two sides as text."""
    match = _WHEN.match(condition)
    if not match or "{{" in condition or any(op in match.group(2) + match.group(5) for op in ("&&", "||")):
        raise ValueError(f"when {condition!r}: the harness evaluates only `left == right` and `left != right`")
    left, op, right = match.group(2), match.group(3), match.group(5)
    return (left == right) if op == "==" else (left != right)


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _DEPENDS_TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"depends {expression!r}: cannot read it at {expression[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens

"""Token-aware recursive chunking: paragraphs, then sentences, then words, then characters.

Text is cut into pieces no longer than the budget, splitting a unit at the next finer level only when it
is too long on its own; pieces are then packed greedily into chunks. A chunk therefore ends at a
paragraph boundary whenever the paragraphs fit, and starts with the tail of the previous chunk (at most
`overlap_tokens`, whole sentences when they fit, else words) so a fact cut at a boundary is not lost.
Sizes are estimated from per-piece counts and every chunk is then counted exactly, so no chunk exceeds
`max_tokens` with the real tokenizer.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

_PARAGRAPHS = re.compile(r"\n{2,}")
# A line break, or spaces after ., ! or ? (maybe closed by a quote or bracket) before a capital or a digit;
# not after a number ("2. Klasse", "1. Januar") or a one-letter or common abbreviation ("z. B.", "Dr.").
_SENTENCE_BREAK = re.compile(
    r"\n+|(?:(?<=[.!?…])|(?<=[.!?…][\"'»)\]]))(?<!\d\.)(?<!\b\w\.)(?<!\bDr\.)(?<!\bNr\.)(?<!\bca\.)"
    r"[ ]+(?=[\"'«„(\[]?(?:[A-ZÀ-ÖØ-Þ]|\d))"
)
# A heading-like paragraph: one short line without closing punctuation.
_HEADING_MAX_TOKENS = 16
_WORD_BREAK = re.compile(r"[ \n]+")
_LEVELS = (_SENTENCE_BREAK, _WORD_BREAK)


@dataclass(frozen=True)
class Chunk:
    text: str
    n_tokens: int


@dataclass(frozen=True)
class _Piece:
    text: str
    separator: str  # what joins it to the piece before it in the same chunk
    cost: int  # tokens of separator + text, the estimate used while packing


def chunk_text(text: str, count: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Chunks of at most `max_tokens` tokens (as `count` measures them) covering all of `text`."""
    pieces = list(_pieces(text, count, max_tokens))
    chunks: list[Chunk] = []
    position = 0
    overlap: list[_Piece] = []
    while position < len(pieces):
        taken = _pack(pieces[position:], sum(piece.cost for piece in overlap), max_tokens)
        joined = _join(overlap + pieces[position:position + taken])
        n_tokens = count(joined)
        # Estimates can be a token or two off where pieces meet: shrink until the exact count fits.
        # A lone piece always fits, so this ends with at least one new piece (progress is guaranteed).
        while n_tokens > max_tokens:
            if overlap:
                overlap = []
            else:
                taken -= 1
            joined = _join(overlap + pieces[position:position + taken])
            n_tokens = count(joined)
        chunks.append(Chunk(joined, n_tokens))
        position += taken
        overlap = _tail(joined, count, overlap_tokens) if position < len(pieces) else []
    return chunks


def _pack(pieces: list[_Piece], used: int, max_tokens: int) -> int:
    """How many of `pieces` fit after `used` tokens (at least one)."""
    taken = 0
    for piece in pieces:
        if taken and used + piece.cost > max_tokens:
            break
        used += piece.cost
        taken += 1
    # A heading never ends a chunk while what it introduces follows: it moves to the next chunk with it.
    if 1 < taken < len(pieces) and _is_heading(pieces[taken - 1]):
        taken -= 1
    return taken


def _is_heading(piece: _Piece) -> bool:
    return (piece.separator == "\n\n" and piece.cost <= _HEADING_MAX_TOKENS and "\n" not in piece.text
            and not piece.text.rstrip().endswith((".", "!", "?", ":", ";", ",")))


def _join(pieces: list[_Piece]) -> str:
    return "".join((piece.separator if index else "") + piece.text for index, piece in enumerate(pieces))


def _tail(text: str, count: TokenCounter, budget: int) -> list[_Piece]:
    """The end of a chunk to repeat at the start of the next: whole sentences if they fit, else words."""
    if budget <= 0 or count(text) <= budget:  # a chunk that small is not worth repeating whole
        return []
    for pattern in _LEVELS:
        parts = [_Piece(part, separator, 0) for part, separator in _split(text, pattern)]
        start = len(parts)
        while start > 0 and count(_join(parts[start - 1:])) <= budget:
            start -= 1
        if start < len(parts):
            tail = _join(parts[start:])
            return [_Piece(tail, "", count(tail))]
    return []


def _pieces(text: str, count: TokenCounter, max_tokens: int) -> Iterator[_Piece]:
    """Units of at most `max_tokens` tokens, each as coarse as possible, with the separator before it."""
    for paragraph in _PARAGRAPHS.split(text):
        if paragraph.strip():
            yield from _fit(paragraph, "\n\n", count, max_tokens, level=0)


def _fit(unit: str, separator: str, count: TokenCounter, max_tokens: int, level: int) -> Iterator[_Piece]:
    if count(unit) <= max_tokens:
        yield _Piece(unit, separator, count(separator + unit))
        return
    if level == len(_LEVELS):
        yield from _characters(unit, separator, count, max_tokens)
        return
    for index, (part, part_separator) in enumerate(_split(unit, _LEVELS[level])):
        yield from _fit(part, separator if index == 0 else part_separator, count, max_tokens, level + 1)


def _split(unit: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(part, separator before it): a space, a line break or a paragraph break, as found."""
    parts: list[tuple[str, str]] = []
    start, separator = 0, ""
    for match in pattern.finditer(unit):
        if match.start() > start:
            parts.append((unit[start:match.start()], separator))
        start, separator = match.end(), "\n" * min(match.group(0).count("\n"), 2) or " "
    if start < len(unit):
        parts.append((unit[start:], separator))
    return parts


def _characters(unit: str, separator: str, count: TokenCounter, max_tokens: int) -> Iterator[_Piece]:
    """A single word longer than the budget (a URL, a hash): the longest prefixes that fit, by bisection."""
    first = True
    while unit:
        low, high = 1, len(unit)
        while low < high:
            middle = (low + high + 1) // 2
            if count(unit[:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        yield _Piece(unit[:low], separator if first else "", count(unit[:low]))
        unit, first = unit[low:], False

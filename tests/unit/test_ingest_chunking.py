import itertools
import re
from pathlib import Path

import pytest

from steps.ingest.chunking import TokenCounter, chunk_text
from steps.ingest.tokens import load_token_counter


@pytest.fixture(scope="module")
def count(embedded_model_dir: Path) -> TokenCounter:
    return load_token_counter(embedded_model_dir)


def _numbered_text(paragraphs: int, sentences: int, words: int) -> str:
    """Every word unique (w0001, w0002 ...), so order and coverage can be checked exactly."""
    counter = iter(range(1, 100_000))
    def sentence() -> str:
        return " ".join(f"w{next(counter):04d}" for _ in range(words)).capitalize() + "."

    return "\n\n".join(" ".join(sentence() for _ in range(sentences)) for _ in range(paragraphs))


def _words(text: str) -> list[str]:
    return re.findall(r"w\d{4}", text.lower())


def test_counter_uses_the_real_tokenizer(count: TokenCounter) -> None:
    assert count("") == 0
    assert 1 <= count("Hello") <= 2
    # German and French take more tokens per word than English with SmolLM2's tokenizer.
    assert count("Sicherheitsschuhe der Schutzklasse") > 3


@pytest.mark.parametrize(("max_tokens", "overlap"), [(48, 0), (64, 16), (128, 32), (512, 64)])
def test_chunks_respect_the_budget_and_cover_everything_in_order(count: TokenCounter, max_tokens: int,
                                                                  overlap: int) -> None:
    text = _numbered_text(paragraphs=6, sentences=5, words=9)
    chunks = chunk_text(text, count, max_tokens, overlap)
    assert all(chunk.n_tokens == count(chunk.text) <= max_tokens for chunk in chunks)
    seen: list[str] = []
    for chunk in chunks:
        for word in _words(chunk.text):
            if word not in seen:
                seen.append(word)
    assert seen == _words(text)  # nothing lost, nothing reordered
    if overlap == 0:
        assert sum(len(_words(c.text)) for c in chunks) == len(_words(text))  # no repetition at all


def test_overlap_repeats_the_end_of_the_previous_chunk(count: TokenCounter) -> None:
    # One long paragraph: the cuts fall between sentences.
    text = _numbered_text(paragraphs=1, sentences=30, words=7)
    chunks = chunk_text(text, count, 96, 24)
    assert len(chunks) > 3
    for previous, current in itertools.pairwise(chunks):
        shared = [w for w in _words(current.text) if w in set(_words(previous.text))]
        assert shared, "consecutive chunks share their boundary text"
        head = current.text[: current.text.index(shared[-1]) + len(shared[-1])]
        assert previous.text.endswith(head)
        assert count(head) <= 24


def test_paragraph_boundaries_are_preferred(count: TokenCounter) -> None:
    paragraphs = [f"Paragraph {i} says that the rule number {i} applies to every site." for i in range(12)]
    chunks = chunk_text("\n\n".join(paragraphs), count, 64, 0)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("Paragraph") and chunk.text.endswith("site.")


def test_a_heading_is_not_left_at_the_end_of_a_chunk(count: TokenCounter) -> None:
    body = "This paragraph explains one rule in enough words to take some room in the chunk."
    text = "\n\n".join([body, body.replace("one", "another"), "Restauration", body.replace("one", "a third")])
    chunks = chunk_text(text, count, 2 * count(body) + 8, 0)
    assert not any(chunk.text.endswith("Restauration") for chunk in chunks)
    assert any(chunk.text.startswith("Restauration\n\n") for chunk in chunks)


def test_overlong_words_are_split_by_characters(count: TokenCounter) -> None:
    blob = "x9Q" * 400  # no spaces, far beyond the budget
    chunks = chunk_text(f"Start. {blob} End.", count, 40, 0)
    assert len(chunks) > 3
    assert all(chunk.n_tokens <= 40 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks).replace(" ", "") == f"Start.{blob}End."


def test_empty_text_gives_no_chunk(count: TokenCounter) -> None:
    assert chunk_text("", count, 64, 8) == []
    assert chunk_text("\n\n  \n\n", count, 64, 8) == []

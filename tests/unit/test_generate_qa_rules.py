"""generate_qa's deterministic rules: refusals, grounding, the quality filter, the split by document."""

from collections import Counter

import pytest

from steps.common.grading import REFUSALS, is_refusal
from steps.common.qa_dataset import QAPair
from steps.common.text import words
from steps.generate_qa.filters import QualityFilter, Reason, grounding, unknown_to
from steps.generate_qa.generate import Generated, RejectedPair, TooManyFailedRequests, check_failures
from steps.generate_qa.settings import GenerateQASettings, SplitFractions
from steps.generate_qa.split import split_documents, split_sizes

CONTEXT_EN = ("Nordlicht Logistik GmbH was founded on 14 March 2009 in Hamburg. The canteen opens at 7:30 "
              "and closes at 15:00. Night shifts between 22:00 and 06:00 earn an allowance of 25 percent.")
CONTEXT_DE = ("Die Kantine öffnet um 7:30 Uhr und schließt um 15 Uhr. Sicherheitsschuhe sind in allen "
              "Lagerhallen und auf dem Hof jederzeit zu tragen.")


def pair(question: str = "When does the canteen open in the morning?",
         answer: str = "The canteen opens at 7:30 and closes at 15:00.", language: str = "en",
         answerable: bool = True, context: str = CONTEXT_EN) -> QAPair:
    return QAPair(question=question, answer=answer, type="factual", language=language, chunk_id="c#0",
                  doc_id="d", answerable=answerable, context=context)


@pytest.fixture(scope="module")
def settings() -> GenerateQASettings:
    return GenerateQASettings()


@pytest.fixture()
def quality(settings: GenerateQASettings) -> QualityFilter:
    return QualityFilter(settings, ["en", "de", "fr"])


@pytest.mark.parametrize("language", sorted(REFUSALS))
def test_every_refusal_sentence_is_recognised_in_its_language(language: str) -> None:
    assert is_refusal(REFUSALS[language], language)
    assert is_refusal("  " + REFUSALS[language].upper().rstrip("."), language)


def test_refusal_paraphrases_and_non_refusals() -> None:
    assert is_refusal("Sorry, I cannot answer that from the text.", "en")
    assert is_refusal("Ich kann diese Frage nicht beantworten.", "de")
    assert is_refusal(REFUSALS["fr"], "de")  # a refusal in the wrong language is still a refusal
    assert not is_refusal("The canteen opens at 7:30.", "en")
    assert not is_refusal("Die Kantine öffnet um 7:30 Uhr.", "de")
    assert not is_refusal("", "en")


def test_grounding_counts_answer_words_found_in_the_context() -> None:
    assert grounding("The canteen opens at 7:30.", CONTEXT_EN) == 1.0
    assert grounding("The canteen serves pizza every Friday.", CONTEXT_EN) == pytest.approx(2 / 6)
    assert grounding("", CONTEXT_EN) == 0.0


def test_good_pairs_pass_in_english_and_german(quality: QualityFilter) -> None:
    assert quality.check(pair()) is None
    german = pair(question="Wann öffnet die Kantine am Morgen?", answer="Die Kantine öffnet um 7:30 Uhr.",
                  language="de", context=CONTEXT_DE)
    assert quality.check(german) is None
    unanswerable = pair(question="How much does a coffee cost in the canteen?", answer=REFUSALS["en"],
                        answerable=False)
    assert quality.check(unanswerable) is None


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"question": "Why?"}, Reason.QUESTION_LENGTH),
    ({"question": "What is " + "very " * 40 + "long?"}, Reason.QUESTION_LENGTH),
    ({"question": "The canteen opens at 7:30 and closes at 15:00."}, Reason.NOT_A_QUESTION),
    ({"answer": "7:30"}, Reason.ANSWER_LENGTH),
    ({"answer": REFUSALS["en"]}, Reason.ANSWER_IS_REFUSAL),
    ({"answer": "The canteen serves pizza every Friday."}, Reason.NOT_GROUNDED),
    ({"question": "How much does a cake cost in the museum café?", "answerable": False,
      "answer": REFUSALS["en"]}, Reason.COPIED_EXAMPLE),
    ({"question": "What is the answer to this?"}, Reason.OFF_TOPIC),
    ({"question": "Wann wurde Nordlicht Logistik in Hamburg gegründet und von wem?"}, Reason.WRONG_LANGUAGE),
])
def test_each_rule_rejects_with_its_reason(quality: QualityFilter, kwargs: dict, reason: Reason) -> None:
    assert quality.check(pair(**kwargs)) == reason


def test_ungrounded_refusal_passes_only_for_unanswerable_questions(quality: QualityFilter) -> None:
    question = "Who is the head of the canteen kitchen?"
    assert quality.check(pair(question=question, answer=REFUSALS["en"], answerable=False)) is None


@pytest.mark.parametrize("question", [
    "When does the canteen open?",  # "canteen" is in the chunk, "open" too short to count
    "When was Nordlicht Logistik founded in Hamburg?",
    "How much is the allowance for night shifts?",  # "shifts" meets "shifts", "allowance" is there
    "Which allowance do night shifts earn?",  # question words alone are nothing new
])
def test_unanswerable_question_the_chunk_answers_is_rejected(quality: QualityFilter, question: str) -> None:
    assert quality.check(pair(question=question, answer=REFUSALS["en"], answerable=False)) == \
        Reason.ANSWERABLE_FROM_CHUNK


def test_unknown_to_names_what_the_context_never_mentions() -> None:
    context = set(words(CONTEXT_EN))
    assert unknown_to(set(words("Who reported the canteen's prices?")), context) == {"reported", "prices"}
    assert unknown_to(set(words("Where is the founder of Nordlicht buried?")), context) == {"buried"}
    assert unknown_to(set(words("Which shift allowances apply?")), context) == {"apply"}  # stems meet


def test_short_questions_skip_the_language_check(quality: QualityFilter) -> None:
    assert quality.check(pair(question="Wann öffnet Hamburg?")) is None  # too few letters to tell


def test_example_topics_are_fine_when_the_chunk_has_them(quality: QualityFilter) -> None:
    context = "The company museum in Hamburg opens on Sundays from 10:00 to 16:00."
    question = "When does the company museum open on Sundays?"
    assert quality.check(pair(question=question, answer="It opens on Sundays from 10:00 to 16:00.",
                              context=context)) is None


def test_dedup_on_the_normalised_question_only_after_acceptance(quality: QualityFilter) -> None:
    assert quality.check(pair(answer="The canteen serves pizza every Friday.")) == Reason.NOT_GROUNDED
    assert quality.check(pair()) is None  # the rejected twin did not block it
    assert quality.check(pair(question="  when does the CANTEEN open in the morning ? ")) == Reason.DUPLICATE


def test_answer_copied_into_the_question_is_rejected(quality: QualityFilter) -> None:
    copied = pair(question="The canteen opens at 7:30 and closes at 15:00?")
    assert quality.check(copied) == Reason.ANSWER_IN_QUESTION


@pytest.mark.parametrize(("n", "expected"), [
    (0, (0, 0, 0)), (1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (4, (2, 1, 1)), (10, (8, 1, 1)),
    (20, (16, 2, 2)),
])
def test_split_sizes_keep_a_test_document_from_two_on(n: int, expected: tuple[int, int, int]) -> None:
    sizes = split_sizes(n, SplitFractions())
    assert (sizes["train"], sizes["val"], sizes["test"]) == expected


def test_split_sizes_respect_zero_fractions() -> None:
    sizes = split_sizes(5, SplitFractions(train=0.8, val=0.0, test=0.2))
    assert sizes == {"train": 4, "val": 0, "test": 1}


def test_split_is_seeded_disjoint_and_order_independent() -> None:
    pairs = [(f"doc-{i}", "en", True) for i in range(12)]
    first = split_documents(pairs, SplitFractions(), seed=7)
    assert first == split_documents(list(reversed(pairs)) + pairs[:3], SplitFractions(), seed=7)
    assert set(first) == {doc_id for doc_id, _, _ in pairs}  # each document in exactly one split (a dict key)
    assert sorted(first.values()).count("test") == 1 and sorted(first.values()).count("val") == 1
    others = [split_documents(pairs, SplitFractions(), seed=s) for s in range(8)]
    assert any(other != first for other in others)


def test_split_deals_refusals_in_proportion_to_the_shares() -> None:
    """16 documents, 11 unanswerable pairs in 7 of them (the demo's shape): every seed gives training at
    least half the refusals and the test split at least 2, while the document counts stay as split_sizes says."""
    refusals = {0: 3, 1: 2, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1}
    pairs = [(f"doc-{i}", "en", True) for i in range(16) for _ in range(2)]
    pairs += [(f"doc-{i}", "en", False) for i, n in refusals.items() for _ in range(n)]
    fractions = SplitFractions(train=0.6, val=0.1, test=0.3)
    for seed in range(20):
        assignment = split_documents(pairs, fractions, seed)
        dealt = {split: sum(not answerable for doc_id, _, answerable in pairs if assignment[doc_id] == split)
                 for split in ("train", "val", "test")}
        documents = {split: list(assignment.values()).count(split) for split in ("train", "val", "test")}
        assert documents == split_sizes(16, fractions)
        assert dealt["train"] >= 6 and dealt["test"] >= 2, (seed, dealt)


def test_split_deals_each_languages_refusals_to_training_and_test() -> None:
    """The demo's shape: many German refusals, few French ones in three small documents. Dealt by the total
    alone, every French refusal could land in the test split; dealt per language, training and test each
    get some French ones, for every seed."""
    refusals = {("de-0", "de"): 4, ("de-1", "de"): 3, ("de-2", "de"): 3, ("de-3", "de"): 2, ("en-0", "en"): 2,
                ("en-1", "en"): 2, ("en-2", "en"): 1, ("fr-0", "fr"): 1, ("fr-1", "fr"): 1, ("fr-2", "fr"): 1}
    documents = {doc_id: language for doc_id, language in refusals}
    documents |= {f"{language}-{i}": language for language in ("de", "en", "fr") for i in range(4, 8)}
    pairs = [(doc_id, language, True) for doc_id, language in documents.items() for _ in range(2)]
    pairs += [(doc_id, language, False) for (doc_id, language), n in refusals.items() for _ in range(n)]
    fractions = SplitFractions(train=0.6, val=0.1, test=0.3)
    for seed in range(20):
        assignment = split_documents(pairs, fractions, seed)
        dealt = Counter((assignment[doc_id], language) for doc_id, language, answerable in pairs if not answerable)
        assert all(dealt["train", language] >= 1 and dealt["test", language] >= 1
                   for language in ("de", "en", "fr")), (seed, dealt)
        assert dealt["train", "de"] >= dealt["test", "de"], (seed, dealt)
        assert Counter(assignment.values()) == split_sizes(len(documents), fractions)


def test_split_fractions_are_validated() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(train=0.8, val=0.3, test=0.1)
    with pytest.raises(ValueError, match="question_min_chars"):
        GenerateQASettings(question_min_chars=50, question_max_chars=20)
    with pytest.raises(ValueError, match="raise it to at least 176"):
        GenerateQASettings(max_new_tokens=160)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="max_failed_request_fraction"):
            GenerateQASettings(max_failed_request_fraction=bad)


def _outcome(failed: int, requests: int) -> Generated:
    out = Generated()
    out.counts["requests"] = requests
    out.rejected = [RejectedPair(reason="generation_error", type="factual", answerable=True, language="en",
                                 chunk_id="c#0", doc_id="d", error="HTTP 503 (after 5 attempts)")] * failed
    out.rejected += [RejectedPair(reason="not_grounded", type="factual", answerable=True, language="en",
                                  chunk_id="c#0", doc_id="d")] * (requests - failed)
    return out


def test_failed_requests_over_the_cap_fail_the_step() -> None:
    check_failures(_outcome(failed=5, requests=10), max_fraction=0.5)  # at the cap: published
    check_failures(_outcome(failed=0, requests=10), max_fraction=0.0)  # rejected replies are not failures
    with pytest.raises(TooManyFailedRequests, match=r"failed 6 of 10 requests \(60%.*HTTP 503 \(after 5 attempts\)': 6"):
        check_failures(_outcome(failed=6, requests=10), max_fraction=0.5)
    with pytest.raises(TooManyFailedRequests):
        check_failures(_outcome(failed=1, requests=10), max_fraction=0.0)

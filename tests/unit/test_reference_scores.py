"""Reference scores on hand-computed cases: tokens, token F1, grounding and chrF, in the project's languages."""

import pytest

from steps.common.grading import REFUSALS
from steps.common.reference_scores import chrf, grounding, score_answer, token_f1, tokens


def test_tokens_casefold_and_split_elisions_and_punctuation() -> None:
    assert tokens("L'échéance d’un contrat, c'est aujourd'hui!") == [
        "l", "échéance", "d", "un", "contrat", "c", "est", "aujourd", "hui"]
    assert tokens("dell'anno all'inizio") == ["dell", "anno", "all", "inizio"]
    assert tokens("Die STRASSE, die Straße") == ["die", "strasse", "die", "strasse"]  # casefold: ß = ss
    assert tokens("E-Mail an hr_team@firma.de: 4 Wochen") == ["e", "mail", "an", "hr", "team", "firma", "de",
                                                             "4", "wochen"]
    assert tokens("e\u0301te\u0301") == tokens("été")  # NFKC: combining accents compose


def test_token_f1_french_elision_by_hand() -> None:
    # answer  l échéance est le 5 mai                (6 tokens)
    # refer.  le contrat a l échéance du 5 mai        (8 tokens); common: l échéance le 5 mai = 5
    # P = 5/6, R = 5/8, F1 = 2PR/(P+R) = 5/7
    assert token_f1("L'échéance est le 5 mai.", "Le contrat a l'échéance du 5 mai.") == pytest.approx(5 / 7)
    # The elided article is split off, so "l'échéance" matches "échéance" (otherwise 0 common tokens).
    assert token_f1("l'échéance", "échéance") == pytest.approx(2 * (1 / 2) * 1 / (1 / 2 + 1))


def test_token_f1_counts_repeats_and_edge_cases() -> None:
    # answer: vier vier wochen (3), reference: vier wochen (2); common min-counts: vier 1, wochen 1 = 2
    assert token_f1("vier vier Wochen", "Vier Wochen") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert token_f1("", "") == 1.0 and token_f1("", "Vier Wochen.") == 0.0 and token_f1("Ja.", "") == 0.0
    assert token_f1("Nein.", "Vier Wochen.") == 0.0


def test_german_compound_defeats_token_f1_but_not_chrf() -> None:
    answer, reference = "Kündigungsfrist", "Frist der Kündigung"
    assert token_f1(answer, reference) == 0.0  # one compound token against three tokens: nothing in common
    assert chrf(answer, reference) > 0.3  # character n-grams of "kündigung" and "frist" are shared
    assert chrf(answer, reference) > chrf("Urlaubsantrag", reference) + 0.2


def test_chrf_scale_and_bounds() -> None:
    reference = "Die Kündigungsfrist beträgt vier Wochen zum Monatsende."
    assert chrf(reference, reference) == pytest.approx(1.0)
    assert chrf("", reference) == 0.0 and chrf(reference, "") == 0.0
    close, far = chrf("Die Kündigungsfrist beträgt vier Wochen.", reference), chrf("Zwölf Tage.", reference)
    assert 0.0 <= far < close < 1.0
    # French elision: "l'échéance" and "l échéance" differ only in the apostrophe, which chrF ignores with
    # all other whitespace... it is a character, so the two are close but not equal.
    assert 0.7 < chrf("la date de l'échéance", "la date de l échéance") < 1.0


def test_grounding_by_hand() -> None:
    context = "Zorbania is a small country. Its capital is Quelltown."
    # content tokens: capital quelltown founded 1820 (the, is: English function words); in the chunk: 2 of 4
    assert grounding("The capital is Quelltown, founded 1820.", context, "en") == 0.5
    # French: l, le, est, de are function words; content: capitale zorbania quelltown -> all 3 in the chunk
    assert grounding("La capitale de la Zorbania est Quelltown.", "capitale: Zorbania, Quelltown", "fr") == 1.0
    # German compound in the answer, its parts in the chunk: not found (token-level check)
    assert grounding("Die Kündigungsfrist", "Die Frist der Kündigung beträgt vier Wochen.", "de") == 0.0


def test_grounding_is_none_for_refusals_and_answers_without_content() -> None:
    assert grounding(REFUSALS["fr"], "Le contrat.", "fr") is None
    assert grounding("Das ist es.", "Ein Text.", "de") is None  # function words only
    assert grounding("", "Ein Text.", "de") is None


def test_score_answer_bundles_all_three() -> None:
    scores = score_answer("Vier Wochen.", "Vier Wochen.", "Die Frist beträgt vier Wochen.", "de")
    assert scores.chrf == pytest.approx(1.0) and scores.token_f1 == 1.0 and scores.grounding == 1.0
    assert scores.score("token_f1") == 1.0

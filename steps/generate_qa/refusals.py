"""The refusal sentence that answers an unanswerable question, per language, and how to recognise one.

generate_qa writes `REFUSALS[language]` as the reference answer of every unanswerable question, so the
fine-tuned adapter learns this exact sentence; the judge recognises it (and a few common paraphrases
a base model produces) with `is_refusal`.
"""

from steps.generate_qa.text import normalise

REFUSALS: dict[str, str] = {
    "en": "The provided context does not contain the answer to this question.",
    "de": "Der bereitgestellte Kontext enthält keine Antwort auf diese Frage.",
    "fr": "Le contexte fourni ne contient pas la réponse à cette question.",
    "es": "El contexto proporcionado no contiene la respuesta a esta pregunta.",
    "it": "Il contesto fornito non contiene la risposta a questa domanda.",
    "nl": "De gegeven context bevat geen antwoord op deze vraag.",
}

# Paraphrases that only occur in refusals, per language (matched on normalised text).
_MARKERS: dict[str, tuple[str, ...]] = {
    "en": ("cannot answer", "can not answer", "cant answer", "unable to answer", "does not contain the answer",
           "does not provide the answer", "no information about this", "not mentioned in the context",
           "not mentioned in the text", "the context does not say"),
    "de": ("kann diese frage nicht beantworten", "keine antwort auf diese frage", "nicht im kontext",
           "nicht im text erwähnt", "keine informationen dazu"),
    "fr": ("ne peux pas répondre", "ne contient pas la réponse", "pas mentionné dans le contexte",
           "pas mentionné dans le texte", "aucune information à ce sujet"),
    "es": ("no puedo responder", "no contiene la respuesta", "no se menciona en el contexto",
           "no se menciona en el texto", "no hay información sobre"),
    "it": ("non posso rispondere", "non contiene la risposta", "non è menzionato nel contesto",
           "non è menzionato nel testo", "nessuna informazione su"),
    "nl": ("kan deze vraag niet beantwoorden", "geen antwoord op deze vraag", "niet vermeld in de context",
           "niet vermeld in de tekst", "geen informatie over"),
}


def refusal(language: str) -> str:
    """The refusal sentence for `language` (English for a language without its own sentence)."""
    return REFUSALS.get(language, REFUSALS["en"])


_SENTENCES: tuple[str, ...] = tuple(normalise(s) for s in REFUSALS.values())
_NORMALISED_MARKERS: dict[str, tuple[str, ...]] = {
    language: tuple(normalise(m) for m in markers) for language, markers in _MARKERS.items()
}


def is_refusal(text: str, language: str) -> bool:
    """True if `text` refuses: any language's refusal sentence, or a refusal paraphrase.

    A refusal in the wrong language is still a refusal (the language check is the judge's other check).
    """
    clean = f" {normalise(text)} "  # padded so that phrases match whole words only
    markers = _NORMALISED_MARKERS.get(language, ()) + _NORMALISED_MARKERS["en"]
    return any(f" {phrase} " in clean for phrase in _SENTENCES + markers)

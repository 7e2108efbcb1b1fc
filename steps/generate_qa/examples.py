"""Few-shot examples, one per question type and language, shown to the model before each request.

A 135M model follows a worked example far better than an instruction, and it answers in the language
its examples are in: so each language gets its own. A language missing here falls back to English.
The examples are about an invented museum, garden and ferry, unrelated to a company corpus; a question
that mentions one of their `MARKERS` while its chunk does not was copied from an example.
"""

from typing import NamedTuple


class Example(NamedTuple):
    source: str  # the sentence(s) shown to the model
    question: str
    answer: str  # empty for the unanswerable example


_Examples = dict[str, Example]  # question type (or "unanswerable") -> example

EXAMPLES: dict[str, _Examples] = {
    "en": {
        "factual": Example("The museum café opens at 9:00 and closes at 18:00.",
                           "When does the museum café open?", "The museum café opens at 9:00."),
        "conceptual": Example("Gardeners water the orchids at night so that the sun does not burn them.",
                              "Why do gardeners water the orchids at night?", "So that the sun does not burn them."),
        "comparison": Example("The red ferry needs 40 minutes for the crossing. The blue ferry needs 25 minutes.",
                              "How does the crossing time of the blue ferry differ from the red ferry?",
                              "The blue ferry needs 25 minutes, the red ferry 40 minutes."),
        "unanswerable": Example("The museum café opens at 9:00 and closes at 18:00.",
                                "How much does a cake cost in the museum café?", ""),
    },
    "de": {
        "factual": Example("Das Museumscafé öffnet um 9 Uhr und schließt um 18 Uhr.",
                           "Wann öffnet das Museumscafé?", "Das Museumscafé öffnet um 9 Uhr."),
        "conceptual": Example("Die Gärtner gießen die Orchideen nachts, damit die Sonne sie nicht verbrennt.",
                              "Warum gießen die Gärtner die Orchideen nachts?",
                              "Damit die Sonne sie nicht verbrennt."),
        "comparison": Example("Die rote Fähre braucht für die Überfahrt 40 Minuten. Die blaue Fähre braucht "
                              "25 Minuten.", "Wie unterscheidet sich die Fahrzeit der blauen Fähre von der "
                              "roten Fähre?", "Die blaue Fähre braucht 25 Minuten, die rote Fähre 40 Minuten."),
        "unanswerable": Example("Das Museumscafé öffnet um 9 Uhr und schließt um 18 Uhr.",
                                "Wie viel kostet ein Stück Kuchen im Museumscafé?", ""),
    },
    "fr": {
        "factual": Example("Le café du musée ouvre à 9 h et ferme à 18 h.",
                           "À quelle heure ouvre le café du musée ?", "Le café du musée ouvre à 9 h."),
        "conceptual": Example("Les jardiniers arrosent les orchidées la nuit pour que le soleil ne les brûle "
                              "pas.", "Pourquoi les jardiniers arrosent-ils les orchidées la nuit ?",
                              "Pour que le soleil ne les brûle pas."),
        "comparison": Example("Le ferry rouge met 40 minutes pour la traversée. Le ferry bleu met 25 minutes.",
                              "En quoi la durée de traversée du ferry bleu diffère-t-elle de celle du ferry "
                              "rouge ?", "Le ferry bleu met 25 minutes, le ferry rouge 40 minutes."),
        "unanswerable": Example("Le café du musée ouvre à 9 h et ferme à 18 h.",
                                "Combien coûte une part de gâteau au café du musée ?", ""),
    },
    "es": {
        "factual": Example("La cafetería del museo abre a las 9:00 y cierra a las 18:00.",
                           "¿A qué hora abre la cafetería del museo?", "La cafetería del museo abre a las 9:00."),
        "conceptual": Example("Los jardineros riegan las orquídeas de noche para que el sol no las queme.",
                              "¿Por qué riegan los jardineros las orquídeas de noche?",
                              "Para que el sol no las queme."),
        "comparison": Example("El ferry rojo tarda 40 minutos en la travesía. El ferry azul tarda 25 minutos.",
                              "¿En qué se diferencia la travesía del ferry azul de la del ferry rojo?",
                              "El ferry azul tarda 25 minutos y el ferry rojo 40 minutos."),
        "unanswerable": Example("La cafetería del museo abre a las 9:00 y cierra a las 18:00.",
                                "¿Cuánto cuesta un trozo de tarta en la cafetería del museo?", ""),
    },
    "it": {
        "factual": Example("Il caffè del museo apre alle 9:00 e chiude alle 18:00.",
                           "A che ora apre il caffè del museo?", "Il caffè del museo apre alle 9:00."),
        "conceptual": Example("I giardinieri annaffiano le orchidee di notte perché il sole non le bruci.",
                              "Perché i giardinieri annaffiano le orchidee di notte?",
                              "Perché il sole non le bruci."),
        "comparison": Example("Il traghetto rosso impiega 40 minuti per la traversata. Il traghetto blu "
                              "impiega 25 minuti.", "In che cosa differisce la traversata del traghetto blu da "
                              "quella del traghetto rosso?",
                              "Il traghetto blu impiega 25 minuti, quello rosso 40 minuti."),
        "unanswerable": Example("Il caffè del museo apre alle 9:00 e chiude alle 18:00.",
                                "Quanto costa una fetta di torta al caffè del museo?", ""),
    },
    "nl": {
        "factual": Example("Het museumcafé gaat om 9.00 uur open en sluit om 18.00 uur.",
                           "Hoe laat gaat het museumcafé open?", "Het museumcafé gaat om 9.00 uur open."),
        "conceptual": Example("De tuiniers geven de orchideeën 's nachts water, zodat de zon ze niet verbrandt.",
                              "Waarom geven de tuiniers de orchideeën 's nachts water?",
                              "Zodat de zon ze niet verbrandt."),
        "comparison": Example("De rode veerboot doet 40 minuten over de overtocht. De blauwe veerboot doet "
                              "25 minuten.", "Hoe verschilt de overtocht van de blauwe veerboot van die van "
                              "de rode veerboot?", "De blauwe veerboot doet 25 minuten, de rode 40 minuten."),
        "unanswerable": Example("Het museumcafé gaat om 9.00 uur open en sluit om 18.00 uur.",
                                "Hoeveel kost een stuk taart in het museumcafé?", ""),
    },
}

# The invented things the examples are about (normalised words), per language.
MARKERS: dict[str, frozenset[str]] = {
    "en": frozenset({"museum", "café", "cafe", "gardeners", "orchids", "ferry", "cake"}),
    "de": frozenset({"museumscafé", "museumscafe", "gärtner", "orchideen", "fähre", "kuchen"}),
    "fr": frozenset({"musée", "jardiniers", "orchidées", "ferry", "gâteau"}),
    "es": frozenset({"museo", "cafetería", "jardineros", "orquídeas", "ferry", "tarta"}),
    "it": frozenset({"museo", "giardinieri", "orchidee", "traghetto", "torta"}),
    "nl": frozenset({"museumcafé", "museumcafe", "tuiniers", "orchideeën", "veerboot", "taart"}),
}


def example(language: str, kind: str) -> Example:
    """The example for `kind` (a question type or "unanswerable") in `language`, else in English."""
    return EXAMPLES.get(language, EXAMPLES["en"])[kind]


def markers(language: str) -> frozenset[str]:
    return MARKERS.get(language, MARKERS["en"])

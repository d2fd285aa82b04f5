"""Text normalisation: what the voice reads for what a book writes, in English and German,
as exact strings (songbatch.normalise), and how the chunker splits the result."""

from __future__ import annotations

import pytest

from songbatch import text as textlib
from songbatch.normalise import LexiconEntry, normalised_languages, voicing
from songbatch.normalise.roman import roman_value

ENGLISH = [
    # numbers
    ("There were 3 cats.", "There were three cats."),
    ("He counted 1,234 sheep.", "He counted one thousand two hundred and thirty-four sheep."),
    ("It weighs 2.5 tonnes.", "It weighs two point five tonnes."),
    ("It was -7 outside.", "It was minus seven outside."),
    (
        "The total was 1,234,567.",
        "The total was one million two hundred and thirty-four thousand five hundred and"
        " sixty-seven.",
    ),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("The price was 4.50 a pound.", "The price was four point five zero a pound."),
    ("He was 5. Then he left.", "He was five. Then he left."),  # a full stop, not a decimal
    ("It was 3.5. Then it fell.", "It was three point five. Then it fell."),
    ("Agent 007 arrived.", "Agent zero zero seven arrived."),
    ("Pages 10-12.", "Pages ten-twelve."),
    # ordinals
    ("She came 1st and he came 2nd.", "She came first and he came second."),
    ("The 3rd time and the 21st time.", "The third time and the twenty-first time."),
    ("It was his 100th birthday.", "It was his one hundredth birthday."),
    # years and decades
    ("In 1984 it rained.", "In nineteen eighty-four it rained."),
    ("Since 2005 they met.", "Since two thousand five they met."),
    ("By 2024 it was over.", "By twenty twenty-four it was over."),
    ("It was 1905.", "It was nineteen oh-five."),
    ("It happened in 1066 AD.", "It happened in ten sixty-six AD."),
    ("It was built around 500 BC.", "It was built around five hundred BC."),
    ("Back in the 1990s we danced.", "Back in the nineteen nineties we danced."),
    ("The 1800s were long.", "The eighteen hundreds were long."),
    ("In the '60s and the 80s.", "In the sixties and the eighties."),
    ("From 1990 to 1995.", "From nineteen ninety to nineteen ninety-five."),
    # dates
    ("They left on 2024-03-15.", "They left on March fifteenth, twenty twenty-four."),
    ("They left on 03/15/2024.", "They left on March fifteenth, twenty twenty-four."),
    ("They left on 15/03/2024.", "They left on March fifteenth, twenty twenty-four."),
    ("They left on March 15, 2024.", "They left on March fifteenth, twenty twenty-four."),
    ("They left on 15 March 2024.", "They left on the fifteenth of March, twenty twenty-four."),
    ("It began on May 4th.", "It began on May fourth."),
    ("It began on Sept. 3.", "It began on September third."),
    ("Not a date: 2024-13-45.", "Not a date: two thousand and twenty-four-thirteen-forty-five."),
    # times
    ("We meet at 3:30 pm.", "We meet at three thirty PM."),
    ("We meet at 3:05 p.m. today.", "We meet at three oh five PM today."),
    ("We met at 5 p.m. Then we ate.", "We met at five PM. Then we ate."),
    ("The train left at 14:05.", "The train left at fourteen oh five."),
    ("The train left at 14:00.", "The train left at fourteen hundred."),
    ("Wake me at 9am.", "Wake me at nine AM."),
    ("Call me at 7:00 am.", "Call me at seven AM."),
    ("It ended at 10:00.", "It ended at ten o'clock."),
    # money
    ("It costs $4.50.", "It costs four dollars fifty cents."),
    ("It costs $1.", "It costs one dollar."),
    ("It costs $0.99.", "It costs ninety-nine cents."),
    ("It costs $1,000.", "It costs one thousand dollars."),
    ("It costs $1.01.", "It costs one dollar one cent."),
    ("A ticket is €3.", "A ticket is three euros."),
    ("The house sold for £1.2m.", "The house sold for one point two million pounds."),
    ("Revenue hit $3bn.", "Revenue hit three billion dollars."),
    ("He owed -$5.", "He owed minus five dollars."),
    ("It was 20 USD.", "It was twenty US dollars."),
    # percentages
    ("Prices rose 50%.", "Prices rose fifty percent."),
    ("Prices rose 3.5%.", "Prices rose three point five percent."),
    # units
    ("The road is 5 km long.", "The road is five kilometers long."),
    ("The bag is 10 kg.", "The bag is ten kilograms."),
    ("The wall is 3 ft high.", "The wall is three feet high."),
    ("It is 1 ft long.", "It is one foot long."),
    ("It was 20°C today.", "It was twenty degrees Celsius today."),
    ("It fell to -5°C.", "It fell to minus five degrees Celsius."),
    ("It turned 90°.", "It turned ninety degrees."),
    ("The limit is 5 mph.", "The limit is five miles per hour."),
    ("It ran 1 mile at 100 km/h.", "It ran one mile at one hundred kilometers per hour."),
    ("It is 1.5 m tall.", "It is one point five meters tall."),
    # Roman numerals
    ("Read Chapter IV tonight.", "Read Chapter four tonight."),
    ("CHAPTER XII", "CHAPTER twelve"),
    ("Part I", "Part one"),
    ("XIV\n\nThe night fell.", "fourteen\n\nThe night fell."),
    ("Henry VIII had six wives.", "Henry the Eighth had six wives."),
    ("Louis XIV built Versailles.", "Louis the Fourteenth built Versailles."),
    ("It was the end of World War II.", "It was the end of World War two."),
    ("It was Elizabeth I.", "It was Elizabeth the First."),
    ("I think I can.", "I think I can."),
    ("I am here, said I.", "I am here, said I."),
    ("Then James I went home.", "Then James I went home."),  # the pronoun after a name
    ("They MIX it.", "They MIX it."),
    # abbreviations
    ("Dr. Smith is here.", "Doctor Smith is here."),
    ("Mr. and Mrs. Brown came.", "Mister and Missus Brown came."),
    ("Ms. Green waved.", "Miz Green waved."),
    ("We saw St. Paul's Cathedral.", "We saw Saint Paul's Cathedral."),
    ("She lives on Baker St.", "She lives on Baker Street."),
    ("She lives on Baker St. now.", "She lives on Baker Street now."),
    ("He lives on Mulholland Dr. now.", "He lives on Mulholland Drive now."),
    ("Fruit, e.g. apples.", "Fruit, for example apples."),
    ("The best, i.e. the first.", "The best, that is the first."),
    ("Cats, dogs, etc. were there.", "Cats, dogs, et cetera were there."),
    ("We bought pens, paper, etc.", "We bought pens, paper, et cetera."),
    ("Pens, etc. Then we left.", "Pens, et cetera. Then we left."),
    ("It was Ali vs. Frazier.", "It was Ali versus Frazier."),
    ("See No. 5 on the list.", "See number five on the list."),
    ("Say no. Then leave.", "Say no. Then leave."),
    # addresses
    ("Visit example.com today.", "Visit example dot com today."),
    (
        "Visit https://www.example.org/about/team for more.",
        "Visit example dot org slash about slash team for more.",
    ),
    ("See example.com.", "See example dot com."),
    ("Write to name@example.org today.", "Write to name at example dot org today."),
    (
        "Write to jane.doe@mail.example.co.uk now.",
        "Write to jane dot doe at mail dot example dot co dot uk now.",
    ),
    ("It ended.The next", "It ended.The next"),  # a missing space is not an address
]

BRITISH = [
    ("On 15/03/2024 we left.", "On the fifteenth of March, twenty twenty-four we left."),
    ("On 2024-03-15 we left.", "On the fifteenth of March, twenty twenty-four we left."),
    ("On March 15 we left.", "On March the fifteenth we left."),
    ("It cost £1.50.", "It cost one pound fifty pence."),
    ("It is 5 km away.", "It is five kilometres away."),
    ("Since 2005.", "Since two thousand and five."),
]

GERMAN = [
    ("Es waren 3 Katzen.", "Es waren drei Katzen."),
    ("Er zählte 1.234 Schafe.", "Er zählte eintausendzweihundertvierunddreißig Schafe."),
    ("Es wiegt 2,5 Tonnen.", "Es wiegt zwei Komma fünf Tonnen."),
    ("Es waren -7 Grad.", "Es waren minus sieben Grad."),
    ("Es waren 3. Dann ging er.", "Es waren drei. Dann ging er."),  # a full stop, no ordinal
    ("Am 3. Mai kam er.", "Am dritten Mai kam er."),
    ("Der 2. Weltkrieg endete.", "Der zweite Weltkrieg endete."),
    ("Er wurde 3. von 10.", "Er wurde dritter von zehn."),
    ("Im Jahr 1984 regnete es.", "Im Jahr neunzehnhundertvierundachtzig regnete es."),
    ("In den 1990er Jahren tanzten wir.", "In den neunzehnhundertneunziger Jahren tanzten wir."),
    (
        "Sie fuhren am 15.03.2024 ab.",
        "Sie fuhren am fünfzehnten März zweitausendvierundzwanzig ab.",
    ),
    (
        "Sie fuhren am 15. März 2024 ab.",
        "Sie fuhren am fünfzehnten März zweitausendvierundzwanzig ab.",
    ),
    ("Wir treffen uns um 14:05 Uhr.", "Wir treffen uns um vierzehn Uhr fünf."),
    ("Wir treffen uns um 14 Uhr.", "Wir treffen uns um vierzehn Uhr."),
    ("Der Zug fährt um 9.30 Uhr.", "Der Zug fährt um neun Uhr dreißig."),
    ("Es ist 1:00 Uhr.", "Es ist ein Uhr."),
    ("Es kostet 3,50 €.", "Es kostet drei Euro fünfzig."),
    ("Es kostet 1 €.", "Es kostet ein Euro."),
    ("Es kostet €3.", "Es kostet drei Euro."),
    ("Es kostet 0,99 €.", "Es kostet neunundneunzig Cent."),
    ("Das Haus kostet 1,2 Mio. €.", "Das Haus kostet eins Komma zwei Millionen Euro."),
    ("Die Preise stiegen um 50 %.", "Die Preise stiegen um fünfzig Prozent."),
    ("Die Straße ist 5 km lang.", "Die Straße ist fünf Kilometer lang."),
    ("Es ist 1 km weit.", "Es ist ein Kilometer weit."),
    ("Es waren 20 °C.", "Es waren zwanzig Grad Celsius."),
    ("Lies Kapitel IV heute.", "Lies Kapitel vier heute."),
    ("Ludwig XIV. baute Versailles.", "Ludwig der Vierzehnte baute Versailles."),
    ("Dr. Müller kommt.", "Doktor Müller kommt."),
    ("Obst, z. B. Äpfel.", "Obst, zum Beispiel Äpfel."),
    ("Morgen, d. h. bald.", "Morgen, das heißt bald."),
    ("Äpfel, Birnen usw. Dann gingen wir.", "Äpfel, Birnen und so weiter. Dann gingen wir."),
    ("Besuchen Sie www.beispiel.de heute.", "Besuchen Sie beispiel Punkt de heute."),
    (
        "Schreiben Sie an name@beispiel.de bitte.",
        "Schreiben Sie an name ät beispiel Punkt de bitte.",
    ),
    ("Er wohnt in der Goethestr. 5.", "Er wohnt in der Goethestraße fünf."),
    ("Siehe Nr. 5 der Liste.", "Siehe Nummer fünf der Liste."),
    ("Ich bin da.", "Ich bin da."),
]


def _spoken(language: str, text: str) -> str:
    return voicing(language, normalise=True)(text)


@pytest.mark.parametrize(("written", "said"), ENGLISH)
def test_english(written: str, said: str) -> None:
    assert _spoken("en", written) == said


@pytest.mark.parametrize(("written", "said"), BRITISH)
def test_british_english(written: str, said: str) -> None:
    assert _spoken("en-GB", written) == said


@pytest.mark.parametrize(("written", "said"), GERMAN)
def test_german(written: str, said: str) -> None:
    assert _spoken("de", written) == said


def test_the_tables_are_as_large_as_the_issue_asks() -> None:
    assert len(ENGLISH) >= 60 and len(GERMAN) >= 15
    assert normalised_languages() == ["de", "en"]


def test_text_without_anything_to_say_differently_is_returned_unchanged() -> None:
    plain = "Every evening at dusk, Maren climbed the steps.\n\nShe counted them aloud."
    assert _spoken("en", plain) is not None and _spoken("en", plain) == plain
    assert _spoken("de", "Sie zählte die Stufen.") == "Sie zählte die Stufen."


def test_a_language_without_rules_and_a_book_that_turns_them_off_keep_their_text() -> None:
    assert voicing("ja", normalise=True)("It costs $4.50.") == "It costs $4.50."
    assert voicing("en", normalise=False)("It costs $4.50.") == "It costs $4.50."


def test_abbreviations_said_in_full_do_not_end_sentences_and_their_last_stop_does() -> None:
    said = _spoken("en", "Dr. Smith met Mr. Jones on Baker St. at noon. We bought pens, etc. Then.")
    assert textlib.split_sentences(said) == [
        "Doctor Smith met Mister Jones on Baker Street at noon.",
        "We bought pens, et cetera.",
        "Then.",
    ]


def test_chunks_are_cut_from_the_words_the_voice_reads() -> None:
    said = _spoken("en", "It cost $1,234,567.89 in all.")
    chunks = textlib.chunk_text(said, 40)
    assert all(len(chunk.text) <= 40 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == said


@pytest.mark.parametrize(
    ("numeral", "value"),
    [("I", 1), ("IV", 4), ("IX", 9), ("XIV", 14), ("XL", 40), ("MCMLXXXIV", 1984), ("MIX", 1009)],
)
def test_roman_values(numeral: str, value: int) -> None:
    assert roman_value(numeral) == value


@pytest.mark.parametrize("numeral", ["", "IIII", "IC", "VV", "CIVIL", "DID"])
def test_malformed_roman_numerals_are_not_numbers(numeral: str) -> None:
    assert roman_value(numeral) is None


# --- the lexicon -------------------------------------------------------------------------------


def test_lexicon_words_match_whole_words_with_sensible_case() -> None:
    lexicon = [
        LexiconEntry("tolkien", say="TOLL-keen"),
        LexiconEntry("Bass", say="Bahss"),
    ]
    spoken = voicing("en", normalise=False, lexicon=lexicon)
    assert spoken("Tolkien and TOLKIEN and tolkien.") == "TOLL-keen and TOLL-keen and TOLL-keen."
    assert spoken("Tolkiens") == "Tolkiens"  # a whole word only
    assert spoken("Mr Bass caught a bass. BASS!") == "Mr Bahss caught a bass. Bahss!"


def test_longer_lexicon_phrases_win_and_their_words_are_never_normalised() -> None:
    lexicon = [
        LexiconEntry("R2-D2", say="Artoo-Detoo"),
        LexiconEntry("New York", say="Noo York"),
        LexiconEntry("New York City", say="the Big Apple"),
    ]
    spoken = voicing("en", normalise=True, lexicon=lexicon)
    assert spoken("R2-D2 went to New York City and New York in 1984.") == (
        "Artoo-Detoo went to the Big Apple and Noo York in nineteen eighty-four."
    )


def test_lexicon_patterns_use_their_groups() -> None:
    entry = LexiconEntry(r"\bMc([A-Z][a-z]+)", say=r"Mac \1", pattern=True)
    assert voicing("en", normalise=False, lexicon=[entry])("McDuff met McLeod.") == (
        "Mac Duff met Mac Leod."
    )


def test_phonemes_reach_only_an_engine_that_reads_them() -> None:
    entry = LexiconEntry("Cthulhu", say="kuh-THOO-loo", espeak="k@T'u:lu:")
    respelled = voicing("en", normalise=True, lexicon=[entry])
    phonemes = voicing("en", normalise=True, lexicon=[entry], notation="espeak")
    assert respelled("Cthulhu waits.") == "kuh-THOO-loo waits."
    assert phonemes("Cthulhu waits.") == "[[k@T'u:lu:]] waits."
    # Only phonemes and no respelling: other engines read the word as written.
    only = LexiconEntry("Cthulhu", espeak="k@T'u:lu:")
    assert voicing("en", normalise=False, lexicon=[only])("Cthulhu waits.") == "Cthulhu waits."


def test_a_books_own_double_brackets_are_not_read_as_phonemes() -> None:
    spoken = voicing("en", normalise=False, notation="espeak")
    assert spoken("See [[the note]] here.") == "See [the note] here."
    assert voicing("en", normalise=False)("See [[the note]] here.") == "See [[the note]] here."

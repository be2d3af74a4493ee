"""The short answer: the user's own clause that answers, the date of a "when", a count
of the entries that mention what a "how many times" asks about (issue 24)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.engine import counting
from assistant.engine.short_answer import as_sentence, best_clause, clauses, date_answer


@dataclass
class Quote:
    text: str
    date: str | None = "1908-05-01"
    path: str = "1908/1908-05-01.md"


def words_of(text: str) -> list[str]:
    return text.rstrip(".").lower().split()


def in_order_in(short: str, quotes) -> bool:
    """The short answer is a run of a quote's words, as written (bar a capital and a
    full stop)."""
    body = short.rstrip(".")
    return any(body.lower() in q.text.lower() for q in quotes)


BARBELLION_LIKE = [
    Quote("Cycled to the Lighthouse at the mouth of the Estuary, and picked up a Land Rail "
          "under the telegraph wires, killed by flying against them."),
    Quote("After a glorious day at the N. end of the Island with the Puffins, was forced "
          "tonight to take another walk.", "1909-06-07", "1909/1909-06-07.md"),
]


def test_the_clause_the_model_points_at_is_the_short_answer():
    question = "What bird did I pick up under the telegraph wires on 1 May 1908?"
    # the model restated the question and named nothing: the clause with new words and
    # the question's words beside them
    plain = best_clause(question, BARBELLION_LIKE, hint="The bird I picked up on.")
    assert "Land Rail" in plain and in_order_in(plain, BARBELLION_LIKE)
    # the model named the bird: the clause that holds it
    pointed = best_clause(question, BARBELLION_LIKE, hint="The Land Rail.")
    assert "Land Rail" in pointed and len(pointed.split()) <= 15
    assert pointed[0].isupper() and pointed.endswith(".")


def test_a_question_for_a_number_gets_the_clause_with_the_number():
    quotes = [Quote("Signed the lease for Flat 3, 27 Alder Street."),
              Quote("Rent: £1,150 a month (we pay £875 here at Rowan Terrace, so, ouch)"),
              Quote("Deposit: £1,327")]
    question = "How much was the deposit for the Alder Street flat?"
    # the model pointed at the number: its clause, not the lease's "Flat 3, 27"
    assert best_clause(question, quotes, hint="The deposit was £1,327.") == "Deposit: £1,327."
    # a number beside a name is a label, not a quantity: with no pointer the numbers the
    # question asks for still win over "Flat 3"
    run = [Quote("Long run: 32 km along the Rivelin Valley"), Quote("Time: 3:21:40")]
    assert "3:21:40" in best_clause("How long did my 32 km run take?", run)
    # "1:58:14" and "£1,400" are not cut at their colon or comma
    assert [quotes[0].text[a:b] for a, b in clauses("Finish: 1:58:14 (chip time)")] != []
    assert any("1:58:14" in "Finish: 1:58:14 (chip time)"[a:b]
               for a, b in clauses("Finish: 1:58:14 (chip time)"))
    finish = best_clause("What was my finish time?", [Quote("Finish: 1:58:14 (chip time)")])
    assert "1:58:14" in finish and finish.count("(") == finish.count(")")


def test_a_name_question_prefers_the_clause_with_a_new_name():
    quotes = [Quote("Dined at the Devonshire Club in St. James’s Street, W., with Dr. H⸺ and "
                    "Mr. ⸻, the latter showing the grave symptomatic phenomena of a monocle "
                    "and spats.")]
    short = best_clause("Where did I dine with Dr. H⸺ and a man with a monocle and spats?",
                        quotes)
    assert "Devonshire Club" in short


def test_no_clause_when_the_quotes_say_nothing_the_question_does_not():
    assert best_clause("Did I see the Hollow Ferns?", [Quote("The Hollow Ferns.")]) == ""


def test_clauses_tile_the_sentence_and_as_sentence_keeps_apostrophes():
    text = "Scott’s news came, and I read it in the Pall Mall Gazette; it gave me thrills."
    pieces = clauses(text)
    assert "".join(text[a:b] for a, b in pieces) == text[pieces[0][0]:pieces[-1][1]]
    assert as_sentence("scott’s “great adventure") == "Scott’s great adventure."
    assert as_sentence("“Magpie” is its name") == "“Magpie” is its name."


def test_a_when_question_is_answered_with_the_date_of_its_quote():
    assert date_answer([Quote("To Challacombe and walked across Exmoor.", "1907-05-22")]) \
        == "On 22 May 1907."
    assert date_answer([Quote("Undated line.", None)]) == ""
    assert date_answer([]) == ""


@pytest.mark.parametrize("question, counts", [
    ("How many times in 1793 did I complain of sandflies?", True),
    ("On how many days did I record observing an emersion of one of Jupiter's satellites?", True),
    ("In how many entries of my journal did I write that I had toothache?", True),
    ("How often did I play Ludo?", True),
    ("How many nests did I find in 1905?", False),
    ("How many kilos of tomatoes did the allotment produce?", False),
])
def test_which_questions_are_counts(question, counts):
    assert counting.asks_to_count(question) is counts


def test_the_counted_thing_is_the_rarest_word_or_name_in_the_notes():
    chunks = {"jupiter": 7, "satellites": 7, "emersion": 3, "observing": 12, "record": 0,
              "one": 50}
    assert counting.counted_thing(
        "On how many days did I record observing an emersion of one of Jupiter's satellites?",
        lambda phrase: chunks.get(phrase.lower(), 0)) == "emersion"
    halls = {"queen's hall": 3, "queen": 3, "hall": 3, "going": 40, "between": 60}
    assert counting.counted_thing(
        "How many times did I write about going to the Queen's Hall, between 1914 and 1916?",
        lambda phrase: halls.get(phrase.lower(), 0)) in ("queen's hall", "Queen's Hall")
    assert counting.counted_thing("How many times did I see a walrus?", lambda p: 0) is None


def test_count_answers_read_as_sentences_with_number_words():
    assert counting.count_answer(["1911-03-10"]) == "In one entry, on 10 March 1911."
    assert counting.count_answer(["1911-03-10", "1911-03-17"]) == \
        "In two entries: 10 March 1911 and 17 March 1911."
    five = counting.count_answer(["1904-09-08", "1904-09-09", "1905-01-02", "1910-04-01",
                                  "1917-03-02"])
    assert five == "In five entries, from 8 September 1904 to 2 March 1917."
    assert len(five.split()) <= 15
    assert counting.mentioning_sentence("Sat at home. Played Ludo with H. Bed.", "ludo") == \
        "Played Ludo with H. Bed." or "Ludo" in counting.mentioning_sentence(
            "Sat at home. Played Ludo with H. Bed.", "ludo")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                        min_size=1, max_size=120), min_size=1, max_size=3),
       st.text(min_size=1, max_size=60), st.text(max_size=40))
def test_a_short_answer_holds_only_the_words_of_its_quotes(texts, question, hint):
    """Whatever the quotes, the question and the model's pointer: every word of the short
    answer is in a quote (bar the capital first letter and a closing full stop), so it never
    holds a name or number its quotes lack."""
    quotes = [Quote(text) for text in texts]
    short = best_clause(question, quotes, hint=hint)
    if not short:
        return
    assert len(short.split()) <= 15
    quoted = " ".join(q.text for q in quotes).lower()
    for word in short.rstrip(".").split():
        word = word.strip("“”\"()").lower()
        assert word in quoted, (word, short, texts)

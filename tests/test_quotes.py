"""Quotes: the user's own sentences, verbatim, dated; how an answer is written out."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.engine import prompting
from assistant.engine.quotes import (
    NOTES_DONT_SAY,
    choose_quotes,
    render_answer,
    says_notes_dont_say,
    short_part,
    tidy_short,
)


@dataclass
class Passage:
    text: str
    date: str
    path: str
    title: str | None = None


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = ("And in the evening Sir W. Penn and I did dig another, and put our wine in it. "
            "Mr. Duke, K.C. came at 3 p.m. to see me. Then to bed.")
    assert prompting.split_sentences(text) == [
        "And in the evening Sir W. Penn and I did dig another, and put our wine in it.",
        "Mr. Duke, K.C. came at 3 p.m. to see me.", "Then to bed."]


def test_quotes_are_the_best_sentences_verbatim_with_their_date_and_file():
    passages = [Passage("Went to the Leadmill with Anna to see The Hollow Ferns. They played "
                        "Paper Moth as the last encore.\nHome by midnight.", "2024-02-03",
                        "daily/2024-02-03.md"),
                Passage("Bought a 10-visit pass for £85.", "2024-02-04", "daily/2024-02-04.md")]
    sentences = prompting.select_sentences("Which band played Paper Moth?", passages, limit=4)
    quotes = choose_quotes(prompting.select_sentences("Which band played Paper Moth?", passages),
                           passages, pool=sentences)
    assert quotes, "the best sentence is always quoted"
    best = quotes[0]
    # "They played ..." leans on the sentence before it: both are quoted, as written
    assert best.text == ("Went to the Leadmill with Anna to see The Hollow Ferns. They played "
                         "Paper Moth as the last encore.")
    assert (best.date, best.path) == ("2024-02-03", "daily/2024-02-03.md")
    for quote in quotes:
        assert any(quote.text in p.text for p in passages)
    shown = render_answer("The Hollow Ferns.", quotes)
    assert shown.startswith("The Hollow Ferns.\n\n> “Went to the Leadmill")
    assert "— 3 February 2024, daily/2024-02-03.md" in shown
    assert short_part(shown) == "The Hollow Ferns."


def test_a_sentence_rewritten_for_reading_is_not_quoted():
    passages = [Passage("- A [[Ellie|woman]] ran.", "2024-01-01", "a.md")]
    sentences = prompting.select_sentences("Who ran?", passages)
    assert sentences and sentences[0].text == "A woman ran."
    assert choose_quotes(sentences, passages) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                        min_size=1, max_size=80), min_size=1, max_size=6),
       st.text(min_size=1, max_size=40))
def test_quotes_are_always_substrings_of_their_entries(lines, question):
    passages = [Passage("\n".join(lines), "1790-05-04", "journal/1790/1790-05-04.md")]
    sentences = prompting.select_sentences(question, passages)
    for quote in choose_quotes(sentences, passages, pool=sentences, share=0.0):
        assert quote.text in passages[0].text


def test_the_short_answer_is_tidied_by_adding_only():
    assert tidy_short(" A barn owl") == "A barn owl."
    assert tidy_short("A barn owl.\nMore") == "A barn owl."
    assert tidy_short("Half a char \ufffd") == "Half a char."
    assert tidy_short("") == ""


def test_saying_the_notes_dont_say():
    assert says_notes_dont_say(NOTES_DONT_SAY)
    assert says_notes_dont_say("The notes from June 1789 don't say.")
    assert not says_notes_dont_say("A barn owl.")

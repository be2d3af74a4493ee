"""Grounded answers: numbers and names that are not in the notes are not written
(the real tokenizer; the model's preferences are hand-made logits)."""

from __future__ import annotations

import pytest
import torch

from assistant.engine.grounding import GroundedChoice, grounded_chooser

NOTES = ("[4 February 2023 · Gym] Bought a 10-visit pass for £85 instead of paying £10.50 at the "
         "door. First session with Kerry at StrideWell Physio.")
QUESTION = "How much did the pass cost?"


@pytest.fixture
def rule():
    return GroundedChoice(NOTES, QUESTION, choose=lambda logits: 0, text_with=lambda t: "")


@pytest.mark.parametrize("text, ok", [
    ("The pass cost £85.", True),
    ("The pass cost £8", True),          # still being written: "£85" may follow
    ("The pass cost £8.", False),        # "£8" ended: not in the notes
    ("The pass cost £8.50", False),
    ("It was £10.", True),               # "£10.50" may follow
    ("It was £10.50 at the door", True),
    ("My physio is Kerry", True),
    ("My physio is Ker", True),
    ("My physio is Dr. John Smith", False),
    ("My physio is John", False),
    ("The answer is 41", False),
    ("On 4 February 2023 I bought it", False),  # an entry's date only when one is asked for
    ("It cost £2023", False),             # "2023" is in the notes, "£2023" is not
    ("It cost £", True),
    ("the pass was cheap and everyone was happy", True),  # lowercase words are free
])
def test_numbers_and_names_must_come_from_the_notes(rule, text, ok):
    assert rule.grounded(text) is ok


def _logits_preferring(tokenizer, pieces: list[str]) -> torch.Tensor:
    """Logits whose top tokens are ``pieces`` (first token of each), in that order."""
    logits = torch.zeros(len(tokenizer))
    for rank, piece in enumerate(pieces):
        token = tokenizer.encode(piece, add_special_tokens=False)[0]
        logits[token] = 10.0 - rank
    return logits


def test_the_best_grounded_token_replaces_an_invented_one(tokenizer):
    answer = tokenizer.encode("My physio is", add_special_tokens=False)
    choose = grounded_chooser(NOTES, QUESTION, lambda logits: int(torch.argmax(logits)),
                              tokenizer, answer)
    logits = _logits_preferring(tokenizer, [" John", " Dr", " Kerry", " Sam"])
    token = choose(logits)
    assert tokenizer.decode([token]) == " Kerry"
    assert choose.overruled == 1
    # a grounded first choice is kept as it is
    assert tokenizer.decode([choose(_logits_preferring(tokenizer, [" Kerry", " John"]))]) == " Kerry"
    assert choose.overruled == 1


def test_a_number_cannot_end_half_written(tokenizer):
    answer = tokenizer.encode("It cost £8", add_special_tokens=False)
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    choose = grounded_chooser(NOTES, QUESTION, lambda logits: int(torch.argmax(logits)),
                              tokenizer, answer, stop_ids=[stop])
    logits = _logits_preferring(tokenizer, [".", "5"])
    logits[stop] = 9.5  # ending the answer at "£8" is not grounded either
    assert tokenizer.decode([choose(logits)]) == "5"


def test_nothing_grounded_in_reach_keeps_the_models_choice(tokenizer):
    answer = tokenizer.encode("My physio is", add_special_tokens=False)
    choose = grounded_chooser(NOTES, QUESTION, lambda logits: int(torch.argmax(logits)),
                              tokenizer, answer)
    choose.top_k = 2
    logits = _logits_preferring(tokenizer, [" John", " Sam", " Kerry"])
    assert tokenizer.decode([choose(logits)]) == " John"  # a constraint never leaves it stuck
    assert choose.overruled == 0


def test_an_entrys_date_is_an_answer_only_to_a_date_question():
    when = GroundedChoice(NOTES, "When did I buy the pass?", choose=None, text_with=None)
    assert when.grounded("On 4 February 2023 ")
    assert not GroundedChoice(NOTES, QUESTION, choose=None, text_with=None).grounded("4 February ")


def test_numbers_of_the_question_are_not_answers():
    rule = GroundedChoice(NOTES, "How many hours did I sleep before 2024-01-15?",
                          choose=None, text_with=None)
    assert not rule.grounded("I slept 2024-01-15 ")
    assert rule.grounded("I slept 85 ")


def test_the_stem_is_not_checked(tokenizer):
    stem = tokenizer.encode("The number of hours I slept before 2024-01-15 was",
                            add_special_tokens=False)
    answer = list(stem)
    choose = grounded_chooser(NOTES, "How many hours did I sleep before 2024-01-15?",
                              lambda logits: int(torch.argmax(logits)), tokenizer, answer,
                              given=len(stem))
    assert tokenizer.decode([choose(_logits_preferring(tokenizer, [" Kerry", " John"]))]) == " Kerry"
    assert choose.overruled == 0


# -- short answers copy their quotes' words; nothing loops

QUOTES = "[19 January 1903] Saw a Barn Owl flying in broad daylight at the wood this afternoon."


@pytest.fixture
def copying():
    return GroundedChoice(QUOTES, "What bird did I see at the wood on 19 January 1903?",
                          choose=None, text_with=None, copy_words=True)


@pytest.mark.parametrize("text, ok", [
    ("I saw a barn owl.", True),
    ("A Barn Owl, flying in broad daylight.", True),
    ("A barn o", True),                  # "owl" may follow
    ("A tawny owl.", False),             # "tawny" is in no quote
    ("I saw an eagle", False),
    ("It was a bird at the wood.", True),  # the question's words are allowed too
    ("The owl was beautiful.", False),   # a judgement the quotes do not make
])
def test_a_short_answer_keeps_to_its_quotes_words(copying, text, ok):
    assert copying.grounded(text) is ok


@pytest.mark.parametrize("text", [
    "30th, 30th, 30th, 30th, 30th",
    "My wife found me embracing on 25 October, my wife found me embracing on",
    "This is a reference to the The answer is: On The answer is: On The answer is: On",
])
def test_the_looping_answers_repeat_a_run_of_four_words(text):
    from assistant.engine.grounding import repeats

    assert repeats(text)
    words = text.split()
    # the text before the repeat closed is fine: the guard refuses the closing token only
    firsts = [" ".join(words[:n]) for n in range(1, len(words) + 1)]
    assert not repeats(firsts[0]) and any(not repeats(t) and repeats(n) for t, n in
                                          zip(firsts, firsts[1:]))


def test_a_token_that_would_loop_is_passed_over(tokenizer):
    answer = tokenizer.encode("I went home and I went home", add_special_tokens=False)
    choose = grounded_chooser(None, "When?", lambda logits: int(torch.argmax(logits)),
                              tokenizer, answer, ground=False)
    token = choose(_logits_preferring(tokenizer, [" and", " early"]))
    assert tokenizer.decode([token]) == " early" and choose.overruled == 1


@pytest.mark.parametrize("notes, start, preferred, rule", [
    (None, "the the the the", [" the"], {"ground": False}),  # every likely token loops
    (QUOTES, "I saw a", [" John", " Sam"], {"copy_words": True}),  # none is in the quotes
], ids=["loop", "not in the quotes"])
def test_when_no_likely_token_keeps_the_rules_the_answer_ends(tokenizer, notes, start,
                                                             preferred, rule):
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    choose = grounded_chooser(notes, "What bird did I see?", lambda logits: int(torch.argmax(logits)),
                              tokenizer, tokenizer.encode(start, add_special_tokens=False),
                              stop_ids=[stop], **rule)
    choose.top_k = len(preferred)
    assert choose(_logits_preferring(tokenizer, preferred)) == stop

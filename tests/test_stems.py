"""Answer stems: the start of an answer written from the question's own words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.engine.stems import answer_stem


@pytest.mark.parametrize("question, stem", [
    # what/which + be
    ("What is my sister's phone number?", "My sister's phone number is"),
    ("What was the name of the hotel in Oslo?", "The name of the hotel in Oslo was"),
    ("What was the boat called?", "The boat was called"),
    ("What colour is our front door?", "Our front door is colour"),
    # how many / how much
    ("How many cups of tea did I drink on Sunday?",
     "The number of cups of tea I drank on Sunday was"),
    ("How many rooms does the cottage have?", "The number of rooms the cottage has is"),
    ("How many people came to the picnic?", "The number of people who came to the picnic was"),
    ("How much did Lena pay for the tickets?", "The amount Lena paid for the tickets was"),
    ("How much did the new boiler cost?", "The amount the new boiler cost was"),
    ("How much was the parking fine?", "The parking fine was"),
    # how + adjective
    ("How old did Grandpa turn last week?", "Grandpa turned"),
    ("How long did my morning swim take?", "My morning swim took"),
    ("How far was the hike to the lake?", "The hike to the lake was"),
    ("How long were we at the airport?", "We were at the airport for"),
    ("How long did I live in Leeds?", "I lived in Leeds for"),
    ("How far did I cycle on Saturday?", "On Saturday, I cycled"),
    ("What was Omar cooking on Friday?", "On Friday, Omar was cooking"),
    ("What did we fill the van with?", "We filled the van with"),
    ("Where did I put my passport?", "I put my passport in"),
    # which/what + noun
    ("Which museum did we visit in Vienna?", "The museum we visited in Vienna was"),
    ("What film did Omar and I watch on Friday?", "The film Omar and I watched on Friday was"),
    ("Which town is Pedro from?", "The town Pedro is from is"),
    # who
    ("Who fixed the bike?", "The person who fixed the bike was"),
    ("Who is my dentist?", "My dentist is"),
    ("Who did I have lunch with on Monday?", "On Monday, I had lunch with"),
    ("Who did I go to the beach with?", "I went to the beach with"),
    # where / when / why / what did
    ("Where did we buy the sofa?", "We bought the sofa at"),
    ("Where did Omar move to?", "Omar moved to"),
    ("Where did we go for the weekend?", "We went for the weekend to"),
    ("Where does my brother live?", "My brother lives in"),
    ("Where was the wedding?", "The wedding was at"),
    ("When did the puppy arrive?", "The puppy arrived on"),
    ("When was the baby born?", "The baby was born on"),
    ("Why did I miss the train to Rome?", "I missed the train to Rome because"),
    ("What did I cook for Lena on Tuesday?", "For Lena on Tuesday, I cooked"),
    ("What did we call the new kitten?", "We called the new kitten"),
    ("What did I do on 2024-05-01?", "On 2024-05-01, I"),
    ("What did I write about on Sunday?", "On Sunday, I wrote about"),
])
def test_common_question_shapes_get_a_stem(question, stem):
    assert answer_stem(question) == stem


@pytest.mark.parametrize("question", [
    "What does Omar do for work?",  # no stem reads well
    "How did I get home?",
    "What happened last week?",
    "Tell me about Lisbon",
    "Hi",
    "",
])
def test_other_shapes_get_none(question):
    assert answer_stem(question) is None


QUESTION_WORDS = ("how many much what which who where when why did do does had have is was "
                  "were I we my the Maya run ran cost take long old of in on at to with "
                  "2023 £5 called name born ? ,").split()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(QUESTION_WORDS), max_size=10), st.text(max_size=30))
def test_any_text_gives_a_stem_or_none_and_never_fails(words, noise):
    for question in (" ".join(words), noise, " ".join(words) + noise):
        stem = answer_stem(question)
        assert stem is None or (stem and stem == stem.strip() and not stem[0].islower())

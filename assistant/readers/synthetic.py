"""Synthetic journals for the generic reader: invented narrators, people, places and
facts, never those of examples/journal (a test checks that none of the example answers is
a word of these lists).

``make_journal(seed)`` writes nothing: it returns the entries (date, text) and, for each
planted fact, a question with its accepted answers, in the form memex's own evaluation
uses. Two voices: a modern, terse diary and an older, wordier one (the real journals in
shared/data are a century old), so the reader does not learn one register only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

FIRST_NAMES = [
    "Amara", "Bilal", "Catalina", "Desmond", "Efua", "Farid", "Greta", "Hamish", "Ingrid",
    "Jovan", "Keiko", "Lorcan", "Malia", "Nikhil", "Odile", "Pavel", "Quentin", "Rosalind",
    "Saoirse", "Tariq", "Ulrike", "Vikram", "Wren", "Xiomara", "Yusuf", "Zofia", "Anouk",
    "Bartholomew", "Cosima", "Dmitri", "Esther", "Fenella", "Gideon", "Hester", "Ivo",
    "Jemima", "Kwame", "Leopold", "Marisol", "Niamh", "Osric", "Philippa", "Rufus", "Sunniva",
    "Thaddeus", "Una", "Valentin", "Winifred", "Yara", "Zebedee", "Agnes", "Barnaby",
    "Clementine", "Dorothea", "Ezra", "Florian", "Gwendolyn", "Horace", "Isolde", "Jasper",
]
SURNAMES = [
    "Achterberg", "Blackwood", "Castellano", "Drummond", "Eriksen", "Fairweather", "Galloway",
    "Hargreaves", "Ibarra", "Jablonski", "Kowalczyk", "Lindqvist", "Mbeki", "Nakamura",
    "Okonkwo", "Pemberton", "Quarshie", "Rasmussen", "Sandoval", "Thistlewood", "Umeh",
    "Vasquez", "Whitcombe", "Yamada", "Zielinski", "Ashdown", "Brereton", "Cordell",
    "Dewhurst", "Ellingham", "Fenwick", "Gresley", "Holloway", "Ingleby", "Jessop",
]
CITIES = [
    "Trondheim", "Ljubljana", "Valparaíso", "Tbilisi", "Halifax", "Dunedin", "Bergen",
    "Cork", "Gdańsk", "Montevideo", "Nagasaki", "Quebec", "Tallinn", "Marrakesh", "Hobart",
    "Zanzibar", "Antwerp", "Bruges", "Cádiz", "Lyon", "Trieste", "Salzburg", "Galway",
    "Oaxaca", "Kraków", "Riga", "Bologna", "Aarhus", "Bilbao", "Cusco", "Adelaide", "Madras",
    "Alexandria", "Smyrna", "Rangoon", "Bombay", "Calcutta", "Naples", "Palermo",
]
RELATIONS = ["sister", "brother", "cousin", "aunt", "uncle", "daughter", "son", "nephew",
             "niece", "grandmother", "father", "mother"]
ANIMALS = ["kitten", "puppy", "tortoise", "goldfish", "rabbit", "parrot", "hen", "goat",
           "canary", "hamster", "pony", "ferret"]
PET_NAMES = ["Biscuit", "Marmalade", "Pickle", "Noodle", "Sprocket", "Bramble", "Waffle",
             "Pumpernickel", "Clementine", "Thimble", "Captain Whiskers", "Mr Button",
             "Dumpling", "Juniper", "Pepperpot", "Rhubarb", "Toffee", "Socrates", "Figaro"]
VENUES = ["library", "post office", "fish market", "railway station", "bakery", "chapel",
          "harbour", "swimming baths", "town hall", "tram stop", "flower show", "museum",
          "barber's", "greengrocer's", "allotments", "concert hall", "ferry terminal"]
ITEMS = ["winter coat", "bicycle lamp", "typewriter", "pair of boots", "kettle", "armchair",
         "telescope", "violin bow", "rucksack", "tent", "bookcase", "sewing machine",
         "wristwatch", "umbrella", "gramophone", "desk lamp", "rug", "microscope"]
CURRENCIES = ["$", "€", "£"]
ORGS = ["Fernhill Cooperative", "Pelham & Daughters", "Tidewater Freight", "Ashgrove Mills",
        "Corvid Analytics", "Lantern Press", "Marlow Shipping", "Brightwater Dairy",
        "Quillfeather Books", "Stonebridge Clinic", "Halcyon Rail", "Juniper Labs"]
UNITS = ["branches", "employees", "warehouses", "ships", "shops", "looms", "vans", "wards",
         "printing presses", "delivery routes"]
SKILLS = ["the cello", "Italian", "pottery", "fencing", "watercolour painting", "chess",
          "bookbinding", "the accordion", "sailing", "Welsh", "calligraphy", "beekeeping",
          "woodcarving", "shorthand", "astronomy", "archery"]
COLOURS = ["crimson", "teal", "mustard yellow", "navy blue", "emerald green", "lilac",
           "burnt orange", "charcoal grey", "scarlet", "ivory", "turquoise", "plum"]
OBJECTS = ["scarf", "teapot", "notebook", "hat", "raincoat", "vase", "bicycle", "cardigan",
           "satchel", "lampshade", "fountain of ink", "pair of gloves", "waistcoat"]
TITLES = ["The Salt Road", "A Harbour in Winter", "The Glass Orchard", "Nine Lanterns",
          "The Cartwright Letters", "Under the Linden", "The Quiet Engine", "Rivers of Tin",
          "The Last Lighthouse", "A Map of Small Rooms", "The Copper Heron", "Evening at Marsh End"]
AUTHORS = ["Ottoline Carver", "Benedict Marsh", "Adaeze Nwosu", "Sigrid Holm", "Rafael Ortega",
           "Perpetua Lowe", "Casimir Brandt", "Hollis Grey", "Noor Haddad", "Evander Pike"]
CODE_WORDS = ["Albatross", "Cinder", "Foxglove", "Granite", "Halberd", "Juniper", "Lodestar",
              "Magpie", "Nightjar", "Osprey", "Pennant", "Quartz", "Sorrel", "Tamarind",
              "Vesper", "Wyvern", "Zephyr"]
PROJECT_THINGS = ["timetable", "payroll", "stock-taking", "mapping", "archive", "billing",
                  "tram scheduling", "catalogue", "inventory"]
DISHES = ["mushroom risotto", "lamb tagine", "fish pie", "jollof rice", "beef stroganoff",
          "pierogi", "shepherd's pie", "chicken biryani", "ratatouille", "goulash",
          "kedgeree", "paneer curry", "ramen", "moussaka", "pea soup"]
RIVERS = ["canal", "river Wey", "sea wall", "old railway line", "cliff path", "towpath",
          "lake shore", "ridge", "estuary"]
BODY_PARTS = ["wrist", "knee", "shoulder", "back", "elbow", "hip", "neck"]
AILMENTS = ["torn ligament", "bad bruise", "pulled muscle", "hairline fracture", "bursitis",
            "tendonitis", "trapped nerve"]
GIFTS = ["silver locket", "pocket compass", "box of watercolours", "leather journal",
         "pair of binoculars", "potted orchid", "music box", "brass telescope", "chess set",
         "woollen blanket", "cookbook"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

MODERN_FILLER = [
    "Rain most of the day, so I stayed in and read.", "Slept badly again.",
    "Long day at work and not much to show for it.", "Cleaned the kitchen properly for once.",
    "The garden needs weeding before the weekend.", "Felt tired but content this evening.",
    "Caught the late bus home and watched the lights go by.", "Made a big pot of tea and wrote letters.",
    "Sunny and cold; the frost stayed on the roofs until noon.", "Spent an hour sorting old photographs.",
    "Went for a short run before breakfast.", "Phone calls all afternoon, none of them welcome.",
    "A quiet evening with the radio on.", "The neighbours were hammering again.",
    "Paid the bills and felt lighter for it.", "Walked to the shops and back in the drizzle.",
]
OLD_FILLER = [
    "A grey and cheerless morning, with the wind from the east.",
    "Spent the forenoon at my desk, and accomplished very little.",
    "Much troubled by a headache in the evening, and retired early.",
    "The post brought nothing of consequence.", "Walked out after dinner; the lanes very muddy.",
    "Read a little, and thought a great deal, to no purpose.",
    "A fine clear day at last, and I was glad of it.", "Called upon by no one, and glad of the quiet.",
    "The fire smoked abominably all the afternoon.", "Wrote three letters and tore up two of them.",
    "In low spirits, though I cannot say why.", "Heavy rain in the night; the garden is sodden.",
]


@dataclass
class Fact:
    sentence: str
    question: str
    answers: list[str]
    kind: str


@dataclass
class Journal:
    narrator: str
    voice: str  # "modern" | "old"
    entries: list[tuple[date, str]] = field(default_factory=list)
    facts: list[tuple[int, Fact]] = field(default_factory=list)  # (entry index, fact)

    def files(self) -> dict[str, str]:
        """Relative path → markdown text, one file per entry."""
        out = {}
        for day, text in self.entries:
            heading = f"# {day.strftime('%A')} {spoken(day)}"
            out[f"{day.year}/{day.isoformat()}.md"] = f"{heading}\n\n{text}\n"
        return out

    def questions(self) -> list[dict]:
        """Each planted fact as an evaluation item (``memex eval``'s JSONL form)."""
        items = []
        for index, fact in self.facts:
            day = self.entries[index][0]
            items.append({"question": fact.question, "answers": fact.answers,
                          "evidence": [f"{day.year}/{day.isoformat()}.md"], "kind": fact.kind})
        return items


def spoken(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _number_answers(n: int) -> list[str]:
    return [str(n)] + ([NUMBER_WORDS[n]] if n < len(NUMBER_WORDS) else [])


def _fact(rng: random.Random, kind: str, day: date, used: set, old: bool) -> Fact | None:
    """One planted fact of ``kind``; None when its subject was used already (questions
    must have one answer in the journal)."""
    pick = rng.choice

    def fresh(key) -> bool:
        if key in used:
            return False
        used.add(key)
        return True

    friend = f"{pick(FIRST_NAMES)}"
    if kind == "pet":
        animal, name = pick(ANIMALS), pick(PET_NAMES)
        if not fresh(("pet", animal)):
            return None
        return Fact(f"We finally settled on a name for the new {animal}: {name}.",
                    f"What did we name the {animal}?", [name], kind)
    if kind == "moved":
        relation, city = pick(RELATIONS), pick(CITIES)
        if not fresh(("moved", friend, relation)):
            return None
        text = (f"Had a letter from {friend}, whose {relation} has lately removed to {city}."
                if old else f"{friend} told me her {relation} has moved to {city} for work.")
        return Fact(text, f"Where did {friend}'s {relation} move to?", [city], kind)
    if kind == "met":
        venue = pick(VENUES)
        if not fresh(("met", venue)):
            return None
        text = (f"Met {friend} {pick(SURNAMES)} at the {venue}, who kept me talking an hour."
                if old else f"Ran into {friend} at the {venue} this morning.")
        return Fact(text, f"Who did I run into at the {venue}?" if not old
                    else f"Who did I meet at the {venue}?", [friend], kind)
    if kind == "cost":
        item, currency, amount = pick(ITEMS), pick(CURRENCIES), rng.randint(3, 900)
        if not fresh(("cost", item)):
            return None
        return Fact(f"The {item} cost {currency}{amount}, rather more than I had hoped.",
                    f"How much did the {item} cost?", [f"{currency}{amount}", str(amount)], kind)
    if kind == "count":
        org, unit, n = pick(ORGS), pick(UNITS), rng.randint(2, 60)
        if not fresh(("count", org)):
            return None
        return Fact(f"{org} has {n} {unit} now, I was told.",
                    f"How many {unit} does {org} have?", _number_answers(n), kind)
    if kind == "began":
        skill = pick(SKILLS)
        if not fresh(("began", skill)):
            return None
        return Fact(f"Today I began lessons in {skill}.", f"When did I begin lessons in {skill}?",
                    [spoken(day), f"{MONTHS[day.month - 1]} {day.day}", day.isoformat()], kind)
    if kind == "colour":
        colour, thing = pick(COLOURS), pick(OBJECTS)
        if not fresh(("colour", thing)):
            return None
        return Fact(f"Bought a {colour} {thing} on the way home.",
                    f"What colour was the {thing} I bought?", [colour], kind)
    if kind == "book":
        title, author = pick(TITLES), pick(AUTHORS)
        if not fresh(("book", title)) or not fresh(("author", author)):
            return None
        return Fact(f"Finished {title} by {author} late tonight.",
                    f"Who wrote {title}?", [author, author.split()[-1]], kind)
    if kind == "codename":
        thing, org, word = pick(PROJECT_THINGS), pick(ORGS), pick(CODE_WORDS)
        if not fresh(("codename", thing)):
            return None
        return Fact(f"The new {thing} project at {org} is to be called {word}.",
                    f"What is the {thing} project at {org} called?", [word], kind)
    if kind == "dish":
        dish = pick(DISHES)
        if not fresh(("dish", friend)):
            return None
        return Fact(f"{friend} cooked {dish} for all of us.", f"What did {friend} cook for us?",
                    [dish], kind)
    if kind == "walk":
        place, miles = pick(RIVERS), rng.randint(2, 19)
        if not fresh(("walk", place)):
            return None
        return Fact(f"Walked {miles} miles along the {place} before supper.",
                    f"How many miles did I walk along the {place}?",
                    [f"{miles} miles"] + _number_answers(miles), kind)
    if kind == "doctor":
        part, ailment = pick(BODY_PARTS), pick(AILMENTS)
        if not fresh(("doctor", part)):
            return None
        return Fact(f"The doctor says the pain in my {part} is a {ailment}.",
                    f"What did the doctor say the pain in my {part} was?", [ailment], kind)
    if kind == "gift":
        gift = pick(GIFTS)
        if not fresh(("gift", friend)):
            return None
        return Fact(f"{friend} gave me a {gift} for my birthday.",
                    f"What did {friend} give me for my birthday?", [gift], kind)
    raise ValueError(kind)


FACT_KINDS = ["pet", "moved", "met", "cost", "count", "began", "colour", "book", "codename",
              "dish", "walk", "doctor", "gift"]


def make_journal(seed: int, entries: int = 60) -> Journal:
    """A journal of ``entries`` dated entries, most holding one or two planted facts among
    everyday sentences."""
    rng = random.Random(seed)
    old = rng.random() < 0.4
    narrator = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
    journal = Journal(narrator=narrator, voice="old" if old else "modern")
    day = date(rng.randint(1890, 1935) if old else rng.randint(1975, 2024),
               rng.randint(1, 12), rng.randint(1, 28))
    filler = OLD_FILLER if old else MODERN_FILLER
    used: set = set()
    for index in range(entries):
        day += timedelta(days=rng.randint(1, 6))
        sentences = rng.sample(filler, rng.randint(2, 5))
        for _ in range(rng.choice([0, 1, 1, 2])):
            fact = None
            for _try in range(8):
                fact = _fact(rng, rng.choice(FACT_KINDS), day, used, old)
                if fact is not None:
                    break
            if fact is None:
                continue
            sentences.insert(rng.randint(0, len(sentences)), fact.sentence)
            journal.facts.append((index, fact))
        journal.entries.append((day, " ".join(sentences)))
    return journal

"""Everyday entries: short daily notes, weekly work logs, runs, allotment notes.

Every sentence knows when it can be true (``Life``): which flat, which job, whether
Biscuit has arrived, whether the ankle is sprained, whether marathon training is on.
Sentences are drawn from shuffled bags so the same line does not come round again
until its pool is used up. Nothing here restates a fact that a question asks about.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

D = date

TRIPS = [(D(2023, 5, 18), D(2023, 5, 23)), (D(2023, 7, 29), D(2023, 7, 30)),
         (D(2023, 10, 6), D(2023, 10, 9)), (D(2024, 5, 14), D(2024, 5, 15)),
         (D(2024, 6, 20), D(2024, 6, 24)), (D(2024, 8, 17), D(2024, 8, 21)),
         (D(2024, 10, 25), D(2024, 10, 27))]
DOG_ARRIVES = D(2023, 3, 11)
MOVE_DAY = D(2023, 9, 16)
BAKERY_FOUND = D(2023, 9, 30)
STARTER = D(2023, 1, 14)
BIKE = D(2023, 6, 3)
INJURY = (D(2023, 11, 18), D(2024, 1, 1))
LAST_NORTHWIND = D(2024, 1, 26)
FIRST_FERNLEAF = D(2024, 2, 5)
TRAINING = (D(2024, 1, 8), D(2024, 4, 13))
MARATHON = D(2024, 4, 14)
ALLOTMENT = D(2024, 3, 2)
CAMERA = D(2023, 12, 25)
CLARA_TOLD_US = D(2023, 12, 25)
IRIS_BORN = D(2024, 8, 3)
ENGAGED = D(2024, 11, 16)
FARID_GONE = D(2023, 7, 13)


@dataclass(frozen=True)
class Life:
    day: date

    @property
    def season(self) -> str:
        return {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
                6: "summer", 7: "summer", 8: "summer"}.get(self.day.month, "autumn")

    @property
    def weekday(self) -> bool:
        return self.day.weekday() < 5

    @property
    def dog(self) -> bool:
        return self.day >= DOG_ARRIVES

    @property
    def old_flat(self) -> bool:
        return self.day < MOVE_DAY

    @property
    def northwind(self) -> bool:
        return self.day <= LAST_NORTHWIND

    @property
    def fernleaf(self) -> bool:
        return self.day >= FIRST_FERNLEAF

    @property
    def between_jobs(self) -> bool:
        return LAST_NORTHWIND < self.day < FIRST_FERNLEAF

    @property
    def injured(self) -> bool:
        return INJURY[0] <= self.day < INJURY[1]

    @property
    def training(self) -> bool:
        return TRAINING[0] <= self.day <= TRAINING[1]

    @property
    def recovering(self) -> bool:  # legs after the marathon
        return MARATHON < self.day <= MARATHON + timedelta(days=10)

    @property
    def can_run(self) -> bool:
        return not self.injured and not self.recovering

    @property
    def allotment(self) -> bool:
        return self.day >= ALLOTMENT and self.day.month in range(3, 11)


def on_trip(day: date) -> bool:
    return any(first <= day <= last for first, last in TRIPS)


# Each pool: (condition, weight, templates). Placeholders like {where} are filled from
# SLOTS (or per-day values such as {km} and {dish}), so most lines come out different.
POOLS: dict[str, tuple] = {
    "weather_winter": (lambda l: l.season == "winter", 1.0, [
        "Frost on the car windscreens and a sky like skimmed milk.",
        "Rain all day, the sideways kind.",
        "Dark by half four. Lit a candle at my desk out of protest.",
        "Bright and freezing; the puddles had lids of ice.",
        "Sleet in the morning, then nothing, then sleet again.",
        "Fog so thick the end of the street disappeared.",
        "Wind rattled the windows all night.",
        "{temp_winter}°C at eight and the heating on the timer had given up.",
        "Snow on the tops, just rain down here.",
    ]),
    "weather_spring": (lambda l: l.season == "spring", 1.0, [
        "First properly warm afternoon; jacket off by two.",
        "Blossom everywhere and my hay fever has noticed.",
        "Showers and sun taking turns every twenty minutes.",
        "Light until after eight now, which changes everything.",
        "Grey but mild. The blackbird on the chimney was going all evening.",
        "Cold wind, bright sun, one of those days that can't decide.",
        "{temp_spring}°C and everybody in shorts as if it were July.",
        "Hail at lunchtime, sunshine by two. Spring in Sheffield.",
    ]),
    "weather_summer": (lambda l: l.season == "summer", 1.0, [
        "Warm and still; we ate outside.",
        "Muggy, thunder in the evening that never quite arrived.",
        "Blue sky all day. Sun cream forgotten, regretted.",
        "Too hot to sleep until the window fan went on.",
        "A drizzly summer day, the worst kind.",
        "Long light evening, the swifts screaming over the rooftops.",
        "{temp_summer}°C by lunchtime. Biscuit lay flat on the kitchen tiles all afternoon.",
        "A proper downpour at teatime; the street smelled of hot wet tarmac.",
    ]),
    "weather_autumn": (lambda l: l.season == "autumn", 1.0, [
        "Leaves turning on the trees along the road.",
        "Wet leaves everywhere and the smell of someone's bonfire.",
        "Crisp, clear morning; first time I needed gloves.",
        "Rain. Then more rain. The gutters are losing.",
        "Golden light at four o'clock, gone by five.",
        "Mild and damp, the kind of weather that gets into your bones.",
        "{temp_autumn}°C and blowing a gale; conkers all over the pavement.",
        "Mist in the valley first thing, sun burning through by ten.",
    ]),
    "dog": (lambda l: l.dog, 2.5, [
        "{when} walk with [[Biscuit]] {where}; {dog_event}.",
        "{when} walk {where} with Biscuit; {dog_event}.",
        "Took Biscuit {where} first thing; {dog_event}.",
        "Walked [[Biscuit]] {where} with Maya; {dog_event}.",
        "Biscuit stole a slice of toast off the counter while I was pouring the tea. No shame at all.",
        "Biscuit spent the evening asleep on my feet, twitching at dream squirrels.",
        "Bath night for Biscuit. Everyone got wet except, somehow, Biscuit.",
        "[[Biscuit]] has learned that the word 'walk' means walk, so now we spell it out.",
        "Bought Biscuit a new lead; the old one had been chewed in three places.",
        "Biscuit sat by the door for an hour waiting for Maya to come home.",
        "Trimmed Biscuit's nails. It took two of us and a lot of cheese.",
        "Biscuit had a play date with the spaniel from across the road. Both slept all afternoon.",
    ]),
    "work_northwind": (lambda l: l.northwind and l.weekday, 3.0, [
        "Long day at Northwind, mostly {nw_task}.",
        "Spent the morning {nw_task} and the afternoon {nw_task2}.",
        "Worked from home; {nw_task} with the radio on.",
        "Northwind: {nw_task}. Helen pleased, me less so.",
        "Two hours of meetings about a meeting. Helen sighed more than I did.",
        "Spent the morning explaining a chart to someone who had already decided what it said.",
        "The ops team rang three times about the overnight numbers. They were right once.",
        "Lunch with Raj at the noodle place. We talked about anything but work.",
        "Helen asked for 'just a quick number' that took all afternoon.",
        "Fire drill at 11. Stood in the car park for twenty minutes talking about football I don't follow.",
    ]),
    "work_fernleaf": (lambda l: l.fernleaf and l.weekday, 3.0, [
        "Office day at Fernleaf, mostly {fl_task}.",
        "Spent the morning {fl_task} and the afternoon {fl_task2}.",
        "Work from home; {fl_task} with Biscuit asleep under the desk.",
        "Paired with [[Luis]] all afternoon, {fl_task}. He types faster than he talks.",
        "Code review day. Left eleven comments and received fourteen.",
        "Standup ran long because Dana brought pastries and nobody wanted to leave.",
        "Fixed a bug that had been there since before I joined. Told nobody, felt great.",
        "Team lunch at the Thai place on the corner. Luis ordered for everyone, badly.",
        "One-to-one with Dana. She wants me to present at the next all-hands, which is terrifying.",
        "On-call this week; the pager went off once, at 6am, for a full disk.",
    ]),
    "between_jobs": (lambda l: l.between_jobs, 3.0, [
        "Day off between jobs. Slept in, walked Biscuit for two hours, read in the bath.",
        "Sorted the spare room, which is a generous name for it, while I'm between jobs.",
        "Strange feeling, no work email at all. Cleaned the oven instead.",
    ]),
    "run": (lambda l: l.can_run and not l.training, 1.2, [
        "Easy {km} km {route}, legs fine.",
        "Ran {km} km {route} before breakfast. Slow and happy.",
        "Club run with the Striders, {km} km, chatted with [[Ellie]] most of the way.",
        "Hilly {km} km {route}; walked the last bit of the big climb and don't care.",
        "Short {km} km in the rain. Felt heroic for about five minutes.",
        "Intervals at the track: {reps}. Nearly saw my lunch again.",
        "{km} km tempo run {route}, faster than I expected. Don't get cocky.",
        "Lazy {km} km with no watch, just to see how it felt. Good, it turns out.",
        "Ran {km} km with Biscuit, who does the first half at a sprint and the second half at a sulk.",
    ]),
    "training": (lambda l: l.training, 3.0, [
        "Marathon plan: {km} km easy {route}. Legs heavy from Sunday.",
        "Tempo session, {km} km in total. Hard but controlled.",
        "Club run with [[Ellie]], {km} km. She's doing the marathon too and is disgustingly calm about it.",
        "{km} km recovery jog {route}. Ankle completely quiet, touch wood.",
        "Intervals in the dark: {reps}. Head torch, frozen hands, strangely happy.",
        "Rest day. Foam roller and a documentary about {documentary}.",
        "{km} km in the rain. Marathon training is mostly a laundry problem.",
        "Ate like a horse all day. Marathon training hunger is no joke.",
    ]),
    "injured": (lambda l: l.injured, 3.0, [
        "Ankle exercises twice today, like a good patient. Still puffy by evening.",
        "Watched the Striders' group chat plan a run I can't go on. Sulked.",
        "Swam {lengths} lengths at the leisure centre instead of running. It's fine. It's fine.",
        "Ankle a bit better; walked Biscuit round the block without the brace.",
        "Frozen peas on the ankle, feet up, a whole season of a detective show.",
        "Rode the exercise bike at the gym for forty minutes and felt almost like an athlete.",
    ]),
    "recovering": (lambda l: l.recovering, 3.0, [
        "Legs still wrecked from the marathon. Walked downstairs backwards.",
        "Post-marathon week: short walks, long naps, all the food.",
    ]),
    "climb": (lambda l: l.can_run and not l.training, 1.2, [
        "Bouldering at [[Granite Works]] with [[Tomás]]; {climb_event}.",
        "Evening session at Granite Works; {climb_event}.",
        "Climbing with Tomás after his shift; {climb_event}.",
        "Quick solo session at the wall. Skin on my fingertips is paper.",
        "Granite Works was heaving; spent more time waiting than climbing.",
        "Outdoors at last: a few problems at Burbage with Tomás. Grit ate my hands.",
    ]),
    "home_old": (lambda l: l.old_flat, 1.0, [
        "[[Anna]] downstairs brought up {anna_gift} 'because I made too much', which she always says.",
        "The boiler at Rowan Terrace made its dying-whale noise again.",
        "Worked from [[Café Lune]] for a change of scene; the corner table was free.",
        "The flat was cold all evening; we sat under a blanket like old people.",
        "Chatted with Anna on the stairs for half an hour about {anna_topic}.",
        "The neighbours upstairs had a party until two. We considered joining.",
        "Fixed the dripping bathroom tap with a washer and a video tutorial.",
        "Coffee and a flapjack at Café Lune, then a slow walk home.",
    ]),
    "home_new": (lambda l: not l.old_flat, 1.0, [
        "Sat in the yard at Alder Street with a cup of tea and Biscuit in the sun.",
        "Put up shelves in the hallway. Only one hole in the wrong place.",
        "Still finding boxes we haven't unpacked. This one was all cables.",
        "The bay window is the best seat in the flat; Maya has claimed it for drawing.",
        "New neighbour at number 29 introduced herself and her cat, Duchess.",
        "Painted the bathroom a colour called 'Morning Fog', which is grey.",
        "Radiators bled, smoke alarm tested, felt like a proper adult.",
        "Visited Anna at Rowan Terrace for tea; Biscuit ran straight to her door.",
    ]),
    "bakery": (lambda l: l.day >= BAKERY_FOUND, 0.4, [
        "Saturday bread run to Pigeon & Pear; Mireille had saved us the last sourdough.",
        "Almond croissant from the bakery on the corner. Medicinal.",
        "Bought a fruit loaf from Pigeon & Pear and ate half of it walking home.",
    ]),
    "cook": (lambda l: True, 1.0, [
        "Made {dish} for dinner. Enough left for tomorrow's lunch.",
        "Maya cooked {dish}; I washed up. The system works.",
        "Tried a new recipe: {dish}. Would make again, with less salt.",
        "Too tired to cook, so toast and eggs and an early night.",
        "Big pot of {dish}, portioned into the freezer.",
        "Takeaway curry on the sofa. No regrets.",
        "Cooked {dish} with whatever was in the fridge. Surprisingly decent.",
        "{dish} for dinner and a bottle of the cheap red we like.",
        "Burned the onions, started again, {dish} in the end.",
    ]),
    "sourdough": (lambda l: l.day > STARTER, 0.5, [
        "Fed the starter, baked a loaf. Open crumb! Finally!",
        "Sourdough came out flat as a frisbee. Ate it anyway.",
        "Baked two loaves and gave one to the neighbours.",
        "The starter was sulking in the cold kitchen; moved it next to the radiator.",
        "Made sourdough pizza bases. Maya says it's my best bake yet.",
    ]),
    "maya": (lambda l: True, 1.2, [
        "[[Maya]] finished {commission}.",
        "Maya is stuck on {commission} and went for a walk to unstick it.",
        "Maya sent off {commission} and did a little dance in the hallway.",
        "Maya had a deadline for {commission}, so I made dinner and kept the dog away from her desk.",
        "Maya drew all evening in the corner; I read. Good, quiet night.",
        "Walked to the park with Maya and talked about where we want to be in five years.",
        "Maya was sketching people on the bus and one of them asked to see. He loved it.",
        "Maya in a low mood today; we watched an old film under a blanket and didn't talk much.",
        "Maya taught her drawing class at the community centre and came back buzzing.",
        "Date night with Maya: cinema, then noodles, then home by ten like pensioners.",
        "Maya got paid for three invoices at once and we bought good cheese to celebrate.",
        "Long lie-in, coffee in bed, Maya reading bits of the paper out loud.",
    ]),
    "social": (lambda l: True, 1.2, [
        "{friends} came over for {social_food}; {social_event}.",
        "Went round to {friend_place} for {social_food}; {social_event}.",
        "Quiz night at the pub with Tomás and Priya. Came {place_rank} out of twelve.",
        "Long phone call with Mum. Dad is {dad_project}.",
        "Jonas needed help carrying a wardrobe he'd made; it weighs as much as a car.",
        "Walk in the Peaks with Priya and Jonas, pub lunch in {village} after.",
        "[[Tomás]] came round after a night shift, ate everything in the fridge and fell asleep on the sofa.",
        "Met Ellie for a coffee after the club run and talked about shoes for an hour.",
        "Mum sent a photo of the sea from the kitchen window, like she does most Sundays.",
    ]),
    "farid": (lambda l: l.day > FARID_GONE, 0.3, [
        "Video call with Farid in Berlin. He has discovered currywurst and won't stop talking about it.",
        "Farid sent a photo of a pan with a question mark. Yes, Farid, I'm oiling it.",
        "Voice note from Farid: it's snowing in Berlin and he's very smug about it.",
    ]),
    "family": (lambda l: CLARA_TOLD_US <= l.day < IRIS_BORN, 0.6, [
        "[[Clara]] sent a scan photo; it looks like a bean, which I said, which was the wrong thing.",
        "Phoned Clara; she's tired all the time and craving tinned peaches.",
        "Went halves with Maya on a pram for Clara. Prams cost more than my first car.",
    ]),
    "iris": (lambda l: l.day > IRIS_BORN, 0.6, [
        "Clara sent a video of [[Iris]] yawning. Watched it about eleven times.",
        "FaceTime with Clara and Iris. Iris mainly looked at the ceiling.",
        "Sent Iris a tiny raincoat. Clara says she's already too big for it.",
        "Ben sent a photo of Iris asleep on his chest, both of them snoring.",
    ]),
    "bike": (lambda l: l.day > BIKE and l.season != "winter", 0.6, [
        "Cycled into town; beat the bus by ten minutes.",
        "Bike ride out to {bike_place} and back, a long drag up and a flying descent.",
        "Fixed a puncture on the bike in the yard. Only took three attempts.",
        "Rode out to the reservoirs with Tomás. Headwind both ways, somehow.",
    ]),
    "camera": (lambda l: l.day > CAMERA, 0.5, [
        "Shot a roll on the Pentax around town. No idea if any of it worked, which is the fun.",
        "Got film back from the lab: mostly blurry Biscuit, one perfect photo of Maya laughing.",
        "Took the film camera on the morning walk; the light was doing something special.",
    ]),
    "allotment": (lambda l: l.allotment, 1.5, [
        "Two hours at the allotment digging out couch grass. Back aching, mind empty.",
        "Planted out the broad beans at the plot. Maya named the rows.",
        "Allotment neighbour Stan gave us a bag of manure and a long talk about leeks.",
        "Watering at the allotment after work; robins following me down the path.",
        "Picked the first rhubarb from the plot. Crumble tonight.",
        "Slugs got the lettuces at the allotment. War has been declared.",
        "Sat in the allotment shed doorway with a flask while it rained.",
        "Weeded the onion bed at the allotment while Maya sketched the bean poles.",
    ]),
    "engaged": (lambda l: l.day > ENGAGED, 0.8, [
        "Maya keeps looking at her ring when she thinks I'm not watching.",
        "First wedding-planning conversation. We agreed on nothing except cake.",
        "Told Anna we're engaged; she already knew somehow.",
    ]),
    "reading": (lambda l: True, 0.8, [
        "Read {chapters} chapters of a {genre} in the bath until the water went cold.",
        "Stayed up too late finishing a {genre}. Worth it.",
        "Library trip; came home with four books and a fine for a fifth.",
        "Started a {genre} and gave up after thirty pages. Life's too short.",
        "Listened to an audiobook on the walk and missed my turning twice.",
    ]),
    "misc": (lambda l: True, 1.0, [
        "Haircut. Asked for a trim, got a statement.",
        "Laundry, shopping, hoovering. A very adult day.",
        "Fell asleep on the sofa at nine and woke up at eleven very confused.",
        "Sorted out the car insurance for Maya's mum. Forty minutes on hold.",
        "Cleared out the fridge and found something that used to be coleslaw.",
        "Wrote three birthday cards in one go to get ahead. I am never ahead.",
        "Bought new running socks, which is the most exciting thing that happened.",
        "Odd headache all day; drank water, went to bed early.",
        "Woke at 5 for no reason and watched the sky go pink.",
        "Did the big supermarket shop. Forgot the one thing we went for.",
        "Phone screen cracked. Face down on the pavement, of course.",
        "Cinema on my own in the afternoon, a treat I should allow myself more often.",
    ]),
}

SLOTS = {
    "when": ["Early", "Lunchtime", "Evening", "Long", "Quick", "Muddy", "Slow", "Late"],
    "where": ["round the park", "along the river", "through the cemetery", "up through the woods",
              "round the block", "across the playing fields", "down by the canal",
              "along the old railway path"],
    "dog_event": [
        "he found a tennis ball and refused to give it back",
        "he barked at a heron for ten minutes",
        "he came back three shades darker and very pleased with himself",
        "he tried to keep up with a greyhound and could not",
        "he howled at the bin lorry, full beagle mode",
        "he rolled in something awful and went straight in the bath",
        "he sat down in protest when it started to rain",
        "he made friends with a very old labrador",
        "he ate something out of a hedge before I could stop him",
        "he carried a stick twice his length the whole way home",
        "he pulled like a train for ten minutes and then forgot why",
        "he saw a cat and went up on his back legs like a meerkat",
        "a toddler fed him half a rice cake and he will now love her forever",
        "he refused to walk past the house with the garden gnomes",
    ],
    "nw_task": ["untangling the depot delay data", "rewriting the trailer dwell-time query",
                "arguing with a spreadsheet from Doncaster", "building charts for the ops review",
                "chasing IT for database access", "testing the Kestrel refresh",
                "cleaning up duplicate trailer IDs with Raj", "writing up the weekly volumes report",
                "answering ad-hoc questions from the depots", "documenting the yard system tables"],
    "fl_task": ["untangling the appointments model", "writing tests for the clinic lookup job",
                "reading old pipeline code nobody understands", "cleaning up the referrals extract",
                "drawing boxes and arrows on the whiteboard", "chasing a slow query through the warehouse",
                "writing a design doc", "reviewing the analysts' dashboards",
                "doing the data-protection refresher", "tidying up the on-call runbook"],
    "route": ["along the river", "round the park", "up to the reservoirs", "on the canal towpath",
              "through the woods", "round the cemetery hill", "out along the Rivelin valley"],
    "reps": ["6 x 800 m", "5 x 1 km", "10 x 400 m", "4 x 1 mile", "8 x 600 m"],
    "documentary": ["octopuses", "the deep sea", "a polar expedition", "bees", "a famous shipwreck"],
    "lengths": ["30", "40", "44", "50"],
    "climb_event": [
        "flashed a V3 and then couldn't get off the ground on a V2",
        "the new circuit in the back room is all slopers, which I hate",
        "Tomás is working on a V6 and I'm working on not falling off the warm-up",
        "finally got the blue V4 in the cave after three sessions",
        "spent an hour on one move and left without it",
        "tried the competition wall and made it halfway",
        "good session, then chips, and the chips were the best part",
        "new set in the main room, everything felt impossible",
    ],
    "commission": ["a children's book cover", "a magazine illustration", "a set of wedding invitations",
                   "a poster for a folk festival", "a set of greeting cards", "a map for a café wall",
                   "a picture book spread", "a label for a local brewery"],
    "friends": ["[[Priya]] and [[Jonas]]", "[[Tomás]]", "[[Anna]]", "[[Ellie]] and her partner"],
    "friend_place": ["Priya and Jonas's", "Tomás's", "Ellie's", "Anna's"],
    "social_food": ["dinner", "a curry", "pizza and a film", "tea and too many biscuits",
                    "a board game night", "soup and bread"],
    "social_event": ["talked until midnight", "I lost every game, as usual", "nobody wanted to go home",
                     "we planned a holiday we'll never take", "Biscuit got more attention than anyone",
                     "home by ten and asleep by eleven"],
    "place_rank": ["fourth", "second", "last", "seventh", "third"],
    "dad_project": ["building another shed", "fixing up an old boat", "learning the ukulele",
                    "at war with the seagulls", "refereeing the grandchildren's football"],
    "village": ["Hathersage", "Castleton", "Edale", "Grindleford", "Eyam"],
    "bike_place": ["Bradfield", "Ladybower", "Dore", "Wharncliffe"],
    "anna_gift": ["a plate of shortbread", "a jar of marmalade", "half a lemon drizzle cake", "some scones"],
    "anna_topic": ["her sister's hip", "the library cuts", "a crime novel she's cross about",
                   "her watercolour class", "the price of butter"],
    "chapters": ["two", "three", "four"],
    "genre": ["crime novel", "history of salt", "book about trees", "collection of short stories",
              "memoir", "sci-fi doorstop", "book about mountains"],
    "temp_winter": ["-3", "-1", "0", "1", "2"],
    "temp_spring": ["17", "18", "19"],
    "temp_summer": ["26", "27", "28"],
    "temp_autumn": ["9", "10", "11"],
}

GRATITUDE = [
    "a warm kitchen", "Biscuit's snoring", "Maya's laugh at the radio", "a good coffee",
    "dry socks", "the bus arriving exactly when I got to the stop", "a long phone call with Clara",
    "clean sheets", "a quiet evening", "sun on the wall", "the smell of bread",
    "Tomás's terrible jokes", "an empty inbox", "the first cup of tea", "a hot shower after the rain",
    "a letter from Grandma Edie", "the blackbird outside", "leftovers", "a film that made us both cry",
    "the heating working", "my legs, for carrying me about", "an early night", "the view from the bus",
    "a message from an old friend",
]

DISHES = [
    "dal with rice", "shakshuka", "a tray bake of chicken thighs and lemons", "mushroom risotto",
    "leek and potato soup", "fish tacos", "veg chilli", "pasta with anchovies and breadcrumbs",
    "a Thai green curry", "bean stew", "cheese and onion pie", "stir-fried noodles",
    "baked gnocchi", "sausage casserole", "tomato soup and grilled cheese", "lentil lasagne",
]

MONTH_MOOD = {  # rough shape of the two years: winter dips, injury, job handover, good summers
    (2023, 1): 6.0, (2023, 3): 7.0, (2023, 5): 7.5, (2023, 7): 7.0, (2023, 9): 6.8,
    (2023, 11): 5.4, (2023, 12): 5.8, (2024, 1): 5.2, (2024, 2): 6.8, (2024, 4): 7.4,
    (2024, 6): 7.6, (2024, 8): 7.6, (2024, 9): 7.2, (2024, 11): 7.8, (2024, 12): 7.3,
}
MONTH_SLEEP = {(2023, 11): 6.6, (2023, 12): 6.7, (2024, 1): 5.9, (2024, 8): 6.6}
MAX_REPEATS = 2  # the same rendered sentence at most twice in two years


class Bags:
    """Draws sentences: shuffle-bag per pool, slots filled, and no sentence used too often."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.bags: dict[str, list[str]] = {}
        self.used: dict[str, int] = {}

    def _template(self, pool: str) -> str:
        bag = self.bags.get(pool)
        if not bag:
            bag = list(POOLS[pool][2])
            self.rng.shuffle(bag)
            self.bags[pool] = bag
        return bag.pop()

    def draw(self, pool: str, day_slots: dict[str, object], life: Life) -> str | None:
        for _ in range(2 * len(POOLS[pool][2])):
            values = {name: self.rng.choice(options) for name, options in SLOTS.items()}
            values["nw_task2"] = self.rng.choice(SLOTS["nw_task"])
            values["fl_task2"] = self.rng.choice(SLOTS["fl_task"])
            values.update(day_slots)
            text = self._template(pool).format(**values)
            text = text[0].upper() + text[1:]
            if "Biscuit" in text and not life.dog:  # slots can bring the dog in before he arrives
                continue
            if self.used.get(text, 0) < MAX_REPEATS:
                self.used[text] = self.used.get(text, 0) + 1
                return text
        return None  # pool worn out; the day is about something else


def sleep_and_mood(rng: random.Random, day: date) -> tuple[int, int, int]:
    """Hours, minutes (rounded to 10) and a 1-10 mood score for a logged day."""
    mean_sleep = MONTH_SLEEP.get((day.year, day.month), 7.1)
    minutes = round(rng.gauss(mean_sleep, 0.55) * 6) * 10
    minutes = max(240, min(600, minutes))
    mean_mood = MONTH_MOOD.get((day.year, day.month), 6.6)
    mood = max(2, min(10, round(rng.gauss(mean_mood, 1.1))))
    return minutes // 60, minutes % 60, mood


def compose_daily(life: Life, rng: random.Random, bags: Bags, journal) -> str:
    day = life.day
    weather = f"weather_{life.season}"
    weights = {name: weight for name, (ok, weight, _) in POOLS.items()
               if ok(life) and not name.startswith("weather_")}
    count = rng.choices([1, 2, 3, 4], weights=[3, 4, 3, 1])[0]
    day_slots = {"km": rng.choice([5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 13]), "dish": rng.choice(DISHES)}
    if life.training:
        day_slots["km"] = rng.choice([8, 10, 11, 12, 13, 14, 16])
    sentences: list[str] = []
    names = list(weights)
    while len(sentences) < count and names:
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        names.remove(name)
        if (text := bags.draw(name, day_slots, life)) is not None:
            sentences.append(text)
    if rng.random() < 0.35 and (text := bags.draw(weather, day_slots, life)) is not None:
        sentences.insert(0, text)
    if not sentences:
        sentences = ["Nothing much to report. Early night."]

    logged = rng.random() < 0.55
    if logged:
        hours, minutes, mood = sleep_and_mood(rng, day)
        journal.sleep_log[day] = hours + minutes / 60
        journal.mood_log[day] = mood
        stats = f"Sleep: {hours}h{minutes:02d} · Mood: {mood}/10"
        if rng.random() < 0.4:
            stats += f" · Steps: {rng.randint(3500, 16500):,}"

    heading = f"# {day.strftime('%A')} {day.day} {day.strftime('%B %Y')}"
    layout = rng.choices(["para", "heading", "bullets", "sections", "short"], weights=[3, 3, 3, 2, 1])[0]
    if layout == "short":
        body = sentences[0]
    elif layout == "para":
        body = " ".join(sentences)
    elif layout == "heading":
        body = heading + "\n\n" + " ".join(sentences)
    elif layout == "bullets":
        body = "\n".join(f"- {s}" for s in sentences)
    else:
        body = "## Log\n" + "\n".join(f"- {s}" for s in sentences)
        body += "\n\n## Grateful for\n- " + rng.choice(GRATITUDE)
    if logged:
        body = stats + "\n\n" + body if layout != "heading" else body.replace("\n\n", f"\n\n{stats}\n\n", 1)
    return body


def filler_entries(journal, rng: random.Random, start: date, end: date) -> None:
    # Dated entries first, so no daily note contradicts them (a rest day on a long-run day).
    long_runs(journal, rng)
    allotment_notes(journal)
    recipes(journal)
    bags = Bags(rng)
    day = start
    while day <= end:
        if day not in journal.taken_days and not on_trip(day) and rng.random() < 0.48:
            journal.daily(day, compose_daily(Life(day), rng, bags, journal))
        day += timedelta(days=1)
    work_logs(journal, rng, start, end)


# -- weekly work logs (.txt) ---------------------------------------------------

NORTHWIND_DONE = [
    "cleaned up the trailer dwell-time query", "fixed the Doncaster time-zone join",
    "rebuilt the weekly volumes report", "wrote the depot glossary", "sat in on the ops review",
    "sped up the yard extract from 40 to 9 minutes", "added alerts for missing depot files",
    "walked Helen through the Kestrel prototype", "answered a dozen ad-hoc data requests",
    "moved the old Excel reports onto the shared drive", "paired with Raj on the late-loads model",
]
NORTHWIND_NEXT = [
    "get sign-off on the depot definitions", "chase IT for the yard system access (again)",
    "test the hourly refresh", "write up the lateness metric properly", "holiday cover for Raj",
]
FERNLEAF_DONE = [
    "added tests to the referrals extract", "documented the appointment warehouse tables",
    "reviewed Luis's change to the clinic lookup", "fixed the flaky Tuesday job",
    "sat with the booking team to watch how they really use the data",
    "set up my first dashboard in the new BI tool", "cut the warehouse build time by a third",
    "ran the data-quality checks for the quarterly report", "got through the security training",
    "paired with Luis on the Airflow migration plan",
]
FERNLEAF_NEXT = [
    "agree naming conventions with the analysts", "write a runbook for on-call",
    "plan the next sprint with Dana", "prepare the show-and-tell", "pick up the backlog of small bugs",
]


def work_logs(journal, rng: random.Random, start: date, end: date) -> None:
    friday = start + timedelta(days=(4 - start.weekday()) % 7)
    week = 0
    while friday <= end:
        week += 1
        life = Life(friday)
        taken = any(path.startswith(f"work/{friday.isoformat()}") for path in journal.files)
        if week % 3 == 0 and not taken and not on_trip(friday) and not life.between_jobs:
            if life.northwind:
                done, upcoming, place = NORTHWIND_DONE, NORTHWIND_NEXT, "Northwind"
            elif life.fernleaf:
                done, upcoming, place = FERNLEAF_DONE, FERNLEAF_NEXT, "Fernleaf"
            else:
                friday += timedelta(days=7)
                continue
            lines = [f"Week ending {friday.strftime('%a %d %b %Y')} - {place}", "", "Done:"]
            lines += [f"- {item}" for item in rng.sample(done, rng.randint(2, 4))]
            lines += ["", "Next week:"]
            lines += [f"- {item}" for item in rng.sample(upcoming, rng.randint(1, 2))]
            energy = rng.choice(["Energy: good.", "Energy: low, long week.", "Energy: fine.",
                                 "Energy: flat by Thursday.", "Energy: decent, slept well."])
            lines += ["", energy]
            journal.txt(friday, "weekly", "\n".join(lines))
        friday += timedelta(days=7)


# -- long runs (.org) ----------------------------------------------------------

RUN_ROUTES = [
    "river path out to Meadowhall and back", "the Round Walk, clockwise", "Rivelin Valley and up to Stannington",
    "park loops plus the cemetery hill", "canal towpath to Tinsley", "Redmires reservoirs and back down",
    "Loxley valley, out and back", "the Porter Brook to the edge of the moor",
]
RUN_FEELINGS = [
    "Felt easy until the last few kilometres.", "Started too fast, paid for it.",
    "Rain the whole way; didn't mind.", "Ran with Ellie for the first half.",
    "Tried a new gel flavour (salted caramel). Never again.", "Legs good, lungs good, head elsewhere.",
    "Stopped twice for Biscuit-style distractions: a heron and an ice-cream van.",
]


def long_runs(journal, rng: random.Random) -> None:
    # 2023: a monthly long Sunday run while healthy; 2024: the build-up before the March block.
    plan = [(D(2023, 1, 29), 12), (D(2023, 3, 26), 14), (D(2023, 4, 23), 15), (D(2023, 6, 25), 16),
            (D(2023, 7, 23), 16), (D(2023, 8, 27), 18), (D(2023, 9, 24), 18), (D(2023, 10, 15), 19),
            (D(2024, 1, 14), 16), (D(2024, 1, 21), 18), (D(2024, 1, 28), 20), (D(2024, 2, 4), 18),
            (D(2024, 2, 11), 22), (D(2024, 2, 18), 23), (D(2024, 2, 25), 24),
            (D(2024, 6, 9), 14), (D(2024, 9, 29), 15), (D(2024, 12, 1), 12)]
    for day, km in plan:
        pace_seconds = rng.randint(345, 390)  # 5:45-6:30 per km
        total = km * pace_seconds
        time = f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
        body = (
            "* Long run\n"
            f"- Distance: {km} km\n"
            f"- Time: {time} ({pace_seconds // 60}:{pace_seconds % 60:02d}/km)\n"
            f"- Route: {rng.choice(RUN_ROUTES)}\n"
            f"- {rng.choice(RUN_FEELINGS)}\n"
        )
        journal.org(day, "long-run", f"Long run: {km} km", ["running"], body, folder="running")


# -- allotment notes (.org) ----------------------------------------------------

ALLOTMENT_NOTES = [
    (D(2024, 3, 16), "First dig", """
* Jobs done
- Cleared the bed nearest the shed; mostly couch grass and a buried bucket
- Stan from the next plot lent us his good fork
* To do
- Buy seed potatoes (Charlotte)
- Fix the gate latch
"""),
    (D(2024, 4, 13), "Potatoes in", """
* Jobs done
- Potatoes in: three rows of Charlotte
- Broad beans sown along the fence
* Notes
- Maya painted a sign for the shed: PLOT 17B, PLEASE KNOCK
"""),
    (D(2024, 5, 25), "Planting out", """
* Jobs done
- Tomato plants in (six of them) with canes
- Courgettes: four plants, which everyone says is too many
- Slug traps out
"""),
    (D(2024, 6, 29), "Midsummer", """
* Notes
- Robins fledged from the shed nest; door open at last
- First potatoes dug, small and perfect
- Watering every other evening in the dry spell
"""),
    (D(2024, 7, 27), "Glut", """
* Notes
- Courgettes out of control; left some on Stan's bench with a note
- Tomatoes starting to colour
- Biscuit dug a hole in the path and looked very proud of it
"""),
    (D(2024, 9, 7), "End of summer", """
* Notes
- Cleared the potato bed, sowed green manure
- Last big pick of tomatoes; green ones into chutney
- Committee says the water troughs go off at the end of October
"""),
]


def allotment_notes(journal) -> None:
    for day, title, body in ALLOTMENT_NOTES:
        slug = title.lower().replace(" ", "-")
        journal.org(day, slug, f"Allotment: {title.lower()}", ["allotment", "garden"], body, folder="garden")


# -- recipes (front matter) ----------------------------------------------------

RECIPES = [
    (D(2023, 2, 12), "Weeknight dal", ["recipe", "vegetarian"], """
Red lentils (250 g) rinsed, simmered with turmeric and a lot of water for 20 minutes. Meanwhile: onion, garlic, ginger, cumin seeds in ghee until dark. Tip it all in, lime, salt, coriander. Serves four, or two and lunch.
"""),
    (D(2023, 6, 11), "Maya's shakshuka", ["recipe", "maya"], """
Maya's version: peppers and onions cooked down slowly, smoked paprika, cumin, a tin of tomatoes, then eggs cracked into wells and lid on for six minutes. Feta on top. She insists on crusty bread, not toast.
"""),
    (D(2023, 10, 22), "Rye loaf, take three", ["recipe", "baking"], """
- 300 g strong white, 100 g rye, 300 g water, 80 g starter, 8 g salt
- Stretch and fold every half hour for two hours
- Overnight in the fridge, bake at 240°C in the cast-iron pot (Farid's pan did not fit)
Best crust yet. The rye makes it sour in a good way.
"""),
    (D(2024, 1, 20), "Long-run flapjack", ["recipe", "running"], """
Oats (300 g), butter (150 g), golden syrup (4 big spoons), a pinch of salt, a handful of chopped dates. 180°C for 22 minutes, cut while warm. Wrapped in foil, they survive a long run in a waistbelt.
"""),
    (D(2024, 7, 28), "Courgette fritters", ["recipe", "allotment"], """
Grate two courgettes, salt, squeeze hard in a tea towel. Mix with an egg, three spoons of flour, mint, feta, lemon zest. Fry in spoonfuls. Eat standing up at the stove.
"""),
    (D(2024, 10, 26), "Green tomato chutney", ["recipe", "allotment"], """
1 kg green tomatoes, two onions, two apples, 250 g brown sugar, 300 ml cider vinegar, a spoon of mustard seed. Simmer two hours until jammy. Made six jars; Anna gets one, Mum gets one.
"""),
]


def recipes(journal) -> None:
    for day, title, tags, body in RECIPES:
        slug = title.lower().replace("'", "").replace(",", "").replace(" ", "-")
        journal.note(day, title, tags, body, slug=slug, folder="notes/recipes")

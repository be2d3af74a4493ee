"""Hand-written entries: the events of the narrator's two years, and questions about them.

Each question sits right after the entry that answers it, and names that entry as its
evidence. Everyday filler (journal_filler.py) never repeats these facts.

Cast: Maya (partner, freelance illustrator), Biscuit (beagle cross, adopted March
2023), Tomás (climbing partner, A&E nurse from Valencia), Anna (retired librarian,
downstairs neighbour at Rowan Terrace), Priya and Jonas (friends; married June 2024),
Ellie (running club), Farid (moves to Berlin), Helen and Raj (Northwind Logistics),
Dana and Luis (Fernleaf Health), Kerry (physio), Mireille (bakery), family in Whitby:
Mum (Ruth), Dad (Graham), sister Clara with Ben and, from August 2024, baby Iris,
Grandma Edie.
"""

from __future__ import annotations

from datetime import date as d

# (month, km run, books finished as (title, author), one-line highlight, one-line lowlight)
REVIEWS_2023 = [
    (1, 62, [("Piranesi", "Susanna Clarke"), ("A Month in the Country", "J. L. Carr")],
     "the starter lived", "three weeks of grey, damp, nothing weather"),
    (2, 70, [("The Overstory", "Richard Powers")],
     "joined the Loxley Striders", "Kestrel data is worse than Helen thinks"),
    (3, 88, [("Born a Crime", "Trevor Noah"), ("Hyperion", "Dan Simmons")],
     "Biscuit came home", "Biscuit ate a remote control"),
    (4, 96, [("The Cartographer's Daughter", "Ines Varga"), ("Station Eleven", "Emily St. John Mandel")],
     "Kestrel demo went well", "flat internet dying every other day"),
    (5, 60, [("The Hare with Amber Eyes", "Edmund de Waal")],
     "Lisbon", "came back from Lisbon to a boiler that didn't work"),
    (6, 84, [("Pachinko", "Min Jin Lee")],
     "the bike", "hay fever like a punishment"),
    (7, 101, [("Project Hail Mary", "Andy Weir"), ("The Remains of the Day", "Kazuo Ishiguro")],
     "long evenings on the bike", "saying goodbye to Farid"),
    (8, 95, [("Educated", "Tara Westover"), ("The Dispossessed", "Ursula K. Le Guin")],
     "found the Alder Street flat", "flat hunting generally"),
    (9, 110, [("Braiding Sweetgrass", "Robin Wall Kimmerer"), ("Klara and the Sun", "Kazuo Ishiguro")],
     "moved", "packing, then unpacking, then finding the kettle"),
    (10, 142, [("What I Talk About When I Talk About Running", "Haruki Murakami")],
     "Copenhagen, and a sub-2 half", "nothing really"),
    (11, 58, [("The Salt Path", "Raynor Winn")],
     "Grandma Edie at ninety, dancing", "the ankle"),
    (12, 0, [("Tomorrow, and Tomorrow, and Tomorrow", "Gabrielle Zevin"), ("A Gentleman in Moscow", "Amor Towles")],
     "the Fernleaf offer", "the sock incident"),
]

REVIEWS_2024 = [
    (1, 160, [("Born to Run", "Christopher McDougall"), ("The Left Hand of Darkness", "Ursula K. Le Guin")],
     "started the marathon plan", "sleep fell apart around the handover"),
    (2, 190, [("Demon Copperhead", "Barbara Kingsolver")],
     "first weeks at Fernleaf", "Gerald the cactus looking a bit yellow"),
    (3, 235, [("Four Thousand Weeks", "Oliver Burkeman")],
     "the allotment", "every Sunday was a long run"),
    (4, 150, [("Endurance", "Alfred Lansing"), ("The Bee Sting", "Paul Murray")],
     "finished a marathon", "could not walk downstairs for three days"),
    (5, 70, [("Wolf Hall", "Hilary Mantel"), ("Lessons in Chemistry", "Bonnie Garmus"),
             ("The Wild Places", "Robert Macfarlane")],
     "Heron kicked off", "slugs found the lettuces"),
    (6, 64, [("The Thursday Murder Club", "Richard Osman"), ("Circe", "Madeline Miller")],
     "Priya and Jonas's wedding", "the hangover on the 23rd"),
    (7, 80, [("H is for Hawk", "Helen Macdonald"), ("Never Let Me Go", "Kazuo Ishiguro")],
     "Heron shipped", "the filling"),
    (8, 72, [("The Shepherd's Life", "James Rebanks"), ("Hamnet", "Maggie O'Farrell"),
             ("Middlemarch", "George Eliot")],
     "Iris, and Skye", "midges"),
    (9, 88, [("The Old Man and the Sea", "Ernest Hemingway")],
     "Maya's opening night", "a cold that lasted two weeks"),
    (10, 94, [("The Ministry for the Future", "Kim Stanley Robinson"),
              ("Small Things Like These", "Claire Keegan")],
     "sent my first V5", "the shed roof leaking"),
    (11, 76, [("Snow Country", "Yasunari Kawabata"), ("The Year of Magical Thinking", "Joan Didion")],
     "she said yes", "nervous for about three weeks beforehand"),
    (12, 60, [("Possession", "A. S. Byatt"), ("The Little Prince", "Antoine de Saint-Exupéry"),
              ("Cloud Cuckoo Land", "Anthony Doerr")],
     "our first Christmas hosting", "too much cheese, if that's possible"),
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def fixed_entries(j) -> None:
    year_2023(j)
    year_2024(j)
    long_entries(j)


def year_2023(j) -> None:
    p = j.daily(d(2023, 1, 1), """
# Sunday 1 January 2023

Slow start. Got home from [[Tomás]]'s New Year party at half two and slept until ten. [[Maya]] made pancakes with the last of the lemons.

Things I want from 2023, written down so I can't pretend later:
- run a marathon, or at least start training for one
- read 24 books
- learn to bake proper sourdough
- climb more, complain less

Walked up to the viewpoint in the afternoon. Cold and bright, and everyone in Sheffield had the same idea.
""")
    j.ask("How many books did I set out to read in 2023?", ["24", "twenty-four", "twenty four"], [p])

    p = j.note(d(2023, 1, 14), "The starter has a name", ["baking", "home"], """
Day six of the sourdough starter. It finally doubled overnight and smells like yoghurt and green apples. Maya says anything we feed twice a day deserves a name, so it is now officially **Clint Yeastwood**.

Feeding routine: 50 g rye flour, 50 g water, discard down to 50 g. It lives on top of the fridge where it's warmest. First loaf planned for next weekend, expectations low.
""", slug="sourdough-starter")
    j.ask("What did we name the sourdough starter?", ["Clint Yeastwood"], [p])

    p = j.txt(d(2023, 1, 23), "kestrel-kickoff", """
Mon 23 Jan 2023 - Northwind

Helen pulled me into a meeting about depot delays. The ops directors want one dashboard showing late trailers across all nine depots, refreshed hourly. Internal code name: Project Kestrel (every project at Northwind is named after a bird, nobody remembers why). It's me plus Raj, first demo due end of March.

Notes to self:
- the Doncaster depot logs times in local time with no zone, everyone else uses UTC
- ask IT for read access to the yard system
- do not promise hourly refreshes until I've seen the data
""")
    j.ask("What was the code name of the depot-delays dashboard project at Northwind?",
          ["Kestrel"], [p])
    j.ask("How many depots does Northwind have?", ["nine", "9"], [p])

    p = j.daily(d(2023, 2, 4), """
Saturday. Bouldering at [[Granite Works]] with [[Tomás]], our first proper session since before Christmas. He was forty minutes late because his shift on A&E ran over; he's been a nurse there six years and still can't leave on time. Bought a 10-visit pass for £85 instead of paying £10.50 at the door every time.

Managed two of the blue V3s in the cave, fell off the overhang one about fifteen times. Forearms are gone. Tomás says I climb like I'm apologising to the wall.
""")
    j.ask("How much did the 10-visit pass at Granite Works cost?", ["£85", "85"], [p])
    j.ask("What does Tomás do for a living?", ["nurse"], [p])

    p = j.daily(d(2023, 2, 8), """
- Went along to the Loxley Striders club run for the first time. Wednesdays, 6:30pm from the cricket club car park. About thirty people, three pace groups; I went with the 5:45/km group and survived.
- Membership is £20 a year. Signed up on the spot.
- A woman called [[Ellie]] ran next to me and talked the whole way round without getting out of breath. She's done eleven marathons. Eleven.
- 8.4 km. Legs fine, ego slightly dented.
""")
    j.ask("Which running club did I join in February 2023?", ["Loxley Striders"], [p])
    j.ask("How many marathons had Ellie run when I met her?", ["eleven", "11"], [p])

    p = j.note(d(2023, 2, 19), "Anna's book", ["books", "anna"], """
[[Anna]] from downstairs knocked with a book in a paper bag: *The Cartographer's Daughter* by Ines Varga. She says she has lent it to four people and all four cried on the bus. It's a hardback with her name written inside the cover in green ink, so it has to go back in one piece. She'd like it back by Easter: "no rush, but I'm old, so some rush."

Anna was a librarian at the central library for thirty-one years. She lends books the way other people lend umbrellas.
""", slug="book-from-anna")
    j.ask("What was the name of the book Anna lent me?",
          ["The Cartographer's Daughter", "Cartographer's Daughter"], [p])
    j.ask("Who wrote the book that Anna lent me?", ["Ines Varga"], [p])
    j.ask("How many years did Anna work as a librarian?", ["thirty-one", "31"], [p])

    p = j.note(d(2023, 3, 11), "Biscuit comes home", ["biscuit", "dog", "big-day"], """
We did it. Picked Biscuit up from Hollins Lane Rescue this morning. He's a beagle cross, about two years old, tan and white with one ear that will not stay down. The adoption fee was £185, which covered his jabs and a microchip. The woman at the rescue said he was found tied to a lamppost in Rotherham in January; he seems to have forgiven everyone.

He slept all the way home with his chin on Maya's knee. First night he cried for an hour, then climbed onto the sofa and that was that. The name stays: he already answers to it and it suits him.
""", slug="biscuit-comes-home")
    j.ask("Where did we adopt Biscuit from?", ["Hollins Lane"], [p])
    j.ask("How much was Biscuit's adoption fee?", ["£185", "185"], [p])
    j.ask("When did Biscuit come home?", ["11 March 2023", "2023-03-11", "March 11"], [p])

    p = j.daily(d(2023, 3, 25), """
# Saturday 25 March 2023

Gig night: The Hollow Ferns at the Leadmill with [[Maya]], [[Priya]] and [[Jonas]]. Tickets were £28 each. The support was a man with a cello and a loop pedal who was far better than he had any right to be. The Ferns played the whole new album and then "Paper Moth" as the very last encore, which is the one I'd been waiting for all night.

Ears still ringing at 1am. [[Anna]] looked in on [[Biscuit]] at nine and reports he spent the evening guarding the front door.
""")
    j.ask("Which band did we see at the Leadmill in March 2023?", ["Hollow Ferns"], [p])
    j.ask("What song did The Hollow Ferns play as the last encore?", ["Paper Moth"], [p])
    j.ask("What did I do on the evening of 2023-03-25?", ["Hollow Ferns", "gig", "Leadmill"], [p])

    p = j.daily(d(2023, 4, 12), """
Wednesday. Worked from [[Café Lune]] all morning because the flat's internet died again. Ordered a cardamom bun and an oat flat white, £6.40 together, slightly criminal. [[Anna]] came in at eleven and sat with me for a bit; she's started a watercolour class at the community centre and showed me a very wobbly heron.

Internet back by 3pm. Walked [[Biscuit]] in the rain and he rolled in something unspeakable.
""")
    j.ask("What did I order at Café Lune on 2023-04-12?", ["cardamom bun", "oat flat white"], [p])

    p = j.daily(d(2023, 4, 22), """
[[Tomás]] cooked paella for six of us on the camping burner in Priya's garden. He's from Valencia and has Opinions: no chorizo, never stir once the rice is in, and the crust on the bottom (socarrat) is the whole point. It was the best thing I've eaten this year. Jonas brought a cherry pie. Home at eleven, Biscuit snoring by the door.
""")
    j.ask("Which city is Tomás from?", ["Valencia"], [p])
    j.ask("What did Tomás cook for us on 2023-04-22?", ["paella"], [p])

    p = j.note(d(2023, 4, 29), "Finished: The Cartographer's Daughter", ["books", "anna"], """
Finished it on the train back from Whitby. Did not cry on the bus; cried on the train instead, somewhere around Malton, with a man opposite pretending very politely not to notice.

The last chapter, where the maps turn out to have been letters all along, is the best ending I've read in years. 4.5/5.

Gave it back to Anna this evening with a tin of lemon biscuits from the bakery on the corner. She already has the next one lined up for me.
""", slug="finished-cartographers-daughter")
    j.ask("What did I give Anna when I returned her book?", ["lemon biscuits"], [p])

    p_booking = j.daily(d(2023, 5, 2), """
Booked Lisbon! Flights from Manchester on 18 May, back on the 23rd, £312 for the two of us. Booking reference QX7R2M (writing it here because I will lose the email). [[Anna]] will have [[Biscuit]]; she sounded more excited than we are.
""")
    j.ask("What was the booking reference for the Lisbon flights?", ["QX7R2M"], [p_booking])

    j.trip(d(2023, 5, 18), "Lisbon", """
Landed just after two. Taxi up into Alfama to Casa Azulejo, a guesthouse with eight rooms and a cat called Fado. We're in room 6, which has a balcony the width of a shoebox and a view straight down to the river. First pastel de nata within forty minutes of landing. Early night; Maya asleep by ten.
""")
    j.trip(d(2023, 5, 19), "Lisbon", """
Rode tram 28 end to end, which is mostly a lesson in standing on strangers' feet. Walked back down via two miradouros. Dinner at Tasca do Ribeiro, a tiny place with six tables, where I had the bacalhau à brás and Maya had grilled sardines, plus a jug of vinho verde. The owner, Senhor Ribeiro himself, brought us free ginjinha because Maya complimented his moustache.
""")
    j.trip(d(2023, 5, 20), "Lisbon", """
LX Factory in the morning. Maya bought a tile print of a blue fish from a stall there for €35; it's going above the desk. Afternoon asleep in the park. Hot, 27°C.
""")
    j.trip(d(2023, 5, 21), "Sintra", """
Day trip to Sintra on the train, forty minutes from Rossio. Pena Palace looks like a child designed it with every crayon in the box, and I mean that as a compliment. Walked up instead of taking the bus, which we regretted. My phone says 24,800 steps.
""")
    p_lisbon = j.trip(d(2023, 5, 22), "Lisbon", """
Belém and the monastery, then a lazy afternoon on the beach at Carcavelos. Final count for the trip: we ate eleven pastéis de nata between us in five days, and I regret none of them.
""")
    j.trip(d(2023, 5, 23), "Lisbon", """
Home. Flight delayed an hour. Totted up the trip on the train from the airport: about €1,240 in all, flights not included. Biscuit went completely feral with joy when we got in.
""")
    j.ask("Which city did we visit in May 2023?", ["Lisbon"], [p_lisbon, p_booking])
    j.ask("What was the name of the guesthouse we stayed in in Lisbon?", ["Casa Azulejo"], [p_lisbon])
    j.ask("What did I eat at Tasca do Ribeiro?", ["bacalhau"], [p_lisbon])
    j.ask("How much did Maya pay for the tile print in Lisbon?", ["€35", "35"], [p_lisbon])
    j.ask("Where did we go on our day trip from Lisbon?", ["Sintra"], [p_lisbon])
    j.ask("How many pastéis de nata did we eat in Lisbon?", ["eleven", "11"], [p_lisbon])

    p = j.note(d(2023, 6, 3), "Bought a bike", ["bike", "money"], """
Second-hand Genesis Croix de Fer, dark green, 56 cm frame, from a man called Martin in Crookes who is emigrating to Australia and selling everything he owns. Paid £640; new it would have been nearly £1,400. Rode it home the long way through the Rivelin Valley, 14 km, and only got lost once.

Need: lights, a proper lock, mudguards before autumn.
""", slug="new-bike")
    j.ask("How much did I pay for my second-hand bike?", ["£640", "640"], [p])
    j.ask("What did I buy from Martin in Crookes on 2023-06-03?", ["bike", "Croix de Fer"], [p])
    j.ask("What make of bike did I buy in June 2023?", ["Genesis Croix de Fer", "Croix de Fer", "Genesis"], [p])

    p = j.daily(d(2023, 6, 17), """
# Saturday 17 June 2023

Dad turned 65 today. Whole family in Whitby: Mum, Dad, [[Clara]] and Ben, Maya, me and [[Biscuit]], who was overwhelmed by the gulls. Fish and chips on the harbour wall, then cake at the house. Mum had the cake made in the shape of a trawler with GRAHAM 65 iced on the side. Dad gave a speech about retirement, which he has no intention of taking, and then fell asleep in his chair by eight.
""")
    j.ask("How old did Dad turn in June 2023?", ["65", "sixty-five"], [p])
    j.ask("What is my dad's name?", ["Graham"], [p])
    j.ask("Where do my parents live?", ["Whitby"], [p])

    p = j.note(d(2023, 7, 8), "Farid's leaving drinks", ["friends", "farid"], """
Farid's leaving drinks at The Red Deer. He flies to Berlin on Thursday to start as a battery engineer at Sonnenwerk, a solar company out near the airport. Twenty-odd people, a lot of speeches, one of which (mine) was too long.

He gave me his cast-iron pan because he "cannot take it on a plane and cannot leave it with someone who won't oil it". I have been given instructions. We've promised to visit, and I think we actually will.
""", slug="farid-leaving-drinks")
    j.ask("Which city did Farid move to?", ["Berlin"], [p])
    j.ask("Which pub were Farid's leaving drinks in?", ["Red Deer"], [p])
    j.ask("What company did Farid leave Sheffield to work for?", ["Sonnenwerk"], [p])

    p = j.daily(d(2023, 7, 22), """
Hottest day of the year so far: 31°C on the kitchen thermometer at 4pm. The flat is an oven. Filled the paddling pool in the yard for [[Biscuit]], who stood in it looking personally betrayed, then drank half of it. We ate cold noodles and slept with the windows wide open.
""")
    j.ask("How hot did it get on 2023-07-22?", ["31"], [p])

    p = j.note(d(2023, 8, 5), "Flat hunting, day one", ["home", "move"], """
Saw four flats in one Saturday, which is at least two too many.

1. Ecclesall Road: lovely, tiny, the bedroom is a corridor with ambitions.
2. Walkley: good light, black mould in the bathroom the agent described as "character".
3. Nether Edge: big, no outside space at all, not fair on Biscuit.
4. Alder Street: ground floor, bay window, a small yard with a gate, ten minutes from the park. Slightly over budget.

We both want the fourth one. Going back on Tuesday with a tape measure.
""", slug="flat-hunting")

    p_lease = j.note(d(2023, 8, 12), "Signed for Alder Street", ["home", "move", "money"], """
Signed the lease for Flat 3, 27 Alder Street.

- Rent: £1,150 a month (we pay £875 here at Rowan Terrace, so, ouch)
- Deposit: £1,327
- 12-month contract, pets allowed
- Move-in: Saturday 16 September
- Letting agent: Parkside Lettings, our contact is Gemma

Told Anna. She said "good, you need a garden for that dog" and then went quiet for a bit.
""", slug="alder-street-lease")
    j.ask("How much is the monthly rent at the Alder Street flat?", ["£1,150", "1,150", "1150"], [p_lease])
    j.ask("How much was the deposit for the Alder Street flat?", ["£1,327", "1,327", "1327"], [p_lease])
    j.ask("What was our rent at Rowan Terrace?", ["£875", "875"], [p_lease])

    p = j.daily(d(2023, 9, 16), """
# Saturday 16 September 2023, moving day

We live on Alder Street now. Hired a Luton van from Hallam Van Hire (£96 for the day). [[Tomás]] and [[Jonas]] did most of the heavy lifting and Maya directed traffic; we moved 43 boxes, every one labelled in her handwriting. The sofa only fit through the door with its feet off.

[[Anna]] cried a little when we left Rowan Terrace and made us promise to visit on Sundays. Pizza on the floor at 9pm. [[Biscuit]] has checked every corner of the yard twice.
""")
    j.ask("When did we move to the new flat?",
          ["16 September 2023", "2023-09-16", "September 16", "16th September"], [p, p_lease])
    j.ask("How many boxes did we move into Alder Street?", ["43", "forty-three"], [p])

    p = j.daily(d(2023, 9, 30), """
Found the bakery everyone on this street goes to: Pigeon & Pear, on the corner by the bus stop. It's run by Mireille, who is from Lyon and does not believe in sliced bread. Bought a rye loaf (£4.20) and two almond croissants. Told Maya we're moving here permanently; she pointed out we already did.
""")
    j.ask("What is the name of the bakery near the Alder Street flat?", ["Pigeon & Pear", "Pigeon and Pear"], [p])
    j.ask("Who runs the Pigeon & Pear bakery?", ["Mireille"], [p])

    j.trip(d(2023, 10, 6), "Copenhagen", """
Copenhagen for Maya's birthday. Small flat in Nørrebro, fourth floor, no lift. Rented two bikes for the whole stay straight away because that's how you get anywhere here. It was already dark by six and everything smelled of cinnamon.
""")
    p_cph = j.trip(d(2023, 10, 7), "Copenhagen", """
Maya turned 34 today. Breakfast at the bakery round the corner, then a long cycle out along the harbour. Birthday dinner at Salt & Birk: seven courses, one of which was a single carrot treated with enormous respect. She loved it. I loved watching her love it.
""")
    j.trip(d(2023, 10, 8), "Humlebæk", """
Train up the coast to the Louisiana museum. Sat on the lawn facing Sweden for an hour. Maya bought a poster she says she'll frame and won't.
""")
    j.trip(d(2023, 10, 9), "Copenhagen", """
Home via Manchester. Returned the bikes, ate one last cardamom knot at the airport. Biscuit (staying with Priya and Jonas this time) had learned to open their kitchen bin.
""")
    j.ask("Which city did we go to for Maya's birthday in October 2023?", ["Copenhagen"], [p_cph])
    j.ask("How old did Maya turn in October 2023?", ["34", "thirty-four"], [p_cph])
    j.ask("Where did we have Maya's birthday dinner in Copenhagen?", ["Salt & Birk", "Salt and Birk"], [p_cph])

    p = j.org(d(2023, 10, 29), "riverside-half", "Riverside Half Marathon", ["running", "race"], """
* Result
- Finish: 1:58:14 (chip time)
- Target was sub-2:00, so: yes!
- 1,406th of 3,912 finishers

* How it went
- Ellie paced me to 15 km, then told me to go and dropped back.
- Hill at 17 km was awful; walked the steepest bit for about thirty seconds.
- Maya and Biscuit at the finish with a sign that said RUN SAM RUN.

* Kit
- Old shoes, new socks. Lost a toenail. Worth it.
""", folder="running")
    j.ask("What was my finish time at the Riverside Half Marathon?", ["1:58:14"], [p])

    p = j.daily(d(2023, 11, 4), """
Grandma Edie turned 90. Party at the Harbour Rooms in Whitby with thirty-eight people, including cousins I last saw at a christening. She danced with Dad to something by Dusty Springfield and then asked Maya, in front of everyone, when we're getting married. Maya said "ask him". Everybody looked at me. I went to get more sandwiches.
""")
    j.ask("How old did Grandma Edie turn in November 2023?", ["90", "ninety"], [p])
    j.ask("Where was Grandma Edie's 90th birthday party?", ["Harbour Rooms"], [p])

    p = j.note(d(2023, 11, 18), "Ankle", ["health", "climbing", "injury"], """
Rolled my left ankle at Granite Works. Came off the top of a V4 in the cave at a bad angle and landed half on the edge of the mat. Heard a pop. Tomás drove me to the minor injuries unit; X-ray clear, grade 2 sprain. They said six weeks without running. Crutches for a few days, frozen peas forever.

Maya is being very kind and only slightly "I told you so" about the cave.
""", slug="ankle-sprain")
    j.ask("How did I hurt my ankle in November 2023?", ["climbing", "Granite Works", "V4"], [p])
    j.ask("What injury did I get on 2023-11-18?", ["ankle", "sprain"], [p])

    p = j.note(d(2023, 11, 24), "Physio, session one", ["health", "injury"], """
First session with Kerry at StrideWell Physio on Abbeydale Road. £45 a session, six sessions planned, one a week. Homework: trace the alphabet with my foot twice a day, calf raises, stand on one leg while brushing teeth. Kerry thinks I'll be running gently by the new year if I actually do the exercises. "If" was doing a lot of work in that sentence.
""", slug="physio-first-session")
    j.ask("What is my physio's name?", ["Kerry"], [p])
    j.ask("How much did each physio session cost?", ["£45", "45"], [p])

    j.txt(d(2023, 12, 1), "restructure", """
Fri 1 Dec 2023 - Northwind

Helen announced the restructure at the all-hands. Analytics moves under Finance in January; two roles cut, mine isn't one of them. But Kestrel is "paused" after a year of work, which means dead.

Came home and updated my CV for the first time in four years. Maya read it and said it made me sound like a printer.
""")

    j.note(d(2023, 12, 14), "Fernleaf interview", ["work", "fernleaf"], """
Second interview at Fernleaf Health this afternoon. Whiteboard exercise designing a pipeline for appointment data, then forty minutes with Dana Whitlock, who would be my manager. She asked what I'd do in my first month and I said "mostly listen", which seemed to land. The office is the old Cutlery Works on Neepsend Lane, all brick and plants. Should hear next week.
""", slug="fernleaf-interview")

    p = j.note(d(2023, 12, 21), "The Fernleaf offer", ["work", "fernleaf", "money"], """
Dana rang at 10am: they're offering me the Data Engineer job.

- Salary £58,000 (I'm on £46,500 at Northwind)
- Start Monday 5 February 2024
- Hybrid, two days a week in the office
- 27 days' holiday plus bank holidays

Accepted after lunch, after walking Biscuit round the park twice to calm down. Told Maya by phone and she screamed on a bus.
""", slug="fernleaf-offer")
    j.ask("What salary did Fernleaf Health offer me?", ["£58,000", "58,000", "58000"], [p])
    j.ask("What was my salary at Northwind?", ["£46,500", "46,500", "46500"], [p])

    p = j.daily(d(2023, 12, 25), """
# Christmas Day 2023, Whitby

Maya gave me a Pentax K1000, a proper old film camera, fully working, from a shop in Leeds she'd been plotting with for weeks, plus three rolls of film. I gave her the fountain pen she's been eyeing since August. [[Clara]] told everyone at lunch that she and Ben are expecting a baby in August. Mum cried into the gravy. Biscuit got a turkey sandwich he was not meant to get.
""")
    j.ask("What did Maya give me for Christmas in 2023?", ["Pentax", "K1000", "film camera"], [p])
    j.ask("What did I give Maya for Christmas in 2023?", ["fountain pen"], [p])

    p = j.daily(d(2023, 12, 27), """
Biscuit ate a sock. A whole one, one of Dad's walking socks. Emergency trip to Oakbrook Vets; they gave him an injection to make him sick and the sock reappeared in the car park, intact, to applause. The bill was £340. He is fine and completely unrepentant. We are going to start keeping socks in a safe.
""")
    j.ask("How much was the vet bill when Biscuit swallowed a sock?", ["£340", "340"], [p])
    j.ask("Why did we take Biscuit to the vet on 2023-12-27?", ["sock"], [p])
    j.ask("Which vet did we take Biscuit to when he ate a sock?", ["Oakbrook"], [p])


def year_2024(j) -> None:
    j.org(d(2024, 1, 8), "marathon-plan", "Steel City Marathon: the plan", ["running", "marathon"], """
* Goal
Steel City Marathon, Sunday 14 April. Fourteen weeks from today. Target: under 4:10, stretch: 4:00.

* Shape of a week
- Tue: intervals or tempo
- Wed: club run with the Loxley Striders
- Fri: easy 6-8 km
- Sun: long run, building from 16 km to a peak in late March, then taper

* Rules
- No climbing the week before a long run over 25 km
- Ankle exercises every single day (Kerry's orders)
""", folder="running")

    p = j.daily(d(2024, 1, 15), """
Slept 4.5 hours. Lay awake from 3 running through the Kestrel handover document in my head as if it still matters. Maya says I grind my teeth when I'm worried. Ran an easy 6 km anyway, which helped more than coffee.
""")

    j.ask("How many hours did I sleep on the night before 2024-01-15?", ["4.5"], [p])
    j.sleep_log[d(2024, 1, 15)] = 4.5  # counts towards January's average in the review

    p = j.txt(d(2024, 1, 26), "last-day-northwind", """
Fri 26 Jan 2024 - last day at Northwind

Handed over the laptop and the last of the Kestrel notes. Raj organised a collection: a card signed by 23 people and a cactus in a concrete pot, already named Gerald, "because he's prickly but he'll outlive us all". Helen gave a short speech and said she'd have me back any time, which I choose to believe.

Drinks at the Fat Cat. Home by nine. Five years, done.
""")
    j.ask("What leaving present did I get from my colleagues at Northwind?", ["cactus"], [p])
    j.ask("What is the name of the cactus from Northwind?", ["Gerald"], [p])
    j.ask("What happened at work on 2024-01-26?", ["last day"], [p])

    p_first = j.txt(d(2024, 2, 5), "fernleaf-first-day", """
Monday 5 February 2024 - Fernleaf, day one

Office: third floor of the Cutlery Works. Badge and laptop by 9:30. Employee ID FH-20418 (needed for literally every form). Manager: Dana Whitlock. My onboarding buddy is Luis Ferreira, who has been here two years and knows where all the bodies are buried in the appointment warehouse.

Lunch with the whole data team, seven of us. Nobody talked about Kestrel. Bliss.
""")
    j.ask("What is my employee ID at Fernleaf?", ["FH-20418"], [p_first])
    j.ask("Who is my manager at Fernleaf Health?", ["Dana Whitlock", "Dana"], [p_first])
    j.ask("When did I start at Fernleaf?", ["5 February 2024", "2024-02-05", "February 5"], [p_first])

    p = j.daily(d(2024, 2, 17), """
parkrun PB! 24:41, beating my old best by 38 seconds. Cold and clear, no wind, [[Ellie]] shouting from the turnaround. Celebrated with a bacon roll and most of a pot of tea.
""")
    j.ask("What parkrun time did I run on 2024-02-17?", ["24:41"], [p])

    p = j.note(d(2024, 3, 2), "We have an allotment", ["allotment", "garden"], """
Got the call: plot 17B at Bole Hill Allotments is ours, after fourteen months on the waiting list. £38 a year. Half a plot, which the committee secretary said is "plenty, trust me".

The last tenant left a patch of rhubarb, a water butt and a small shed with a robin's nest above the door, so the shed stays shut until June. Maya has already drawn a planting plan on the back of an envelope.
""", slug="allotment")
    j.ask("What number is our allotment plot?", ["17B"], [p])
    j.ask("How long were we on the allotment waiting list?", ["fourteen months", "14 months"], [p])

    long_runs = [
        (d(2024, 3, 3), 26, "2:41:05", "Out to Damflask and back the long way. Fine until 22 km."),
        (d(2024, 3, 10), 28, "2:54:30", "Loops of the park, boring but flat. Gel at 10 and 20."),
        (d(2024, 3, 17), 24, "2:29:50", "Cutback week. Felt strong; went too fast."),
        (d(2024, 3, 31), 20, "2:02:12", "Taper starts. Legs heavy for no reason."),
    ]
    for day, km, time, note in long_runs:
        j.org(day, "long-run", f"Long run: {km} km", ["running", "marathon"], f"""
* Long run
- Distance: {km} km
- Time: {time}
- {note}
""", folder="running")
    p = j.org(d(2024, 3, 24), "long-run", "Long run: 32 km", ["running", "marathon"], """
* Long run
- Distance: 32 km, the longest of the whole plan and the longest I've ever run
- Time: 3:21:40
- Route: Rivelin Valley up to the reservoir and back through Loxley

* Notes
- Carried two bottles and four gels; used all of it.
- Wall at about 27 km, came back after a gel and a walk break.
- Ate an entire pizza afterwards. No regrets.
""", folder="running")
    j.ask("How far was my longest run in March 2024?", ["32 km", "32"], [p])
    j.ask("How long did my 32 km training run take?", ["3:21:40"], [p])

    p = j.note(d(2024, 4, 14), "Steel City Marathon", ["running", "marathon", "big-day"], """
I ran a marathon.

- Finish: 4:07:52, under the 4:10 target
- Bib number 3318
- Maya and Biscuit at Hunters Bar, about mile 20, with a flask of flat cola
- Hit the wall at 35 km; walked two drink stations; ran the rest on spite
- Ellie finished in 3:49:05 and then came back to run the last kilometre with me

Cried at the finish. Medal is enormous. Stairs are now my enemy.
""", slug="steel-city-marathon")
    j.ask("What was my finish time in the Steel City Marathon?", ["4:07:52"], [p])
    j.ask("What was my bib number at the Steel City Marathon?", ["3318"], [p])
    j.ask("When did I run the Steel City Marathon?", ["14 April 2024", "2024-04-14", "April 14"], [p])
    j.ask("What was Ellie's time in the Steel City Marathon?", ["3:49:05"], [p])

    p_heron = j.txt(d(2024, 5, 20), "heron-kickoff", """
Mon 20 May 2024 - Fernleaf

Dana gave me my first project to lead: Project Heron. Move the 37 nightly jobs that build the appointment warehouse off the old cron box and onto Airflow, with tests, before the cron box's support contract ends in August. Luis is on it with me.

Rule of thumb I wrote on the whiteboard: nothing moves until we can prove it produces the same numbers.
""")
    p_done = j.txt(d(2024, 7, 19), "heron-done", """
Fri 19 Jul 2024 - Fernleaf

Heron is done. All 37 jobs on Airflow, outputs matched to the row for a full week in parallel. Nightly run time down from 5 hours 10 minutes to 1 hour 25. Dana bought the team cake, Luis gave a two-minute speech that was mostly about YAML.
""")
    j.ask("What was the name of the project I led at Fernleaf to move the nightly jobs?", ["Heron"], [p_heron])
    j.ask("How many nightly jobs did Project Heron move?", ["37", "thirty-seven"], [p_heron, p_done])
    j.ask("How long did the nightly run take after Heron was finished?",
          ["1 hour 25", "1h25", "85 minutes"], [p_done])

    j.trip(d(2024, 6, 20), "Porto", """
Porto for Priya and Jonas's wedding. Flew in with most of the guest list, which made the plane feel like a school trip. Guesthouse in Ribeira with a river view, steep stairs, a landlady who gave us a bottle of white port on arrival.
""")
    j.trip(d(2024, 6, 21), "Porto", """
Port lodge tour across the bridge in Vila Nova de Gaia; bought two bottles we will not open for years. Rehearsal dinner at the long table by the river. I practised my reading in the bathroom mirror three times.
""")
    p_wed = j.trip(d(2024, 6, 22), "Porto", """
Priya and Jonas got married at Quinta das Laranjeiras, a farmhouse outside the city with an orange grove. I did a reading (a short poem Maya picked out) and only shook a little. Their first dance was "Harvest Moon" and half the room sang along. Jonas cried before Priya did, which she will never let him forget. Danced until 2am.
""")
    j.trip(d(2024, 6, 23), "Porto", """
Slow recovery. Francesinha for lunch at a café near the Bolhão market, which is the correct hangover cure. Walked along the river to the sea at Foz in the evening.
""")
    j.trip(d(2024, 6, 24), "Porto", """
Home. Biscuit had been with Anna for the week and had put on weight, which she denies.
""")
    j.ask("Where did Priya and Jonas get married?", ["Quinta das Laranjeiras", "Porto"], [p_wed])
    j.ask("What song did Priya and Jonas have for their first dance?", ["Harvest Moon"], [p_wed])
    j.ask("When was Priya and Jonas's wedding?", ["22 June 2024", "2024-06-22", "June 22"], [p_wed])

    p = j.daily(d(2024, 7, 10), """
Dentist at 8:40. One small filling, lower left, £62 on the NHS band. Numb face all morning; drank coffee with a straw in a standup meeting and nobody said anything, which says a lot about my team.
""")
    j.ask("How much did the filling cost in July 2024?", ["£62", "62"], [p])

    p = j.note(d(2024, 8, 3), "Iris", ["family", "clara", "big-day"], """
Clara had her baby at 04:52 this morning at Leeds General. A girl, Iris Edith, 3.4 kg, lots of dark hair, furious about the whole business. Ben sent a photo at six and I read it out to Maya half asleep.

Drove up in the afternoon. Held her for about twenty minutes and didn't breathe for most of them. I'm an uncle.
""", slug="iris-is-born")
    j.ask("What is the name of Clara's baby?", ["Iris"], [p])
    j.ask("How much did Iris weigh when she was born?", ["3.4 kg", "3.4"], [p])
    j.ask("When was Clara's baby born?", ["3 August 2024", "2024-08-03", "August 3"], [p])

    j.trip(d(2024, 8, 17), "Isle of Skye", """
Drove to Skye with Tomás in his van: nine hours from Sheffield with stops, over the bridge at Kyle just before sunset. Bunkhouse in Portree, bunk beds, a drying room that smells of every walker who's ever lived.
""")
    p_skye = j.trip(d(2024, 8, 18), "Isle of Skye", """
The Quiraing loop: 11.2 km, about four hours with photo stops. The light kept changing every ten minutes. Tomás walked the whole ridge talking about his plan to buy a croft, which he will not do. Midges at the car park, biblical.
""")
    j.trip(d(2024, 8, 19), "Isle of Skye", """
Old Man of Storr in thick cloud; saw approximately none of it. Seafood shack in Portree for dinner to make up for it.
""")
    j.trip(d(2024, 8, 20), "Isle of Skye", """
Fairy Pools. Tomás swam in one (water 9°C according to his watch) and came out a colour I've never seen on a person. I took film photos on the Pentax and hope at least one comes out.
""")
    j.trip(d(2024, 8, 21), "Isle of Skye", """
Long drive home. Stopped at Glencoe for chips. Back at Alder Street at midnight; Biscuit pretended not to know me for a full minute.
""")
    j.ask("Who did I go to the Isle of Skye with?", ["Tomás", "Tomas"], [p_skye])
    j.ask("How long was the Quiraing walk?", ["11.2 km", "11.2"], [p_skye])
    j.ask("Where did I go on holiday in August 2024?", ["Skye"], [p_skye])

    p = j.note(d(2024, 9, 13), "Small Weathers", ["maya", "art", "big-day"], """
Maya's first solo exhibition opened tonight: *Small Weathers*, at Bank Street Gallery. Twenty-two illustrations, a year's work, all those little rain clouds over kitchen tables. She sold 7 prints on the opening night alone, and a woman from a publisher in Leeds took her card.

I have never been prouder of anyone. Priya and Jonas came straight from work; Anna came in a hat.
""", slug="small-weathers-opening")
    j.ask("What was Maya's exhibition called?", ["Small Weathers"], [p])
    j.ask("How many prints did Maya sell on her exhibition's opening night?", ["7", "seven"], [p])
    j.ask("Where was Maya's exhibition?", ["Bank Street Gallery", "Bank Street"], [p])

    p = j.daily(d(2024, 10, 5), """
# Saturday 5 October 2024

FIRST V5. "Orange Crush", the slab problem in the back room at [[Granite Works]], the one with the horrible sloper at the top. Twenty-odd attempts over three sessions. [[Tomás]] filmed it and I've watched it nine times. The ankle held.
""")
    j.ask("What was the name of the first V5 I climbed?", ["Orange Crush"], [p])

    p = j.org(d(2024, 10, 19), "season-summary", "Allotment: first season summary", ["allotment", "garden"], """
* Harvest, plot 17B, 2024
- Tomatoes: 3.8 kg in total (mostly Gardener's Delight; the big ones split)
- Courgettes: too many to count honestly; gave 14 away
- Potatoes: two sacks
- Rhubarb: the previous tenant's patch, still going

* Lessons
- Net the brassicas before the pigeons find them, not after
- Slug patrol at dusk, with a torch
- Fewer courgette plants. Much fewer.
""", folder="garden")
    j.ask("How many kilos of tomatoes did the allotment produce in 2024?", ["3.8"], [p])

    p = j.note(d(2024, 11, 16), "She said yes", ["maya", "big-day"], """
Saturday 16 November 2024.

Asked Maya to marry me at sunrise on Stanage Edge. Biscuit was there, and a very surprised man with a camera tripod, who ended up taking our picture. The ring came from Ottilie's in Kelham Island (£1,450, after three visits and a lot of staring at trays). She said yes before I'd finished the sentence, then said "let me see it properly", then yes again.

Phoned Mum from the car park. Then Grandma Edie, who said "about time".
""", slug="proposal")
    j.ask("Where did I propose to Maya?", ["Stanage Edge", "Stanage"], [p])
    j.ask("How much did the engagement ring cost?", ["£1,450", "1,450", "1450"], [p])
    j.ask("When did I propose to Maya?", ["16 November 2024", "2024-11-16", "November 16"], [p])


def month_reviews(j, sleep_by_month: dict[tuple[int, int], list[float]],
                  mood_by_month: dict[tuple[int, int], list[int]]) -> None:
    """Monthly review notes; averages come from the sleep and mood lines in the daily notes."""
    for year, reviews in ((2023, REVIEWS_2023), (2024, REVIEWS_2024)):
        total_km = 0
        total_books = 0
        for month, km, books, best, worst in reviews:
            total_km += km
            total_books += len(books)
            sleep = sleep_by_month.get((year, month), [])
            mood = mood_by_month.get((year, month), [])
            sleep_avg = f"{sum(sleep) / len(sleep):.1f} h over {len(sleep)} logged nights" if sleep else "not logged"
            mood_avg = f"{sum(mood) / len(mood):.1f}/10" if mood else "not logged"
            book_lines = "\n".join(f"  - *{title}* ({author})" for title, author in books)
            last_day = _month_end(year, month)
            path = j.note(last_day, f"{MONTHS[month - 1]} {year} review",
                          ["review", "monthly"], f"""
## {MONTHS[month - 1]} {year} in numbers
- Distance run: {km} km
- Average sleep: {sleep_avg}
- Average mood: {mood_avg}
- Books finished: {len(books)}
{book_lines}

Best bit: {best}.
Worst bit: {worst}.
""", slug=f"{year}-{month:02d}-review", folder="notes/reviews")
            if (year, month) == (2024, 1) and sleep:
                j.ask("What was my average sleep in January 2024?",
                      [f"{sum(sleep) / len(sleep):.1f}"], [path])
            if (year, month) == (2023, 11) and mood:
                j.ask("What was my average mood in November 2023?",
                      [f"{sum(mood) / len(mood):.1f}"], [path])
            if (year, month) == (2023, 10):
                j.ask("How many kilometres did I run in October 2023?", [f"{km} km", str(km)], [path])
            if (year, month) == (2024, 9):
                j.ask("Which book did I finish in September 2024?",
                      [books[0][0], "Old Man and the Sea"], [path])
        year_review(j, year, total_km, total_books)


def year_review(j, year: int, total_km: int, total_books: int) -> None:
    if year == 2023:
        body = f"""
The year, honestly.

- Books: {total_books} of the 24 I promised myself. Close enough to be annoying.
- Running: {total_km:,} km, including a half marathon in 1:58:14, and then six weeks of nothing.
- Sourdough: yes. Clint Yeastwood survives.
- Best things: Biscuit. Lisbon. Alder Street. Copenhagen. Grandma Edie on the dance floor.
- Worst things: the ankle. Kestrel dying. Saying goodbye to Farid.

For 2024: the marathon for real, a job where the data is not on fire, and more time outside with Maya and the dog.
"""
        path = j.note(d(2023, 12, 31), "2023, looking back", ["review", "yearly"], body,
                      slug="2023-year-in-review", folder="notes/reviews")
        j.ask("How many books did I read in 2023?", [str(total_books), "nineteen"], [path])
        j.ask("How far did I run in total in 2023?", [f"{total_km:,} km", f"{total_km:,}", str(total_km)], [path])
    else:
        body = f"""
2024 was the biggest year I've had.

- Books: {total_books}. Hit the target a year late.
- Running: {total_km:,} km, one marathon (4:07:52), one parkrun PB.
- Work: left Northwind, joined Fernleaf, led Heron.
- Family: Iris arrived. I'm an uncle and a terrible influence.
- Maya: Small Weathers, and then, on a cold ridge at sunrise, yes.

Next year: a wedding of our own to plan. Someone has to tell Biscuit he's not the best man.
"""
        path = j.note(d(2024, 12, 31), "2024, looking back", ["review", "yearly"], body,
                      slug="2024-year-in-review", folder="notes/reviews")
        j.ask("How many kilometres did I run in 2024?", [f"{total_km:,} km", f"{total_km:,}", str(total_km)], [path])


def _month_end(year: int, month: int):
    from datetime import timedelta

    first_of_next = d(year + (month == 12), month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def long_entries(j) -> None:
    """The longer, reflective entries, and three more trips."""
    j.note(d(2023, 3, 19), "A week of Biscuit", ["biscuit", "dog", "home"], """
One week with a dog. Things I have learned:

He does not care that it is raining. He does not care that it is Sunday. At 6:40 every morning he stands by the bed and breathes at me until I get up. He is not barking, not whining, just breathing, very close, with enormous patience, like a debt collector.

He loves: cheese, Maya, the sound of the fridge opening, the smell of other dogs' bottoms, the park, Anna (who has been sneaking him ham on the stairs, she thinks we don't know). He hates: the hoover, bin day, men in high-vis jackets, being left alone for more than twenty minutes.

We bought a crate and he looked at it like we'd suggested prison. He sleeps on the sofa now. We have given up pretending he won't.

The bigger thing is how the days have changed shape. I used to go from bed to desk to bed with a run somewhere in the middle if I was lucky. Now there is a walk at seven and a walk at lunch and a walk at six, and on every one of them I talk to at least one stranger, because people talk to you when you have a dog. I've met more of our neighbours this week than in two years of living here. There's a retired postman who carries biscuits in his coat pocket for every dog on the street. There's a girl of about eight who has decided Biscuit is her dog and waits at her gate for him.

Maya says I'm calmer. I think she's right. It's hard to doom-scroll when someone is breathing at you.
""", slug="a-week-of-biscuit")

    j.trip(d(2023, 7, 29), "Peak District", """
Biscuit's first camping trip: one night at North Lees campsite under Stanage with Maya. Pitched the tent in a light drizzle; Biscuit tried to dig his way out of it twice and then slept across both our feet. Stove dinner of noodles and a whole bar of chocolate. Owls all night.
""")
    p = j.trip(d(2023, 7, 30), "Peak District", """
Woke to clear sky. Walked the edge from the campsite to the trig point and back, Biscuit on the long lead, climbers already out on the crags. Packed up a dry tent, which never happens. Bacon sandwiches in Hathersage before the bus home.
""")
    camping = p

    j.note(d(2023, 9, 17), "Leaving Rowan Terrace", ["home", "move", "anna"], """
Went back to Rowan Terrace this morning to hand in the keys and do a last sweep. Empty, the flat looked smaller than it ever did full. You could see the pale rectangles on the walls where the pictures had been, and the scuff on the kitchen doorframe where I carried the bike in every evening for three months.

Four years in that flat. We moved in with two suitcases and a futon. Maya drew her first paid commission at the kitchen table by the window. We had the fight about whether to get a dog in the hallway and the conversation where we decided to get one on the same sofa a year later. The boiler never once worked properly and I will not miss it.

Anna came up while I was mopping. She'd brought a card, and a book, of course, and a little bag of the shortbread. She stood in the doorway of the empty living room and said "it always looks like this in the end", which I think was about more than the flat. I promised again we'd come on Sundays and I mean it. Biscuit will drag us there anyway; he thinks her flat is his second home.

Walked back to Alder Street the long way through the park. It is twenty minutes, not two hundred miles, but it felt like a bigger move than that.
""", slug="leaving-rowan-terrace")

    j.note(d(2023, 10, 15), "Why I run", ["running", "thinking"], """
Two weeks before the half, so naturally I'm thinking about why I do this at all.

I didn't run at school. I was the kid who "forgot" his kit. I started at twenty-nine because a doctor weighed me and raised an eyebrow, and I kept going because of something I didn't expect: running is the only time my head goes quiet. Work thoughts come along for the first two kilometres and then drop off one by one, like people leaving a party. By five kilometres it's just breathing and feet and whatever the sky is doing.

The club has made it social, which I also didn't expect to like. There are people in the Striders I only know from the neck down in Lycra, people whose jobs I don't know, whose surnames I've never heard, and I'd do a lot for them. Ellie has talked me through more bad days on the canal towpath than anyone except Maya.

I'm not fast and I'm never going to be. I'd like to run a marathon once, to find out what's at the end of it. After that, I'd like to be the old man still jogging round the park at eighty, waving at the dogs.
""", slug="why-i-run")

    j.note(d(2023, 12, 3), "Stay or go", ["work", "thinking"], """
Trying to be sensible about Northwind instead of just angry.

Reasons to stay:
- I know the data better than anyone, warts and all
- Helen is a good manager in a bad organisation
- Raj
- It's safe. My role survived the cut. The pension is decent.

Reasons to go:
- Kestrel was the best thing I've built and they've shelved it to save a licence fee
- I have been "about to be promoted" for two years
- I'm bored on a level I'm starting to feel in my body. Sunday evenings have a weight to them again.
- Moving under Finance means reporting on costs, not fixing anything

What Maya said: "You've made the list four times this year. You only make lists about things you've already decided." Annoyingly accurate.

Plan: apply to three places before Christmas. Only places where the data is about something I care about. Health, transport, energy. No adtech, no betting companies, whatever they pay.
""", slug="stay-or-go")

    p = j.txt(d(2024, 2, 11), "dream", """
Dream: I was back at Northwind but the office was underwater and everyone was working normally, bubbles coming out when they talked. Helen handed me a fish and said it was the Q3 numbers. Woke up laughing.
""", folder="dreams")
    j.ask("What did I dream about on 2024-02-11?", ["underwater", "fish"], [p])
    j.txt(d(2024, 4, 9), "dream", """
Dream before the marathon: the race started in our kitchen and the route went through every flat I've ever lived in. Biscuit was the pacer and kept stopping to sniff lampposts. I finished in "eleven o'clock", which the announcer said was a course record.
""", folder="dreams")
    j.txt(d(2024, 9, 2), "dream", """
Dreamt that Iris could talk already and she told me, very seriously, that I was holding her wrong. She was right. I was holding her like a parcel.
""", folder="dreams")
    j.txt(d(2024, 11, 9), "dream", """
Anxiety dream: I lost the ring in the sea at Whitby and Grandma Edie dived in to get it wearing her good coat. One week to go. The ring is in my sock drawer, inside a sock, inside a shoe.
""", folder="dreams")

    j.note(d(2024, 4, 20), "After the marathon", ["running", "marathon", "thinking"], """
Six days on and I can walk downstairs facing forwards again.

What I keep coming back to is the bit between 35 and 38 kilometres. I'd read about the wall and assumed it was a figure of speech. It isn't. It was like someone had quietly unplugged me. My legs kept moving because they'd been told to, but everything else, the part of me that makes plans and has opinions, just went somewhere else for a while. I remember a man in a bee costume overtaking me. I remember a child holding out jelly babies and taking three. I don't remember much in between.

What got me through wasn't grit. It was other people: a stranger who said "come on, Sam" because my name was on my bib, Maya and Biscuit at Hunters Bar, Ellie turning up beside me with a kilometre to go as if she'd just happened to be passing.

Fourteen weeks of training, something like six hundred kilometres, all for one morning. I don't think I'll do another. Maya says I said that at 30 km and then at the finish line I asked her when entries open for next year. I don't remember that either.
""", slug="after-the-marathon")

    p_edi = j.trip(d(2024, 5, 14), "Edinburgh", """
Work trip with Luis for the Data for Health conference. Train up from Sheffield, four hours, mostly spent rewriting my slides. I gave a twenty-minute talk on testing data pipelines in the afternoon slot ("the graveyard shift," Luis called it) to about sixty people, and nobody left. Dinner in a basement bar off the Grassmarket.
""")
    j.trip(d(2024, 5, 15), "Edinburgh", """
Second conference day; skipped the last session to walk up Arthur's Seat in the wind. Train home at five, Luis asleep against the window by Newcastle.
""")
    j.ask("Which city was the Data for Health conference in?", ["Edinburgh"], [p_edi])
    j.ask("How many people came to my talk at the conference in May 2024?", ["sixty", "60"], [p_edi])

    j.note(d(2024, 8, 4), "A letter to Iris", ["family", "iris"], """
Dear Iris,

You are one day old, so you won't read this for a long time, if ever. I held you yesterday for about twenty minutes and you looked at me with enormous dark eyes and then did a very loud poo, which I choose to take as a review of my performance.

Some things you should know about your family. Your mum, Clara, is the bravest person I know and also the worst loser at Monopoly in the north of England. Your dad Ben makes the best roast potatoes and will tell you so. Your grandad Graham will try to teach you to fish and your grandma Ruth will make sure you don't fall in. Your great-grandma Edie is ninety and still dances.

Your aunt Maya (not officially your aunt yet, I'm working on it) has already drawn you a picture of a whale. There is also a dog called Biscuit who will want to lick your face. Let him. He means well.

I'll take you to the sea and up the hills and to the library. Love from your uncle.
""", slug="letter-to-iris")

    p_ber = j.trip(d(2024, 10, 25), "Berlin", """
Finally visited Farid in Berlin, fifteen months late. His flat is in Neukölln, a fifth-floor walk-up with a balcony full of chillies. We met his girlfriend Lena, who is a sound engineer and laughs at all of Farid's jokes, even the old ones. Currywurst for dinner, as instructed.
""")
    j.trip(d(2024, 10, 26), "Berlin", """
Cycled across Tempelhof field, an old airport where you can ride down the runway. Farid showed us round Sonnenwerk's test yard from the fence: rows of battery containers humming in the cold. Very proud of him. Late dinner at a Vietnamese place Lena swears by.
""")
    p_market = j.trip(d(2024, 10, 27), "Berlin", """
Flea market at Mauerpark in the morning; Maya bought a tin box of old stamps. Flew home in the evening. Farid's parting words: "are you still oiling my pan?" Yes, Farid.
""")
    j.ask("What is the name of Farid's girlfriend?", ["Lena"], [p_ber])
    j.ask("Which flea market did we go to in Berlin in October 2024?", ["Mauerpark"], [p_market])
    j.ask("Where did we camp in July 2023?", ["North Lees"], [camping])

    p = j.daily(d(2024, 12, 25), """
# Wednesday 25 December 2024

Our first Christmas hosting, at Alder Street. Mum and Dad came down on the 23rd; Clara, Ben and [[Iris]] arrived this morning with more luggage than the rest of us combined. Grandma Edie joined on a video call from her care home and bossed Dad about the gravy from 90 miles away.

Menu: turkey crown (too small), nut roast (too big), roast potatoes by Ben (perfect, as promised), red cabbage, sprouts nobody ate, Mireille's bûche de Noël for pudding.

Maya gave me a wool jumper she had knitted in secret since September, Biscuit-coloured. I gave her a proper drawing desk lamp with a daylight bulb. Iris got forty presents and preferred the wrapping paper.

Toasts: Dad to "Maya and Sam, finally", Mum to "Iris's first Christmas", Clara to "absent friends", and Biscuit stole a roast potato from Dad's plate during the third one. Best Christmas in years.
""")
    j.ask("What did Maya give me for Christmas in 2024?", ["jumper"], [p])
    j.ask("Where did we spend Christmas 2024?", ["Alder Street"], [p])

"""Word lists and sentence templates for the synthetic IEMOCAP corpus (see `plan.py`).

Each *text kind* has short templates (4-8 words, about 1-2.5 s of speech) whose `{slot}`s are filled from word lists,
so that sentences are varied rather than a handful of fixed strings. The emotional kinds carry their emotion in the
words ("I am absolutely furious about the report"); the `"neutral"` kind is emotionally flat, factual speech. Slots
shared by all kinds (`{topic}`, `{person}`, `{time}`, ...) hold neutral words, so that only the emotion-bearing words
tell the kinds apart.
"""

import numpy as np

SHARED_SLOTS: dict[str, list[str]] = {
    "topic": [
        "the report",
        "the car",
        "the new job",
        "the weekend",
        "the flight",
        "the results",
        "the apartment",
        "the wedding",
        "the interview",
        "the trip",
        "the meeting",
        "the tickets",
        "the dinner",
        "the letter",
        "the project",
        "the house",
        "the phone call",
        "the contract",
    ],
    "person": [
        "my brother",
        "my sister",
        "your father",
        "my mother",
        "our neighbor",
        "the manager",
        "my friend",
        "him",
    ],
    "time": ["nine", "ten thirty", "noon", "two o'clock", "four fifteen", "six", "eight tonight"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "place": ["the station", "the office", "the library", "the corner", "the front desk", "the parking lot"],
    "room": ["the kitchen", "the hallway", "the garage", "the bedroom", "the basement", "the lobby"],
    "object": ["folder", "key", "form", "umbrella", "receipt", "box", "schedule", "laptop", "map", "badge"],
    "furniture": ["table", "shelf", "desk", "counter", "chair", "cabinet"],
    "when": ["later today", "tomorrow morning", "this afternoon", "after lunch", "next week", "before noon"],
    "very": ["so", "really", "absolutely", "completely", "truly", "totally"],
}

KIND_SLOTS: dict[str, dict[str, list[str]]] = {
    "neutral": {
        "verb": ["check", "bring", "sign", "copy", "return", "send", "move", "label"],
        "state": ["on the table", "in the drawer", "next to the door", "in the blue folder", "by the window"],
    },
    "angry": {
        "adj": ["furious", "livid", "outraged", "angry", "enraged", "fed up"],
        "excl": ["How dare you", "Get out", "Shut up", "Damn it", "Enough"],
        "noun": ["an outrage", "a disgrace", "ridiculous", "unacceptable", "infuriating"],
        "verb": ["lie to me", "yell at me", "insult me", "cheat me", "ruin everything"],
    },
    "sad": {
        "adj": ["heartbroken", "miserable", "devastated", "lonely", "hopeless", "depressed"],
        "event": ["the funeral", "he passed away", "she left me", "we lost everything", "the accident"],
        "verb": ["miss", "mourn", "grieve for", "cry about"],
        "excl": ["I am sorry", "It hurts", "It is over", "I give up"],
    },
    "happy": {
        "adj": ["thrilled", "delighted", "overjoyed", "happy", "excited", "glad"],
        "excl": ["Hooray", "Wonderful", "Fantastic", "Yes", "How wonderful", "Amazing"],
        "pred": ["went perfectly", "is a dream", "was wonderful", "is just great", "made my day"],
        "verb": ["love", "adore", "really enjoy", "cannot wait for"],
    },
    "frustrated": {
        "adj": ["frustrating", "annoying", "pointless", "exhausting", "tedious"],
        "verb": ["asked", "called", "explained", "waited"],
        "count": ["three", "five", "ten", "twenty"],
    },
    "surprised": {
        "excl": ["Wow", "Really", "No way", "What", "Seriously"],
        "pred": ["is here already", "actually happened", "came early", "was a secret"],
    },
    "fearful": {
        "adj": ["scared", "terrified", "afraid", "frightened", "nervous"],
        "thing": ["the dark", "that noise", "the storm", "those men", "the dog"],
    },
    "disgusted": {
        "adj": ["disgusting", "revolting", "gross", "nauseating", "vile"],
        "excl": ["Ugh", "Yuck", "Eww"],
    },
}

TEMPLATES: dict[str, list[str]] = {
    "neutral": [
        "The {object} is {state}.",
        "I put the {object} on the {furniture}.",
        "We meet at {time} on {day}.",
        "The bus leaves {place} at {time}.",
        "Please {verb} the {object} {when}.",
        "He said the {object} is in {room}.",
        "Did you {verb} the {object} {when}?",
        "{person} will call about {topic} {when}.",
        "The {object} for {topic} is at {place}.",
    ],
    "angry": [
        "I am {very} {adj} about {topic}!",
        "{excl}, you ruined {topic}!",
        "This is {noun}, I am {adj}!",
        "Do not ever {verb} again!",
        "{excl}! I am {very} {adj}!",
        "{person} made me {adj} again!",
        "You always {verb}, it is {noun}!",
    ],
    "sad": [
        "I feel {very} {adj} since {event}.",
        "I {verb} {person} so much.",
        "Nothing matters since {event}.",
        "{excl}, {topic} is gone forever.",
        "I am {adj} and so alone.",
        "I cried all night about {topic}.",
    ],
    "happy": [
        "I am {very} {adj} about {topic}!",
        "{excl}, {topic} {pred}!",
        "This is the best day ever!",
        "I {verb} {topic}, it {pred}!",
        "{excl}! I feel {very} {adj}!",
        "We won, I am {adj}!",
    ],
    "frustrated": [
        "I {verb} {count} times already!",
        "Why does {topic} never work?",
        "This is {very} {adj}, honestly.",
        "Nobody listens about {topic}.",
    ],
    "surprised": [
        "{excl}? {topic} {pred}?",
        "{excl}, I had no idea!",
        "{excl}? {person} did that?",
    ],
    "fearful": [
        "I am {very} {adj} of {thing}.",
        "Please do not leave me alone.",
        "Did you hear {thing}? I am {adj}.",
    ],
    "disgusted": [
        "{excl}, {topic} is {adj}.",
        "That smell is {very} {adj}.",
        "{excl}, that is {adj}.",
    ],
}

TEXT_KINDS = tuple(TEMPLATES)


def make_sentence(kind: str, rng: np.random.Generator) -> str:
    """Fill a random template of `kind` (one of `TEXT_KINDS`) with random words drawn from `rng`."""
    if kind not in TEMPLATES:
        raise ValueError(f"Unknown text kind {kind!r}; expected one of {TEXT_KINDS}")
    template = TEMPLATES[kind][rng.integers(len(TEMPLATES[kind]))]
    slots = {**SHARED_SLOTS, **KIND_SLOTS.get(kind, {})}
    sentence = template.format_map({name: words[rng.integers(len(words))] for name, words in slots.items()})
    return sentence[0].upper() + sentence[1:]

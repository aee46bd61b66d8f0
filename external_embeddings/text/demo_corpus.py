"""Write a small, learnable demo corpus in the 20 Newsgroups layout, for runs with no corpus.

Each of 20 topics draws its words from the GloVe neighbourhood of a few seed words, mixed with
the most frequent words, so a model can only tell the topics apart through the embeddings.
The corpus is deterministic given the store and the seed.
"""

import numpy as np

from ..atomic import atomic_dir
from ..errors import InputError

# Newsgroup-like topic names and the seed words whose neighbourhoods make their vocabulary.
TOPICS = {
    "alt.atheism": ["atheism", "religion", "belief"],
    "comp.graphics": ["graphics", "rendering", "pixel"],
    "comp.os.ms-windows.misc": ["windows", "microsoft", "installer"],
    "comp.sys.ibm.pc.hardware": ["motherboard", "processor", "ram"],
    "comp.sys.mac.hardware": ["macintosh", "apple", "powerbook"],
    "comp.windows.x": ["server", "unix", "terminal"],
    "misc.forsale": ["sale", "price", "shipping"],
    "rec.autos": ["car", "engine", "sedan"],
    "rec.motorcycles": ["motorcycle", "helmet", "harley"],
    "rec.sport.baseball": ["baseball", "pitcher", "inning"],
    "rec.sport.hockey": ["hockey", "goalie", "nhl"],
    "sci.crypt": ["encryption", "cryptography", "key"],
    "sci.electronics": ["circuit", "voltage", "transistor"],
    "sci.med": ["medicine", "patients", "disease"],
    "sci.space": ["space", "orbit", "nasa"],
    "soc.religion.christian": ["christian", "church", "jesus"],
    "talk.politics.guns": ["gun", "firearms", "rifle"],
    "talk.politics.mideast": ["israel", "arab", "palestinian"],
    "talk.politics.misc": ["government", "congress", "tax"],
    "talk.religion.misc": ["bible", "faith", "prophet"],
}
NEIGHBOURS = 60  # words per topic
COMMON = 300  # the most frequent words that fill the rest of each document
SEARCH_ROWS = 50_000  # neighbours come from the most frequent rows (GloVe is in frequency order)


def write_demo_corpus(store, target, seed, docs_per_topic=150, topic_share=0.25):
    """Write the demo corpus into ``target`` (atomically) and return the number of documents."""
    rng = np.random.default_rng(seed)
    rows = min(store.count, SEARCH_ROWS)
    words = [store.word(i) for i in range(rows)]
    alphabetic = np.array([w.isalpha() for w in words])
    vectors = np.asarray(store.vectors[:rows], dtype=np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    common = [w for w, ok in zip(words[:COMMON * 2], alphabetic) if ok][:COMMON]

    topics = {}
    for name, seeds in TOPICS.items():
        found = [i for i in store.lookup(seeds).values() if i <= rows]
        if found:
            centre = unit[np.array(found) - 1].mean(axis=0)
            score = np.where(alphabetic, unit @ centre, -np.inf)
            topics[name] = [words[i] for i in np.argsort(-score)[:NEIGHBOURS]]
    if len(topics) < 2:
        raise InputError(store.path, "knows too few of the demo corpus's seed words to make topics",
                         "set TEXT_DATA_DIR to a corpus, or use GloVe vectors")

    number = 0
    with atomic_dir(target) as tmp:
        for name, vocabulary in topics.items():
            (tmp / name).mkdir()
            for _ in range(docs_per_topic):
                number += 1
                length = int(rng.integers(60, 240))
                from_topic = rng.random(length) < topic_share
                body = [vocabulary[rng.integers(len(vocabulary))] if t else common[rng.integers(len(common))]
                        for t in from_topic]
                header = f"From: demo{number}@example.com\nNewsgroups: {name}\nSubject: demo post {number}\n\n"
                (tmp / name / str(number)).write_text(header + " ".join(body) + "\n", encoding="latin-1",
                                                      errors="replace")
    return number

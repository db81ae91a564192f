"""Writes a small deterministic text corpus (one document per file) for end-to-end tests.

Sentences come from a tiny grammar, so a model can learn them and the loss must fall.
Usage: make_corpus.py OUT_DIR [N_DOCS]
"""
import os
import random
import sys

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the committee", "a small bird",
            "the river", "our teacher", "the new engine", "every student"]
VERBS = ["sees", "likes", "builds", "follows", "remembers", "carries", "paints", "answers"]
OBJECTS = ["the red house", "a long letter", "the quiet garden", "an open window",
           "the morning train", "a wooden boat", "the city lights", "a strange question"]
TAILS = ["today", "after the storm", "with great care", "in the evening", "near the market",
         "without a word", "once again", "before noon"]


def sentence(rng):
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."
    return s[0].upper() + s[1:]


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__.strip())
    out = sys.argv[1]
    n_docs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    rng = random.Random(1234)
    os.makedirs(out, exist_ok=True)
    for d in range(n_docs):
        paragraphs = []
        for _ in range(rng.randint(3, 6)):
            paragraphs.append(" ".join(sentence(rng) for _ in range(rng.randint(4, 9))))
        with open(os.path.join(out, f"doc{d:03d}.txt"), "w") as f:
            f.write("\n\n".join(paragraphs) + "\n")


if __name__ == "__main__":
    main()

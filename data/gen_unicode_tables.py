#!/usr/bin/python3
"""Writes data/unicode_tables.inc, the character data behind data/unicode.cpp.

Run by hand from the repository root with Debian's Python (standard library only):
    /usr/bin/python3 data/gen_unicode_tables.py
The tables follow the Unicode version of that Python's `unicodedata`; the version is written
into the output. Re-run and check in the result when the Python (hence Unicode) changes.

Tables (all sorted by code point, ranges inclusive):
  kPropertyRanges       [first, last, flags] for every code point with flags != 0, runs of
                        equal flags merged. Flags:
                          kLetter     General_Category L (Lu Ll Lt Lm Lo)       regex \\p{L}
                          kNumber     General_Category N (Nd Nl No)             regex \\p{N}
                          kSpace      Oniguruma's Unicode \\s = White_Space:
                                      U+0009..U+000D, U+0085, General_Category Zs Zl Zp
                          kNfcActive  not "NFC-inert" (below)
                          kMark       General_Category M (Mn Mc Me)             regex \\p{M}
                          kUpperTitle General_Category Lu Lt                    \\p{Lu} \\p{Lt}
                          kLower      General_Category Ll                       \\p{Ll}
                        (Lm and Lo are the letters with neither kUpperTitle nor kLower.)
  kCombiningClassRanges [first, last, ccc] for Canonical_Combining_Class != 0.
  kDecompositions       [code, first, second, primary]: the one-level canonical decomposition
                        code -> first second (second = 0 for a singleton), Hangul syllables
                        excluded (algorithmic). primary = 1 when `code` is a primary composite,
                        i.e. canonical composition maps the pair (first, second) back to it:
                        NFC(first second) == code. That leaves out the composition exclusions
                        and the non-starter decompositions without listing them.

A code point c is NFC-inert when
  ccc(c) = 0, NFC(c) = c, c is not the second element of any composition pair (primary pairs
  and the Hangul L+V, LV+T jamo pairs), and the first code point of NFD(c) has the same two
  properties (ccc 0, no second element).
Then NFC(x + y) = NFC(x) + NFC(y) whenever y starts with an inert code point: canonical
reordering stops at the starter NFD(y)[0], and composition cannot reach back across a starter
that composes with nothing before it. So a run of inert code points is its own NFC, and
nfc() only has to normalise the stretches that hold an active code point. kNfcInertBelow is the
smallest active code point; text entirely below it is NFC as it stands.
"""
import os
import sys
import unicodedata

MAX_CODE_POINT = 0x10FFFF
LETTER, NUMBER, SPACE, NFC_ACTIVE, MARK, UPPER_TITLE, LOWER = 1, 2, 4, 8, 16, 32, 64

# Hangul syllable arithmetic (Unicode §3.12): S = SBase + (L·VCount + V)·TCount + T.
S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
S_COUNT = L_COUNT * V_COUNT * T_COUNT

# PropList.txt White_Space (unchanged since Unicode 6.3, when U+180E left it), the set
# Oniguruma's \s uses; the generator checks the category-based definition against it.
WHITE_SPACE = ([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def canonical_decomposition(c):
    """One-level canonical mapping of c as a list of code points, [] when none."""
    text = unicodedata.decomposition(chr(c))
    if not text or text.startswith("<"):
        return []
    return [int(part, 16) for part in text.split()]


def is_hangul_syllable(c):
    return S_BASE <= c < S_BASE + S_COUNT


def main():
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unicode_tables.inc")
    ccc = [unicodedata.combining(chr(c)) for c in range(MAX_CODE_POINT + 1)]

    decompositions = []  # (code, first, second, primary)
    # Second elements of composition pairs: the Hangul V and T jamo, then those of the primaries.
    second_elements = {*range(V_BASE, V_BASE + V_COUNT), *range(T_BASE + 1, T_BASE + T_COUNT)}
    for c in range(MAX_CODE_POINT + 1):
        if is_hangul_syllable(c):
            continue
        d = canonical_decomposition(c)
        if not d:
            continue
        assert len(d) <= 2, f"U+{c:04X}: canonical mapping longer than two code points"
        primary = len(d) == 2 and unicodedata.normalize("NFC", chr(d[0]) + chr(d[1])) == chr(c)
        if primary:
            second_elements.add(d[1])
        decompositions.append((c, d[0], d[1] if len(d) == 2 else 0, int(primary)))

    def composes_backward_or_reorders(c):
        return ccc[c] != 0 or c in second_elements

    space = set(WHITE_SPACE)
    flags = [0] * (MAX_CODE_POINT + 1)
    for c in range(MAX_CODE_POINT + 1):
        ch = chr(c)
        category = unicodedata.category(ch)
        f = 0
        if category[0] == "L":
            f |= LETTER
        if category[0] == "N":
            f |= NUMBER
        if category[0] == "M":
            f |= MARK
        if category in ("Lu", "Lt"):
            f |= UPPER_TITLE
        if category == "Ll":
            f |= LOWER
        is_space = 0x09 <= c <= 0x0D or c == 0x85 or category in ("Zs", "Zl", "Zp")
        assert is_space == (c in space), f"U+{c:04X}: \\s by category disagrees with White_Space"
        if is_space:
            f |= SPACE
        inert = (not composes_backward_or_reorders(c) and unicodedata.normalize("NFC", ch) == ch
                 and not composes_backward_or_reorders(ord(unicodedata.normalize("NFD", ch)[0])))
        if not inert:
            f |= NFC_ACTIVE
        flags[c] = f

    inert_below = next(c for c in range(MAX_CODE_POINT + 1) if flags[c] & NFC_ACTIVE)
    # Text below U+0300 is NFC as it stands (the fast path nfc() is known for).
    assert inert_below >= 0x300, f"U+{inert_below:04X} is NFC-active"

    def ranges(values):
        """[first, last, value] runs of equal nonzero value."""
        runs = []
        for c, v in enumerate(values):
            if v and runs and runs[-1][2] == v and runs[-1][1] == c - 1:
                runs[-1][1] = c
            elif v:
                runs.append([c, c, v])
        return runs

    def rows(entries):
        """C initialisers "{a,b,c}," packed into lines of at most 100 columns."""
        lines = [""]
        for entry in entries:
            item = "{" + ",".join(entry) + "},"
            if lines[-1] and len(lines[-1]) + 1 + len(item) > 100:
                lines.append("")
            lines[-1] += (" " if lines[-1] else "    ") + item
        return "\n".join(lines)

    def hexes(values):
        return [f"0x{v:x}" for v in values]

    property_ranges = ranges(flags)
    ccc_ranges = ranges(ccc)
    version = unicodedata.unidata_version
    python = sys.version.split()[0]
    text = f"""\
// GENERATED by data/gen_unicode_tables.py -- do not edit. Regenerate from the repository root:
//   /usr/bin/python3 data/gen_unicode_tables.py
// Unicode {version} (the unicodedata of Python {python}); the script explains the tables.

// Below this code point every character is NFC-inert.
constexpr char32_t kNfcInertBelow = 0x{inert_below:x};

// {{first, last, flags}}: kLetter = 1, kNumber = 2, kSpace = 4, kNfcActive = 8, kMark = 16,
// kUpperTitle = 32, kLower = 64.
constexpr PropertyRange kPropertyRanges[] = {{
{rows([hexes(r[:2]) + [str(r[2])] for r in property_ranges])}
}};

// {{first, last, Canonical_Combining_Class}} for ccc != 0.
constexpr CombiningClassRange kCombiningClassRanges[] = {{
{rows([hexes(r[:2]) + [str(r[2])] for r in ccc_ranges])}
}};

// {{code, first, second, primary}}: canonical mapping code -> first second (0: singleton);
// primary: code is the canonical composition of (first, second).
constexpr Decomposition kDecompositions[] = {{
{rows([hexes(d[:3]) + [str(d[3])] for d in decompositions])}
}};
"""
    with open(out_path, "w", encoding="ascii") as f:
        f.write(text)
    print(f"{out_path}: Unicode {version}, {len(property_ranges)} property ranges, "
          f"{len(ccc_ranges)} ccc ranges, {len(decompositions)} decompositions "
          f"({sum(d[3] for d in decompositions)} primary composites), "
          f"NFC-inert below U+{inert_below:04X}, {len(text)} bytes")


if __name__ == "__main__":
    main()

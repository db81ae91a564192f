// UTF-8 coding, the character classes \p{L} \p{N} \p{M} \s (and Lu/Lt, Ll), and NFC over the tables generated
// into data/unicode_tables.inc (data/gen_unicode_tables.py explains each table).
#include "data/unicode.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace retort::unicode {
namespace {

// Row types of the generated tables.
struct PropertyRange {
  char32_t first, last;
  uint8_t flags;
};
struct CombiningClassRange {
  char32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  char32_t code, first, second;  // code ≡ first second (second = 0: singleton)
  uint8_t primary;               // 1: composition maps (first, second) back to code
};

// PropertyRange::flags. kNfcActive: not NFC-inert (see the generator), i.e. NFC may change,
// reorder or compose the code point with what precedes it; inert ones start independent
// stretches of text.
enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kNfcActive = 8, kMark = 16, kUpperTitle = 32, kLower = 64 };

#include "data/unicode_tables.inc"

// ---- character properties ------------------------------------------------------------

// Flags of U+0000..U+FFFF, one byte each, filled at compile time from the ranges.
constexpr auto kBmpFlags = [] {
  std::array<uint8_t, 0x10000> table{};
  for (const PropertyRange& r : kPropertyRanges)
    for (char32_t c = r.first; c <= r.last && c <= 0xFFFF; ++c) table[c] = r.flags;
  return table;
}();

// Last row of `table` with first <= c (binary search), or nullptr.
template <class Row, size_t N>
const Row* last_row_starting_at_or_before(const Row (&table)[N], char32_t c) {
  const Row* it = std::upper_bound(table, table + N, c,
                                   [](char32_t x, const Row& r) { return x < r.first; });
  return it == table ? nullptr : it - 1;
}

uint8_t flags_of(char32_t c) {
  if (c <= 0xFFFF) return kBmpFlags[c];
  const PropertyRange* r = last_row_starting_at_or_before(kPropertyRanges, c);
  return r && c <= r->last ? r->flags : 0;
}

bool is_nfc_active(char32_t c) { return c >= kNfcInertBelow && (flags_of(c) & kNfcActive); }

// Canonical_Combining_Class; 0 for every inert code point.
uint8_t combining_class(char32_t c) {
  if (!is_nfc_active(c)) return 0;
  const CombiningClassRange* r = last_row_starting_at_or_before(kCombiningClassRanges, c);
  return r && c <= r->last ? r->ccc : 0;
}

// ---- Hangul syllables (Unicode §3.12) -------------------------------------------------
// S = SBase + (L_index·VCount + V_index)·TCount + T_index, with L = LBase + L_index,
// V = VBase + V_index, T = TBase + T_index (T_index 0: no trailing consonant).

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kSCount = kLCount * kVCount * kTCount;

bool is_hangul_syllable(char32_t c) { return c >= kSBase && c < kSBase + kSCount; }

// ---- canonical decomposition and composition -----------------------------------------

const Decomposition* find_decomposition(char32_t c) {
  const Decomposition* it = std::lower_bound(
      std::begin(kDecompositions), std::end(kDecompositions), c,
      [](const Decomposition& d, char32_t x) { return d.code < x; });
  return it != std::end(kDecompositions) && it->code == c ? it : nullptr;
}

// Appends the full canonical decomposition of c (the mapping applied until nothing changes).
void append_decomposition(std::u32string& out, char32_t c) {
  if (is_hangul_syllable(c)) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / (kVCount * kTCount));
    out.push_back(kVBase + s % (kVCount * kTCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* d = find_decomposition(c);
  if (!d) {
    out.push_back(c);
    return;
  }
  append_decomposition(out, d->first);
  if (d->second) append_decomposition(out, d->second);
}

// Primary composite pairs keyed first·2^21 + second, sorted, built at compile time.
constexpr uint64_t pair_key(char32_t first, char32_t second) {
  return uint64_t(first) << 21 | second;
}
struct Composition {
  uint64_t key;
  char32_t composite;
};
constexpr size_t kPrimaryCount = [] {
  size_t n = 0;
  for (const Decomposition& d : kDecompositions) n += d.primary;
  return n;
}();
constexpr auto kCompositions = [] {
  std::array<Composition, kPrimaryCount> table{};
  size_t n = 0;
  for (const Decomposition& d : kDecompositions)
    if (d.primary) table[n++] = {pair_key(d.first, d.second), d.code};
  std::sort(table.begin(), table.end(),
            [](const Composition& a, const Composition& b) { return a.key < b.key; });
  return table;
}();

// The primary composite of (first, second), or 0 when there is none.
char32_t compose(char32_t first, char32_t second) {
  // Hangul: L + V → LV, LV + T → LVT.
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (is_hangul_syllable(first) && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  const uint64_t key = pair_key(first, second);
  auto it = std::lower_bound(kCompositions.begin(), kCompositions.end(), key,
                             [](const Composition& c, uint64_t k) { return c.key < k; });
  return it != kCompositions.end() && it->key == key ? it->composite : 0;
}

// NFC of `stretch` appended to `out`; `chars` and `classes` are scratch buffers.
void append_nfc(std::u32string_view stretch, std::u32string& out, std::u32string& chars,
                std::vector<uint8_t>& classes) {
  // 1. Canonical decomposition.
  chars.clear();
  for (char32_t c : stretch) append_decomposition(chars, c);
  const size_t n = chars.size();
  classes.resize(n);
  for (size_t i = 0; i < n; ++i) classes[i] = combining_class(chars[i]);

  // 2. Canonical ordering: each run of non-starters (ccc != 0) stably sorted by ccc
  //    (insertion sort; the runs are short).
  for (size_t i = 1; i < n; ++i) {
    if (classes[i] == 0) continue;
    for (size_t j = i; j > 0 && classes[j - 1] > classes[j]; --j) {
      std::swap(classes[j - 1], classes[j]);
      std::swap(chars[j - 1], chars[j]);
    }
  }

  // 3. Canonical composition, in place. A character C after the last starter L is blocked
  //    from L when some B between them has ccc(B) = 0 or ccc(B) >= ccc(C); otherwise, when
  //    (L, C) has a primary composite P, L becomes P and C is dropped. `last_class` is the
  //    ccc of the last character kept: 0 means it is L itself (nothing between), and 256
  //    stands for "no starter yet" (text starting with non-starters).
  if (n == 0) return;
  size_t starter = 0, kept = 1;
  int last_class = classes[0] == 0 ? 0 : 256;
  for (size_t i = 1; i < n; ++i) {
    const char32_t c = chars[i];
    const int c_class = classes[i];
    if (last_class == 0 || last_class < c_class) {
      if (char32_t composite = compose(chars[starter], c)) {
        chars[starter] = composite;
        continue;
      }
    }
    if (c_class == 0) starter = kept;
    last_class = c_class;
    chars[kept++] = c;
  }
  out.append(chars, 0, kept);
}

}  // namespace

// ---- UTF-8 ---------------------------------------------------------------------------
// Well-formed sequences (Unicode Table 3-7): 00..7F | C2..DF 80..BF | E0 A0..BF 80..BF |
// E1..EC 80..BF 80..BF | ED 80..9F 80..BF | EE..EF 80..BF 80..BF | F0 90..BF 80..BF 80..BF |
// F1..F3 (80..BF)×3 | F4 80..8F 80..BF 80..BF. A lead byte followed by a proper prefix of its
// sequence is one maximal invalid subpart (one U+FFFD); the byte that broke it is read again.
// A byte that starts no sequence (80..C1, F5..FF) is a subpart of its own.

std::u32string decode_utf8(std::string_view text, int64_t* replaced) {
  std::u32string out(text.size(), U'\0');  // never more code points than bytes
  char32_t* o = out.data();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* const end = p + text.size();
  int64_t bad = 0;
  while (p < end) {
    // ASCII: eight bytes at a time while none has the high bit.
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, 8);
      if (word & 0x8080808080808080ull) break;
      for (int k = 0; k < 8; ++k) o[k] = p[k];
      o += 8, p += 8;
    }
    if (p == end) break;
    const unsigned char lead = *p++;
    if (lead < 0x80) {
      *o++ = lead;
      continue;
    }
    int continuation;           // bytes after the lead
    unsigned char lo = 0x80, hi = 0xBF;  // range of the first continuation byte
    char32_t c;
    if (lead >= 0xC2 && lead <= 0xDF) {
      continuation = 1, c = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      continuation = 2, c = lead & 0x0F;
      if (lead == 0xE0) lo = 0xA0;       // no overlongs
      else if (lead == 0xED) hi = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      continuation = 3, c = lead & 0x07;
      if (lead == 0xF0) lo = 0x90;       // no overlongs
      else if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
      *o++ = 0xFFFD, ++bad;
      continue;
    }
    bool complete = true;
    for (int k = 0; k < continuation; ++k, lo = 0x80, hi = 0xBF) {
      if (p == end || *p < lo || *p > hi) {
        complete = false;
        break;
      }
      c = c << 6 | (*p++ & 0x3F);
    }
    if (complete) {
      *o++ = c;
    } else {
      *o++ = 0xFFFD, ++bad;
    }
  }
  out.resize(size_t(o - out.data()));
  if (replaced) *replaced = bad;
  return out;
}

// c < 2^7: 0xxxxxxx; < 2^11: 110xxxxx 10xxxxxx; < 2^16: 1110xxxx (10xxxxxx)×2;
// otherwise 11110xxx (10xxxxxx)×3.

namespace {

// Bytes of the UTF-8 form of c; throws unless c is a scalar value (not a surrogate, <= U+10FFFF).
size_t utf8_length(char32_t c) {
  if (c < 0x80) return 1;
  if (c < 0x800) return 2;
  RETORT_CHECK(c < 0xD800 || c > 0xDFFF, "surrogate U+", std::hex, std::uppercase, uint32_t(c),
               " is not a Unicode scalar value");
  if (c < 0x10000) return 3;
  RETORT_CHECK(c <= 0x10FFFF, "0x", std::hex, std::uppercase, uint32_t(c), " is beyond U+10FFFF");
  return 4;
}

// Writes the `length` = utf8_length(c) bytes of c at `out`.
void write_utf8(char* out, char32_t c, size_t length) {
  switch (length) {
    case 1:
      out[0] = char(c);
      break;
    case 2:
      out[0] = char(0xC0 | c >> 6), out[1] = char(0x80 | (c & 0x3F));
      break;
    case 3:
      out[0] = char(0xE0 | c >> 12), out[1] = char(0x80 | (c >> 6 & 0x3F));
      out[2] = char(0x80 | (c & 0x3F));
      break;
    default:
      out[0] = char(0xF0 | c >> 18), out[1] = char(0x80 | (c >> 12 & 0x3F));
      out[2] = char(0x80 | (c >> 6 & 0x3F)), out[3] = char(0x80 | (c & 0x3F));
  }
}

}  // namespace

void append_utf8(std::string& out, char32_t c) {
  const size_t length = utf8_length(c);
  out.resize(out.size() + length);
  write_utf8(out.data() + out.size() - length, c, length);
}

// Two passes: the exact length (and the checks), then the bytes.
std::string encode_utf8(std::u32string_view text) {
  size_t bytes = 0;
  for (char32_t c : text) bytes += utf8_length(c);
  std::string out(bytes, '\0');
  char* o = out.data();
  for (char32_t c : text) {
    const size_t length = c < 0x80 ? 1 : utf8_length(c);
    write_utf8(o, c, length);
    o += length;
  }
  return out;
}

// ---- character classes ---------------------------------------------------------------

bool is_letter(char32_t c) { return flags_of(c) & kLetter; }
bool is_number(char32_t c) { return flags_of(c) & kNumber; }
bool is_space(char32_t c) { return flags_of(c) & kSpace; }
bool is_mark(char32_t c) { return flags_of(c) & kMark; }
bool is_upper_or_title(char32_t c) { return flags_of(c) & kUpperTitle; }
bool is_lower(char32_t c) { return flags_of(c) & kLower; }

// ---- NFC -----------------------------------------------------------------------------
// NFC(x) = composition(canonical ordering(canonical decomposition(x))). Text splits before
// each NFC-inert code point into stretches normalised independently (see the generator), so
// only a stretch holding an active code point, together with the inert one opening it, goes
// through the three steps; everything else is copied.

std::u32string nfc(std::u32string_view text) {
  const size_t n = text.size();
  size_t active = 0;
  while (active < n && !is_nfc_active(text[active])) ++active;
  if (active == n) return std::u32string(text);

  std::u32string out, chars;
  std::vector<uint8_t> classes;
  out.reserve(n);
  size_t done = 0;  // text[0, done) is in `out`
  while (true) {
    // The stretch: the inert code point before `active` (if any) up to the next inert one.
    const size_t start = active > done ? active - 1 : active;
    out.append(text.substr(done, start - done));
    size_t stop = active + 1;
    while (stop < n && is_nfc_active(text[stop])) ++stop;
    append_nfc(text.substr(start, stop - start), out, chars, classes);
    done = stop;
    active = stop;
    while (active < n && !is_nfc_active(text[active])) ++active;
    if (active == n) break;
  }
  out.append(text.substr(done));
  return out;
}

}  // namespace retort::unicode

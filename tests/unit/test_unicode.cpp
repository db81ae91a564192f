// retort::unicode against an independent Python run at test time (/usr/bin/python3:
// unicodedata.category, unicodedata.normalize, bytes.decode): the character classes over every
// code point, NFC over every code point alone, with combining marks after it, its NFD, Hangul
// jamo sequences and random mixed strings, and UTF-8 decoding of valid and malformed bytes.
// Strings go to Python and back in bulk through temp files, one Python process per batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <vector>

#include "core/check.h"
#include "data/unicode.h"

namespace fs = std::filesystem;
namespace uc = retort::unicode;

namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr char32_t kMaxCodePoint = 0x10FFFF;

// The Python side. Record files: n (uint32), n lengths (uint32), then the records' elements
// back to back (UTF-32 code points, or bytes). Modes:
//   classes            stdout: lines "<class> <first> <last>" (hex) of the ranges of L, N, \s, M, Lu|Lt, Ll
//   normalize FORM in  in: UTF-32 text; stdout: unicodedata.normalize(FORM, text) in UTF-32
//   encode in          in: records of code points; stdout: records record.encode('utf-8')
//   decode in          in: records of bytes; stdout: records bytes.decode('utf-8', 'replace'),
//                      then n uint32 counts of U+FFFD inserted
constexpr const char* kScript = R"PY(
import codecs, sys, unicodedata
from array import array

def read_records(path, text):
    data = open(path, 'rb').read()
    n = int.from_bytes(data[:4], 'little')
    lengths = array('I')
    lengths.frombytes(data[4:4 + 4 * n])
    body = data[4 + 4 * n:]
    if text:
        body = body.decode('utf-32-le', 'surrogatepass')
    records, pos = [], 0
    for length in lengths:
        records.append(body[pos:pos + length])
        pos += length
    return records

def write_records(records, text):
    lengths = array('I', map(len, records))
    body = ''.join(records).encode('utf-32-le', 'surrogatepass') if text else b''.join(records)
    sys.stdout.buffer.write(len(records).to_bytes(4, 'little') + lengths.tobytes() + body)

def ranges(members):
    runs = []
    for c in members:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return runs

mode = sys.argv[1]
assert array('I').itemsize == 4
if mode == 'classes':
    categories = [unicodedata.category(chr(c)) for c in range(0x110000)]
    members = {
        'letter': [c for c, g in enumerate(categories) if g[0] == 'L'],
        'number': [c for c, g in enumerate(categories) if g[0] == 'N'],
        'space': [c for c, g in enumerate(categories)
                  if 0x09 <= c <= 0x0D or c == 0x85 or g in ('Zs', 'Zl', 'Zp')],
        'mark': [c for c, g in enumerate(categories) if g[0] == 'M'],
        'upper_or_title': [c for c, g in enumerate(categories) if g in ('Lu', 'Lt')],
        'lower': [c for c, g in enumerate(categories) if g == 'Ll'],
    }
    for name, cs in members.items():
        for first, last in ranges(cs):
            print(name, '%x' % first, '%x' % last)
elif mode == 'normalize':
    text = open(sys.argv[3], 'rb').read().decode('utf-32-le', 'surrogatepass')
    normal = unicodedata.normalize(sys.argv[2], text)
    sys.stdout.buffer.write(normal.encode('utf-32-le', 'surrogatepass'))
elif mode == 'encode':
    write_records([s.encode('utf-8') for s in read_records(sys.argv[2], True)], False)
elif mode == 'decode':
    inserted = [0]
    def count_and_replace(error):
        inserted[0] += 1
        return ('\ufffd', error.end)
    codecs.register_error('count_and_replace', count_and_replace)
    decoded, counts = [], array('I')
    for b in read_records(sys.argv[2], False):
        inserted[0] = 0
        s = b.decode('utf-8', 'count_and_replace')
        assert s == b.decode('utf-8', 'replace')
        decoded.append(s)
        counts.append(inserted[0])
    write_records(decoded, True)
    sys.stdout.buffer.write(counts.tobytes())
)PY";

bool have_python() { return fs::exists(kPython); }

fs::path temp_dir() {
  fs::path d = fs::path(RETORT_BINARY_DIR) / "test_tmp" / "unicode";
  fs::create_directories(d);
  return d;
}

// Runs the script with `args` and returns its stdout; fails the test on a nonzero exit.
std::string run_python(const std::string& args) {
  const fs::path script = temp_dir() / "unicode_reference.py";
  std::ofstream(script) << kScript;
  const std::string command = std::string(kPython) + " '" + script.string() + "' " + args;
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << command;
  if (!pipe) return {};
  std::string out;
  char buffer[1 << 16];
  for (size_t got; (got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, got);
  EXPECT_EQ(pclose(pipe), 0) << command;
  return out;
}

uint32_t read_u32(std::string_view data, size_t& pos) {
  uint32_t v = 0;
  if (pos + 4 <= data.size()) std::memcpy(&v, data.data() + pos, 4);
  pos += 4;
  return v;
}

// Record files, in the layout of the script (host byte order = little-endian on both sides).
template <class String>
void write_records(const fs::path& path, const std::vector<String>& records) {
  std::string data;
  auto put = [&](uint32_t v) { data.append(reinterpret_cast<const char*>(&v), 4); };
  put(uint32_t(records.size()));
  for (const String& s : records) put(uint32_t(s.size()));
  for (const String& s : records)
    data.append(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(s[0]));
  std::ofstream(path, std::ios::binary) << data;
}

template <class String>
std::vector<String> read_records(std::string_view data, size_t& pos) {
  const uint32_t n = read_u32(data, pos);
  std::vector<uint32_t> lengths(n);
  for (uint32_t& length : lengths) length = read_u32(data, pos);
  std::vector<String> records(n);
  for (uint32_t i = 0; i < n; ++i) {
    const size_t bytes = lengths[i] * sizeof(typename String::value_type);
    if (pos + bytes > data.size()) {
      ADD_FAILURE() << "record file truncated at record " << i;
      records.resize(i);
      break;
    }
    records[i].resize(lengths[i]);
    std::memcpy(records[i].data(), data.data() + pos, bytes);
    pos += bytes;
  }
  return records;
}

// Python's unicodedata.normalize(form, ·) of each string, and of all of them joined by line
// feeds (`joined`, `joined_normal`). The strings go over as that one text: U+000A has ccc 0,
// no decomposition and occurs in none, so nothing reorders or composes across it and
// normalize(a + "\n" + b) = normalize(a) + "\n" + normalize(b); the result is cut at its
// line feeds (as many as went in) and each string takes as many pieces as it has lines.
struct Normalized {
  std::vector<std::u32string> each;
  std::u32string joined, joined_normal;
};
Normalized python_normalize(const std::string& form, const std::vector<std::u32string>& strings) {
  Normalized result;
  for (const std::u32string& s : strings) result.joined.append(s).push_back(U'\n');
  const fs::path input = temp_dir() / "normalize_in.bin";
  std::ofstream(input, std::ios::binary)
      .write(reinterpret_cast<const char*>(result.joined.data()),
             std::streamsize(result.joined.size() * sizeof(char32_t)));
  const std::string out = run_python("normalize " + form + " '" + input.string() + "'");
  result.joined_normal.resize(out.size() / sizeof(char32_t));
  std::memcpy(result.joined_normal.data(), out.data(), out.size());
  size_t pos = 0;
  result.each.reserve(strings.size());
  for (const std::u32string& s : strings) {
    const size_t lines = 1 + size_t(std::count(s.begin(), s.end(), U'\n'));
    size_t end = pos;
    for (size_t k = 0; k < lines && end != std::u32string::npos; ++k)
      end = result.joined_normal.find(U'\n', k ? end + 1 : end);
    if (end == std::u32string::npos) {
      ADD_FAILURE() << "Python's " << form << " lost line feeds";
      break;
    }
    result.each.push_back(result.joined_normal.substr(pos, end - pos));
    pos = end + 1;
  }
  EXPECT_EQ(pos, result.joined_normal.size()) << "Python's " << form << " added line feeds";
  return result;
}

std::string hex(std::u32string_view s) {
  std::ostringstream os;
  os << std::hex << std::uppercase;
  for (size_t i = 0; i < s.size(); ++i) os << (i ? " " : "") << uint32_t(s[i]);
  return "[" + os.str() + "]";
}
std::string hex_bytes(std::string_view s) {
  std::ostringstream os;
  os << std::hex << std::uppercase;
  for (size_t i = 0; i < s.size(); ++i) os << (i ? " " : "") << uint32_t(uint8_t(s[i]));
  return "[" + os.str() + "]";
}

// Inclusive ranges [first, last] of the code points where `member` holds.
std::vector<std::pair<char32_t, char32_t>> ranges_of(bool (*member)(char32_t)) {
  std::vector<std::pair<char32_t, char32_t>> runs;
  for (char32_t c = 0; c <= kMaxCodePoint; ++c) {
    if (!member(c)) continue;
    if (!runs.empty() && runs.back().second == c - 1) runs.back().second = c;
    else runs.push_back({c, c});
  }
  return runs;
}

// Compares nfc() with Python on each of `inputs` and on all of them joined (one long text of
// many independent stretches); reports the first few mismatches.
void expect_nfc_matches_python(const std::vector<std::u32string>& inputs, const char* what) {
  const Normalized expected = python_normalize("NFC", inputs);
  ASSERT_EQ(expected.each.size(), inputs.size()) << what;
  int64_t mismatches = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::u32string got = uc::nfc(inputs[i]);
    if (got == expected.each[i]) continue;
    if (++mismatches <= 10)
      ADD_FAILURE() << what << ": nfc(" << hex(inputs[i]) << ") = " << hex(got) << ", Python "
                    << hex(expected.each[i]);
  }
  EXPECT_EQ(mismatches, 0) << what;
  EXPECT_TRUE(uc::nfc(expected.joined) == expected.joined_normal) << what << ", joined";
  std::cout << "  nfc: " << inputs.size() << " strings (" << what << ") match Python\n";
}

// Hangul syllable arithmetic (Unicode §3.12), written out independently of data/unicode.cpp.
constexpr char32_t kSBase = 0xAC00, kSCount = 11172;
std::u32string hangul_jamo(char32_t syllable) {
  const char32_t s = syllable - kSBase;
  std::u32string jamo = {char32_t(0x1100 + s / 588), char32_t(0x1161 + s % 588 / 28)};
  if (s % 28) jamo.push_back(0x11A7 + s % 28);
  return jamo;
}

// Deterministic generator (std::mt19937_64 is fully specified; the distributions are not).
struct Random {
  std::mt19937_64 engine{20240611};
  uint64_t below(uint64_t n) { return engine() % n; }
  char32_t in(char32_t first, char32_t last) { return first + char32_t(below(last - first + 1)); }
};

}  // namespace

TEST(Unicode, CharacterClassesMatchPythonForEveryCodePoint) {
  if (!have_python()) GTEST_SKIP() << kPython << " not available";
  std::map<std::string, std::vector<std::pair<char32_t, char32_t>>> expected;
  std::istringstream lines(run_python("classes"));
  std::string name;
  for (uint32_t first, last; lines >> name >> std::hex >> first >> last;)
    expected[name].push_back({first, last});
  const std::pair<const char*, bool (*)(char32_t)> classes[] = {
      {"letter", uc::is_letter}, {"number", uc::is_number}, {"space", uc::is_space},
      {"mark", uc::is_mark}, {"upper_or_title", uc::is_upper_or_title}, {"lower", uc::is_lower}};
  for (auto [cls, member] : classes) {
    const auto got = ranges_of(member);
    const auto& want = expected[cls];
    EXPECT_FALSE(want.empty()) << cls;
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    if (i < got.size() || i < want.size()) {
      auto show = [](const auto& runs, size_t i) {
        if (i >= runs.size()) return std::string("(end)");
        std::ostringstream os;
        os << std::hex << std::uppercase << "U+" << uint32_t(runs[i].first) << "..U+"
           << uint32_t(runs[i].second);
        return os.str();
      };
      ADD_FAILURE() << "is_" << cls << ": range " << i << " is " << show(got, i) << ", Python "
                    << show(want, i);
    }
    std::cout << "  is_" << cls << ": " << want.size() << " ranges over U+0000..U+10FFFF\n";
  }
  // Oniguruma's \s is White_Space: not the format characters U+180E, U+200B, U+FEFF, nor the
  // information separators U+001C..U+001F that Python's str.isspace() accepts.
  for (char32_t c : {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x3000})
    EXPECT_TRUE(uc::is_space(c)) << uint32_t(c);
  for (char32_t c : {0x1C, 0x1F, 0x180E, 0x200B, 0xFEFF})
    EXPECT_FALSE(uc::is_space(c)) << uint32_t(c);
}

TEST(Unicode, NfcMatchesPython) {
  if (!have_python()) GTEST_SKIP() << kPython << " not available";
  // Every code point alone (surrogates included: Python strings hold them too), followed by
  // an acute accent (ccc 230), and by a cedilla (ccc 202) and an acute accent.
  std::vector<std::u32string> alone, acute, cedilla_acute;
  for (auto* strings : {&alone, &acute, &cedilla_acute}) strings->reserve(kMaxCodePoint + 1);
  for (char32_t c = 0; c <= kMaxCodePoint; ++c) {
    alone.push_back({c});
    acute.push_back({c, 0x301});
    cedilla_acute.push_back({c, 0x327, 0x301});
  }
  expect_nfc_matches_python(alone, "every code point");
  expect_nfc_matches_python(acute, "every code point + U+0301");
  expect_nfc_matches_python(cedilla_acute, "every code point + U+0327 U+0301");

  // The canonical decomposition (NFD) of every code point that has one; it must recompose.
  std::vector<std::u32string> decomposed;
  const std::vector<std::u32string> nfd = python_normalize("NFD", alone).each;
  ASSERT_EQ(nfd.size(), alone.size());
  for (size_t i = 0; i < nfd.size(); ++i)
    if (nfd[i] != alone[i]) decomposed.push_back(nfd[i]);
  EXPECT_GT(decomposed.size(), 13000u);  // ~2000 mappings and 11172 Hangul syllables
  expect_nfc_matches_python(decomposed, "NFD of every code point");

  // Hangul: every syllable as jamo, then partial and invalid jamo sequences around the
  // composable ranges L 1100..1112, V 1161..1175, T 11A8..11C2 (11A7 is no T).
  std::vector<std::u32string> hangul;
  for (char32_t s = kSBase; s < kSBase + kSCount; ++s) hangul.push_back(hangul_jamo(s));
  for (char32_t l = 0x10FF; l <= 0x1113; ++l) {
    hangul.push_back({l});
    for (char32_t v = 0x1160; v <= 0x1176; ++v) {
      hangul.push_back({l, v});
      hangul.push_back({l, l, v});
      hangul.push_back({l, v, v});
      for (char32_t t : {0x11A6, 0x11A7, 0x11A8, 0x11B0, 0x11C2, 0x11C3}) {
        hangul.push_back({l, v, t});
        hangul.push_back({v, t});
        hangul.push_back({l, t});
      }
    }
  }
  for (char32_t s = kSBase; s < kSBase + kSCount; s += 27) {  // LV and LVT syllables
    for (char32_t t = 0x11A6; t <= 0x11C3; ++t) hangul.push_back({s, t});
    hangul.push_back({s, 0x1161});
    hangul.push_back({s, 0x301, 0x11A8});
  }
  expect_nfc_matches_python(hangul, "Hangul jamo sequences");

  // Random strings mixing Latin, Greek, Cyrillic, Hangul and combining marks of many classes.
  const std::pair<char32_t, char32_t> pools[] = {
      {'a', 'z'},         {'A', 'Z'},         {0xC0, 0x24F},      {0x1E00, 0x1EFF},
      {0x300, 0x36F},     {0x300, 0x36F},     {0x591, 0x5C7},     {0xE31, 0xE4E},
      {0x900, 0x97F},     {0x980, 0x9FF},     {0xB00, 0xB7F},     {0xF40, 0xF84},
      {0x370, 0x3FF},     {0x1F00, 0x1FFF},   {0x400, 0x4FF},     {0x1100, 0x11FF},
      {0xAC00, 0xD7A3},   {0x2126, 0x212B},   {0xF900, 0xFAFF},   {0x3099, 0x309A},
      {0x304B, 0x30FF},   {0x11080, 0x110C2}, {0x1D15E, 0x1D1C0}, {0x2F800, 0x2FA1D},
      {0x1DC0, 0x1DFF},   {0x20D0, 0x20F0},
  };
  Random random;
  std::vector<std::u32string> mixed;
  for (int i = 0; i < 5000; ++i) {
    std::u32string s;
    for (size_t n = 1 + random.below(16); s.size() < n;) {
      auto [first, last] = pools[random.below(std::size(pools))];
      s.push_back(random.in(first, last));
    }
    mixed.push_back(s);
  }
  expect_nfc_matches_python(mixed, "random mixed strings");
}

TEST(Unicode, NfcLeavesInertTextAlone) {
  const std::u32string ascii = uc::decode_utf8("The quick brown fox, 1961 (naïve café).\n");
  EXPECT_EQ(uc::nfc(ascii), ascii);
  EXPECT_EQ(uc::nfc(U""), U"");
  EXPECT_EQ(uc::nfc(U"e\u0301"), U"\u00e9");
  EXPECT_EQ(uc::nfc(U"\u0301e"), U"\u0301e");  // a leading non-starter composes with nothing
}

TEST(Unicode, Utf8MatchesPython) {
  if (!have_python()) GTEST_SKIP() << kPython << " not available";
  // Valid text: every scalar value, in strings of up to 64 consecutive code points, encoded by
  // Python; decode_utf8 must give them back with no replacement, encode_utf8 the same bytes.
  std::vector<std::u32string> scalars;
  for (char32_t c = 0; c <= kMaxCodePoint; c += 64) {
    std::u32string s;
    for (char32_t d = c; d < c + 64 && d <= kMaxCodePoint; ++d)
      if (d < 0xD800 || d > 0xDFFF) s.push_back(d);
    if (!s.empty()) scalars.push_back(s);
  }
  const fs::path encode_in = temp_dir() / "encode_in.bin";
  write_records(encode_in, scalars);
  const std::string encoded_out = run_python("encode '" + encode_in.string() + "'");
  size_t pos = 0;
  const std::vector<std::string> encoded = read_records<std::string>(encoded_out, pos);
  ASSERT_EQ(encoded.size(), scalars.size());
  int64_t valid_mismatches = 0;
  for (size_t i = 0; i < scalars.size(); ++i) {
    int64_t replaced = -1;
    const std::u32string decoded = uc::decode_utf8(encoded[i], &replaced);
    const std::string reencoded = uc::encode_utf8(decoded);
    if (decoded == scalars[i] && replaced == 0 && reencoded == encoded[i] &&
        uc::encode_utf8(scalars[i]) == encoded[i])
      continue;
    if (++valid_mismatches <= 10)
      ADD_FAILURE() << "valid UTF-8 " << hex_bytes(encoded[i]) << ": decoded " << hex(decoded)
                    << " (" << replaced << " replaced), re-encoded " << hex_bytes(reencoded);
  }
  EXPECT_EQ(valid_mismatches, 0);
  std::cout << "  utf-8: every scalar value (" << scalars.size()
            << " strings) decodes and re-encodes as Python encodes it\n";

  // Malformed bytes, then random byte strings weighted towards the bytes that matter.
  std::vector<std::string> inputs = {
      "", "plain ascii", "caf\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xEF\xBF\xBD",
      "\xC3", "\xE2\x82", "\xF0\x9F\x98", "a\xF0\x9F" "b",             // truncated
      "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xE0\x9F\xBF", "\xF0\x80\x80\xAF",  // overlong
      "\xF0\x8F\xBF\xBF", "\xED\xA0\x80", "\xED\xBF\xBF", "\xED\x9F\xBF",          // surrogates
      "\xF4\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xF7\xBF\xBF\xBF",                  // > U+10FFFF
      "\x80", "\xBF\x80\xBF", "a\x80" "b", "\xC3\xA9\xA9",                          // stray
      "\xF5", "\xF8\x88\x80\x80\x80", "\xFC\x84\x80\x80\x80\x80", "\xFE\xFF", "\xFF",
      "\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41",  // the Unicode §3.9 maximal-subpart example
  };
  const unsigned char interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                       0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                       0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF8, 0xFE, 0xFF};
  Random random;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    for (size_t n = random.below(13); s.size() < n;)
      s.push_back(char(random.below(2) ? interesting[random.below(std::size(interesting))]
                                       : random.below(256)));
    inputs.push_back(s);
  }
  const fs::path decode_in = temp_dir() / "decode_in.bin";
  write_records(decode_in, inputs);
  const std::string decode_out = run_python("decode '" + decode_in.string() + "'");
  pos = 0;
  const std::vector<std::u32string> expected = read_records<std::u32string>(decode_out, pos);
  ASSERT_EQ(expected.size(), inputs.size());
  int64_t mismatches = 0, total_replaced = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const uint32_t expected_replaced = read_u32(decode_out, pos);
    int64_t replaced = -1;
    const std::u32string got = uc::decode_utf8(inputs[i], &replaced);
    total_replaced += replaced;
    if (got == expected[i] && replaced == int64_t(expected_replaced)) continue;
    if (++mismatches <= 10)
      ADD_FAILURE() << "decode_utf8(" << hex_bytes(inputs[i]) << ") = " << hex(got) << " ("
                    << replaced << " replaced), Python " << hex(expected[i]) << " ("
                    << expected_replaced << ")";
  }
  EXPECT_EQ(pos, decode_out.size());
  EXPECT_EQ(mismatches, 0);
  std::cout << "  utf-8: " << inputs.size() << " malformed and random byte strings ("
            << total_replaced << " U+FFFD) decode as Python's 'replace' does\n";
}

TEST(Unicode, AppendUtf8RejectsNonScalarValues) {
  std::string out;
  EXPECT_THROW(uc::append_utf8(out, 0xD800), retort::Error);
  EXPECT_THROW(uc::append_utf8(out, 0x110000), retort::Error);
  uc::append_utf8(out, 0x10FFFF);
  EXPECT_EQ(out, "\xF4\x8F\xBF\xBF");
}

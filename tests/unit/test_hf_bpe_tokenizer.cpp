// The tokenizer.json encoder's parts on cases worked out by hand: the split patterns' pieces
// and a small byte-level BPE file (merge order, ignore_merges, added tokens, NFC, eos). The
// real GPT-2, Llama 3 and Qwen3 files are checked id for id against Hugging Face's
// tokenizers.js in tests/e2e/hf_tokenizer.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/split_pattern.h"
#include "data/unicode.h"

using namespace retort;
namespace stdfs = std::filesystem;

namespace {

std::vector<std::string> pieces(SplitPattern p, const std::string& text, DigitSplit digits = DigitSplit::None) {
  const std::u32string chars = unicode::decode_utf8(text);
  std::vector<std::string> out;
  for (auto [b, e] : split_pieces(p, chars, digits)) out.push_back(unicode::encode_utf8(chars.substr(b, e - b)));
  return out;
}

using Pieces = std::vector<std::string>;

}  // namespace

TEST(SplitPattern, PiecesAsTheRegexWouldCutThem) {
  const std::string text = "Hello world's  123456 !!\n\n  x";
  EXPECT_EQ(pieces(SplitPattern::Llama3, text),
            (Pieces{"Hello", " world", "'s", " ", " ", "123", "456", " !!\n\n", " ", " x"}));
  EXPECT_EQ(pieces(SplitPattern::Qwen2, text),
            (Pieces{"Hello", " world", "'s", " ", " ", "1", "2", "3", "4", "5", "6", " !!\n\n", " ", " x"}));
  EXPECT_EQ(pieces(SplitPattern::Gpt2, text), (Pieces{"Hello", " world", "'s", " ", " 123456", " !!", "\n\n ", " x"}));
  // contractions: any case after Llama 3 / Qwen2's (?i:...), lower case only in GPT-2's
  EXPECT_EQ(pieces(SplitPattern::Llama3, "IT'S it'ſ"), (Pieces{"IT", "'S", " it", "'ſ"}));
  EXPECT_EQ(pieces(SplitPattern::Gpt2, "IT'S we'll"), (Pieces{"IT", "'", "S", " we", "'ll"}));
  // one non-letter before letters joins them (Llama 3 / Qwen2), a CR or LF does not
  EXPECT_EQ(pieces(SplitPattern::Qwen2, "\"quoted\" a\r\n\r\n b"), (Pieces{"\"quoted", "\"", " a", "\r\n\r\n", " b"}));
  EXPECT_EQ(pieces(SplitPattern::Qwen2, "x\ny"), (Pieces{"x", "\n", "y"}));
  // whitespace: the last space before a non-space goes with it; trailing whitespace is one piece
  EXPECT_EQ(pieces(SplitPattern::Llama3, "x   y   "), (Pieces{"x", "  ", " y", "   "}));
  // \s*[\r\n]+ ends at the run's last LF; a tab (not a space) may lead letters in Llama 3's
  EXPECT_EQ(pieces(SplitPattern::Llama3, "x \t\n \ty"), (Pieces{"x", " \t\n", " ", "\ty"}));
  EXPECT_EQ(pieces(SplitPattern::Gpt2, "x \t\n \ty"), (Pieces{"x", " \t\n ", "\t", "y"}));
  EXPECT_EQ(split_pattern_from_regex(R"(\s+)"), std::nullopt);
}

TEST(SplitPattern, TekkenCutsWordsAtCaseChanges) {
  const SplitPattern t = SplitPattern::Tekken;
  // [A]*[B]+ first: upper-case letters lead lower-case ones; a run of capitals alone is [A]+
  EXPECT_EQ(pieces(t, "HelloWorld ABCdef ABC def"), (Pieces{"Hello", "World", " ABCdef", " ABC", " def"}));
  // no contractions: the apostrophe leads the letters after it
  EXPECT_EQ(pieces(t, "I'm x"), (Pieces{"I", "'m", " x"}));
  // digits one at a time; a slash leads letters, and ends a run of symbols with CR/LF
  EXPECT_EQ(pieces(t, "a/b //\nc 12"), (Pieces{"a", "/b", " //\n", "c", " ", "1", "2"}));
  // [A]* gives back Lo letters (in both classes) until a [B] follows: 中文 then ABC
  EXPECT_EQ(pieces(t, "中文ABC"), (Pieces{"中文", "ABC"}));
  // marks belong to both classes: e + U+0301 ends a word; U+0301 x is a word a space leads
  EXPECT_EQ(pieces(t, "Cafe\u0301 \u0301x \u0301"), (Pieces{"Cafe\u0301", " \u0301x", " \u0301"}));
  // titlecase (U+01C5 Lt) and modifier letters (U+02B0 Lm) lead lower case
  EXPECT_EQ(pieces(t, "\u01C5emal \u02B0a"), (Pieces{"\u01C5emal", " \u02B0a"}));
  EXPECT_EQ(split_pattern_from_regex(split_pattern_regex(t)), t);
}

TEST(SplitPattern, DigitsCutAroundNumbersBeforeThePattern) {
  const std::string text = "abc 123x ½";
  EXPECT_EQ(pieces(SplitPattern::Gpt2, text), (Pieces{"abc", " 123", "x", " ½"}));
  // the pattern sees "abc " alone: its space is trailing whitespace, no longer the number's
  EXPECT_EQ(pieces(SplitPattern::Gpt2, text, DigitSplit::Individual),
            (Pieces{"abc", " ", "1", "2", "3", "x", " ", "½"}));
  EXPECT_EQ(pieces(SplitPattern::Gpt2, text, DigitSplit::Contiguous), (Pieces{"abc", " ", "123", "x", " ", "½"}));
  // each cut piece is matched on its own: Llama 3's \p{N}{1,3} still splits a contiguous run
  EXPECT_EQ(pieces(SplitPattern::Llama3, "x12345", DigitSplit::Contiguous), (Pieces{"x", "123", "45"}));
}

namespace {

// GPT-2's byte stand-ins (hf_bpe_tokenizer.h), as the vocabulary's first 256 entries, id = byte.
nlohmann::json byte_vocab() {
  nlohmann::json v = nlohmann::json::object();
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    std::string s;
    unicode::append_utf8(s, printable ? char32_t(b) : next++);
    v[s] = b;
  }
  return v;
}

// A tokenizer.json with the GPT-2 pattern, merges a+a (rank 0), b+c (1), a+b (2), the
// vocabulary entry "abc" no merge makes, and added tokens <x>, <xy>, <|endoftext|>.
std::string write_small_tokenizer(const std::string& name, bool ignore_merges, bool nfc) {
  nlohmann::json vocab = byte_vocab();
  vocab["aa"] = 256, vocab["bc"] = 257, vocab["ab"] = 258, vocab["abc"] = 259;
  nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"ignore_merges", ignore_merges},
                 {"merges", {{"a", "a"}, "b c", {"a", "b"}}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"added_tokens", {{{"id", 300}, {"content", "<x>"}}, {{"id", 301}, {"content", "<xy>"}},
                        {{"id", 302}, {"content", "<|endoftext|>"}, {"special", true}}}}};
  if (nfc) j["normalizer"] = {{"type", "NFC"}};
  const stdfs::path dir = stdfs::path(RETORT_BINARY_DIR) / "test_tmp" / "hf_bpe";
  stdfs::create_directories(dir);
  const std::string path = (dir / (name + ".json")).string();
  fs::write_file_atomic(path, j.dump());
  return path;
}

using Ids = std::vector<int32_t>;

}  // namespace

TEST(HfBpeTokenizer, MergesByRankThenLeftmost) {
  const HfBpeTokenizer tok = HfBpeTokenizer::load(write_small_tokenizer("plain", false, false));
  // aaab: a+a at 0 and at 1 share rank 0, the leftmost goes first; then a+b (the a at 2 is free)
  EXPECT_EQ(tok.encode("aaab"), (Ids{256, 258}));
  EXPECT_EQ(tok.encode("abc"), (Ids{'a', 257}));      // b+c outranks a+b
  EXPECT_EQ(tok.encode(" ab"), (Ids{' ', 258}));       // one piece: the space's stand-in Ġ, then ab
  // added tokens: leftmost, longest; the text between them is encoded alone
  EXPECT_EQ(tok.encode("a<xy>a<x>aa<|endoftext|>"), (Ids{'a', 301, 'a', 300, 256, 302}));
  EXPECT_EQ(tok.eos_id(), 302);
  EXPECT_EQ(tok.vocab_size(), 303);
  // without NFC, e + U+0301 stays two characters (3 bytes); with it, é (2 bytes)
  EXPECT_EQ(tok.encode("e\xCC\x81"), (Ids{'e', 0xCC, 0x81}));
  const HfBpeTokenizer nfc = HfBpeTokenizer::load(write_small_tokenizer("nfc", false, true));
  EXPECT_EQ(nfc.encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));
  // invalid UTF-8 reads as U+FFFD (EF BF BD)
  EXPECT_EQ(tok.encode("\xFF"), (Ids{0xEF, 0xBF, 0xBD}));
}

TEST(HfBpeTokenizer, IgnoreMergesTakesWholeVocabularyPieces) {
  const HfBpeTokenizer with = HfBpeTokenizer::load(write_small_tokenizer("ignore", true, false));
  EXPECT_EQ(with.encode("abc"), (Ids{259}));  // in the vocabulary as it is
  EXPECT_EQ(with.encode("aaab"), (Ids{256, 258}));
  const HfBpeTokenizer without = HfBpeTokenizer::load(write_small_tokenizer("merge", false, false));
  EXPECT_EQ(without.encode("abc"), (Ids{'a', 257}));
}

// The three pre-tokenizer patterns as hand-written matchers (see split_pattern.h). Each
// alternative returns the length of its match at position i (0: no match); the first
// alternative that matches wins, as in the regex.
#include "data/split_pattern.h"

#include "data/unicode.h"

namespace retort {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_crlf(char32_t c) { return c == U'\r' || c == U'\n'; }
// [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, ...
bool is_other(char32_t c) { return !unicode::is_space(c) && !unicode::is_letter(c) && !unicode::is_number(c); }

class Matcher {
 public:
  Matcher(SplitPattern p, std::u32string_view t) : p_(p), t_(t) {}

  size_t match_at(size_t i) const {
    if (size_t n = contraction(i)) return n;
    if (p_ == SplitPattern::Gpt2) {
      if (size_t n = space_then_run(i, unicode::is_letter)) return n;   //  ?\p{L}+
      if (size_t n = space_then_run(i, unicode::is_number)) return n;   //  ?\p{N}+
      if (size_t n = space_then_run(i, is_other)) return n;             //  ?[^\s\p{L}\p{N}]+
    } else {
      if (size_t n = letters_after_one_other(i)) return n;              // [^\r\n\p{L}\p{N}]?\p{L}+
      if (size_t n = run(i, unicode::is_number, p_ == SplitPattern::Llama3 ? 3 : 1)) return n;
      if (size_t n = space_then_run(i, is_other)) return n + run(i + n, is_crlf);  // ...[\r\n]*
      if (size_t n = spaces_through_last_newline(i)) return n;          // \s*[\r\n]+
    }
    const size_t w = run(i, unicode::is_space);
    if (w == 0) return 0;
    if (i + w < t_.size() && w > 1) return w - 1;  // \s+(?!\S): leave the last space to the next piece
    return w;                                      // \s+
  }

 private:
  // Length of the run of chars satisfying `pred` from i (at most `limit`).
  template <class Pred>
  size_t run(size_t i, Pred pred, size_t limit = SIZE_MAX) const {
    size_t j = i;
    while (j < t_.size() && j - i < limit && pred(t_[j])) ++j;
    return j - i;
  }

  // '(s|t|re|ve|m|ll|d), case-insensitive except for GPT-2 (ſ, U+017F, folds to s).
  size_t contraction(size_t i) const {
    if (t_[i] != U'\'' || i + 1 >= t_.size()) return 0;
    const bool fold = p_ != SplitPattern::Gpt2;
    auto is = [&](size_t k, char lower) {
      if (k >= t_.size()) return false;
      const char32_t c = t_[k];
      if (c == char32_t(lower)) return true;
      return fold && (c == char32_t(lower - 'a' + 'A') || (lower == 's' && c == U'\u017F'));
    };
    if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return 2;
    if ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
        (is(i + 1, 'l') && is(i + 2, 'l')))
      return 3;
    return 0;
  }

  // " ?X+": an optional U+0020 then a run of X (the space only when an X follows it).
  template <class Pred>
  size_t space_then_run(size_t i, Pred pred) const {
    const size_t lead = t_[i] == U' ' && i + 1 < t_.size() && pred(t_[i + 1]) ? 1 : 0;
    const size_t n = run(i + lead, pred);
    return n == 0 ? 0 : lead + n;
  }

  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t letters_after_one_other(size_t i) const {
    const char32_t c = t_[i];
    const bool lead = !is_crlf(c) && !unicode::is_letter(c) && !unicode::is_number(c) &&
                      i + 1 < t_.size() && unicode::is_letter(t_[i + 1]);
    const size_t n = run(i + lead, unicode::is_letter);
    return n == 0 ? 0 : lead + n;
  }

  // \s*[\r\n]+: greedy \s* backs off to the last CR or LF of the whitespace run, which [\r\n]+
  // then takes; the match ends just after it.
  size_t spaces_through_last_newline(size_t i) const {
    const size_t w = run(i, unicode::is_space);
    for (size_t k = w; k > 0; --k)
      if (is_crlf(t_[i + k - 1])) return k;
    return 0;
  }

  SplitPattern p_;
  std::u32string_view t_;
};

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2})
    if (regex == split_pattern_regex(p)) return p;
  return std::nullopt;
}

std::string_view split_pattern_regex(SplitPattern p) {
  return p == SplitPattern::Gpt2 ? kGpt2Regex : p == SplitPattern::Llama3 ? kLlama3Regex : kQwen2Regex;
}

const char* split_pattern_name(SplitPattern p) {
  return p == SplitPattern::Gpt2 ? "gpt2" : p == SplitPattern::Llama3 ? "llama3" : "qwen2";
}

std::vector<std::pair<size_t, size_t>> split_pieces(SplitPattern p, std::u32string_view text) {
  std::vector<std::pair<size_t, size_t>> pieces;
  const Matcher m(p, text);
  size_t gap = 0;  // start of the unmatched text before i (Isolated keeps it as a piece)
  for (size_t i = 0; i < text.size();) {
    const size_t n = m.match_at(i);
    if (n == 0) {
      ++i;
      continue;
    }
    if (gap < i) pieces.emplace_back(gap, i);
    pieces.emplace_back(i, i + n);
    i += n;
    gap = i;
  }
  if (gap < text.size()) pieces.emplace_back(gap, text.size());
  return pieces;
}

}  // namespace retort

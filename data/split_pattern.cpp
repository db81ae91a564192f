// The pre-tokenizer patterns as hand-written matchers (see split_pattern.h). Each
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
constexpr std::string_view kTekkenRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_crlf(char32_t c) { return c == U'\r' || c == U'\n'; }
bool is_crlf_or_slash(char32_t c) { return is_crlf(c) || c == U'/'; }
// [^\r\n\p{L}\p{N}]: the optional character before a word
bool is_word_lead(char32_t c) { return !is_crlf(c) && !unicode::is_letter(c) && !unicode::is_number(c); }
// Tekken's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}]
bool is_upper_part(char32_t c) { return (unicode::is_letter(c) && !unicode::is_lower(c)) || unicode::is_mark(c); }
bool is_lower_part(char32_t c) { return (unicode::is_letter(c) && !unicode::is_upper_or_title(c)) || unicode::is_mark(c); }
// [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, ...
bool is_other(char32_t c) { return !unicode::is_space(c) && !unicode::is_letter(c) && !unicode::is_number(c); }

class Matcher {
 public:
  Matcher(SplitPattern p, std::u32string_view t) : p_(p), t_(t) {}

  size_t match_at(size_t i) const {
    if (p_ == SplitPattern::Tekken) {
      if (size_t n = after_word_lead(i, &Matcher::upper_then_lower)) return n;  // P?[A]*[B]+
      if (size_t n = after_word_lead(i, &Matcher::upper_run_then_lower)) return n;  // P?[A]+[B]*
      if (unicode::is_number(t_[i])) return 1;                                  // \p{N}
      if (size_t n = space_then_run(i, is_other)) return n + run(i + n, is_crlf_or_slash);  // ...[\r\n/]*
      if (size_t n = spaces_through_last_newline(i)) return n;                  // \s*[\r\n]+
      return trailing_spaces(i);
    }
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
    return trailing_spaces(i);
  }

 private:
  // \s+(?!\S)|\s+
  size_t trailing_spaces(size_t i) const {
    const size_t w = run(i, unicode::is_space);
    if (w == 0) return 0;
    if (i + w < t_.size() && w > 1) return w - 1;  // \s+(?!\S): leave the last space to the next piece
    return w;                                      // \s+
  }

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
    const bool lead = is_word_lead(t_[i]) && i + 1 < t_.size() && unicode::is_letter(t_[i + 1]);
    const size_t n = run(i + lead, unicode::is_letter);
    return n == 0 ? 0 : lead + n;
  }

  // [^\r\n\p{L}\p{N}]?W: W at i + 1 after a lead character at i, else W at i (the optional
  // character is tried first, then left out).
  size_t after_word_lead(size_t i, size_t (Matcher::*word)(size_t) const) const {
    if (is_word_lead(t_[i]) && i + 1 < t_.size())
      if (size_t n = (this->*word)(i + 1)) return 1 + n;
    return (this->*word)(i);
  }

  // [A]*[B]+ at i: greedy [A]* gives back one character at a time until a B follows it (A and B
  // share Lm, Lo and M), then [B]+ takes the whole run of B.
  size_t upper_then_lower(size_t i) const {
    for (size_t k = run(i, is_upper_part) + 1; k-- > 0;)
      if (i + k < t_.size() && is_lower_part(t_[i + k])) return k + run(i + k, is_lower_part);
    return 0;
  }

  // [A]+[B]* at i
  size_t upper_run_then_lower(size_t i) const {
    const size_t a = run(i, is_upper_part);
    return a == 0 ? 0 : a + run(i + a, is_lower_part);
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

// The pattern's pieces of text[b, e), matched as a text of its own, appended to `pieces`.
void split_apart(SplitPattern p, std::u32string_view text, size_t b, size_t e,
                 std::vector<std::pair<size_t, size_t>>& pieces) {
  const Matcher m(p, text.substr(b, e - b));
  size_t gap = 0;  // start of the unmatched text before i (Isolated keeps it as a piece)
  for (size_t i = 0; i < e - b;) {
    const size_t n = m.match_at(i);
    if (n == 0) {
      ++i;
      continue;
    }
    if (gap < i) pieces.emplace_back(b + gap, b + i);
    pieces.emplace_back(b + i, b + i + n);
    i += n;
    gap = i;
  }
  if (b + gap < e) pieces.emplace_back(b + gap, e);
}

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2, SplitPattern::Tekken})
    if (regex == split_pattern_regex(p)) return p;
  return std::nullopt;
}

std::string_view split_pattern_regex(SplitPattern p) {
  switch (p) {
    case SplitPattern::Gpt2: return kGpt2Regex;
    case SplitPattern::Llama3: return kLlama3Regex;
    case SplitPattern::Qwen2: return kQwen2Regex;
    case SplitPattern::Tekken: return kTekkenRegex;
  }
  return {};
}

const char* split_pattern_name(SplitPattern p) {
  switch (p) {
    case SplitPattern::Gpt2: return "gpt2";
    case SplitPattern::Llama3: return "llama3";
    case SplitPattern::Qwen2: return "qwen2";
    case SplitPattern::Tekken: return "tekken";
  }
  return "";
}

std::vector<std::pair<size_t, size_t>> split_pieces(SplitPattern p, std::u32string_view text,
                                                    DigitSplit digits) {
  std::vector<std::pair<size_t, size_t>> pieces;
  if (digits == DigitSplit::None) {
    split_apart(p, text, 0, text.size(), pieces);
    return pieces;
  }
  for (size_t i = 0; i < text.size();) {  // alternate runs of non-numbers and numbers
    const bool number = unicode::is_number(text[i]);
    size_t j = i + 1;
    while (j < text.size() && unicode::is_number(text[j]) == number) ++j;
    if (number && digits == DigitSplit::Individual)
      for (size_t k = i; k < j; ++k) pieces.emplace_back(k, k + 1);
    else
      split_apart(p, text, i, j, pieces);
    i = j;
  }
  return pieces;
}

}  // namespace retort

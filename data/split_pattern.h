// The pre-tokenizer patterns of byte-level BPE tokenizers (Hugging Face tokenizer.json, `Split`
// with behavior Isolated, or ByteLevel with use_regex), matched by hand with the semantics of
// the regex engine those files are written for (Oniguruma: leftmost-first alternation, greedy
// quantifiers with backtracking; \s, \p{L}, \p{N} as in data/unicode.h):
//
//   Gpt2     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2    the same with \p{N} for \p{N}{1,3} (Qwen2, Qwen2.5, Qwen3)
//   Tekken   [^\r\n\p{L}\p{N}]?[A]*[B]+|[^\r\n\p{L}\p{N}]?[A]+[B]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
//            \s*[\r\n]+|\s+(?!\S)|\s+   with A = \p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M} and
//            B = \p{Ll}\p{Lm}\p{Lo}\p{M} (Mistral's Tekken: Mistral NeMo, Ministral, Mistral Small 3)
//
// A text splits into the matches and the text between them (Isolated): consecutive pieces that
// cover it exactly. A `Digits` pre-tokenizer before the pattern (SmolLM, StarCoder2) first cuts
// the text around its numbers (\p{N}, as the tokenizers library's char::is_numeric): each number
// character a piece of its own (individual_digits) or each run of them one piece; the pattern
// then splits each piece apart.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace retort {

enum class SplitPattern { Gpt2, Llama3, Qwen2, Tekken };
enum class DigitSplit { None, Individual, Contiguous };

// The pattern a tokenizer.json regex spells, or nullopt for any other; and the regex of each.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);
std::string_view split_pattern_regex(SplitPattern p);
const char* split_pattern_name(SplitPattern p);

// [begin, end) code-point ranges of the pieces of `text`, in order, covering it.
std::vector<std::pair<size_t, size_t>> split_pieces(SplitPattern p, std::u32string_view text,
                                                    DigitSplit digits = DigitSplit::None);

}  // namespace retort

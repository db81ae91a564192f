// Byte-level BPE tokenizers read from a Hugging Face tokenizer.json (the `tokenizers` library's
// file: GPT-2, Llama 3, Qwen2 / Qwen2.5 / Qwen3, Mistral's Tekken, SmolLM2 / StarCoder2 and their
// derivatives), encoding text to the ids that library gives with add_special_tokens=False:
//   1. added tokens (`added_tokens`) found in the text, leftmost and longest first, are their
//      ids; the text between them goes through 2-5;
//   2. normalizer: none, or NFC;
//   3. pre-tokenizer: the pieces of the file's split pattern, after its Digits cuts if it has
//      them (data/split_pattern.h);
//   4. byte level: each piece's UTF-8 bytes as the 256 printable stand-ins of GPT-2
//      (bytes 33-126, 161-172, 174-255 as themselves, the other 68 as U+0100 onwards);
//   5. BPE: the adjacent pair of lowest merge rank is merged, leftmost first on equal ranks,
//      until no pair has a rank; with `ignore_merges` a piece that is itself in the vocabulary
//      is that one token.
// Anything else in a file (other normalizers or pre-tokenizers, byte fallback, dropout, added
// tokens with lstrip / rstrip / single_word) is refused when loading, naming the file and field.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace retort {

class HfBpeTokenizer {
 public:
  // Throws retort::Error naming the file (and the field) when it is not a tokenizer.json this
  // class encodes exactly.
  static HfBpeTokenizer load(const std::string& path);

  HfBpeTokenizer(HfBpeTokenizer&&) noexcept;
  HfBpeTokenizer& operator=(HfBpeTokenizer&&) noexcept;
  ~HfBpeTokenizer();

  int64_t vocab_size() const;  // largest id + 1 (vocabulary and added tokens)
  // The document separator retort appends: the first of <|endoftext|> (GPT-2, Qwen),
  // <|end_of_text|> (Llama 3), </s>, <eos> among the added tokens; -1 if none.
  int32_t eos_id() const;
  std::string eos_token() const;
  int32_t added_token_id(std::string_view content) const;  // -1 if no added token is `content`
  std::string describe() const;  // "pattern qwen2, NFC, 151387 merges, 26 added tokens"
  // Thread-safe. Invalid UTF-8 is read as U+FFFD (once per maximal invalid subpart).
  std::vector<int32_t> encode(std::string_view text) const;

 private:
  struct Impl;
  explicit HfBpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace retort

// SentencePiece BPE tokenizer: training from in-memory documents, encode, decode.
//
// Reserved ids (fixed for every retort tokenizer):
//   0 = <unk>, 1 = <s> (bos), 2 = </s> (eos: appended after every document), no pad id.
// Byte fallback is on (any UTF-8 text encodes without <unk>; the 256 byte pieces
// <0x00>..<0xFF> follow the specials), digits are split, and normalisation is the
// identity with whitespace kept, so decode(encode(text)) == text for valid UTF-8.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace retort {

struct TokenizerTrainOptions {
  int64_t vocab_size = 4096;
  double character_coverage = 0.9995;
  int64_t max_sentence_length = 16384;  // bytes; longer training lines are skipped
};

class Tokenizer {
 public:
  static constexpr int kUnkId = 0, kBosId = 1, kEosId = 2;

  // Trains on `docs`, each split into lines (SentencePiece "sentences"), and returns the
  // serialized model (the bytes of a tokenizer.model file). Deterministic for fixed input.
  // Throws retort::Error with SentencePiece's message on failure.
  static std::string train(const std::vector<std::string_view>& docs,
                           const TokenizerTrainOptions& opt);
  // Load a tokenizer.model file / serialized model bytes.
  static Tokenizer load(const std::string& path);
  static Tokenizer from_serialized(const std::string& model_bytes);

  Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  int64_t vocab_size() const;
  int eos_id() const;
  int32_t piece_id(std::string_view piece) const;  // -1 if no piece is `piece`
  // Thread-safe (const); no bos/eos added.
  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string id_to_piece(int32_t id) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace retort

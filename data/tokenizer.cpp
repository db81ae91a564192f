// SentencePiece training via SentenceIterator (no temporary text files) and processing.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

#include "core/check.h"

namespace retort {
namespace {

// Yields the non-blank lines of each document in order.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string_view>& docs) : docs_(docs) { advance(); }
  bool done() const override { return doc_ >= docs_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void advance() {
    while (doc_ < docs_.size()) {
      std::string_view d = docs_[doc_];
      if (pos_ >= d.size()) { ++doc_; pos_ = 0; continue; }
      size_t nl = d.find('\n', pos_);
      size_t end = nl == std::string_view::npos ? d.size() : nl;
      std::string_view line = d.substr(pos_, end - pos_);
      pos_ = end + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      line_.assign(line);
      return;
    }
  }
  const std::vector<std::string_view>& docs_;
  size_t doc_ = 0, pos_ = 0;
  std::string line_;
};

}  // namespace

std::string Tokenizer::train(const std::vector<std::string_view>& docs,
                             const TokenizerTrainOptions& opt) {
  std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"pad_id", "-1"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"max_sentence_length", std::to_string(opt.max_sentence_length)},
      {"num_threads", "1"},  // deterministic
      {"minloglevel", "2"},  // quiet: warnings and errors only
  };
  LineIterator it(docs);
  std::string model;
  auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!st.ok()) throw Error(str_cat("tokenizer training failed: ", st.ToString()));
  return model;
}

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  Tokenizer t;
  auto st = t.sp_->Load(path);
  if (!st.ok()) throw Error(str_cat(path, ": cannot load tokenizer model: ", st.ToString()));
  return t;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_bytes) {
  Tokenizer t;
  auto st = t.sp_->LoadFromSerializedProto(model_bytes);
  if (!st.ok()) throw Error(str_cat("cannot load tokenizer model: ", st.ToString()));
  return t;
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

int32_t Tokenizer::piece_id(std::string_view piece) const {
  const int id = sp_->PieceToId(piece);  // the unknown piece's id when there is none
  return sp_->IdToPiece(id) == piece ? id : -1;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto st = sp_->Encode(text, &ids);
  if (!st.ok()) throw Error(str_cat("tokenizer encode failed: ", st.ToString()));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  for (int id : v)
    if (id < 0 || id >= sp_->GetPieceSize())
      throw Error(str_cat("tokenizer decode: id ", id, " outside [0, ", sp_->GetPieceSize(), ")"));
  std::string out;
  auto st = sp_->Decode(v, &out);
  if (!st.ok()) throw Error(str_cat("tokenizer decode failed: ", st.ToString()));
  return out;
}

std::string Tokenizer::id_to_piece(int32_t id) const { return sp_->IdToPiece(id); }

}  // namespace retort

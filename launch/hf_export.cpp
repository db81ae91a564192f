#include "launch/hf_export.h"

#include <filesystem>

#include "core/fs.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/tokenizer.h"
#include "models/hf_config.h"

namespace retort {

namespace {

// tokenizer_config.json for a retort SentencePiece model read by transformers' LlamaTokenizer:
// the same pieces and normalisation (byte fallback, split digits, a dummy prefix), no <s>
// added since retort's documents are separated by </s> alone.
nlohmann::json tokenizer_config_json(int64_t seq_len) {
  return {{"tokenizer_class", "LlamaTokenizer"},
          {"unk_token", "<unk>"},
          {"bos_token", "<s>"},
          {"eos_token", "</s>"},
          {"pad_token", nullptr},
          {"add_bos_token", false},
          {"add_eos_token", false},
          {"legacy", true},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", seq_len}};
}

// tokenizer_config.json for a Hugging Face tokenizer.json retort encoded data with
// (data/hf_bpe_tokenizer.h): its eos separates documents; nothing is added around them.
nlohmann::json fast_tokenizer_config_json(const std::string& eos_token, int64_t seq_len) {
  return {{"tokenizer_class", "PreTrainedTokenizerFast"},
          {"eos_token", eos_token},
          {"bos_token", nullptr},
          {"pad_token", nullptr},
          {"add_bos_token", false},
          {"add_eos_token", false},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", seq_len}};
}

}  // namespace

void write_hf_export(const LoadedModel& loaded, const HfExportOptions& opt,
                     const std::string& out_dir) {
  const ModelConfig& mc = loaded.model->config();
  int64_t bos_id = -1, eos_id = -1;
  std::string tokenizer_bytes, tokenizer_name = "tokenizer.model";
  nlohmann::json tokenizer_config = tokenizer_config_json(mc.seq_len);
  if (std::filesystem::path(opt.tokenizer).extension() == ".json") {
    const HfBpeTokenizer tok = HfBpeTokenizer::load(opt.tokenizer);
    if (tok.vocab_size() > mc.vocab_size)
      throw Error(str_cat(opt.tokenizer, ": ", tok.vocab_size(), " ids, more than the model's vocab_size ",
                          mc.vocab_size, " (not this model's tokenizer)"));
    if (tok.eos_id() < 0) throw Error(str_cat(opt.tokenizer, ": no end-of-text token (not a tokenizer retort encodes with)"));
    eos_id = tok.eos_id();
    tokenizer_bytes = fs::read_file(opt.tokenizer);
    tokenizer_name = "tokenizer.json";
    tokenizer_config = fast_tokenizer_config_json(tok.eos_token(), mc.seq_len);
  } else if (!opt.tokenizer.empty()) {
    const Tokenizer tok = Tokenizer::load(opt.tokenizer);
    if (tok.vocab_size() > mc.vocab_size)
      throw Error(str_cat(opt.tokenizer, ": ", tok.vocab_size(), " pieces, more than the model's vocab_size ",
                          mc.vocab_size, " (not this model's tokenizer)"));
    if (tok.id_to_piece(Tokenizer::kBosId) != "<s>" || tok.eos_id() != Tokenizer::kEosId)
      throw Error(str_cat(opt.tokenizer, ": not a retort tokenizer (id 1 must be <s>, id 2 </s>)"));
    bos_id = Tokenizer::kBosId;
    eos_id = Tokenizer::kEosId;
    tokenizer_bytes = fs::read_file(opt.tokenizer);
  }

  std::vector<NamedTensor> tensors;
  for (const auto& p : loaded.model->parameters()) tensors.push_back({p.name, p.value});

  fs::write_dir_via_temp(out_dir, [&](const std::string& tmp_dir, const std::string& final_dir) {
    const std::filesystem::path tmp(tmp_dir);
    write_safetensors((tmp / "model.safetensors").string(), tensors, opt.dtype);
    fs::write_file_atomic((tmp / "config.json").string(),
                          hf_config_json(mc, opt.dtype == SafetensorsDType::BF16 ? "bfloat16" : "float32",
                                         bos_id, eos_id).dump(2) + "\n");
    if (!tokenizer_bytes.empty()) {
      fs::write_file_atomic((tmp / tokenizer_name).string(), tokenizer_bytes);
      fs::write_file_atomic((tmp / "tokenizer_config.json").string(), tokenizer_config.dump(2) + "\n");
    }
    fs::rename_durable(tmp_dir, final_dir);
  });
}

}  // namespace retort

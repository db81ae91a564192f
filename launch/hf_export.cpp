#include "launch/hf_export.h"

#include <cstdio>
#include <filesystem>

#include "core/fs.h"
#include "core/sha256.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/tokenizer.h"
#include "models/hf_config.h"

namespace retort {

namespace {

using json = nlohmann::json;

// What the training data had before each document: tokenize.json beside the tokenizer file
// records `bos` when tokenize.bos_token put one there. Unknown without a tokenize.json of this
// very file (its tokenizer_sha256).
struct DataBos {
  bool known = false;
  std::string token;  // empty: nothing before a document
  int64_t id = -1;
};

DataBos data_bos(const std::string& tokenizer_path) {
  const std::string path = (std::filesystem::path(tokenizer_path).parent_path() / "tokenize.json").string();
  DataBos out;
  if (!std::filesystem::exists(path)) return out;
  json j;
  try {
    j = json::parse(fs::read_file(path));
  } catch (const json::exception& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || j.value("tokenizer_sha256", "") != sha256_hex(fs::read_file(tokenizer_path))) {
    std::fprintf(stderr, "warning: %s describes another tokenizer than %s (tokenizer_sha256); not read\n",
                 path.c_str(), tokenizer_path.c_str());
    return out;
  }
  out.known = true;
  if (j.contains("bos")) {
    out.token = j["bos"].value("token", "");
    out.id = j["bos"].value("id", int64_t{-1});
    if (out.token.empty() || out.id < 0) throw Error(path + ": key 'bos' must hold a token and its id");
  }
  return out;
}

// What a tokenizer.json post-processor puts around one text, "$A" standing for the text:
// TemplateProcessing its `single` template, Bert/RobertaProcessing [cls, $A, sep], ByteLevel
// nothing; a Sequence applies its processors in order.
std::vector<std::string> single_layout(const json& pp, const std::string& file) {
  std::vector<std::string> layout = {"$A"};
  if (pp.is_null()) return layout;
  const std::string type = pp.value("type", "");
  if (type == "Sequence") {
    for (const json& p : pp.value("processors", json::array())) {
      std::vector<std::string> inner = single_layout(p, file), next;
      for (const std::string& item : inner) {
        if (item == "$A") next.insert(next.end(), layout.begin(), layout.end());
        else next.push_back(item);
      }
      layout = next;
    }
    return layout;
  }
  if (type == "ByteLevel") return layout;
  if (type == "BertProcessing" || type == "RobertaProcessing")
    return {pp.at("cls").at(0).get<std::string>(), "$A", pp.at("sep").at(0).get<std::string>()};
  if (type == "TemplateProcessing") {
    layout.clear();
    for (const json& item : pp.value("single", json::array())) {
      if (item.contains("SpecialToken")) layout.push_back(item["SpecialToken"].value("id", ""));
      else if (item.contains("Sequence")) layout.push_back("$A");
    }
    return layout;
  }
  throw Error(str_cat(file, ": post_processor type '", type, "' unknown (ByteLevel, TemplateProcessing, ",
                      "BertProcessing, RobertaProcessing or a Sequence of them)"));
}

bool adds_tokens(const json& pp) {
  const std::string type = pp.value("type", "");
  return type == "TemplateProcessing" || type == "BertProcessing" || type == "RobertaProcessing";
}

// The post-processor that adds exactly `bos` (or nothing) before a text: `pp` without its
// token-adding processors, then a TemplateProcessing of bos when there is one.
json post_processor_for(const json& pp, const DataBos& bos) {
  json kept = json::array();
  if (!pp.is_null() && pp.value("type", "") == "Sequence") {
    for (const json& p : pp["processors"])
      if (!adds_tokens(p)) kept.push_back(p);
  } else if (!pp.is_null() && !adds_tokens(pp)) {
    kept.push_back(pp);
  }
  if (!bos.token.empty()) {
    auto special = [&](int type_id) { return json{{"SpecialToken", {{"id", bos.token}, {"type_id", type_id}}}}; };
    auto text = [](const char* id, int type_id) { return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    kept.push_back({{"type", "TemplateProcessing"},
                    {"single", {special(0), text("A", 0)}},
                    {"pair", {special(0), text("A", 0), special(1), text("B", 1)}},
                    {"special_tokens", {{bos.token, {{"id", bos.token}, {"ids", {bos.id}}, {"tokens", {bos.token}}}}}}});
  }
  if (kept.empty()) return nullptr;
  if (kept.size() == 1) return kept[0];
  return {{"type", "Sequence"}, {"processors", kept}};
}

std::string join_layout(const std::vector<std::string>& layout) {
  std::string s;
  for (const std::string& item : layout) s += (s.empty() ? "" : " ") + (item == "$A" ? "TEXT" : item);
  return s;
}

// tokenizer_config.json for a retort SentencePiece model read by transformers' LlamaTokenizer:
// the same pieces and normalisation (byte fallback, split digits, a dummy prefix); <s> added
// only when the training data had it (tokenize.bos_token), since retort's documents are
// otherwise separated by </s> alone.
json tokenizer_config_json(int64_t seq_len, const DataBos& bos) {
  return {{"tokenizer_class", "LlamaTokenizer"},
          {"unk_token", "<unk>"},
          {"bos_token", bos.token.empty() ? "<s>" : bos.token},
          {"eos_token", "</s>"},
          {"pad_token", nullptr},
          {"add_bos_token", !bos.token.empty()},
          {"add_eos_token", false},
          {"legacy", true},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", seq_len}};
}

// tokenizer_config.json for a Hugging Face tokenizer.json retort encoded data with
// (data/hf_bpe_tokenizer.h): its eos separates documents; the bos the data had, if any, is
// what its post-processor adds.
json fast_tokenizer_config_json(const std::string& eos_token, int64_t seq_len, const DataBos& bos) {
  return {{"tokenizer_class", "PreTrainedTokenizerFast"},
          {"eos_token", eos_token},
          {"bos_token", bos.token.empty() ? json(nullptr) : json(bos.token)},
          {"pad_token", nullptr},
          {"add_bos_token", !bos.token.empty()},
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
  json tokenizer_config;
  if (std::filesystem::path(opt.tokenizer).extension() == ".json") {
    const HfBpeTokenizer tok = HfBpeTokenizer::load(opt.tokenizer);
    if (tok.vocab_size() > mc.vocab_size)
      throw Error(str_cat(opt.tokenizer, ": ", tok.vocab_size(), " ids, more than the model's vocab_size ",
                          mc.vocab_size, " (not this model's tokenizer)"));
    if (tok.eos_id() < 0) throw Error(str_cat(opt.tokenizer, ": no end-of-text token (not a tokenizer retort encodes with)"));
    eos_id = tok.eos_id();
    tokenizer_bytes = fs::read_file(opt.tokenizer);
    tokenizer_name = "tokenizer.json";
    // transformers encodes with the post-processor's special tokens by default: make them the
    // data's (a bos before each document, or nothing), leaving the file unchanged when they are.
    const DataBos bos = data_bos(opt.tokenizer);
    json file = json::parse(tokenizer_bytes);
    const json pp = file.value("post_processor", json(nullptr));
    const std::vector<std::string> layout = single_layout(pp, opt.tokenizer);
    const std::vector<std::string> wanted =
        bos.token.empty() ? std::vector<std::string>{"$A"} : std::vector<std::string>{bos.token, "$A"};
    if (!bos.known && layout != wanted) {
      std::fprintf(stderr, "warning: %s: its post-processor encodes a text as '%s', and no tokenize.json of this file "
                   "says what the training data had before each document (pass tokenize.out's tokenizer.json)\n",
                   opt.tokenizer.c_str(), join_layout(layout).c_str());
    } else if (bos.known && layout != wanted) {
      file["post_processor"] = post_processor_for(pp, bos);
      tokenizer_bytes = file.dump(2) + "\n";
      std::printf("export: tokenizer.json: post-processor now encodes a text as '%s' (was '%s'), as the training "
                  "data had it (tokenize.json)\n", join_layout(wanted).c_str(), join_layout(layout).c_str());
    }
    bos_id = bos.id;
    tokenizer_config = fast_tokenizer_config_json(tok.eos_token(), mc.seq_len, bos);
  } else if (!opt.tokenizer.empty()) {
    const Tokenizer tok = Tokenizer::load(opt.tokenizer);
    if (tok.vocab_size() > mc.vocab_size)
      throw Error(str_cat(opt.tokenizer, ": ", tok.vocab_size(), " pieces, more than the model's vocab_size ",
                          mc.vocab_size, " (not this model's tokenizer)"));
    if (tok.id_to_piece(Tokenizer::kBosId) != "<s>" || tok.eos_id() != Tokenizer::kEosId)
      throw Error(str_cat(opt.tokenizer, ": not a retort tokenizer (id 1 must be <s>, id 2 </s>)"));
    const DataBos bos = data_bos(opt.tokenizer);
    bos_id = bos.token.empty() ? Tokenizer::kBosId : bos.id;
    eos_id = Tokenizer::kEosId;
    tokenizer_bytes = fs::read_file(opt.tokenizer);
    tokenizer_config = tokenizer_config_json(mc.seq_len, bos);
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

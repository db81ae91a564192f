#include "launch/hf_tokenizer_export.h"

#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/tokenizer.h"

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
    for (const json& p : pp.value("processors", json::array()))
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

HfTokenizerFiles hf_tokenizer_files(const std::string& path, int64_t vocab_size, int64_t seq_len) {
  HfTokenizerFiles out;
  if (std::filesystem::path(path).extension() == ".json") {
    const HfBpeTokenizer tok = HfBpeTokenizer::load(path);
    if (tok.vocab_size() > vocab_size)
      throw Error(str_cat(path, ": ", tok.vocab_size(), " ids, more than the model's vocab_size ",
                          vocab_size, " (not this model's tokenizer)"));
    if (tok.eos_id() < 0) throw Error(str_cat(path, ": no end-of-text token (not a tokenizer retort encodes with)"));
    out.eos_id = tok.eos_id();
    out.bytes = fs::read_file(path);
    out.name = "tokenizer.json";
    // transformers encodes with the post-processor's special tokens by default: make them the
    // data's (a bos before each document, or nothing), leaving the file unchanged when they are.
    const DataBos bos = data_bos(path);
    json file = json::parse(out.bytes);
    const json pp = file.value("post_processor", json(nullptr));
    const std::vector<std::string> layout = single_layout(pp, path);
    const std::vector<std::string> wanted =
        bos.token.empty() ? std::vector<std::string>{"$A"} : std::vector<std::string>{bos.token, "$A"};
    if (!bos.known && layout != wanted) {
      std::fprintf(stderr, "warning: %s: its post-processor encodes a text as '%s', and no tokenize.json of this file "
                   "says what the training data had before each document (pass tokenize.out's tokenizer.json)\n",
                   path.c_str(), join_layout(layout).c_str());
    } else if (bos.known && layout != wanted) {
      file["post_processor"] = post_processor_for(pp, bos);
      out.bytes = file.dump(2) + "\n";
      std::printf("export: tokenizer.json: post-processor now encodes a text as '%s' (was '%s'), as the training "
                  "data had it (tokenize.json)\n", join_layout(wanted).c_str(), join_layout(layout).c_str());
    }
    out.bos_id = bos.id;
    out.config = fast_tokenizer_config_json(tok.eos_token(), seq_len, bos);
  } else {
    const Tokenizer tok = Tokenizer::load(path);
    if (tok.vocab_size() > vocab_size)
      throw Error(str_cat(path, ": ", tok.vocab_size(), " pieces, more than the model's vocab_size ",
                          vocab_size, " (not this model's tokenizer)"));
    if (tok.id_to_piece(Tokenizer::kBosId) != "<s>" || tok.eos_id() != Tokenizer::kEosId)
      throw Error(str_cat(path, ": not a retort tokenizer (id 1 must be <s>, id 2 </s>)"));
    const DataBos bos = data_bos(path);
    out.bos_id = bos.token.empty() ? Tokenizer::kBosId : bos.id;
    out.eos_id = Tokenizer::kEosId;
    out.name = "tokenizer.model";
    out.bytes = fs::read_file(path);
    out.config = tokenizer_config_json(seq_len, bos);
  }
  return out;
}

}  // namespace retort

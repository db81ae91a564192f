// libFuzzer target: a Hugging Face tokenizer.json read by `retort tokenize` (data/
// hf_bpe_tokenizer.h) and arbitrary bytes encoded with it. The input builds a small byte-level
// BPE file (one of the split patterns, after Digits or not, NFC or not, ignore_merges or not,
// merges of tokens it picks, added tokens), hostile through hostile_json unless the input leaves
// it honest; the rest of the input is the text. Loading must fail cleanly naming the file, or encode every text to
// ids below vocab_size, the same ids twice (the piece cache); and for an honest file without
// NFC, the ids spell the text back (as UTF-8 with invalid bytes replaced by U+FFFD): the pieces
// cover the text and the merges only join bytes.
#include <fuzzer/FuzzedDataProvider.h>

#include <fstream>
#include <map>
#include <optional>

#include "core/check.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/split_pattern.h"
#include "data/unicode.h"
#include "harness.h"
#include "hostile_json.h"

using namespace retort;
using namespace retort::fuzz;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  // the vocabulary: GPT-2's byte stand-ins (id = byte), then merged tokens
  std::map<int32_t, std::string> bytes_of;  // id → the bytes it stands for
  json vocab = json::object();
  char32_t next = 256;
  std::string stand_in[256];
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    unicode::append_utf8(stand_in[b], printable ? char32_t(b) : next++);
    vocab[stand_in[b]] = b;
    bytes_of[b] = std::string(1, char(b));
  }
  std::vector<std::pair<std::string, std::string>> tokens;  // (stand-in text, bytes)
  for (int b = 0; b < 256; ++b) tokens.emplace_back(stand_in[b], std::string(1, char(b)));
  json merges = json::array();
  for (int m = in.ConsumeIntegralInRange(0, 40); m > 0; --m) {
    const auto a = tokens[in.ConsumeIntegralInRange<size_t>(0, tokens.size() - 1)];  // copies:
    const auto b = tokens[in.ConsumeIntegralInRange<size_t>(0, tokens.size() - 1)];  // tokens grows
    const std::string joined = a.first + b.first;
    if (!vocab.contains(joined)) {
      const int32_t id = int32_t(bytes_of.size());
      vocab[joined] = id;
      bytes_of[id] = a.second + b.second;
      tokens.emplace_back(joined, a.second + b.second);
    }
    merges.push_back(in.ConsumeBool() ? json{a.first, b.first} : json(a.first + " " + b.first));
  }
  const int32_t first_added = int32_t(bytes_of.size());
  json added = json::array();
  for (int k = in.ConsumeIntegralInRange(0, 3); k > 0; --k) {
    std::string content = in.ConsumeRandomLengthString(6);  // printable ASCII: the text
    for (char& c : content) c = char(0x20 + uint8_t(c) % 95);  // around it decodes alike
    if (content.empty()) content = "<x>";
    added.push_back({{"id", first_added + int32_t(added.size())}, {"content", content}});
    bytes_of[first_added + int32_t(added.size()) - 1] = content;
  }
  added.push_back({{"id", first_added + int32_t(added.size())}, {"content", "<|endoftext|>"}});
  const int pattern = in.ConsumeIntegralInRange(0, 3);  // Llama 3's, Qwen2's, Tekken; 3: GPT-2's, through ByteLevel
  const int digits = in.ConsumeIntegralInRange(0, 2);   // no Digits, individual, contiguous
  const bool nfc = in.ConsumeBool();
  json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", in.ConsumeBool()}}},
            {"added_tokens", added}};
  json steps = json::array();
  if (digits > 0) steps.push_back({{"type", "Digits"}, {"individual_digits", digits == 1}});
  if (pattern < 3)
    steps.push_back({{"type", "Split"},
                     {"pattern", {{"Regex", std::string(split_pattern_regex(SplitPattern(pattern + 1)))}}},
                     {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", pattern == 3}});
  j["pre_tokenizer"] = steps.size() == 1 ? steps[0] : json{{"type", "Sequence"}, {"pretokenizers", steps}};
  if (nfc) j["normalizer"] = {{"type", "NFC"}};
  const bool honest = in.ConsumeIntegralInRange(0, 3) != 0;
  if (!honest) mutate_json(in, j, 300);
  const std::string path = scratch("tokenizer.json");
  {
    std::ofstream f(path, std::ios::binary);
    f << (honest ? j.dump() : hostile_json_text(in, j));
  }
  const std::string text = in.ConsumeRemainingBytesAsString();

  std::optional<HfBpeTokenizer> tok;
  if (!clean_or_error(path, [&] { tok.emplace(HfBpeTokenizer::load(path)); })) return 0;
  const std::vector<int32_t> ids = tok->encode(text);
  for (int32_t id : ids)
    if (id < 0 || id >= tok->vocab_size()) bug(str_cat("id ", id, " outside [0, ", tok->vocab_size(), ")"));
  if (tok->encode(text) != ids) bug("the same text encoded twice gave different ids");
  if (honest && !nfc) {
    std::string spelled;
    for (int32_t id : ids) spelled += bytes_of.at(id);
    if (spelled != unicode::encode_utf8(unicode::decode_utf8(text)))
      bug(str_cat("the ids spell ", spelled.size(), " bytes, not the text's ", text.size()));
  }
  return 0;
}

// Byte-level BPE from a tokenizer.json (see hf_bpe_tokenizer.h).
#include "data/hf_bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <unordered_map>

#include "core/check.h"
#include "core/fs.h"
#include "data/split_pattern.h"
#include "data/unicode.h"

namespace retort {

namespace {

using json = nlohmann::json;

// GPT-2's printable stand-in for each byte: 33-126, 161-172 and 174-255 as themselves, the
// other 68 bytes as U+0100, U+0101, ... in byte order.
std::array<char32_t, 256> byte_stand_ins() {
  std::array<char32_t, 256> out{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    out[b] = printable ? char32_t(b) : next++;
  }
  return out;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// A field of a JSON object, or an Error naming the file and the field.
struct JsonReader {
  const std::string& path;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(str_cat(path, ": ", field, ": ", what,
                        " (retort reads the byte-level BPE tokenizer.json files of docs/FORMATS.md)"));
  }
  const json& at(const json& j, const std::string& key, const std::string& field) const {
    if (!j.is_object() || !j.contains(key)) fail(field, "missing");
    return j.at(key);
  }
  bool flag(const json& j, const char* key, const std::string& field) const {
    if (!j.contains(key) || j.at(key).is_null()) return false;
    if (!j.at(key).is_boolean()) fail(field + "." + key, "must be true or false");
    return j.at(key).get<bool>();
  }
  // A string field that must be absent, null or one of `allowed`.
  void expect_string(const json& j, const char* key, const std::string& field,
                     std::initializer_list<const char*> allowed) const {
    if (!j.contains(key) || j.at(key).is_null()) return;
    const json& v = j.at(key);
    if (v.is_string())
      for (const char* a : allowed)
        if (v.get<std::string>() == a) return;
    fail(field + "." + key, str_cat(v.dump(), " is not supported"));
  }
};

// A cache of encoded pieces per thread (natural text repeats its words), for the tokenizer
// with serial number `owner`.
struct PieceCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> ids;
};
constexpr size_t kCachedPieceBytes = 64, kCacheEntries = size_t(1) << 16;  // ~10 MB a thread
std::atomic<uint64_t> next_serial{1};

}  // namespace

struct HfBpeTokenizer::Impl {
  std::string path;
  uint64_t serial = next_serial++;
  SplitPattern pattern = SplitPattern::Gpt2;  // GPT-2's is ByteLevel's own regex
  DigitSplit digits = DigitSplit::None;
  bool nfc = false, ignore_merges = false;
  std::unordered_map<std::string, int32_t> vocab;                      // stand-in text → id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) → (rank, merged)
  std::array<int32_t, 256> byte_ids{};                               // id of each byte's stand-in
  std::array<std::string, 256> stand_in_utf8;
  struct Added {
    std::string content;
    int32_t id;
  };
  std::array<std::vector<Added>, 256> added_by_first_byte;  // longest first
  size_t added_count = 0;
  int32_t eos = -1;
  std::string eos_token;
  int64_t size = 0;

  void bpe(const std::string& piece, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
};

HfBpeTokenizer::HfBpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfBpeTokenizer::HfBpeTokenizer(HfBpeTokenizer&&) noexcept = default;
HfBpeTokenizer& HfBpeTokenizer::operator=(HfBpeTokenizer&&) noexcept = default;
HfBpeTokenizer::~HfBpeTokenizer() = default;

HfBpeTokenizer HfBpeTokenizer::load(const std::string& path) {
  json j;
  try {
    j = json::parse(fs::read_file(path));
  } catch (const json::exception& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), ")"));
  }
  const JsonReader r{path};
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.path = path;

  // model: BPE over byte-level stand-ins
  const json& model = r.at(j, "model", "model");
  r.expect_string(model, "type", "model", {"BPE"});
  if (!model.contains("type")) r.fail("model.type", "missing");
  if (r.flag(model, "byte_fallback", "model")) r.fail("model.byte_fallback", "true is not supported");
  if (model.contains("dropout") && !model.at("dropout").is_null()) r.fail("model.dropout", "is not supported");
  r.expect_string(model, "continuing_subword_prefix", "model", {""});
  r.expect_string(model, "end_of_word_suffix", "model", {""});
  t.ignore_merges = r.flag(model, "ignore_merges", "model");
  const json& vocab = r.at(model, "vocab", "model.vocab");
  if (!vocab.is_object() || vocab.empty()) r.fail("model.vocab", "must be a non-empty object of token: id");
  t.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX)
      r.fail("model.vocab", str_cat("the id of '", token, "' is not a non-negative 32-bit integer"));
    t.vocab[token] = id.get<int32_t>();
    t.size = std::max<int64_t>(t.size, id.get<int64_t>() + 1);
  }
  const std::array<char32_t, 256> stand_ins = byte_stand_ins();
  for (int b = 0; b < 256; ++b) {
    unicode::append_utf8(t.stand_in_utf8[b], stand_ins[b]);
    auto it = t.vocab.find(t.stand_in_utf8[b]);
    if (it == t.vocab.end())
      r.fail("model.vocab", str_cat("has no token for byte ", b, " ('", t.stand_in_utf8[b],
                                    "'): not a byte-level vocabulary"));
    t.byte_ids[b] = it->second;
  }
  const json& merges = r.at(model, "merges", "model.merges");
  if (!merges.is_array()) r.fail("model.merges", "must be a list");
  t.merges.reserve(merges.size());
  auto id_of = [&](const std::string& token, size_t rank) {
    auto it = t.vocab.find(token);
    if (it == t.vocab.end()) r.fail(str_cat("model.merges[", rank, "]"), str_cat("'", token, "' is not in the vocabulary"));
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {  // "a b" (older files)
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        r.fail(str_cat("model.merges[", rank, "]"), str_cat("'", s, "' is not two tokens"));
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    } else {
      r.fail(str_cat("model.merges[", rank, "]"), "must be \"a b\" or [\"a\", \"b\"]");
    }
    const uint64_t key = pair_key(id_of(a, rank), id_of(b, rank));
    t.merges[key] = {int32_t(rank), id_of(a + b, rank)};  // a repeated pair keeps its last rank, as
                                                          // the tokenizers library's map does
  }

  // normalizer: none or NFC
  if (j.contains("normalizer") && !j.at("normalizer").is_null()) {
    r.expect_string(j.at("normalizer"), "type", "normalizer", {"NFC"});
    t.nfc = true;
  }

  // pre_tokenizer: ByteLevel with GPT-2's regex, or a Sequence of an optional Digits, then
  // Split(pattern, Isolated) + ByteLevel without its regex, or ByteLevel with it
  const json& pre = r.at(j, "pre_tokenizer", "pre_tokenizer");
  auto byte_level = [&](const json& p, const std::string& field, bool use_regex) {
    r.expect_string(p, "type", field, {"ByteLevel"});
    if (r.flag(p, "add_prefix_space", field)) r.fail(field + ".add_prefix_space", "true is not supported");
    if (r.flag(p, "use_regex", field) != use_regex)
      r.fail(field + ".use_regex", use_regex ? "must be true without a Split" : "must be false after a Split");
  };
  // the "type" of a pre-tokenizer, "" when it has none (the checks below then name the field)
  auto type_of = [](const json& p) {
    return p.is_object() && p.contains("type") && p.at("type").is_string() ? p.at("type").get<std::string>() : "";
  };
  if (type_of(pre) == "ByteLevel") {
    byte_level(pre, "pre_tokenizer", true);
  } else {
    r.expect_string(pre, "type", "pre_tokenizer", {"Sequence"});
    const json& seq = r.at(pre, "pretokenizers", "pre_tokenizer.pretokenizers");
    const char* kForms = "must be [Digits?, Split, ByteLevel] or [Digits?, ByteLevel]";
    if (!seq.is_array() || seq.empty()) r.fail("pre_tokenizer.pretokenizers", kForms);
    size_t k = 0;
    auto field = [&] { return str_cat("pre_tokenizer.pretokenizers[", k, "]"); };
    if (type_of(seq[0]) == "Digits") {
      t.digits = r.flag(seq[0], "individual_digits", field()) ? DigitSplit::Individual : DigitSplit::Contiguous;
      ++k;
    }
    if (k + 2 == seq.size()) {
      const json& split = seq[k];
      r.expect_string(split, "type", field(), {"Split"});
      r.expect_string(split, "behavior", field(), {"Isolated"});
      if (r.flag(split, "invert", field())) r.fail(field() + ".invert", "true is not supported");
      const json& pat = r.at(split, "pattern", field() + ".pattern");
      const std::string regex = pat.is_object() && pat.contains("Regex") && pat.at("Regex").is_string()
                                    ? pat.at("Regex").get<std::string>() : "";
      const std::optional<SplitPattern> p = split_pattern_from_regex(regex);
      if (!p) r.fail(field() + ".pattern", str_cat(pat.dump(), " is not a known pattern"));
      t.pattern = *p;
      ++k;
      byte_level(seq[k], field(), false);
    } else if (k + 1 == seq.size()) {
      byte_level(seq[k], field(), true);
    } else {
      r.fail("pre_tokenizer.pretokenizers", kForms);
    }
  }

  // added tokens: matched in the raw text
  if (j.contains("added_tokens")) {
    const json& added = j.at("added_tokens");
    if (!added.is_array()) r.fail("added_tokens", "must be a list");
    for (size_t i = 0; i < added.size(); ++i) {
      const std::string field = str_cat("added_tokens[", i, "]");
      const json& a = added[i];
      for (const char* k : {"single_word", "lstrip", "rstrip"})
        if (r.flag(a, k, field)) r.fail(field + "." + k, "true is not supported");
      const json& content = r.at(a, "content", field + ".content");
      const json& id = r.at(a, "id", field + ".id");
      if (!content.is_string() || content.get<std::string>().empty()) r.fail(field + ".content", "must be a non-empty string");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX)
        r.fail(field + ".id", "must be a non-negative 32-bit integer");
      const std::string s = content.get<std::string>();
      t.added_by_first_byte[uint8_t(s[0])].push_back({s, id.get<int32_t>()});
      t.size = std::max<int64_t>(t.size, id.get<int64_t>() + 1);
      ++t.added_count;
    }
    for (auto& list : t.added_by_first_byte)
      std::stable_sort(list.begin(), list.end(),
                       [](const Impl::Added& a, const Impl::Added& b) { return a.content.size() > b.content.size(); });
  }

  HfBpeTokenizer tok(std::move(impl));
  // the document separator, an added token (a vocabulary entry of the same text may be
  // ordinary text: Qwen's "</s>")
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"})
    if (const int32_t id = tok.added_token_id(name); id >= 0) {
      t.eos = id, t.eos_token = name;
      break;
    }
  return tok;
}

int64_t HfBpeTokenizer::vocab_size() const { return impl_->size; }
int32_t HfBpeTokenizer::eos_id() const { return impl_->eos; }
std::string HfBpeTokenizer::eos_token() const { return impl_->eos_token; }

int32_t HfBpeTokenizer::added_token_id(std::string_view content) const {
  if (content.empty()) return -1;
  for (const Impl::Added& a : impl_->added_by_first_byte[uint8_t(content[0])])
    if (a.content == content) return a.id;
  return -1;
}

std::string HfBpeTokenizer::describe() const {
  const DigitSplit d = impl_->digits;
  return str_cat("pattern ", split_pattern_name(impl_->pattern),
                 d == DigitSplit::Individual ? " after single digits" : d == DigitSplit::Contiguous ? " after digit runs" : "",
                 impl_->nfc ? ", NFC" : "", ", ",
                 impl_->merges.size(), " merges", impl_->ignore_merges ? " (ignore_merges)" : "", ", ",
                 impl_->added_count, " added tokens");
}

// BPE of one piece's bytes: symbols start as bytes; the ranked pair with the lowest (rank,
// position of its left symbol) merges next; candidates made stale by an earlier merge are
// skipped when they come up.
void HfBpeTokenizer::Impl::bpe(const std::string& piece, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    std::string text;
    for (char c : piece) text += stand_in_utf8[uint8_t(c)];
    if (auto it = vocab.find(text); it != vocab.end()) return out.push_back(it->second);
  }
  const int32_t n = int32_t(piece.size());
  struct Symbol {
    int32_t id, prev, next;
  };
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {byte_ids[uint8_t(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto offer = [&](int32_t pos) {  // the pair starting at symbol pos, if it has a rank
    if (pos < 0 || sym[pos].next < 0) return;
    auto it = merges.find(pair_key(sym[pos].id, sym[sym[pos].next].id));
    if (it != merges.end()) queue.push({it->second.first, pos, sym[pos].id, sym[sym[pos].next].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) offer(i);
  std::vector<bool> merged_away(n, false);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t right = sym[c.pos].next;
    if (merged_away[c.pos] || sym[c.pos].id != c.left || right < 0 || sym[right].id != c.right) continue;
    sym[c.pos].id = merges.at(pair_key(c.left, c.right)).second;
    merged_away[right] = true;
    sym[c.pos].next = sym[right].next;
    if (sym[right].next >= 0) sym[sym[right].next].prev = c.pos;
    offer(sym[c.pos].prev);
    offer(c.pos);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) out.push_back(sym[i].id);
}

void HfBpeTokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::u32string chars = unicode::decode_utf8(text);
  if (nfc) chars = unicode::nfc(chars);
  thread_local PieceCache cache;
  if (cache.owner != serial || cache.ids.size() > kCacheEntries) cache.ids.clear(), cache.owner = serial;
  std::string piece;
  for (const auto& [b, e] : split_pieces(pattern, chars, digits)) {
    piece.clear();  // the piece's UTF-8, in a buffer kept across pieces
    for (size_t i = b; i < e; ++i) unicode::append_utf8(piece, chars[i]);
    if (piece.size() > kCachedPieceBytes) {
      bpe(piece, out);
      continue;
    }
    auto it = cache.ids.find(piece);
    if (it == cache.ids.end()) {
      std::vector<int32_t> ids;
      bpe(piece, ids);
      it = cache.ids.emplace(piece, std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
}

std::vector<int32_t> HfBpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  size_t plain = 0;  // start of the text since the last added token
  for (size_t i = 0; i < text.size(); ++i) {
    for (const Impl::Added& a : impl_->added_by_first_byte[uint8_t(text[i])]) {
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      impl_->encode_plain(text.substr(plain, i - plain), out);
      out.push_back(a.id);
      i += a.content.size() - 1;
      plain = i + 1;
      break;
    }
  }
  impl_->encode_plain(text.substr(plain), out);
  return out;
}

}  // namespace retort

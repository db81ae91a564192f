// Tokenizer training/encode/decode, input expansion, the split rule, and `retort tokenize`
// end to end on a small generated corpus (plain text and JSONL).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>
#include <sentencepiece_trainer.h>

#include "core/config.h"
#include "core/sha256.h"
#include "data/text_sources.h"
#include "data/token_dataset.h"
#include "data/tokenize_command.h"
#include "data/tokenizer.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(RETORT_BINARY_DIR) / "test_tmp" / "tokenizer" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Document d of a small pseudo-English corpus (a few paragraphs; deterministic).
std::string make_doc(int d) {
  static const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
                                "and", "a", "cat", "sat", "on", "mat", "in", "1961,",
                                "Fulton", "County", "jury", "said", "it", "did", "find", "no",
                                "evidence.", "naïve", "café", "(yes)", "\"quoted\"", "well-known"};
  uint64_t s = 0x9e3779b97f4a7c15ull * (d + 1);
  std::string t;
  for (int p = 0; p < 3; ++p) {
    for (int w = 0; w < 40; ++w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      if (w) t += ' ';
      t += words[(s >> 33) % 30];
    }
    t += "\n\n";
  }
  return t;
}

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

Config tokenize_config(const std::vector<std::string>& inputs, const fs::path& out,
                       const std::vector<std::string>& overrides = {}) {
  std::string list;
  for (auto& i : inputs) list += (list.empty() ? "" : ", ") + ("'" + i + "'");
  std::string yaml = "tokenize:\n  inputs: [" + list + "]\n  out: '" + out.string() +
                     "'\n  vocab_size: 300\n  val_fraction: 0.2\n  seed: 7\n";
  return Config::from_yaml(yaml, "test.yaml", overrides);
}

std::vector<Document> read_documents(const std::vector<std::string>& inputs, const std::string& field) {
  std::vector<Document> docs;
  for_each_document(inputs, field, [&](Document&& d) { docs.push_back(std::move(d)); });
  return docs;
}

}  // namespace

TEST(Tokenizer, TrainEncodeDecodeRoundTrip) {
  std::vector<std::string> docs;
  for (int d = 0; d < 20; ++d) docs.push_back(make_doc(d));
  std::vector<std::string_view> views(docs.begin(), docs.end());
  // 3 specials + 256 byte pieces + ~45 characters leave ~100 merges at vocab 400.
  std::string model = Tokenizer::train(views, {400, 0.9995});
  EXPECT_EQ(model, Tokenizer::train(views, {400, 0.9995}));  // deterministic
  Tokenizer tok = Tokenizer::from_serialized(model);
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.eos_id(), Tokenizer::kEosId);
  EXPECT_EQ(tok.id_to_piece(0), "<unk>");
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
  EXPECT_EQ(tok.id_to_piece(2), "</s>");
  for (const std::string& text :
       {docs[3], std::string("  two  spaces\tand tabs\nnew lines\n\n"),
        std::string("unseen: Ωmega 😀 ü 12345")}) {
    std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 400);
      EXPECT_NE(id, Tokenizer::kUnkId);  // byte fallback: nothing is unknown
    }
    EXPECT_EQ(tok.decode(ids), text);
  }
  EXPECT_LT(tok.encode(docs[3]).size(), docs[3].size() / 2);  // it does compress
  // Save to a file, load it back.
  fs::path dir = fresh_dir("load");
  write_file(dir / "tokenizer.model", model);
  EXPECT_EQ(Tokenizer::load((dir / "tokenizer.model").string()).encode(docs[1]),
            tok.encode(docs[1]));
  std::string missing = (dir / "nope.model").string();
  EXPECT_NE(error_of([&] { Tokenizer::load(missing); }).find(missing), std::string::npos);
}

TEST(TextSources, ExpandAndRead) {
  fs::path dir = fresh_dir("sources");
  write_file(dir / "b.txt", "bee");
  write_file(dir / "a.txt", "ay");
  write_file(dir / "sub" / "c.txt", "sea");
  write_file(dir / "sub" / ".hidden", "no");
  write_file(dir / "empty.txt", "  \n");
  write_file(dir / "d.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"x\": 1}\n");
  auto files = expand_inputs({dir.string()});
  std::vector<std::string> names;
  for (auto& f : files) names.push_back(fs::relative(f, dir).string());
  EXPECT_EQ(names, (std::vector<std::string>{"a.txt", "b.txt", "d.jsonl", "empty.txt", "sub/c.txt"}));
  // Globs are sorted; duplicates dropped.
  auto g = expand_inputs({(dir / "*.txt").string(), (dir / "a.txt").string()});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(fs::path(g[0]).filename(), "a.txt");

  auto docs = read_documents({dir.string()}, "text");
  std::vector<std::string> texts;
  for (auto& d : docs) texts.push_back(d.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"ay", "bee", "one", "two", "sea"}));
  EXPECT_EQ(docs[3].source, (dir / "d.jsonl").string() + ":3");

  std::string missing = (dir / "missing.txt").string();
  EXPECT_EQ(error_of([&] { read_documents({missing}, "text"); }),
            "input '" + missing + "': no such file or directory");
  EXPECT_EQ(error_of([&] { read_documents({(dir / "*.nothing").string()}, "text"); }),
            "input pattern '" + (dir / "*.nothing").string() + "' matched no files");
  write_file(dir / "bad" / "e.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n");
  std::string bad = (dir / "bad" / "e.jsonl").string();
  EXPECT_EQ(error_of([&] { read_documents({bad}, "text"); }),
            bad + ":2: no field 'text' (tokenize.jsonl_field)");
  write_file(dir / "bad2" / "f.jsonl", "{\"text\": \"ok\"\n");
  std::string bad2 = (dir / "bad2" / "f.jsonl").string();
  EXPECT_EQ(error_of([&] { read_documents({bad2}, "text"); }), bad2 + ":1: invalid JSON");
}

TEST(Tokenize, SplitIsDeterministicAndNonEmpty) {
  auto a = split_documents(1000, 0.1, 5);
  EXPECT_EQ(a, split_documents(1000, 0.1, 5));
  EXPECT_NE(a, split_documents(1000, 0.1, 6));
  int64_t n_val = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n_val, 60);
  EXPECT_LT(n_val, 140);
  // A prefix of the corpus keeps its documents' assignment (per-document hash).
  auto prefix = split_documents(500, 0.1, 5);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), a.begin()));
  for (int64_t n : {2, 3, 5}) {
    auto tiny = split_documents(n, 1e-9, 1);
    EXPECT_EQ(std::count(tiny.begin(), tiny.end(), true), 1);
    auto most = split_documents(n, 0.999999999, 1);
    EXPECT_EQ(std::count(most.begin(), most.end(), false), 1);
  }
  auto none = split_documents(10, 0.0, 1);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
}

TEST(Tokenize, EndToEnd) {
  fs::path dir = fresh_dir("e2e");
  std::vector<std::string> docs;
  for (int d = 0; d < 24; ++d) {
    docs.push_back(make_doc(d));
    char name[32];
    std::snprintf(name, sizeof(name), "doc%02d.txt", d);
    write_file(dir / "corpus" / name, docs.back());
  }
  fs::path out = dir / "out";
  ASSERT_EQ(run_tokenize(tokenize_config({(dir / "corpus").string()}, out)), 0);

  for (const char* f : {"tokenizer.model", "train.h5", "val.h5", "tokenize.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const std::string sha = sha256_file((out / "tokenizer.model").string());
  Tokenizer tok = Tokenizer::load((out / "tokenizer.model").string());
  TokenDataset train = TokenDataset::load((out / "train.h5").string());
  TokenDataset val = TokenDataset::load((out / "val.h5").string());
  auto is_val = split_documents(24, 0.2, 7);
  int64_t n_val = std::count(is_val.begin(), is_val.end(), true);
  EXPECT_EQ(val.num_docs(), n_val);
  EXPECT_EQ(train.num_docs(), 24 - n_val);
  EXPECT_GE(n_val, 1);
  std::vector<std::string> expect_train, expect_val;
  for (int d = 0; d < 24; ++d) (is_val[d] ? expect_val : expect_train).push_back(docs[d]);
  for (auto [ds, expect] : {std::pair{&train, &expect_train}, std::pair{&val, &expect_val}}) {
    EXPECT_EQ(ds->meta().vocab_size, 300);
    EXPECT_EQ(ds->meta().eos_id, 2);
    EXPECT_EQ(ds->meta().tokenizer_sha256, sha);
    // Each document decodes back to its text and is followed by EOS.
    const auto& off = ds->doc_offsets();
    for (size_t i = 0; i < off.size(); ++i) {
      int64_t end = i + 1 < off.size() ? off[i + 1] : ds->num_tokens();
      ASSERT_EQ(ds->token_data()[end - 1], 2);
      std::vector<int32_t> ids(ds->token_data() + off[i], ds->token_data() + end - 1);
      EXPECT_EQ(tok.decode(ids), (*expect)[i]);
    }
  }
  auto summary = nlohmann::json::parse(std::ifstream(out / "tokenize.json"));
  EXPECT_EQ(summary["documents"], 24);
  EXPECT_EQ(summary["train"]["tokens"], train.num_tokens());
  EXPECT_EQ(summary["val"]["documents"], n_val);
  EXPECT_EQ(summary["vocab_size"], 300);
  EXPECT_FALSE(summary.contains("tokenizer_given"));

  // Same config again: byte-identical outputs.
  fs::path out2 = dir / "out2";
  ASSERT_EQ(run_tokenize(tokenize_config({(dir / "corpus").string()}, out2)), 0);
  for (const char* f : {"tokenizer.model", "train.h5", "val.h5"})
    EXPECT_EQ(sha256_file((out / f).string()), sha256_file((out2 / f).string())) << f;
}

TEST(Tokenize, JsonlInput) {
  fs::path dir = fresh_dir("jsonl");
  std::string lines;
  for (int d = 0; d < 10; ++d)
    lines += nlohmann::json{{"body", make_doc(d)}, {"id", d}}.dump() + "\n";
  write_file(dir / "data.jsonl", lines);
  fs::path out = dir / "out";
  ASSERT_EQ(run_tokenize(tokenize_config({(dir / "*.jsonl").string()}, out,
                                         {"tokenize.jsonl_field=body"})),
            0);
  TokenDataset train = TokenDataset::load((out / "train.h5").string());
  TokenDataset val = TokenDataset::load((out / "val.h5").string());
  EXPECT_EQ(train.num_docs() + val.num_docs(), 10);
  // Without the field setting, the default "text" is missing: file:line error.
  std::string msg = error_of([&] { run_tokenize(tokenize_config({(dir / "data.jsonl").string()}, out)); });
  EXPECT_EQ(msg, (dir / "data.jsonl").string() + ":1: no field 'text' (tokenize.jsonl_field)");
}

// A SentencePiece model with another tokenizer's id layout (Gemma's: 0 <pad>, 1 </s>, 2 <s>,
// 3 <unk>) and SentencePiece's default normalisation, as a published tokenizer.model has;
// eos_id = -1 gives one without </s>.
std::string foreign_tokenizer(const std::vector<std::string>& docs, int eos_id) {
  std::string text;
  for (auto& d : docs) text += d;
  std::istringstream lines(text);
  struct Lines : sentencepiece::SentenceIterator {
    explicit Lines(std::istringstream& in) : in_(in) { Next(); }
    bool done() const override { return done_; }
    void Next() override { done_ = !std::getline(in_, line_); }
    const std::string& value() const override { return line_; }
    sentencepiece::util::Status status() const override { return {}; }
    std::istringstream& in_;
    std::string line_;
    bool done_ = false;
  } it(lines);
  std::string model;
  auto st = sentencepiece::SentencePieceTrainer::Train(
      {{"model_type", "bpe"}, {"vocab_size", "200"}, {"pad_id", "0"}, {"eos_id", std::to_string(eos_id)},
       {"bos_id", "2"}, {"unk_id", eos_id < 0 ? "1" : "3"}, {"num_threads", "1"}, {"minloglevel", "2"}},
      &it, &model);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return model;
}

// tokenize.tokenizer: new text encoded with an existing tokenizer (here the first run's), whose
// file is copied unchanged, so both runs' datasets name the same tokenizer_sha256.
TEST(Tokenize, GivenTokenizer) {
  fs::path dir = fresh_dir("given");
  std::vector<std::string> docs;
  for (int d = 0; d < 24; ++d) {
    docs.push_back(make_doc(d));
    write_file(dir / (d < 12 ? "first" : "second") / ("doc" + std::to_string(d) + ".txt"), docs.back());
  }
  fs::path first = dir / "first_out";
  ASSERT_EQ(run_tokenize(tokenize_config({(dir / "first").string()}, first)), 0);
  const std::string sha = sha256_file((first / "tokenizer.model").string());
  Tokenizer tok = Tokenizer::load((first / "tokenizer.model").string());
  // The directory or the file; tokenize.vocab_size is unused.
  for (std::string given : {first.string(), (first / "tokenizer.model").string()}) {
    fs::path out = dir / "second_out";
    fs::remove_all(out);
    ASSERT_EQ(run_tokenize(tokenize_config({(dir / "second").string()}, out,
                                           {"tokenize.tokenizer=" + given, "tokenize.vocab_size=4096"})),
              0);
    EXPECT_EQ(sha256_file((out / "tokenizer.model").string()), sha);
    EXPECT_EQ(nlohmann::json::parse(std::ifstream(out / "tokenize.json"))["tokenizer_given"], given);
    auto is_val = split_documents(12, 0.2, 7);
    for (const char* split : {"train", "val"}) {
      TokenDataset ds = TokenDataset::load((out / (std::string(split) + ".h5")).string());
      EXPECT_EQ(ds.meta().tokenizer_sha256, sha);
      EXPECT_EQ(ds.meta().vocab_size, 300);
      const auto& off = ds.doc_offsets();
      int di = 0;
      for (int d = 0; d < 12; ++d) {
        if (is_val[d] != (std::string(split) == "val")) continue;
        std::vector<int32_t> expect = tok.encode(docs[12 + d]);
        expect.push_back(2);
        ASSERT_LE(off[di] + int64_t(expect.size()), ds.num_tokens());
        EXPECT_EQ(std::vector<int32_t>(ds.token_data() + off[di], ds.token_data() + off[di] + expect.size()),
                  expect) << split << " document " << d;
        ++di;
      }
      EXPECT_EQ(di, ds.num_docs());
    }
  }

  // Another tokenizer's ids: every document ends with its </s> (id 1), not retort's 2.
  const std::string gemma_like = foreign_tokenizer(docs, 1);
  write_file(dir / "foreign.model", gemma_like);
  fs::path out = dir / "foreign_out";
  ASSERT_EQ(run_tokenize(tokenize_config({(dir / "second").string()}, out,
                                         {"tokenize.tokenizer=" + (dir / "foreign.model").string(),
                                          "tokenize.val_fraction=0"})),
            0);
  TokenDataset ds = TokenDataset::load((out / "train.h5").string());
  Tokenizer foreign = Tokenizer::from_serialized(gemma_like);
  EXPECT_EQ(ds.meta().eos_id, 1);
  EXPECT_EQ(ds.meta().vocab_size, 200);
  std::vector<int32_t> expect;
  for (int d = 12; d < 24; ++d) {
    for (int32_t id : foreign.encode(docs[d])) expect.push_back(id);
    expect.push_back(1);
  }
  EXPECT_EQ(std::vector<int32_t>(ds.token_data(), ds.token_data() + ds.num_tokens()), expect);

  // Bad tokenize.tokenizer: one error naming the key or file, checked before any input is read,
  // and nothing written.
  write_file(dir / "no_eos.model", foreign_tokenizer(docs, -1));
  write_file(dir / "not_a_model", "hello");
  fs::create_directories(dir / "empty_dir");
  auto error_for = [&](const std::string& given) {
    fs::path bad_out = dir / "bad_out";
    std::string msg = error_of([&] {
      run_tokenize(tokenize_config({(dir / "missing_input.txt").string()}, bad_out,
                                   {"tokenize.tokenizer=" + given}));
    });
    EXPECT_FALSE(fs::exists(bad_out)) << given;
    return msg;
  };
  std::string p = (dir / "nothing_here").string();
  EXPECT_EQ(error_for(p), "test.yaml: key 'tokenize.tokenizer': " + p + ": no such file or directory");
  p = (dir / "empty_dir").string();
  EXPECT_EQ(error_for(p), "test.yaml: key 'tokenize.tokenizer': " + p +
                              " holds neither a tokenizer.model nor a tokenizer.json");
  write_file(dir / "not_bpe" / "tokenizer.json", "{}");  // read as a tokenizer.json (tests/e2e/hf_tokenizer.sh)
  p = (dir / "not_bpe").string();
  EXPECT_EQ(error_for(p), p + "/tokenizer.json: model: missing (retort reads the byte-level BPE "
                              "tokenizer.json files of docs/FORMATS.md)");
  p = (dir / "not_a_model").string();
  EXPECT_EQ(error_for(p).rfind(p + ": not a SentencePiece tokenizer.model (tokenize.tokenizer): ", 0), 0u)
      << error_for(p);
  p = (dir / "no_eos.model").string();
  EXPECT_EQ(error_for(p), p + ": the tokenizer has no </s> (eos) piece, which retort appends after "
                              "every document (tokenize.tokenizer)");
}

// tokenize.train_sample_bytes: the tokenizer trains on the train documents in ascending
// order of tokenizer_sample_key up to the first that would pass the cap (here checked
// against a plain sort), also when the split rule had to move a document between splits.
TEST(Tokenize, TrainingSampleFollowsItsRule) {
  fs::path dir = fresh_dir("sample");
  const int n = 40;
  std::vector<size_t> size(n);
  for (int d = 0; d < n; ++d) {
    std::string text;
    for (int r = 0; r <= d % 3; ++r) text += make_doc(d * 3 + r);
    size[d] = text.size();
    char name[32];
    std::snprintf(name, sizeof(name), "doc%02d.txt", d);
    write_file(dir / "corpus" / name, text);
  }
  // Expected (documents, bytes) of the sample for a split and a cap.
  auto expected = [&](const std::vector<bool>& is_val, size_t cap) {
    std::vector<std::pair<uint64_t, int>> order;
    for (int d = 0; d < n; ++d)
      if (!is_val[d]) order.push_back({tokenizer_sample_key(7, d), d});
    std::sort(order.begin(), order.end());
    size_t docs = 0, bytes = 0;
    for (auto [key, d] : order) {
      if (bytes + size[d] > cap) break;
      ++docs;
      bytes += size[d];
    }
    return std::pair{docs, bytes};
  };
  auto sample_of = [&](const std::string& name, const std::vector<std::string>& sets) {
    EXPECT_EQ(run_tokenize(tokenize_config({(dir / "corpus").string()}, dir / name, sets)), 0);
    auto s = nlohmann::json::parse(std::ifstream(dir / name / "tokenize.json"))["tokenizer_sample"];
    return std::pair{s["documents"].get<size_t>(), s["bytes"].get<size_t>()};
  };
  size_t train_bytes = 0;
  const std::vector<bool> is_val = split_documents(n, 0.2, 7);
  for (int d = 0; d < n; ++d) train_bytes += is_val[d] ? 0 : size[d];
  for (size_t cap : {train_bytes / 3, train_bytes / 2, train_bytes - 1}) {
    auto got = sample_of("cap" + std::to_string(cap), {"tokenize.train_sample_bytes=" + std::to_string(cap)});
    EXPECT_EQ(got, expected(is_val, cap)) << cap;
    EXPECT_LE(got.second, cap);
    EXPECT_LT(got.first, size_t(std::count(is_val.begin(), is_val.end(), false)));
  }
  // A cap the train documents fit in: all of them, the same tokenizer as the default.
  EXPECT_EQ(sample_of("all", {"tokenize.train_sample_bytes=" + std::to_string(train_bytes)}),
            expected(is_val, train_bytes));
  EXPECT_EQ(sample_of("all", {}).first, size_t(std::count(is_val.begin(), is_val.end(), false)));
  EXPECT_NE(sha256_file((dir / "all" / "tokenizer.model").string()),
            sha256_file((dir / ("cap" + std::to_string(train_bytes / 3)) / "tokenizer.model").string()));
  // The split rule moves a document: from train (no draw fell in val) or into train (all did).
  for (std::string vf : {"1e-12", "0.999999999"}) {
    const std::vector<bool> moved = split_documents(n, std::stod(vf), 7);
    ASSERT_EQ(std::count(moved.begin(), moved.end(), std::stod(vf) < 0.5), 1);
    EXPECT_EQ(sample_of("moved", {"tokenize.val_fraction=" + vf,
                                  "tokenize.train_sample_bytes=" + std::to_string(train_bytes / 2)}),
              expected(moved, train_bytes / 2))
        << vf;
  }
  // No train document fits: one line naming the key.
  const std::string msg = error_of([&] {
    run_tokenize(tokenize_config({(dir / "corpus").string()}, dir / "none", {"tokenize.train_sample_bytes=100"}));
  });
  EXPECT_EQ(msg, "test.yaml: key 'tokenize.train_sample_bytes': 100 bytes hold no train document");
}

TEST(Tokenize, ConfigErrors) {
  fs::path dir = fresh_dir("cfg");
  write_file(dir / "a.txt", make_doc(0));
  auto expect_config_error = [&](const std::string& set, const std::string& key) {
    try {
      run_tokenize(tokenize_config({(dir / "a.txt").string()}, dir / "out", {set}));
      ADD_FAILURE() << "no error for " << set;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  expect_config_error("tokenize.vocab_size=10", "tokenize.vocab_size");
  expect_config_error("tokenize.val_fraction=1.5", "tokenize.val_fraction");
  expect_config_error("tokenize.character_coverage=0", "tokenize.character_coverage");
  try {
    run_tokenize(Config::from_yaml("tokenize:\n  out: x\n", "t.yaml"));
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenize.inputs"), std::string::npos) << e.what();
  }
}

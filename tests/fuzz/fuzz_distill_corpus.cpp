// libFuzzer target: the distillation corpus reader (SPEC §5) on a hostile corpus directory.
// The input picks a valid corpus (k, vocab, Ls, one or two shards of S sequences with sorted
// top-k log-probs), then writes manifest.json through hostile_json and every shard through
// HostileH5. CorpusReader, read() of every sequence, and check_corpus_shard with value checks
// must fail cleanly naming the corpus directory, or return data within the documented ranges.
#include <fuzzer/FuzzedDataProvider.h>

#include <fstream>

#include "data/distill_corpus.h"
#include "harness.h"
#include "hostile_h5.h"
#include "hostile_json.h"

using namespace retort;
using namespace retort::fuzz;
using nlohmann::json;

namespace {

// The reader promised ranges; check what it returned.
void expect_in_range(const CorpusMeta& m, const CorpusSequences& s, int64_t count) {
  const int64_t Ls = m.seq_len, k = m.k;
  if (s.count != count || int64_t(s.tokens.size()) != count * Ls || int64_t(s.prompt_len.size()) != count ||
      int64_t(s.topk_ids.size()) != count * (Ls - 1) * k || s.topk_logprobs.size() != s.topk_ids.size())
    bug(str_cat("read returned sizes that do not match ", count, " sequences"));
  for (int32_t t : s.tokens)
    if (t < 0 || t >= m.vocab_size) bug(str_cat("accepted token id ", t));
  for (int32_t p : s.prompt_len)
    if (p < 0 || p > Ls) bug(str_cat("accepted prompt_len ", p));
  for (int32_t t : s.topk_ids)
    if (t < 0 || t >= m.vocab_size) bug(str_cat("accepted top-k id ", t));
  for (float lp : s.topk_logprobs)
    if (!(lp <= 0)) bug(str_cat("accepted log-prob ", lp));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  clear_scratch();
  const std::string dir = scratch("corpus");
  std::filesystem::create_directories(dir);

  const int64_t vocab = in.ConsumeIntegralInRange<int64_t>(1, 32);
  const int64_t k = in.ConsumeIntegralInRange<int64_t>(1, std::min<int64_t>(vocab, 4));
  const int64_t Ls = in.ConsumeIntegralInRange<int64_t>(2, 6);
  const bool fp16 = in.ConsumeBool();
  const int n_shards = in.ConsumeIntegralInRange(1, 2);

  json manifest = {{"format", "retort-distill-corpus"}, {"version", 1}, {"k", k}, {"vocab_size", vocab},
                   {"seq_len", Ls}, {"tokenizer_sha256", "none"}, {"teacher_sha256", "abc"},
                   {"mode", "score"}, {"logit_temperature", 1.0}, {"sample_temperature", 1.0},
                   {"sample_top_k", 0}, {"sample_top_p", 1.0}, {"seed", 7},
                   {"logprob_dtype", fp16 ? "float16" : "float32"}};
  int64_t total = 0;
  for (int s = 0; s < n_shards; ++s) {
    const int64_t S = in.ConsumeIntegralInRange<int64_t>(1, 3);
    std::vector<int64_t> tokens, prompt, ids;
    std::vector<double> logp;
    for (int64_t i = 0; i < S * Ls; ++i) tokens.push_back(in.ConsumeIntegralInRange<int64_t>(0, vocab - 1));
    for (int64_t i = 0; i < S; ++i) prompt.push_back(in.ConsumeIntegralInRange<int64_t>(0, Ls));
    for (int64_t r = 0; r < S * (Ls - 1); ++r) {
      double lp = -in.ConsumeFloatingPointInRange<double>(0, 3);
      for (int64_t j = 0; j < k; ++j) {
        ids.push_back((r + j) % vocab);
        logp.push_back(lp);
        lp -= in.ConsumeFloatingPointInRange<double>(0, 2);
      }
    }
    const std::string file = corpus_shard_name(s);
    HostileH5 f(in, dir + "/" + file);
    f.dataset("tokens", Values::of_ints(Elem::I32, {S, Ls}, tokens, vocab));
    f.dataset("prompt_len", Values::of_ints(Elem::I32, {S}, prompt, Ls));
    f.dataset("topk_ids", Values::of_ints(Elem::I32, {S, Ls - 1, k}, ids, vocab));
    f.dataset("topk_logprobs", Values::of_reals(fp16 ? Elem::F16 : Elem::F32, {S, Ls - 1, k}, logp));
    f.attribute("k", Values::scalar(k));
    f.attribute("vocab_size", Values::scalar(vocab));
    f.attribute("seq_len", Values::scalar(Ls));
    f.attribute("tokenizer_sha256", Values::string("none"));
    f.attribute("teacher_sha256", Values::string("abc"));
    f.attribute("mode", Values::string("score"));
    f.attribute("logit_temperature", Values::scalar_real(1.0));
    f.attribute("sample_temperature", Values::scalar_real(1.0));
    f.attribute("sample_top_k", Values::scalar(0));
    f.attribute("sample_top_p", Values::scalar_real(1.0));
    f.attribute("seed", Values::scalar(7));
    f.extras({"tokens", "topk_ids", "k", "mode"});
    manifest["shards"].push_back({{"file", file}, {"sequences", S}});
    total += S;
  }
  manifest["num_sequences"] = total;
  mutate_json(in, manifest, total);
  std::ofstream(dir + "/manifest.json") << hostile_json_text(in, manifest);

  clean_or_error(dir, [&] {
    const CorpusReader reader(dir);
    const CorpusMeta& m = reader.meta();
    if (m.k < 1 || m.k > m.vocab_size || m.seq_len < 2) bug("accepted bad corpus metadata");
    CorpusSequences s;
    for (int64_t i = 0; i < reader.num_sequences(); ++i) {
      reader.read(i, 1, s);
      expect_in_range(m, s, 1);
    }
    reader.read(0, reader.num_sequences(), s);
    expect_in_range(m, s, reader.num_sequences());
    for (const CorpusShardEntry& e : reader.shards())
      check_corpus_shard(dir + "/" + e.file, m, e.sequences, true);
  });
  expect_no_open_hdf5_objects();
  return 0;
}

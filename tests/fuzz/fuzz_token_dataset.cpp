// libFuzzer target: TokenDataset::load (SPEC §2) on a hostile token file.
// The input first picks a valid dataset (vocab_size, eos_id, documents of tokens), then
// HostileH5 writes each dataset and attribute as meant or hostile. The reader must either
// fail cleanly naming the file or return a dataset that keeps its promises: ids in
// [0, vocab_size), eos_id in range, doc_offsets starting at 0, non-decreasing, within tokens.
#include <fuzzer/FuzzedDataProvider.h>

#include "data/token_dataset.h"
#include "harness.h"
#include "hostile_h5.h"

using namespace retort;
using namespace retort::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int64_t vocab = in.ConsumeIntegralInRange<int64_t>(1, 64);
  const int64_t eos = in.ConsumeIntegralInRange<int64_t>(0, vocab - 1);
  std::vector<int64_t> tokens, offsets;
  const int docs = in.ConsumeIntegralInRange(0, 6);
  for (int d = 0; d < docs; ++d) {
    offsets.push_back(int64_t(tokens.size()));
    const int len = in.ConsumeIntegralInRange(0, 12);
    for (int t = 0; t < len; ++t) tokens.push_back(in.ConsumeIntegralInRange<int64_t>(0, vocab - 1));
    tokens.push_back(eos);
  }
  const int64_t n = int64_t(tokens.size());

  const std::string path = scratch("tokens.h5");
  {
    HostileH5 f(in, path);
    f.dataset("tokens", Values::of_ints(Elem::I32, {n}, tokens, vocab));
    f.dataset("doc_offsets", Values::of_ints(Elem::I64, {int64_t(offsets.size())}, offsets, n));
    f.attribute("vocab_size", Values::scalar(vocab));
    f.attribute("eos_id", Values::scalar(eos));
    f.attribute("tokenizer_sha256", Values::string("none"));
    f.extras({"tokens", "doc_offsets", "vocab_size", "eos_id", "tokenizer_sha256"});
  }

  clean_or_error(path, [&] {
    const TokenDataset ds = TokenDataset::load(path);
    const TokenDatasetMeta& m = ds.meta();
    if (m.vocab_size < 1 || m.eos_id < 0 || m.eos_id >= m.vocab_size)
      bug(str_cat("accepted vocab_size ", m.vocab_size, ", eos_id ", m.eos_id));
    const int32_t* tok = ds.token_data();
    for (int64_t i = 0; i < ds.num_tokens(); ++i)
      if (tok[i] < 0 || tok[i] >= m.vocab_size) bug(str_cat("accepted token ", tok[i], " at ", i));
    const auto& off = ds.doc_offsets();
    for (size_t i = 0; i < off.size(); ++i)
      if ((i == 0 && off[0] != 0) || (i > 0 && off[i] < off[i - 1]) || off[i] > ds.num_tokens())
        bug(str_cat("accepted doc_offsets[", i, "] = ", off[i]));
  });
  expect_no_open_hdf5_objects();
  return 0;
}

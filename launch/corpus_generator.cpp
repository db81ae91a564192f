// See corpus_generator.h.
#include "launch/corpus_generator.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>

#include "core/check.h"
#include "core/random.h"
#include "models/kv_cache_decoder.h"

namespace retort {
namespace {

// The logits where the top-k and the sampler read them (a copy when the teacher is on a GPU).
Tensor on_host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); }

// Appends row `r` of logits [*, V] as top-k row `t` of sequence `j` of the block.
void record(const GeneratorSettings& s, const Tensor& logits, int64_t r, int64_t j, int64_t t,
            CorpusSequences& out, int64_t V) {
  const int64_t off = (j * (s.seq_len - 1) + t) * s.k;
  topk_logprobs(logits.data<float>() + r * V, V, s.logit_temperature, s.k,
                out.topk_ids.data() + off, out.topk_logprobs.data() + off);
}

int32_t draw(const GeneratorSettings& s, const Tensor& logits, int64_t r, int64_t V,
             int64_t seq, int64_t t) {
  const double u = rng::uniform(s.seed, rng::hash(kSampleStream, uint64_t(seq)), uint64_t(t));
  return sample_token(logits.data<float>() + r * V, V, s.sampling, u);
}

// row(i) for i in [0, n) on the OpenMP threads: the log-softmax, top-k and draw of each row of
// logits are independent (a GPU's forward leaves them as the host's work). The first exception
// is rethrown here.
template <class Row>
void each_row(int64_t n, const Row& row) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n; ++i) {
    try {
      row(i);
    } catch (...) {
#pragma omp critical(retort_each_row)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

void generate_sequences(Transformer& teacher, const GeneratorSettings& s, const Tensor& data,
                        int64_t first, int64_t count, CorpusSequences& out,
                        const std::function<void(int64_t)>& on_batch) {
  const int64_t Ls = s.seq_len, V = teacher.config().vocab_size, k = s.k;
  // The last token of a sequence is never an input: Ls may exceed the teacher's seq_len by one.
  RETORT_CHECK(Ls >= 2 && Ls - 1 <= teacher.config().seq_len && k >= 1 && k <= V && s.batch >= 1,
               "generate_sequences: bad settings");
  const int64_t P = s.sample ? (s.prompt_len > 0 ? s.prompt_len : 1) : 0;  // given tokens
  RETORT_CHECK(!s.sample || P < Ls, "generate_sequences: prompt ", P, " >= seq_len ", Ls);
  const int64_t n = data.numel();
  const int32_t* src = data.data<int32_t>();
  out = CorpusSequences{};
  out.count = count;
  out.tokens.assign(count * Ls, 0);
  out.prompt_len.assign(count, int32_t(P));
  out.topk_ids.assign(count * (Ls - 1) * k, 0);
  out.topk_logprobs.assign(count * (Ls - 1) * k, 0.0f);

  std::unique_ptr<KvCacheDecoder> dec;
  if (s.sample && s.kv_cache) dec = std::make_unique<KvCacheDecoder>(teacher, s.batch, Ls - 1);
  for (int64_t j0 = 0; j0 < count; j0 += s.batch) {
    const int64_t B = std::min(s.batch, count - j0);
    int32_t* toks = out.tokens.data() + j0 * Ls;  // [B, Ls] of this batch
    // the given tokens: the whole window (score) or the prompt (sample)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t i = first + j0 + b, given = s.sample ? s.prompt_len : Ls;
      RETORT_CHECK(i * Ls + given <= n, "generate_sequences: sequence ", i, " needs tokens up to ",
                   i * Ls + given, ", the data has ", n);
      std::memcpy(toks + b * Ls, src + i * Ls, given * sizeof(int32_t));
      if (s.sample && s.prompt_len == 0) toks[b * Ls] = int32_t(s.eos_id);
    }
    if (!s.sample) {  // teacher-forced: one forward over the windows' first Ls − 1 tokens
      const int64_t T = Ls - 1;
      Tensor in = Tensor::empty({B, T}, DType::I32);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(in.data<int32_t>() + b * T, toks + b * Ls, T * sizeof(int32_t));
      teacher.evaluate(in, in);  // targets unused (any valid ids)
      const Tensor logits = on_host(teacher.logits());  // [B·T, V]
      each_row(B * T, [&](int64_t r) { record(s, logits, r, j0 + r / T, r % T, out, V); });
    } else if (dec) {  // prefill the prompt, then one token per step
      Tensor prompt = Tensor::empty({B, P}, DType::I32);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(prompt.data<int32_t>() + b * P, toks + b * Ls, P * sizeof(int32_t));
      Tensor logits = on_host(dec->prefill(prompt));  // [B·P, V]
      each_row(B * P, [&](int64_t r) { record(s, logits, r, j0 + r / P, r % P, out, V); });
      each_row(B, [&](int64_t b) {
        toks[b * Ls + P] = draw(s, logits, b * P + P - 1, V, first + j0 + b, P);
      });
      Tensor step = Tensor::empty({B}, DType::I32);
      for (int64_t pos = P; pos < Ls - 1; ++pos) {
        for (int64_t b = 0; b < B; ++b) step.data<int32_t>()[b] = toks[b * Ls + pos];
        logits = on_host(dec->step(step));  // [B, V]: after tokens ≤ pos
        each_row(B, [&](int64_t b) {
          record(s, logits, b, j0 + b, pos, out, V);
          toks[b * Ls + pos + 1] = draw(s, logits, b, V, first + j0 + b, pos + 1);
        });
      }
    } else {  // sample without a cache: recompute the whole prefix for every new token
      for (int64_t pos = P; pos < Ls; ++pos) {  // draw token `pos` from the prefix [0, pos)
        Tensor in = Tensor::empty({B, pos}, DType::I32);
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(in.data<int32_t>() + b * pos, toks + b * Ls, pos * sizeof(int32_t));
        teacher.evaluate(in, in);
        const Tensor logits = on_host(teacher.logits());  // [B·pos, V]
        each_row(B, [&](int64_t b) {
          if (pos == P)
            for (int64_t t = 0; t < P - 1; ++t) record(s, logits, b * pos + t, j0 + b, t, out, V);
          record(s, logits, b * pos + pos - 1, j0 + b, pos - 1, out, V);
          toks[b * Ls + pos] = draw(s, logits, b * pos + pos - 1, V, first + j0 + b, pos);
        });
      }
    }
    if (on_batch) on_batch(B * Ls);
  }
}

}  // namespace retort

// See corpus_generator.h.
#include "launch/corpus_generator.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/check.h"
#include "core/ops.h"
#include "core/random.h"
#include "models/kv_cache_decoder.h"

namespace retort {
namespace {

// t itself on the host, else a host copy.
Tensor on_host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); }

// The top-k rows of logits [R, V] (on the logits' device: from a GPU only [R, k] crosses to
// the host), ready to be stored.
struct TopkRows {
  Tensor ids, logprobs;  // [R, k] on the host
};
TopkRows topk_rows(const GeneratorSettings& s, const Tensor& logits) {
  const Device dev = logits.device();
  const Shape shape{logits.dim(0), s.k};
  Tensor ids = Tensor::empty(shape, DType::I32, dev);
  Tensor logprobs = Tensor::empty(shape, DType::F32, dev);
  ops::topk_log_softmax(ids, logprobs, logits, s.logit_temperature);
  return {on_host(ids), on_host(logprobs)};
}

// Row r of `top` as top-k row t of sequence j of the block.
void record(const GeneratorSettings& s, const TopkRows& top, int64_t r, int64_t j, int64_t t,
            CorpusSequences& out) {
  const int64_t off = (j * (s.seq_len - 1) + t) * s.k;
  std::memcpy(out.topk_ids.data() + off, top.ids.data<int32_t>() + r * s.k, s.k * sizeof(int32_t));
  std::memcpy(out.topk_logprobs.data() + off, top.logprobs.data<float>() + r * s.k,
              s.k * sizeof(float));
}

// Rows b·n + n − 1 (b < B) of logits [B·n, V], each sequence's last: [B, V] on their device
// (one copy: sequence b's rows are n "heads" of V, the last one taken).
Tensor last_rows(const Tensor& logits, int64_t B, int64_t n) {
  if (n == 1) return logits;
  const int64_t V = logits.dim(1);
  Tensor rows = Tensor::empty({B, V}, DType::F32, logits.device());
  ops::copy_heads(rows.view({B, 1, 1, V}), ops::Heads(logits.view({B, 1, n, V}), n - 1, 1));
  return rows;
}

// Token t of sequences seq, seq + 1, ... drawn from their rows [B, V] (where the rows are).
std::vector<int32_t> draw(const GeneratorSettings& s, const Tensor& rows, int64_t seq, int64_t t) {
  std::vector<double> u(rows.dim(0));
  for (size_t b = 0; b < u.size(); ++b)
    u[b] = rng::uniform(s.seed, rng::hash(kSampleStream, uint64_t(seq) + b), uint64_t(t));
  return ops::sample_tokens(rows, u, s.sampling);
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
      const TopkRows top = topk_rows(s, teacher.logits());  // [B·T, k]
      for (int64_t r = 0; r < B * T; ++r) record(s, top, r, j0 + r / T, r % T, out);
    } else if (dec) {  // prefill the prompt, then one token per step
      Tensor prompt = Tensor::empty({B, P}, DType::I32);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(prompt.data<int32_t>() + b * P, toks + b * Ls, P * sizeof(int32_t));
      const Tensor logits = dec->prefill(prompt);  // [B·P, V]
      const TopkRows top = topk_rows(s, logits);
      for (int64_t r = 0; r < B * P; ++r) record(s, top, r, j0 + r / P, r % P, out);
      const std::vector<int32_t> drawn = draw(s, last_rows(logits, B, P), first + j0, P);
      for (int64_t b = 0; b < B; ++b) toks[b * Ls + P] = drawn[b];
      Tensor step = Tensor::empty({B}, DType::I32);
      for (int64_t pos = P; pos < Ls - 1; ++pos) {
        for (int64_t b = 0; b < B; ++b) step.data<int32_t>()[b] = toks[b * Ls + pos];
        const Tensor next = dec->step(step);  // [B, V]: after tokens ≤ pos
        const TopkRows top_next = topk_rows(s, next);
        for (int64_t b = 0; b < B; ++b) record(s, top_next, b, j0 + b, pos, out);
        const std::vector<int32_t> drawn_next = draw(s, next, first + j0, pos + 1);
        for (int64_t b = 0; b < B; ++b) toks[b * Ls + pos + 1] = drawn_next[b];
      }
    } else {  // sample without a cache: recompute the whole prefix for every new token
      for (int64_t pos = P; pos < Ls; ++pos) {  // draw token `pos` from the prefix [0, pos)
        Tensor in = Tensor::empty({B, pos}, DType::I32);
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(in.data<int32_t>() + b * pos, toks + b * Ls, pos * sizeof(int32_t));
        teacher.evaluate(in, in);
        const Tensor last = last_rows(teacher.logits(), B, pos);  // [B, V]
        if (pos == P) {  // the prompt's rows too
          const TopkRows top = topk_rows(s, teacher.logits());  // [B·P, k]
          for (int64_t r = 0; r < B * P; ++r) record(s, top, r, j0 + r / P, r % P, out);
        } else {
          const TopkRows top = topk_rows(s, last);
          for (int64_t b = 0; b < B; ++b) record(s, top, b, j0 + b, pos - 1, out);
        }
        const std::vector<int32_t> drawn = draw(s, last, first + j0, pos);
        for (int64_t b = 0; b < B; ++b) toks[b * Ls + pos] = drawn[b];
      }
    }
    if (on_batch) on_batch(B * Ls);
  }
}

}  // namespace retort

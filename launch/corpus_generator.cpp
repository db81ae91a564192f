// See corpus_generator.h.
#include "launch/corpus_generator.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/check.h"
#include "core/ops.h"
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

// Token t of sequences seq0, seq0 + 1, ... (row r: sequence seq0 + r) drawn from their rows
// [B, V] into tokens [B] (both where the rows are).
void draw(const GeneratorSettings& s, const Tensor& rows, int64_t seq0, int64_t t, Tensor& tokens) {
  ops::sample_tokens(tokens, rows, RowDraws{s.seed, kSampleStream, seq0, uint64_t(t)}, s.sampling);
}

// Sample mode with the KV cache for sequences j0 .. j0 + B − 1 of the block (global seq0 ..),
// whose prompts [B, P] are in toks (rows of Ls); fills the rest of toks and the top-k rows.
// Between the prefill and the end of the batch nothing crosses to the host: each drawn token
// feeds the next step where it was drawn (drawn [Ls − P, B]: row i = token P + i of each
// sequence), and the steps' top-k rows are kept there (up to s.kept_topk_bytes), so a
// GPU runs the whole decode without waiting for the host.
void sample_with_cache(KvCacheDecoder& dec, const GeneratorSettings& s, int64_t B, int64_t P,
                       int64_t seq0, int64_t j0, int32_t* toks, CorpusSequences& out) {
  const int64_t Ls = s.seq_len, k = s.k;
  Tensor prompt = Tensor::empty({B, P}, DType::I32);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(prompt.data<int32_t>() + b * P, toks + b * Ls, P * sizeof(int32_t));
  const Tensor logits = dec.prefill(prompt);  // [B·P, V]
  const TopkRows top = topk_rows(s, logits);
  for (int64_t r = 0; r < B * P; ++r) record(s, top, r, j0 + r / P, r % P, out);
  const Device dev = logits.device();
  Tensor drawn = Tensor::empty({Ls - P, B}, DType::I32, dev);
  const auto drawn_row = [&](int64_t t) { return drawn.slice(t - P, t - P + 1).view({B}); };
  Tensor first = drawn_row(P);
  draw(s, last_rows(logits, B, P), seq0, P, first);

  const int64_t steps = Ls - 1 - P;
  const int64_t chunk =
      std::clamp<int64_t>(s.kept_topk_bytes / (B * k * 8), 1, std::max<int64_t>(steps, 1));
  Tensor ids = Tensor::empty({chunk, B, k}, DType::I32, dev);
  Tensor logprobs = Tensor::empty({chunk, B, k}, DType::F32, dev);
  int64_t kept = 0, first_kept = P;  // rows of positions first_kept .. first_kept + kept − 1
  const auto fetch_kept = [&] {
    const TopkRows rows{on_host(ids.slice(0, kept)), on_host(logprobs.slice(0, kept))};
    for (int64_t r = 0; r < kept * B; ++r) record(s, rows, r, j0 + r % B, first_kept + r / B, out);
    first_kept += kept;
    kept = 0;
  };
  for (int64_t pos = P; pos < Ls - 1; ++pos) {
    const Tensor next = dec.step(drawn_row(pos));  // [B, V]: after tokens ≤ pos
    Tensor step_ids = ids.slice(kept, kept + 1).view({B, k});
    Tensor step_logprobs = logprobs.slice(kept, kept + 1).view({B, k});
    ops::topk_log_softmax(step_ids, step_logprobs, next, s.logit_temperature);
    Tensor drawn_next = drawn_row(pos + 1);
    draw(s, next, seq0, pos + 1, drawn_next);
    if (++kept == chunk) fetch_kept();
  }
  if (kept > 0) fetch_kept();
  const Tensor got = on_host(drawn);
  for (int64_t t = P; t < Ls; ++t)
    for (int64_t b = 0; b < B; ++b) toks[b * Ls + t] = got.data<int32_t>()[(t - P) * B + b];
}

// The corpus reader's check (data/distill_corpus.cpp: a log-probability is <= 0), made as each
// batch is generated, on sequences j0 .. j0 + B − 1 of the block (global: first + j): a teacher
// whose logits are NaN or infinite ends the run at its first such batch, naming the sequence,
// instead of writing a corpus that `retort distill` would refuse.
void check_logprobs(const GeneratorSettings& s, const CorpusSequences& out, int64_t first,
                    int64_t j0, int64_t B) {
  const int64_t per_sequence = (s.seq_len - 1) * s.k;
  const float* p = out.topk_logprobs.data() + j0 * per_sequence;
  for (int64_t i = 0; i < B * per_sequence; ++i)
    if (!(p[i] <= 0.0f))
      throw Error(str_cat("generate: the teacher's top-k log-probability at sequence ",
                          first + j0 + i / per_sequence, ", position ", i % per_sequence / s.k,
                          " is ", p[i], ": its logits are not finite (a diverged or damaged "
                          "teacher checkpoint?)"));
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
  if (s.sample && s.kv_cache && count > 0)  // a cache for the largest batch this block runs
    dec = std::make_unique<KvCacheDecoder>(teacher, std::min(s.batch, count), Ls - 1,
                                           s.kv_cache_dtype);
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
      sample_with_cache(*dec, s, B, P, first + j0, j0, toks, out);
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
        Tensor drawn = Tensor::empty({B}, DType::I32, last.device());
        draw(s, last, first + j0, pos, drawn);
        const Tensor got = on_host(drawn);
        for (int64_t b = 0; b < B; ++b) toks[b * Ls + pos] = got.data<int32_t>()[b];
      }
    }
    check_logprobs(s, out, first, j0, B);
    if (on_batch) on_batch(B * Ls);
  }
}

}  // namespace retort

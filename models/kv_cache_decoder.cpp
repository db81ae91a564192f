// KV-cache decoding; see kv_cache_decoder.h. Same op sequence as models/block.cpp's forward,
// with the attention split into "prefill" (causal over the new tokens, pos 0) and "decode"
// (one new query over the cache).
#include "models/kv_cache_decoder.h"

#include <algorithm>

#include "core/check.h"
#include "core/ops.h"
#include "models/rope_frequencies.h"

namespace retort {

KvCacheDecoder::KvCacheDecoder(const Transformer& model, int64_t max_batch, int64_t max_len,
                               DType cache_dtype)
    : cfg_(model.config()),
      device_(model.device()),
      max_batch_(max_batch),
      max_len_(max_len),
      rows_(cache_rows(model.config(), max_len)) {
  RETORT_CHECK(max_batch >= 1, "KvCacheDecoder: max_batch ", max_batch, " < 1");
  RETORT_CHECK(cache_dtype == DType::F32 || cache_dtype == DType::BF16,
               "KvCacheDecoder: the cache must be float32 or bfloat16");
  RETORT_CHECK(max_len >= 1 && max_len <= cfg_.seq_len, "KvCacheDecoder: max_len ", max_len,
               " outside [1, seq_len = ", cfg_.seq_len, "]");
  auto w = [&](const std::string& name) { return model.parameter(name).value; };
  auto product = [&](const std::string& name) { return model.product_weight(name); };
  embed_ = w("model.embed_tokens.weight");
  final_norm_ = w("model.norm.weight");
  head_ = product(cfg_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  const Shape cache = {max_batch, rows_, cfg_.n_kv_heads, cfg_.head_dim};
  // Matrices that lie one after another in the flat layout, stacked as one [Σ rows, in] (one
  // product), as the training model does.
  const auto stacked = [&](const std::string& p, std::initializer_list<const char*> names,
                           bool fp32 = false) {
    std::vector<Tensor> parts;
    std::string listed;
    for (const char* name : names) {
      parts.push_back(fp32 ? w(p + name) : product(p + name));
      listed += (listed.empty() ? "" : ", ") + p + name;
    }
    const Tensor t = stack_rows(parts);
    RETORT_CHECK(t.defined(), "KvCacheDecoder: ", listed,
                 " do not lie one after another in the flat layout");
    return t;
  };
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    const std::string p = str_cat("model.layers.", i, ".");
    Layer l;
    l.ln_in = w(p + "input_layernorm.weight");
    l.w_qkv = stacked(p, {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                          "self_attn.v_proj.weight"});
    if (cfg_.qkv_bias)
      l.qkv_bias = stacked(p, {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                               "self_attn.v_proj.bias"}, true);
    l.wo = product(p + "self_attn.o_proj.weight");
    if (cfg_.qk_norm) {
      l.q_norm = w(p + "self_attn.q_norm.weight");
      l.k_norm = w(p + "self_attn.k_norm.weight");
    }
    l.ln_post = w(p + "post_attention_layernorm.weight");
    l.w_gate_up = stacked(p, {"mlp.gate_proj.weight", "mlp.up_proj.weight"});
    l.w_down = product(p + "mlp.down_proj.weight");
    l.k_cache = Tensor::zeros(cache, cache_dtype, device_);
    l.v_cache = Tensor::zeros(cache, cache_dtype, device_);
    layers_.push_back(l);
  }
  rope_ = ops::rope_table(max_len, rope_inverse_frequencies(cfg_)).to(device_);
  if (cfg_.no_rope_interval > 0)  // NoPE layers: frequencies 0, a table of cos 1, sin 0
    no_rope_ = ops::rope_table(max_len, std::vector<double>(size_t(cfg_.head_dim / 2), 0.0)).to(device_);
}

int64_t KvCacheDecoder::cache_rows(const ModelConfig& cfg, int64_t max_len) {
  return cfg.max_keys_seen(max_len);
}

int64_t KvCacheDecoder::cache_bytes(const ModelConfig& cfg, int64_t max_batch, int64_t max_len,
                                    DType cache_dtype) {
  return 2 * cfg.n_layers * max_batch * cache_rows(cfg, max_len) * cfg.n_kv_heads *
         cfg.head_dim * int64_t(dtype_size(cache_dtype));
}

int64_t KvCacheDecoder::cache_bytes() const {
  int64_t bytes = 0;
  for (const Layer& l : layers_) bytes += int64_t(l.k_cache.nbytes() + l.v_cache.nbytes());
  return bytes;
}

Tensor KvCacheDecoder::buf(size_t slot, const Shape& shape, DType dtype) {
  if (scratch_.size() <= slot) scratch_.resize(slot + 1);
  const int64_t n = shape_numel(shape);
  if (!scratch_[slot].defined() || scratch_[slot].numel() < n || scratch_[slot].dtype() != dtype)
    scratch_[slot] = Tensor::empty({n}, dtype, device_);
  return scratch_[slot].flat(0, n).view(shape);
}

const Tensor& KvCacheDecoder::prefill(const Tensor& prompts) {
  RETORT_CHECK(prompts.ndim() == 2 && prompts.dtype() == DType::I32,
               "KvCacheDecoder::prefill: prompts must be [B, P] int32, got ",
               shape_str(prompts.shape()));
  const int64_t B = prompts.dim(0), P = prompts.dim(1);
  RETORT_CHECK(B >= 1 && B <= max_batch_ && P >= 1 && P <= max_len_,
               "KvCacheDecoder::prefill: prompts ", shape_str(prompts.shape()), " exceed [",
               max_batch_, ", ", max_len_, "]");
  B_ = B;
  pos_ = 0;
  forward(prompts, B, P);
  return logits_;
}

const Tensor& KvCacheDecoder::step(const Tensor& tokens) {
  RETORT_CHECK(B_ > 0, "KvCacheDecoder::step before prefill");
  RETORT_CHECK(tokens.numel() == B_ && tokens.dtype() == DType::I32,
               "KvCacheDecoder::step: tokens must be [", B_, "] int32, got ",
               shape_str(tokens.shape()));
  RETORT_CHECK(pos_ < max_len_, "KvCacheDecoder::step: cache full (", max_len_, " positions)");
  forward(tokens, B_, 1);
  return logits_;
}

void KvCacheDecoder::append_to_cache(Tensor& cache, const ops::Heads& kv, int64_t B, int64_t n,
                                     int64_t p0) {
  const int64_t Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  if (n == 1) {  // a decode step: one copy, each sequence's cache a row of rows_·Hkv heads
    const Tensor rows = cache.slice(0, B).view({B, 1, rows_ * Hkv, hd});
    ops::copy_heads(ops::Heads(rows, (p0 % rows_) * Hkv, Hkv), kv);
    return;
  }
  // the prefill: positions [first, p0 + n) (the last rows_ of them), in runs of consecutive
  // ring rows (two when they wrap), each sequence's apart
  const int64_t end = p0 + n, S = kv.x.dim(2);  // S: heads per token of kv's packed rows
  for (int64_t p = std::max(p0, end - rows_); p < end;) {
    const int64_t row = p % rows_, len = std::min(end - p, rows_ - row);
    for (int64_t b = 0; b < B; ++b) {
      const Tensor dst = cache.slice(b, b + 1).view({rows_, Hkv, hd}).slice(row, row + len);
      const Tensor src = kv.x.slice(b, b + 1).view({n, S, hd}).slice(p - p0, p - p0 + len);
      ops::copy_heads(dst.view({1, len, Hkv, hd}),
                      ops::Heads(src.view({1, len, S, hd}), kv.first, kv.count));
    }
    p += len;
  }
}

void KvCacheDecoder::forward(const Tensor& tokens, int64_t B, int64_t n) {
  const int64_t R = B * n, d = cfg_.d_model, H = cfg_.n_heads, Hkv = cfg_.n_kv_heads,
                hd = cfg_.head_dim, F = cfg_.d_ff, V = cfg_.vocab_size, p0 = pos_;
  const float eps = float(cfg_.norm_eps);
  const Tensor rope = rope_.slice(p0, p0 + n);
  const Tensor no_rope = no_rope_.defined() ? no_rope_.slice(p0, p0 + n) : Tensor();
  const int64_t S = H + 2 * Hkv;  // heads per row of the q|k|v product: q, then k, then v
  // the products' inputs h, att and act in bf16 when their weights are (armed): each rounded by
  // the op that writes it instead of by a conversion before every product (the same bits)
  const DType in = head_.dtype();
  Tensor x = buf(0, {R, d}), h = buf(1, {R, d}, in), rstd = buf(2, {R});
  Tensor qkv = buf(3, {R, S * hd});
  Tensor qr = buf(4, {R, H * hd}), kr = buf(5, {R, Hkv * hd});  // after (qk-norm and) RoPE
  Tensor rstd_q = buf(6, {R * H}), rstd_k = buf(7, {R * Hkv});
  Tensor att = buf(8, {R, H * hd}, in), lse = buf(9, {B * H * n});
  Tensor gate_up = buf(10, {R, 2 * F}), act = buf(11, {R, F}, in);
  Tensor ids = buf(12, {R}, DType::I32);
  ops::copy(ids, tokens.view({R}));  // tokens may come from the host

  ops::embedding_forward(x, ids, embed_);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    Layer& l = layers_[size_t(i)];
    const Tensor& table = cfg_.rope_on_layer(i) ? rope : no_rope;
    // ---- attention ----
    ops::rmsnorm_forward(h, rstd, x, l.ln_in, eps);
    ops::matmul(qkv, h, false, l.w_qkv, true);  // each row: q heads, k heads, v heads
    if (cfg_.qkv_bias) ops::bias_add(qkv, l.qkv_bias);
    const Tensor qkv4 = qkv.view({B, n, S, hd});
    const ops::Heads q(qkv4, 0, H), k(qkv4, H, Hkv), v(qkv4, H + Hkv, Hkv);
    Tensor q4 = qr.view({B, n, H, hd}), k4 = kr.view({B, n, Hkv, hd});
    if (cfg_.qk_norm) {  // per head over hd, then RoPE at positions p0 .. p0+n-1
      ops::rmsnorm_rope_forward(q4, rstd_q, q, l.q_norm, table, eps);
      ops::rmsnorm_rope_forward(k4, rstd_k, k, l.k_norm, table, eps);
    } else {
      ops::rope_forward(q4, q, table);
      ops::rope_forward(k4, k, table);
    }
    append_to_cache(l.k_cache, k4, B, n, p0);
    append_to_cache(l.v_cache, v, B, n, p0);
    if (p0 == 0) {  // prefill: causal attention over the new tokens
      Tensor att4 = att.view({B, n, H, hd});
      ops::attention_forward(att4, lse, q4, k4, v, cfg_.sliding_window);
    } else {        // decode: one query per sequence over the cache
      RETORT_CHECK(n == 1, "KvCacheDecoder: after the prefill tokens come one at a time");
      Tensor att3 = att.view({B, H, hd});
      // the ring holds exactly the keys this query sees (with no window: positions 0..p0)
      ops::attention_decode(att3, qr.view({B, H, hd}), l.k_cache.slice(0, B),
                            l.v_cache.slice(0, B), std::min(p0 + 1, rows_));
    }
    ops::matmul(x, att, false, l.wo, true, 1.0f, 1.0f);  // x += att Woᵀ
    // ---- MLP ----
    ops::rmsnorm_forward(h, rstd, x, l.ln_post, eps);
    ops::matmul(gate_up, h, false, l.w_gate_up, true);  // [R, 2F]: gate, up per row
    ops::swiglu_forward(act, gate_up);
    ops::matmul(x, act, false, l.w_down, true, 1.0f, 1.0f);  // x += act W_downᵀ
  }
  ops::rmsnorm_forward(h, rstd, x, final_norm_, eps);
  if (!logits_.defined() || logits_.numel() != R * V) logits_ = Tensor::empty({R, V}, DType::F32, device_);
  ops::matmul(logits_, h, false, head_, true);  // [R, V] = h headᵀ
  pos_ += n;
}

}  // namespace retort

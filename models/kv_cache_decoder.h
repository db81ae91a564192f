// Incremental decoding of the SPEC §1 model with a key/value cache (generation).
//
// prefill(prompts [B, P]) runs the prompt through every layer like Transformer::evaluate
// (causal attention over the prompt) and stores each layer's keys and values — after
// qk-norm and RoPE — in caches [B_max, T_max, Hkv, hd]. step(tokens [B]) then feeds one
// token per sequence at position pos(): per layer
//   q, k, v = projections of RMSNorm(x)   (one product, as in training; qk-norm and RoPE at
//                                          angle pos·inv_freq in one pass)
//   cache[:, pos] = k, v;  a = softmax(q k[0..pos]ᵀ / sqrt(hd)) v[0..pos]
// so a step costs O(pos) attention instead of recomputing the whole prefix. With a sliding
// window W (model.sliding_window) shorter than max_len the cache is a ring of W rows: position
// p lives in row p mod W, so it holds exactly the keys a query sees and attention reads all of
// its valid rows (in ring order: softmax does not care which).
// Logits: prefill gives [B·P, V] (every prompt position), step gives [B, V].
// All sequences of a batch share the position (same prompt length). Reads the model's
// weights (no copy), the products' through Transformer::product_weight(): the bf16 copies when
// the model was armed before the decoder was made (bf16 products, generate.precision), which
// it must stay while the decoder lives (the products' inputs are then bf16 too, each rounded by
// the op that writes it: the bits a product rounding its fp32 input would give); the model must
// outlive the decoder.
#pragma once
#include <cstdint>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"
#include "models/transformer.h"

namespace retort {

class KvCacheDecoder {
 public:
  // max_batch sequences of up to max_len tokens (max_len <= the model's seq_len); the cache's
  // keys and values in cache_dtype (F32, or BF16: rounded once as they are stored, half the
  // memory and half the bytes each step's attention reads; the prefill's own attention reads
  // the prompt's keys and values unrounded).
  KvCacheDecoder(const Transformer& model, int64_t max_batch, int64_t max_len,
                 DType cache_dtype = DType::F32);

  // Bytes of the caches for max_batch sequences of max_len tokens: 2 (keys, values) · n_layers ·
  // max_batch · rows · n_kv_heads · head_dim · the dtype's size, rows = max_len or the window
  // when shorter (what the constructor allocates; `retort info` prints it for generate.batch).
  static int64_t cache_bytes(const ModelConfig& cfg, int64_t max_batch, int64_t max_len,
                             DType cache_dtype);
  int64_t cache_bytes() const;

  // prompts: [B, P] I32, 1 <= B <= max_batch, 1 <= P <= max_len. Resets the cache.
  const Tensor& prefill(const Tensor& prompts);
  // tokens: [B] I32 at position pos() (B as in the last prefill). Advances pos() by 1.
  const Tensor& step(const Tensor& tokens);
  int64_t pos() const { return pos_; }
  int64_t batch() const { return B_; }

 private:
  struct Layer {
    // stacked as in training (qkv_bias: the fp32 q, k, v biases, [(H + 2·Hkv)·hd])
    Tensor ln_in, w_qkv, qkv_bias, wo, q_norm, k_norm, ln_post, w_gate_up, w_down;
    Tensor k_cache, v_cache;  // [max_batch, rows_, Hkv, hd] in the cache dtype
  };
  // Runs tokens [B, n] at positions [pos_, pos_ + n) through the model; fills logits_.
  void forward(const Tensor& tokens, int64_t B, int64_t n);
  // cache[b, p mod rows_] = kv of sequence b at position p, for p in [p0, p0 + n) (kv: [B, n,
  // Hkv, hd] heads, b < B; of a prefill longer than the ring only its last rows_ positions);
  // one copy for a decode step (n = 1).
  void append_to_cache(Tensor& cache, const ops::Heads& kv, int64_t B, int64_t n, int64_t p0);
  // Rows of each sequence's cache: max_len, or the sliding window when shorter (a ring).
  static int64_t cache_rows(const ModelConfig& cfg, int64_t max_len);
  // Scratch tensor `slot` on the model's device, grown as needed.
  Tensor buf(size_t slot, const Shape& shape, DType dtype = DType::F32);

  ModelConfig cfg_;
  Device device_;  // the model's: caches, scratch and logits live there
  int64_t max_batch_, max_len_, rows_;
  Tensor embed_, final_norm_, head_;  // head_: the product's copy of embed_ when tied
  std::vector<Layer> layers_;
  Tensor rope_;     // [max_len, hd]
  Tensor no_rope_;  // [max_len, hd], cos 1 and sin 0: the NoPE layers' (model.no_rope_interval)
  std::vector<Tensor> scratch_;
  Tensor logits_;
  int64_t B_ = 0, pos_ = 0;
};

}  // namespace retort

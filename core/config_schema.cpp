// The configuration schema: every key retort reads, with its type, default and a one-line
// doc. docs/CONFIG.md is generated from this table (config_reference_markdown) and a unit
// test keeps the two equal. Keys are "section.name"; sections appear in this order.
#include <sstream>

#include "core/config.h"

namespace retort {

namespace {
using T = ConfigType;
}

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = {
      {"run.dir", T::String, "runs/default",
       "run directory: resolved config, metrics.jsonl, summary.json, checkpoints/"},

      {"model.vocab_size", T::Int, "4096", "vocabulary size (must match the tokenizer)"},
      {"model.d_model", T::Int, "256", "residual stream width"},
      {"model.n_layers", T::Int, "4", "number of transformer blocks"},
      {"model.n_heads", T::Int, "4", "query heads per attention layer"},
      {"model.n_kv_heads", T::Int, "0", "key/value heads (grouped-query attention); 0 = n_heads"},
      {"model.head_dim", T::Int, "0", "width of one head; 0 = d_model / n_heads"},
      {"model.d_ff", T::Int, "0",
       "SwiGLU hidden width; 0 = 8/3 * d_model rounded up to a multiple of 64"},
      {"model.rope_theta", T::Float, "500000", "RoPE base frequency"},
      {"model.rope_scaling", T::String, "none",
       "RoPE frequency scaling: none, or llama3 (Llama 3.1 / 3.2 / 3.3: long wavelengths divided by "
       "rope_scaling_factor, short ones kept, a smooth blend between)"},
      {"model.rope_scaling_factor", T::Float, "8", "llama3 scaling: the factor long wavelengths are stretched by"},
      {"model.rope_low_freq_factor", T::Float, "1",
       "llama3 scaling: wavelengths above rope_original_max_position / this are divided by the factor"},
      {"model.rope_high_freq_factor", T::Float, "4",
       "llama3 scaling: wavelengths below rope_original_max_position / this are kept"},
      {"model.rope_original_max_position", T::Int, "8192", "llama3 scaling: the context the model was first trained at"},
      {"model.norm_eps", T::Float, "1e-5", "RMSNorm epsilon"},
      {"model.qk_norm", T::Bool, "true", "RMSNorm on queries and keys (per head) before RoPE"},
      {"model.qkv_bias", T::Bool, "false", "biases on the q, k and v projections (Qwen2, Qwen2.5)"},
      {"model.sliding_window", T::Int, "0",
       "sliding-window attention (Mistral 7B v0.1, Phi-3-4k): a token attends to itself and the "
       "sliding_window - 1 tokens before it; 0 = every earlier token"},
      {"model.no_rope_interval", T::Int, "0",
       "NoPE layers (SmolLM3: 4): every no_rope_interval-th layer (layers N-1, 2N-1, ...) takes no "
       "RoPE; 0 = RoPE on every layer"},
      {"model.tie_embeddings", T::Bool, "true", "share the input embedding with the output head"},
      {"model.seq_len", T::Int, "256", "training context length in tokens"},
      {"model.init", T::String, "normal",
       "weight initialisation: normal, mup_simple (std 1/sqrt(fan_in)) or mup (muP from "
       "model.mup_base_width: docs/MODEL.md)"},
      {"model.init_std", T::Float, "0.02",
       "standard deviation of the initial weights (init mup: at the base width)"},
      {"model.mup_base_width", T::Int, "0",
       "muP's base width d0 (init mup, untied embeddings): the d_model whose init_std and "
       "train.lr this model inherits; the hidden matrices' and lm_head's init and AdamW "
       "learning rate scale with d0 / d_model, so one learning rate carries across widths "
       "(docs/MODEL.md); 0 = no muP"},

      {"data.train", T::String, "", "training token dataset (HDF5, written by retort tokenize)"},
      {"data.val", T::String, "", "validation token dataset (HDF5)"},
      {"data.tokenizer", T::String, "",
       "tokenizer.model path, recorded for later generation and decoding"},

      {"tokenize.inputs", T::StringList, "[]", "input text files (.txt or .jsonl)"},
      {"tokenize.out", T::String, "data-cache/tokens",
       "output directory: tokenizer.model, train and val token datasets"},
      {"tokenize.vocab_size", T::Int, "4096", "SentencePiece vocabulary size"},
      {"tokenize.val_fraction", T::Float, "0.05", "fraction of documents held out for validation"},
      {"tokenize.seed", T::Int, "1234", "seed for the train/validation split"},
      {"tokenize.jsonl_field", T::String, "text", "field holding the text in .jsonl inputs"},
      {"tokenize.character_coverage", T::Float, "0.9995",
       "SentencePiece character coverage"},
      {"tokenize.train_sample_bytes", T::Int, "1000000000",
       "at most this much text (bytes) trains the tokenizer: the train documents in a seeded hash "
       "order up to the first that would exceed it (all of them when they fit)"},
      {"tokenize.tokenizer", T::String, "",
       "encode with this SentencePiece tokenizer.model or Hugging Face byte-level BPE tokenizer.json "
       "(or a directory holding one: an earlier tokenize.out, a transformers directory) instead of "
       "training one; copied to tokenize.out"},
      {"tokenize.bos_token", T::String, "",
       "put this token before every document, as the teacher's own tokenizer does (Llama 3's "
       "<|begin_of_text|>, Mistral's and Llama 2's <s>): a tokenizer.json's added token or a "
       "tokenizer.model's piece; empty: none"},

      {"train.steps", T::Int, "1000", "optimizer steps"},
      {"train.seed", T::Int, "1", "seed for initialisation and data order"},
      {"train.batch_tokens", T::Int, "16384", "global batch size in tokens (all ranks together)"},
      {"train.micro_batch", T::Int, "0",
       "sequences per micro-step (gradient accumulation); 0 = whole batch at once"},
      {"train.lr", T::Float, "3e-3", "peak learning rate"},
      {"train.min_lr_ratio", T::Float, "0.1", "the decay's floor (cosine or wsd) as a fraction of the peak"},
      {"train.warmup_steps", T::Int, "100", "linear warmup steps"},
      {"train.lr_schedule", T::String, "cosine",
       "after warmup: cosine (decay to min_lr_ratio over the rest of the run) or wsd "
       "(warmup-stable-decay: the peak until the last wsd_decay_fraction of the steps, then a "
       "decay to min_lr_ratio)"},
      {"train.wsd_decay_fraction", T::Float, "0.2",
       "wsd: the fraction of train.steps at the end that decays (at least one step)"},
      {"train.wsd_decay_shape", T::String, "linear",
       "wsd: the decay's shape, linear (1 - p) or sqrt (1 - sqrt(p)), p the decay's progress"},
      {"train.branch_from", T::String, "",
       "start a fresh run from another run's checkpoint (its step, weights and AdamW state) "
       "instead of step 0: a cooldown branch of a longer wsd run (docs/SWEEPS.md); --resume "
       "prefers the run's own checkpoints"},
      {"train.beta1", T::Float, "0.9", "AdamW beta1"},
      {"train.beta2", T::Float, "0.95", "AdamW beta2"},
      {"train.eps", T::Float, "1e-8", "AdamW epsilon"},
      {"train.weight_decay", T::Float, "0.1", "AdamW decoupled weight decay"},
      {"train.grad_clip", T::Float, "1.0", "clip the global gradient norm to this; 0 disables"},
      {"train.precision", T::String, "fp32",
       "fp32, or bf16 mixed precision: matmul operands in bfloat16 with fp32 accumulation, and "
       "the activations between ops stored in bf16, rounded where produced (norm outputs, q, k, "
       "v, attention output, gate, up, SwiGLU output, the logits (fp32 under a distillation "
       "loss) and their gradients); master weights, gradients, AdamW state, the residual stream, "
       "norm statistics and the loss (summed in fp32) stay fp32. bf16 "
       "is the fast path on GPUs (tensor cores, cuDNN attention, half the activation memory); on "
       "the CPU it is an exact emulation for tests, not a speed-up"},
      {"train.attention", T::String, "auto",
       "causal attention kernel on GPUs: auto (cuDNN's fused flash attention when train.precision "
       "is bf16 and cuDNN has an engine for the shape, else the plain fp32 kernel), cudnn (at any "
       "precision: q, k, v and their gradients pass through bf16; an error if cuDNN has no "
       "engine) or plain. The CPU has one kernel and ignores it"},
      {"train.matmul_tuning", T::String, "heuristic",
       "how a GPU picks each product shape's cuBLASLt algorithm: heuristic (cuBLASLt's first "
       "choice; runs bitwise reproducible across processes) or timed (at a shape's first product "
       "up to 8 candidates are timed on its operands and the fastest is kept for the process: "
       "faster where the heuristic misjudges a shape, but another process may choose another "
       "algorithm, so a rerun is no longer bitwise identical; train and distill keep each rank's "
       "choices in the run directory, matmul_tuning/rank_NNNNN.json, and a resume on the same GPU "
       "model and cuBLASLt takes them, so it stays bitwise). `retort bench` reports what timed "
       "chose. The CPU ignores it"},
      {"train.nonfinite", T::String, "stop",
       "non-finite loss or gradient norm: stop (error naming the step and the first bad gradient) or skip (no update; counted in metrics.jsonl as skipped_steps)"},
      {"train.max_skipped", T::Int, "10", "with train.nonfinite: skip, stop after this many consecutive skipped steps"},
      {"train.spike_zscore", T::Float, "6.0",
       "log loss_spike_z in metrics.jsonl when a step's loss is this many standard deviations above the last 50 steps; 0 disables"},
      {"train.z_loss", T::Float, "1e-4", "z-loss coefficient on log(sum(exp(logits)))^2"},
      {"train.recompute", T::Bool, "false", "recompute block activations in backward"},
      {"train.log_every", T::Int, "10", "write a metrics.jsonl line every this many steps"},

      {"eval.every", T::Int, "100", "validation every this many steps; 0 = only at the end"},
      {"eval.max_windows", T::Int, "64", "validation windows per evaluation"},

      {"checkpoint.every", T::Int, "0", "checkpoint every this many steps; 0 = only at the end"},
      {"checkpoint.keep_last", T::Int, "3", "checkpoints kept in the run directory"},
      {"checkpoint.keep_steps", T::IntList, "[]",
       "also checkpoint after these steps and never delete those checkpoints (the branch points "
       "of cooldown branches, train.branch_from; docs/SWEEPS.md)"},
      {"checkpoint.format", T::String, "auto",
       "auto | sharded | consolidated: sharded = every rank writes its own shard file (auto: when fsdp*tp > 1); consolidated = rank 0 writes whole tensors"},

      {"distill.corpus", T::String, "",
       "retort distill, offline: distillation corpus directory (manifest.json + shards); its "
       "sequences are the training data and its top-k the teacher distribution"},
      {"distill.teacher", T::String, "",
       "retort distill, online: teacher checkpoint (same vocabulary and tokenizer), run forward "
       "on every batch; exact KL over the vocabulary"},
      {"distill.lambda", T::Float, "1.0",
       "weight of the distillation term: (1-lambda)*CE + lambda*T^2*KL; 0 = plain CE on the "
       "corpus tokens (sequence-level distillation)"},
      {"distill.temperature", T::Float, "1.0",
       "softmax temperature T of teacher and student in the KL (offline: must equal the "
       "corpus' logit_temperature)"},
      {"distill.tail", T::String, "renormalize",
       "offline: teacher mass outside the top-k: renormalize (top-k probabilities rescaled to "
       "sum to 1) or bucket (one extra bucket vs the student's mass off the top-k)"},

      {"parallel.dp", T::Int, "1", "data-parallel replicas"},
      {"parallel.fsdp", T::Int, "1", "fully sharded data-parallel ranks"},
      {"parallel.fsdp_keep_params", T::Bool, "false",
       "fsdp: keep each unit's gathered parameters from its forward until its backward (less "
       "communication, full-model memory)"},
      {"parallel.tp", T::Int, "1", "tensor-parallel ranks (innermost mesh axis)"},
      {"parallel.sp", T::Bool, "false", "sequence parallelism inside the tensor-parallel group"},
      {"parallel.device", T::String, "cpu",
       "where each rank computes: cpu, or cuda (one rank per GPU, chosen by the rank's index on "
       "its node, so at most as many ranks per node as visible GPUs; NCCL between GPUs; needs a "
       "build with the CUDA backend; train, bench and distill on every mesh, generate)"},
      {"parallel.bucket_elems", T::Int, "1048576",
       "data parallel: gradient elements per all-reduce bucket (reduced while backward runs)"},
      {"parallel.grad_reduce", T::String, "fp32",
       "precision of the data-parallel gradient sums (dp all-reduce, fsdp reduce-scatter; "
       "tensor-parallel sums stay fp32): fp32, or bf16 (each rank's gradients rounded to bfloat16 "
       "and summed in bf16, half the bytes on the wire, then converted back to fp32; weights, "
       "clipping and AdamW stay fp32)"},
      {"parallel.param_gather", T::String, "fp32",
       "precision of fsdp's parameter all-gathers: fp32, or bf16 (each rank's parameter chunk "
       "rounded to bfloat16 and gathered in bf16, half the bytes on the wire and in the "
       "gathered unit, which the model reads as it arrived: bf16 products see the weights they "
       "round to anyway, but the norm gains (widened to fp32) and the embedding rows the lookup "
       "reads are rounded too, as under FSDP2's param_dtype; the shard, gradients and AdamW stay "
       "fp32; needs train.precision bf16)"},
      {"parallel.timeout_s", T::Float, "600",
       "the longest any collective may wait, in seconds; then the job ends (exit 124) with a line naming the ranks that do not respond or have not arrived; 0 = wait forever"},

      {"generate.teacher", T::String, "",
       "teacher checkpoint directory (consolidated or single-process; loaded whole on every rank)"},
      {"generate.data", T::String, "",
       "token dataset: score-mode text, sample-mode prompts, eos_id and tokenizer_sha256"},
      {"generate.out", T::String, "", "corpus directory to write (manifest.json + shard-NNNNN.h5)"},
      {"generate.mode", T::String, "score",
       "score: teacher-forced over data windows; sample: teacher-generated continuations"},
      {"generate.k", T::Int, "32", "top-k log-probabilities stored per position"},
      {"generate.num_sequences", T::Int, "0",
       "sequences to write; 0 = every window of generate.data (score) / every prompt (sample)"},
      {"generate.seq_len", T::Int, "0", "sequence length Ls (prompt included; Ls - 1 targets); 0 = the teacher's seq_len + 1 (at most that)"},
      {"generate.prompt_len", T::Int, "32",
       "sample: prompt tokens taken from data window i (0 = start from the EOS id alone)"},
      {"generate.temperature", T::Float, "1.0", "sample: softmax temperature; 0 = greedy (argmax)"},
      {"generate.top_k", T::Int, "0", "sample: keep the k most likely tokens; 0 = off"},
      {"generate.top_p", T::Float, "1.0", "sample: nucleus, smallest set with probability >= top_p"},
      {"generate.seed", T::Int, "1", "sample: the draw for (sequence i, position t) uses (seed, i, t)"},
      {"generate.logit_temperature", T::Float, "1.0",
       "stored log-probs are log_softmax(logits / logit_temperature)"},
      {"generate.logprob_dtype", T::String, "f16", "storage of topk_logprobs: f16 or f32"},
      {"generate.compression", T::Int, "0", "gzip level 1..9 with byte shuffle; 0 = none"},
      {"generate.shard_sequences", T::Int, "256", "sequences per shard file (the unit of resume)"},
      {"generate.batch", T::Int, "8", "sequences per forward pass (within one shard)"},
      {"generate.kv_cache", T::Bool, "true",
       "sample: decode with a KV cache; false recomputes the whole prefix per token (benchmarks)"},
      {"generate.precision", T::String, "fp32",
       "the teacher's products: fp32, or bf16 (weights rounded to bfloat16 once, fp32 "
       "accumulation, the KV cache's keys and values stored in bf16, every other op fp32; tensor "
       "cores on GPUs, emulated on the CPU); recorded as the corpus' teacher_precision"},

      {"bench.steps", T::Int, "10", "timed steps for retort bench"},
      {"bench.warmup", T::Int, "2", "untimed warmup steps before timing"},
      {"bench.ceiling_n", T::Int, "0",
       "size n of the n×n×n matmul that measures the device's ceiling; 0 = 8192 on a GPU, 1024 on "
       "the CPU"},
      {"bench.peak_tflops", T::Float, "0",
       "the device's peak dense TFLOP/s at train.precision, for the MFU figure (H100 SXM bf16: "
       "989); 0 = no MFU reported"},

      {"system.threads", T::Int, "0", "CPU threads per rank; 0 = OpenMP default (all cores)"},
  };
  return schema;
}

namespace {

const char* type_name(ConfigType t) {
  switch (t) {
    case ConfigType::Int: return "int";
    case ConfigType::Float: return "float";
    case ConfigType::Bool: return "bool";
    case ConfigType::String: return "string";
    case ConfigType::StringList: return "list of strings";
    case ConfigType::IntList: return "list of ints";
  }
  return "?";
}

std::string section_of(const std::string& key) { return key.substr(0, key.find('.')); }

}  // namespace

std::string config_reference_markdown() {
  std::ostringstream md;
  md << "# Configuration reference\n\n"
        "Generated from `core/config_schema.cpp`; do not edit by hand. Regenerate with\n"
        "`build/retort config --reference > docs/CONFIG.md` (a unit test checks it).\n\n"
        "Every job reads one YAML file of sections, for example\n\n"
        "```yaml\nmodel:\n  d_model: 512\n  n_layers: 8\ntrain:\n  steps: 2000\n  lr: 1.0e-3\n```\n\n"
        "Keys left out take the defaults below. After the file, `--set section.key=value`\n"
        "overrides are applied in order; the value is read as a YAML scalar, or a flow list\n"
        "`[a, b]` for list keys (a single value is a one-element list). String values are\n"
        "taken verbatim unless they start with a quote.\n"
        "`retort config CONFIG.yaml` prints the resolved config, which `run.dir` also keeps\n"
        "as `config.resolved.yaml`.\n\n"
        "Unknown keys, values of the wrong type and malformed YAML are errors (exit code 2)\n"
        "naming the file (or the `--set`) and the key, with the nearest known key as a\n"
        "suggestion.\n\n"
        "Types: `int` is an integer literal; `float` any number; `bool` is `true` or `false`;\n"
        "`list of strings` a YAML sequence or a single string; `list of ints` the same of integers.\n";
  std::string section;
  for (const ConfigKey& k : config_schema()) {
    if (section_of(k.key) != section) {
      section = section_of(k.key);
      md << "\n## " << section << "\n\n"
         << "| key | type | default | description |\n| --- | --- | --- | --- |\n";
    }
    std::string def = k.default_value;
    if (k.type == ConfigType::String) def = def.empty() ? "\"\"" : def;
    std::string doc;
    for (char c : k.doc) doc += c == '|' ? std::string("\\|") : std::string(1, c);
    md << "| `" << k.key << "` | " << type_name(k.type) << " | `" << def << "` | " << doc
       << " |\n";
  }
  return md.str();
}

}  // namespace retort

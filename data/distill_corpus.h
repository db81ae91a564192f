// Distillation corpus (SPEC §5): a directory with manifest.json and shard-NNNNN.h5 files.
// Each shard holds S sequences of length Ls:
//   tokens         int32 [S, Ls]
//   prompt_len     int32 [S]             (0 in score mode)
//   topk_ids       int32 [S, Ls-1, k]    row t: the teacher's k most likely ids for token t+1,
//   topk_logprobs  f16|f32 [S, Ls-1, k]  by descending log-prob = log-softmax(logits / τ_logit)
//   attributes     k, vocab_size, tokenizer_sha256, teacher_sha256, mode, sample_temperature,
//                  sample_top_k, sample_top_p, seed, logit_temperature
// manifest.json lists the shards in order with their sequence counts and the same metadata,
// and (retort generate) each shard's size in bytes and sha256. Shards and the manifest are
// written atomically (temp + fsync + rename); the manifest last. A reader checks a listed size
// and sha256 before libhdf5 parses the shard (libhdf5 1.10 can crash or hang on corrupt
// metadata); a manifest without them (older retort, other tools) is read unverified.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace retort {

struct CorpusMeta {
  int64_t k = 0;
  int64_t vocab_size = 0;
  int64_t seq_len = 0;  // Ls
  std::string tokenizer_sha256 = "none";
  std::string teacher_sha256 = "none";
  std::string mode = "score";  // "score" | "sample"
  double logit_temperature = 1.0;
  double sample_temperature = 1.0;
  int64_t sample_top_k = 0;  // 0 = off
  double sample_top_p = 1.0;
  uint64_t seed = 0;
  bool fp16_logprobs = true;  // storage dtype of topk_logprobs (reading accepts both)
  // The teacher's products: "fp32", or "bf16" (operands rounded to bfloat16, fp32 accumulation;
  // generate.precision). Absent in older corpora: fp32.
  std::string teacher_precision = "fp32";
};

// S sequences in host memory, row-major.
struct CorpusSequences {
  int64_t count = 0;                   // S
  std::vector<int32_t> tokens;         // [S, Ls]
  std::vector<int32_t> prompt_len;     // [S]
  std::vector<int32_t> topk_ids;       // [S, Ls-1, k]
  std::vector<float> topk_logprobs;    // [S, Ls-1, k]
};

// "shard-00042.h5"
std::string corpus_shard_name(int64_t index);

// One shard as manifest.json lists it.
struct CorpusShardEntry {
  CorpusShardEntry() = default;
  CorpusShardEntry(std::string file_, int64_t sequences_, int64_t bytes_ = -1, std::string sha256_ = "")
      : file(std::move(file_)), sequences(sequences_), bytes(bytes_), sha256(std::move(sha256_)) {}
  std::string file;     // relative to the corpus dir
  int64_t sequences = 0;
  int64_t bytes = -1;   // file size; -1 = not recorded
  std::string sha256;   // 64 lowercase hex digits of the whole file; "" = not recorded
  bool operator==(const CorpusShardEntry&) const = default;
};

// Writes shard `index` of the corpus in `dir` atomically (creates dir). compression_level:
// 0 = none, 1..9 = gzip with byte shuffle. Validates sizes against meta first. Returns the
// shard's manifest entry with the size and sha256 of the bytes written (the finished
// temporary file, read back before it is renamed into place).
CorpusShardEntry write_corpus_shard(const std::string& dir, int64_t index, const CorpusMeta& meta,
                                    const CorpusSequences& seqs, int compression_level);

// Writes dir/manifest.json atomically; "bytes" and "sha256" of the entries that have them.
void write_corpus_manifest(const std::string& dir, const CorpusMeta& meta,
                           const std::vector<CorpusShardEntry>& shards);

// The entry for dir/file as it is on disk now: its size and sha256 (reads the whole file).
CorpusShardEntry describe_corpus_shard(const std::string& dir, const std::string& file,
                                       int64_t sequences);
// Checks dir/e.file against the size and sha256 that `e` records (either may be absent: then
// it is not checked), reading only the file's bytes, never parsing them. Error, one line:
//   "<dir>/shard-00003.h5: corrupt: sha256 is <actual>, manifest.json records <expected> (...)"
// (or the size, or "file not found").
void verify_corpus_shard(const std::string& dir, const CorpusShardEntry& e);

// ---- lower-level pieces (used by CorpusReader and by `retort generate` to resume) ----

// First metadata field in which a and b differ, as "name (a vs b)"; "" when equal
// (logprob storage dtype included).
std::string corpus_meta_difference(const CorpusMeta& a, const CorpusMeta& b);
// dir/manifest.json: metadata and (if `shards`) the shard list. Error names the file and key.
CorpusMeta read_corpus_manifest(const std::string& dir, std::vector<CorpusShardEntry>* shards);
// A shard's attributes as CorpusMeta (seq_len from the tokens shape, fp16 from the dtype of
// topk_logprobs, logit_temperature 1 when absent) and its sequence count.
CorpusMeta read_corpus_shard_meta(const std::string& path, int64_t* sequences);
// Checks one shard against `meta` (attributes except the logprob dtype, dataset shapes and
// types) and, with check_values, reads it whole and checks every id and log-prob.
void check_corpus_shard(const std::string& path, const CorpusMeta& meta, int64_t sequences,
                        bool check_values);
// Appends rows [first, first+count) of one shard to `out` (count += count), checking values.
void read_corpus_shard_rows(const std::string& path, const CorpusMeta& meta, int64_t first,
                            int64_t count, CorpusSequences& out);

// Opens a corpus: reads manifest.json and checks every listed shard's attributes and dataset
// shapes against it. Every problem is a retort::Error naming the file and the dataset,
// attribute or index (missing manifest, truncated shard, shape/dtype/metadata mismatch, token
// id or top-k id outside [0, vocab_size), prompt_len outside [0, Ls]).
// Each shard is verified (verify_corpus_shard: size and sha256 from the manifest, when it has
// them) once, before its first H5Fopen. That first open is the attribute check here in the
// constructor, so opening a corpus reads every shard once (sha256: ~250 MB/s on one core,
// about 4 s per GB; docs/RELIABILITY.md); read() opens only shards verified there.
class CorpusReader {
 public:
  explicit CorpusReader(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const CorpusMeta& meta() const { return meta_; }
  const std::vector<CorpusShardEntry>& shards() const { return shards_; }
  int64_t num_sequences() const { return total_; }

  // Sequences [first, first + count) in global order (shards in manifest order), any span.
  void read(int64_t first, int64_t count, CorpusSequences& out) const;

 private:
  std::string dir_;
  CorpusMeta meta_;
  std::vector<CorpusShardEntry> shards_;
  std::vector<int64_t> shard_start_;  // global index of each shard's first sequence
  int64_t total_ = 0;
};

}  // namespace retort

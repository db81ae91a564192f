// SPEC §5 distillation corpus: round trip (float16 / float32, with and without gzip),
// corpora written by h5py, and every reader error path (the message names the file).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/hdf5.h"
#include "core/sha256.h"
#include "data/distill_corpus.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

stdfs::path temp_dir(const std::string& name) {
  stdfs::path d = stdfs::path(RETORT_BINARY_DIR) / "test_tmp" / "distill_corpus" / name;
  stdfs::remove_all(d);
  stdfs::create_directories(d);
  return d;
}

CorpusMeta meta(bool fp16) {
  CorpusMeta m;
  m.k = 3;
  m.vocab_size = 50;
  m.seq_len = 5;
  m.tokenizer_sha256 = "tok123";
  m.teacher_sha256 = "teach456";
  m.mode = "sample";
  m.logit_temperature = 1.5;
  m.sample_temperature = 0.7;
  m.sample_top_k = 20;
  m.sample_top_p = 0.9;
  m.seed = 1234567;
  m.fp16_logprobs = fp16;
  m.teacher_precision = "bf16";
  return m;
}

// S sequences with distinct, varied values; sequence i's first token is base + i.
CorpusSequences make_seqs(const CorpusMeta& m, int64_t S, int base) {
  CorpusSequences s;
  s.count = S;
  const int64_t Ls = m.seq_len, k = m.k;
  for (int64_t i = 0; i < S * Ls; ++i) s.tokens.push_back(int32_t((base + i * 7) % m.vocab_size));
  for (int64_t i = 0; i < S; ++i) s.prompt_len.push_back(int32_t(i % (Ls + 1)));
  for (int64_t i = 0; i < S * (Ls - 1) * k; ++i) {
    s.topk_ids.push_back(int32_t((base + i * 13) % m.vocab_size));
    s.topk_logprobs.push_back(-0.001f * float(i % k + 1) * float(base + i % 97) - 0.1234567f);
  }
  return s;
}

// Writes shards of the given sizes and the manifest; returns all sequences concatenated.
// checksums: the manifest records each shard's size and sha256 (as retort generate does);
// without, it is a manifest of an older version or another tool (shards read unverified,
// which tests that edit a shard in place after writing it rely on).
CorpusSequences write_corpus(const std::string& dir, const CorpusMeta& m,
                             const std::vector<int64_t>& sizes, int gzip, bool checksums = true) {
  CorpusSequences all;
  std::vector<CorpusShardEntry> entries;
  for (size_t i = 0; i < sizes.size(); ++i) {
    CorpusSequences s = make_seqs(m, sizes[i], int(i) * 11 + 1);
    const CorpusShardEntry e = write_corpus_shard(dir, int64_t(i), m, s, gzip);
    entries.push_back(checksums ? e : CorpusShardEntry{e.file, e.sequences});
    all.count += s.count;
    all.tokens.insert(all.tokens.end(), s.tokens.begin(), s.tokens.end());
    all.prompt_len.insert(all.prompt_len.end(), s.prompt_len.begin(), s.prompt_len.end());
    all.topk_ids.insert(all.topk_ids.end(), s.topk_ids.begin(), s.topk_ids.end());
    all.topk_logprobs.insert(all.topk_logprobs.end(), s.topk_logprobs.begin(), s.topk_logprobs.end());
  }
  write_corpus_manifest(dir, m, entries);
  return all;
}

void expect_round_trip(bool fp16, int gzip) {
  const std::string dir = temp_dir(str_cat("rt_", fp16, "_", gzip)).string();
  const CorpusMeta m = meta(fp16);
  const CorpusSequences want = write_corpus(dir, m, {4, 3, 5}, gzip);
  for (const auto& e : stdfs::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  CorpusReader r(dir);
  EXPECT_EQ(r.num_sequences(), 12);
  ASSERT_EQ(r.shards().size(), 3u);
  EXPECT_EQ(r.shards()[1].file, "shard-00001.h5");
  EXPECT_EQ(corpus_meta_difference(r.meta(), m), "");
  // spans that cross shard boundaries, and the whole corpus
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 12}, {3, 6}, {7, 1}, {11, 1}, {5, 0}}) {
    CorpusSequences got;
    r.read(first, count, got);
    ASSERT_EQ(got.count, count);
    const int64_t Ls = m.seq_len, row = (Ls - 1) * m.k;
    for (int64_t i = 0; i < count * Ls; ++i) ASSERT_EQ(got.tokens[i], want.tokens[first * Ls + i]);
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(got.prompt_len[i], want.prompt_len[first + i]);
    for (int64_t i = 0; i < count * row; ++i) {
      ASSERT_EQ(got.topk_ids[i], want.topk_ids[first * row + i]);
      const float w = want.topk_logprobs[first * row + i];
      if (fp16)  // binary16: relative error <= 2^-11
        ASSERT_NEAR(got.topk_logprobs[i], w, std::abs(w) * 4.9e-4f) << i;
      else
        ASSERT_EQ(got.topk_logprobs[i], w);
    }
  }
  h5::File f = h5::File::open_read(dir + "/shard-00000.h5");
  EXPECT_EQ(f.type_name("topk_logprobs"), fp16 ? "float16" : "float32");
  EXPECT_EQ(f.attr_string("mode"), "sample");
  EXPECT_EQ(f.attr_int("seed"), 1234567);
}

// Writes a file with h5py; `body` is Python using `f` (an open h5py.File) and np.
void python(const std::string& code) {
  // One script per process: ctest runs the cases of this file in parallel.
  std::string path = (stdfs::path(RETORT_BINARY_DIR) / "test_tmp" / "distill_corpus" /
                      str_cat("script-", ::getpid(), ".py")).string();
  std::ofstream(path) << "import h5py, numpy as np, json\n" << code;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + path).c_str()), 0) << code;
}

}  // namespace

TEST(DistillCorpus, ShardName) { EXPECT_EQ(corpus_shard_name(42), "shard-00042.h5"); }

TEST(DistillCorpus, HalfConversion) {
  // exact values, rounding to nearest even, overflow, subnormals
  for (float x : {0.0f, 1.0f, -2.5f, 65504.0f, -0.000061035156f, 5.9604645e-8f})
    EXPECT_EQ(h5::half_to_float(h5::float_to_half(x)), x) << x;
  EXPECT_EQ(h5::float_to_half(1.0f + 1.0f / 2048), h5::float_to_half(1.0f));  // tie -> even
  EXPECT_EQ(h5::half_to_float(h5::float_to_half(1.0f + 3.0f / 2048)), 1.0f + 4.0f / 2048);
  EXPECT_TRUE(std::isinf(h5::half_to_float(h5::float_to_half(70000.0f))));
  EXPECT_TRUE(std::isnan(h5::half_to_float(h5::float_to_half(NAN))));
  for (int i = 0; i < 20000; ++i) {  // relative error bound over a range of magnitudes
    float x = -std::ldexp(1.0f + float(i % 1000) / 1000.0f, i % 30 - 14);
    EXPECT_NEAR(h5::half_to_float(h5::float_to_half(x)), x, std::abs(x) * 4.9e-4f);
  }
}

TEST(DistillCorpus, RoundTripF32) { expect_round_trip(false, 0); }
TEST(DistillCorpus, RoundTripF16) { expect_round_trip(true, 0); }
TEST(DistillCorpus, RoundTripF16Gzip) { expect_round_trip(true, 4); }
TEST(DistillCorpus, RoundTripF32Gzip) { expect_round_trip(false, 9); }

TEST(DistillCorpus, CompressionShrinksRepetitiveData) {
  const std::string dir = temp_dir("compress").string();
  CorpusMeta m = meta(true);
  m.seq_len = 64;
  m.k = 8;
  CorpusSequences s = make_seqs(m, 16, 0);
  for (auto& t : s.tokens) t = 7;
  write_corpus_shard(dir + "/plain", 0, m, s, 0);
  write_corpus_shard(dir + "/gz", 0, m, s, 6);
  auto size = [](const std::string& p) { return int64_t(stdfs::file_size(p)); };
  EXPECT_LT(size(dir + "/gz/shard-00000.h5"), size(dir + "/plain/shard-00000.h5") * 3 / 4);
}

TEST(DistillCorpus, ReadsH5pyWrittenCorpus) {
  const std::string dir = temp_dir("h5py").string();
  python(str_cat("d = '", dir, "'\n",
                 "rng = np.random.default_rng(0)\n"
                 "S, L, k, V = 3, 6, 4, 30\n"
                 "toks = rng.integers(0, V, (S, L)).astype(np.int32)\n"
                 "ids = rng.integers(0, V, (S, L - 1, k)).astype(np.int32)\n"
                 "lp = -rng.random((S, L - 1, k)).astype(np.float16)\n"
                 "with h5py.File(d + '/shard-00000.h5', 'w') as f:\n"
                 "  f['tokens'] = toks; f['prompt_len'] = np.zeros(S, np.int32)\n"
                 "  f.create_dataset('topk_ids', data=ids, compression='gzip', shuffle=True)\n"
                 "  f.create_dataset('topk_logprobs', data=lp, compression='gzip', shuffle=True)\n"
                 "  for a, v in dict(k=k, vocab_size=V, tokenizer_sha256='none', teacher_sha256='t',\n"
                 "    mode='score', sample_temperature=1.0, sample_top_k=0, sample_top_p=1.0, seed=5).items():\n"
                 "    f.attrs[a] = v\n"
                 "json.dump(dict(k=k, vocab_size=V, seq_len=L, tokenizer_sha256='none', teacher_sha256='t',\n"
                 "  mode='score', sample_temperature=1.0, sample_top_k=0, sample_top_p=1.0, seed=5,\n"
                 "  shards=[dict(file='shard-00000.h5', sequences=S)]), open(d + '/manifest.json', 'w'))\n"
                 "np.save(d + '/lp.npy', lp.astype(np.float32)); np.save(d + '/ids.npy', ids)\n"));
  CorpusReader r(dir);
  EXPECT_EQ(r.num_sequences(), 3);
  EXPECT_EQ(r.meta().mode, "score");
  EXPECT_TRUE(r.meta().fp16_logprobs);  // manifest without logprob_dtype: float16 assumed
  EXPECT_EQ(r.meta().teacher_precision, "fp32");  // nor teacher_precision: fp32
  CorpusSequences got;
  r.read(0, 3, got);
  ASSERT_EQ(got.topk_logprobs.size(), 3u * 5 * 4);
  // compare with numpy's own float16 -> float32 conversion (exact)
  python(str_cat("d = '", dir, "'\n",
                 "open(d + '/lp.txt', 'w').write(' '.join(repr(float(x)) for x in np.load(d + '/lp.npy').ravel()))\n"));
  std::ifstream in(dir + "/lp.txt");
  for (size_t i = 0; i < got.topk_logprobs.size(); ++i) {
    double x;
    in >> x;
    ASSERT_EQ(got.topk_logprobs[i], float(x)) << i;
  }
}

TEST(DistillCorpus, WriterRefusesBadInput) {
  const std::string dir = temp_dir("writer").string();
  CorpusMeta m = meta(true);
  CorpusSequences s = make_seqs(m, 2, 0);
  s.topk_ids.pop_back();
  EXPECT_NE(error_of([&] { write_corpus_shard(dir, 0, m, s, 0); }).find("topk_ids has"),
            std::string::npos);
  s = make_seqs(m, 2, 0);
  s.tokens[3] = 50;
  EXPECT_NE(error_of([&] { write_corpus_shard(dir, 0, m, s, 0); })
                .find("dataset 'tokens': value 50 at flat index 3 outside [0, 50)"),
            std::string::npos);
  EXPECT_FALSE(stdfs::exists(dir + "/shard-00000.h5"));
  m.k = 51;
  EXPECT_NE(error_of([&] { write_corpus_shard(dir, 0, m, make_seqs(meta(true), 2, 0), 0); })
                .find("k = 51 exceeds vocab_size"),
            std::string::npos);
}

TEST(DistillCorpus, MissingManifest) {
  const std::string dir = temp_dir("nomanifest").string();
  write_corpus_shard(dir, 0, meta(true), make_seqs(meta(true), 2, 0), 0);
  std::string e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find(dir + "/manifest.json: not found"), std::string::npos) << e;
  e = error_of([&] { CorpusReader r(dir + "/nope"); });
  EXPECT_NE(e.find("corpus directory not found"), std::string::npos) << e;
}

TEST(DistillCorpus, TruncatedShard) {
  // with checksums, the recorded size; without, libhdf5 sees the short file
  for (bool checksums : {true, false}) {
    const std::string dir = temp_dir(str_cat("truncated", checksums)).string();
    write_corpus(dir, meta(true), {4, 4}, 0, checksums);
    const std::string p = dir + "/shard-00001.h5";
    const int64_t size = int64_t(stdfs::file_size(p));
    stdfs::resize_file(p, size / 2);
    std::string e = error_of([&] { CorpusReader r(dir); CorpusSequences s; r.read(0, 8, s); });
    if (checksums)
      EXPECT_EQ(e, str_cat(p, ": corrupt: ", size / 2, " bytes, manifest.json records ", size,
                           " (truncated or modified after it was written)"));
    else
      EXPECT_NE(e.find(p + ": cannot open HDF5 file (truncated or corrupt?)"), std::string::npos) << e;
  }
}

TEST(DistillCorpus, MissingShardFile) {
  const std::string dir = temp_dir("missingshard").string();
  write_corpus(dir, meta(true), {4, 4}, 0);
  stdfs::remove(dir + "/shard-00000.h5");
  std::string e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("shard-00000.h5: file not found"), std::string::npos) << e;
  // a FIFO in its place is refused before anything reads it (hashing it would block)
  ASSERT_EQ(::mkfifo((dir + "/shard-00000.h5").c_str(), 0600), 0);
  e = error_of([&] { CorpusReader r(dir); });
  EXPECT_EQ(e, dir + "/shard-00000.h5: not a regular file");
}

TEST(DistillCorpus, WrongShapeAndCount) {
  const std::string dir = temp_dir("shape").string();
  const CorpusMeta m = meta(false);
  write_corpus(dir, m, {4}, 0, false);  // edited in place below: no checksums
  python(str_cat("f = h5py.File('", dir, "/shard-00000.h5', 'a')\n"
                 "del f['topk_ids']; f['topk_ids'] = np.zeros((4, 4, 2), np.int32)\n"));
  std::string e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("shard-00000.h5: dataset 'topk_ids': expected shape [4, 4, 3], found [4, 4, 2]"),
            std::string::npos) << e;
  write_corpus(dir, m, {4}, 0);
  write_corpus_manifest(dir, m, {{"shard-00000.h5", 5}});
  e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("holds 4 sequences, the manifest says 5"), std::string::npos) << e;
}

TEST(DistillCorpus, OutOfRangeIds) {
  const std::string dir = temp_dir("range").string();
  write_corpus(dir, meta(true), {2, 3}, 0, false);  // edited in place below: no checksums
  python(str_cat("f = h5py.File('", dir, "/shard-00001.h5', 'a')\n"
                 "f['topk_ids'][1, 2, 0] = 50\n"));
  CorpusReader r(dir);  // opening checks shapes and metadata only
  CorpusSequences s;
  r.read(0, 3, s);  // shard 0 and the first row of shard 1 are fine
  std::string e = error_of([&] { r.read(0, 5, s); });
  EXPECT_NE(e.find("shard-00001.h5: dataset 'topk_ids': value 50 at flat index 18 outside [0, 50)"),
            std::string::npos) << e;
  e = error_of([&] { check_corpus_shard(dir + "/shard-00001.h5", meta(true), 3, true); });
  EXPECT_NE(e.find("value 50"), std::string::npos) << e;
  python(str_cat("f = h5py.File('", dir, "/shard-00000.h5', 'a')\n"
                 "f['prompt_len'][0] = 6\n"));
  e = error_of([&] { r.read(0, 1, s); });
  EXPECT_NE(e.find("dataset 'prompt_len': value 6 at flat index 0 outside [0, 5]"),
            std::string::npos) << e;
}

TEST(DistillCorpus, MetadataMismatch) {
  const std::string dir = temp_dir("mismatch").string();
  CorpusMeta m = meta(true);
  write_corpus(dir, m, {2, 2}, 0, false);  // edited in place below: no checksums
  CorpusMeta other = m;
  other.teacher_sha256 = "different";
  write_corpus_shard(dir, 1, other, make_seqs(other, 2, 0), 0);
  std::string e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("shard-00001.h5: metadata differs from the corpus: teacher_sha256 "
                   "(different vs teach456)"),
            std::string::npos) << e;
  EXPECT_EQ(corpus_meta_difference(m, m), "");
  other = m;
  other.fp16_logprobs = false;
  EXPECT_EQ(corpus_meta_difference(m, other), "logprob_dtype (float16 vs float32)");
  other = m;
  other.teacher_precision = "fp32";
  EXPECT_EQ(corpus_meta_difference(m, other), "teacher_precision (bf16 vs fp32)");
  // broken manifest
  fs::write_file_atomic(dir + "/manifest.json", "{\"k\": 3");
  e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("manifest.json: not valid JSON"), std::string::npos) << e;
  fs::write_file_atomic(dir + "/manifest.json", "{\"k\": 3}");
  e = error_of([&] { CorpusReader r(dir); });
  EXPECT_NE(e.find("manifest.json: key 'vocab_size' missing"), std::string::npos) << e;
}

// ---- checksums in manifest.json (size and sha256 of each shard) ----

namespace {

// XORs one byte of the file at `offset` with `mask` (nonzero) in place.
void flip_byte(const std::string& path, int64_t offset, uint8_t mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.get(c);
  f.seekp(offset);
  f.put(char(uint8_t(c) ^ mask));
}

std::string corrupt_message(const std::string& path, const std::string& expected) {
  return str_cat(path, ": corrupt: sha256 is ", sha256_file(path), ", manifest.json records ",
                 expected, " (damaged or modified after it was written)");
}

}  // namespace

TEST(DistillCorpus, ManifestRecordsShardChecksums) {
  const std::string dir = temp_dir("checksums").string();
  write_corpus(dir, meta(true), {4, 3}, 0);
  const json j = json::parse(fs::read_file(dir + "/manifest.json"));
  for (int s = 0; s < 2; ++s) {
    const std::string path = dir + "/" + corpus_shard_name(s);
    EXPECT_EQ(j["shards"][s]["bytes"], int64_t(stdfs::file_size(path)));
    EXPECT_EQ(j["shards"][s]["sha256"], sha256_file(path));  // the bytes as they were written
  }
  std::vector<CorpusShardEntry> entries;
  read_corpus_manifest(dir, &entries);
  EXPECT_EQ(entries[1], describe_corpus_shard(dir, "shard-00001.h5", 3));
  CorpusReader r(dir);
  EXPECT_EQ(r.num_sequences(), 7);
  // bad values are refused, naming the manifest; upper-case hex (another tool) is accepted
  const std::string path = dir + "/manifest.json";
  auto with = [&](const char* key, const json& v) {
    json bad = j;
    bad["shards"][1][key] = v;
    fs::write_file_atomic(path, bad.dump());
    return error_of([&] { CorpusReader r(dir); });
  };
  EXPECT_EQ(with("sha256", "abc"), path + ": shards[1]: key 'sha256' must be 64 hex digits");
  EXPECT_EQ(with("sha256", 5), path + ": key 'sha256' must be a string, found 5");
  EXPECT_EQ(with("bytes", -1), path + ": key 'bytes' = -1 outside [0, 9223372036854775807]");
  std::string upper = j["shards"][1]["sha256"];
  for (char& c : upper) c = char(std::toupper(c));
  EXPECT_EQ(with("sha256", upper), "<no error>");
}

TEST(DistillCorpus, FlippedByteIsRefusedBeforeLibhdf5) {
  // One flipped byte anywhere, the HDF5 superblock and object headers at the start included
  // (where libhdf5 1.10 itself can crash or hang on bad bytes), is refused by the manifest's
  // sha256 with one line naming the shard, before any file is handed to libhdf5.
  for (int gzip : {0, 4}) {
    const std::string dir = temp_dir(str_cat("flip", gzip)).string();
    write_corpus(dir, meta(true), {4, 3}, gzip);
    std::vector<CorpusShardEntry> entries;
    read_corpus_manifest(dir, &entries);
    const std::string p0 = dir + "/shard-00000.h5";
    const int64_t size = int64_t(stdfs::file_size(p0));
    for (int64_t at : {int64_t(0), int64_t(1), int64_t(8), int64_t(13), int64_t(24), int64_t(40),
                       int64_t(56), int64_t(96), int64_t(136), int64_t(200), int64_t(333),
                       int64_t(512), int64_t(800), int64_t(1024), int64_t(1500), int64_t(2047),
                       size / 2, size - 1}) {
      ASSERT_LT(at, size);
      flip_byte(p0, at, 0x5a);
      const int64_t opens = h5::File::libhdf5_opens();
      EXPECT_EQ(error_of([&] { CorpusReader r(dir); }), corrupt_message(p0, entries[0].sha256))
          << "byte " << at;
      EXPECT_EQ(h5::File::libhdf5_opens(), opens) << "libhdf5 parsed a corrupt shard (byte " << at << ")";
      flip_byte(p0, at, 0x5a);  // restore
    }
    // a later shard: the earlier ones are opened, the corrupt one is not
    const std::string p1 = dir + "/shard-00001.h5";
    flip_byte(p1, 100, 0x01);
    EXPECT_EQ(error_of([&] { CorpusReader r(dir); }), corrupt_message(p1, entries[1].sha256));
    flip_byte(p1, 100, 0x01);
    CorpusReader r(dir);  // restored: reads again
    CorpusSequences got;
    r.read(0, 7, got);
    EXPECT_EQ(got.count, 7);
  }
}

TEST(DistillCorpus, ManifestWithoutChecksumsIsReadUnverified) {
  // Corpora of older versions and of other tools (SPEC §5 has no checksums) still read; their
  // shards are not verified, so a flip in the values goes through the value checks only.
  const std::string dir = temp_dir("nochecksums").string();
  const CorpusMeta m = meta(false);
  const CorpusSequences want = write_corpus(dir, m, {4, 3}, 0, false);
  const json j = json::parse(fs::read_file(dir + "/manifest.json"));
  EXPECT_FALSE(j["shards"][0].contains("sha256"));
  EXPECT_FALSE(j["shards"][0].contains("bytes"));
  CorpusReader r(dir);
  CorpusSequences got;
  r.read(0, 7, got);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.topk_logprobs, want.topk_logprobs);
  // A flip in the raw bytes of shard 1's 'tokens' (found by its first 8 ids, contiguous
  // little-endian int32) opens fine and is caught only by the value check.
  const std::string p1 = dir + "/shard-00001.h5";
  const std::string bytes = fs::read_file(p1);
  const std::string first(reinterpret_cast<const char*>(want.tokens.data() + 4 * m.seq_len),
                          8 * sizeof(int32_t));
  const size_t at = bytes.find(first);
  ASSERT_NE(at, std::string::npos);
  flip_byte(p1, int64_t(at) + 3, 0x40);  // the high byte of the shard's token 0
  CorpusReader r2(dir);
  EXPECT_EQ(error_of([&] { r2.read(0, 7, got); }),
            str_cat(p1, ": dataset 'tokens': value ", want.tokens[4 * m.seq_len] + (1 << 30),
                    " at flat index 0 outside [0, 50)"));
}

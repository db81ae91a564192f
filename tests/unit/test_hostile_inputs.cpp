// Regression tests for what the reader fuzzers (tests/fuzz) found, one per bug: each hostile
// file must give one clean error line naming the file (and dataset/key/index) — before the
// fixes these crashed, hit undefined behaviour, allocated without bound, followed links out of
// the file, printed multi-line messages or accepted values the callers cannot use.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/hdf5.h"
#include "core/sha256.h"
#include "core/sharded_checkpoint.h"
#include "data/distill_corpus.h"
#include "data/token_dataset.h"
#include "models/model_config.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

stdfs::path temp_dir(const std::string& name) {
  stdfs::path d = stdfs::path(RETORT_BINARY_DIR) / "test_tmp" / "hostile" / name;
  stdfs::remove_all(d);
  stdfs::create_directories(d);
  return d;
}

void run_python(const std::string& script) {
  const std::string cmd = "/usr/bin/python3 -c \"import h5py, numpy as np\n" + script + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// h5py lines writing a valid token dataset into `f` except for what `tokens` replaces.
std::string token_file_py(const std::string& path, const std::string& tokens) {
  return "with h5py.File('" + path + "', 'w') as f:\n" + tokens +
         "  f['doc_offsets'] = np.array([0], dtype=np.int64)\n"
         "  f.attrs['vocab_size'] = 10\n  f.attrs['eos_id'] = 2\n  f.attrs['tokenizer_sha256'] = 'none'\n";
}

void write_text(const stdfs::path& p, const std::string& text) { std::ofstream(p) << text; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---- HDF5 layer (core/hdf5.cpp), seen through the token dataset reader ----

TEST(HostileInputs, Hdf5ExtentsTheFileCannotBack) {
  // fuzz_token_dataset and fuzz_sharded_checkpoint: a chunked dataset declaring 2^63 - 1
  // int32 (no chunk written) wrapped numel * 4 to a 64-byte buffer, and H5Dread wrote fill
  // values past it (ASan: heap-buffer-overflow WRITE in File::read_impl).
  const stdfs::path d = temp_dir("extent");
  const std::string wrap = (d / "wrap.h5").string(), huge = (d / "huge.h5").string(),
                    empty = (d / "empty.h5").string();
  run_python(token_file_py(wrap, "  f.create_dataset('tokens', shape=(2**63-1,), maxshape=(None,), dtype='i4', chunks=(4,))\n") +
             token_file_py(huge, "  f.create_dataset('tokens', shape=(2**40,), dtype='i4', chunks=(1024,))\n") +
             token_file_py(empty, "  f['tokens'] = h5py.Empty('i4')\n"));
  EXPECT_EQ(error_of([&] { TokenDataset::load(wrap); }),
            wrap + ": dataset 'tokens' declares dims [9223372036854775807] beyond any file");
  EXPECT_TRUE(contains(error_of([&] { Tensor::empty({INT64_MAX}, DType::I32); }), "is too large to allocate"));
  // 2^40 int32 behind a few KiB: a 4 TiB allocation (std::bad_alloc, or the OOM killer).
  const std::string msg = error_of([&] { TokenDataset::load(huge); });
  EXPECT_TRUE(contains(msg, huge + ": dataset 'tokens' declares dims [1099511627776] (4398046511104 bytes) "
                              "but the file holds ")) << msg;
  // A null dataspace was read as a scalar of uninitialised memory.
  EXPECT_EQ(error_of([&] { TokenDataset::load(empty); }), empty + ": dataset 'tokens' has an empty (null) dataspace");
}

TEST(HostileInputs, Hdf5DataOutsideTheFile) {
  // External links and external raw storage made libhdf5 open whatever file they name
  // (a FIFO there hangs the reader).
  const stdfs::path d = temp_dir("outside");
  const std::string link = (d / "link.h5").string(), ext = (d / "ext.h5").string();
  run_python(token_file_py(link, "  f['tokens'] = h5py.ExternalLink('/dev/stdin', '/tokens')\n") +
             token_file_py(ext, "  f.create_dataset('tokens', shape=(4,), dtype='i4', external=[('" +
                                    (d / "raw.bin").string() + "', 0, 16)])\n"));
  EXPECT_EQ(error_of([&] { TokenDataset::load(link); }),
            link + ": dataset 'tokens' not found (not a token dataset?)");
  EXPECT_EQ(error_of([&] { TokenDataset::load(ext); }),
            ext + ": dataset 'tokens' keeps its data outside this file (external or virtual storage)");
}

TEST(HostileInputs, Hdf5SixteenBitFloatsMustBeIeeeHalf) {
  // A 2-byte float with bfloat16 fields was decoded as IEEE float16 (silently wrong values).
  const std::string path = (temp_dir("half") / "bf16.h5").string();
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t type = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(type, 15, 7, 8, 0, 7);
  H5Tset_size(type, 2);
  H5Tset_ebias(type, 127);
  const hsize_t n = 2;
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t ds = H5Dcreate2(file, "x", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const uint16_t bits[2] = {0x3f80, 0xbf80};  // bfloat16 1.0, -1.0
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits);
  H5Dclose(ds), H5Sclose(space), H5Tclose(type), H5Fclose(file);
  const h5::File f = h5::File::open_read(path);
  EXPECT_EQ(error_of([&] { f.read("x", DType::F32); }),
            path + ": dataset 'x': 16-bit floats that are not IEEE float16 (bfloat16?) are not supported");
}

// ---- checkpoints (core/checkpoint.cpp) ----

namespace {

// A consolidated training checkpoint of two parameters in a fresh directory.
std::string small_checkpoint(const std::string& name) {
  const std::string root = temp_dir(name).string();
  CheckpointData d;
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3});
  for (int i = 0; i < 6; ++i) a.host<float>()[i] = 0.5f * i;
  d.model = {{"a.weight", a}, {"b.weight", b}};
  d.exp_avg = {{"a.weight", Tensor::zeros({2, 3})}, {"b.weight", Tensor::zeros({3})}};
  d.exp_avg_sq = {{"a.weight", Tensor::zeros({2, 3})}, {"b.weight", Tensor::zeros({3})}};
  d.config_yaml = "model:\n  d_model: 4\n";
  d.state = {{"step", 3}, {"tokens_seen", 96}, {"optimizer_steps", 3}};
  return save_checkpoint(root, 3, d, 0);
}

std::vector<NamedTensor> params() { return {{"a.weight", Tensor::zeros({2, 3})}, {"b.weight", Tensor::zeros({3})}}; }

void edit_state(const std::string& dir, const std::function<void(json&)>& edit) {
  json s = json::parse(std::ifstream(dir + "/state.json"));
  edit(s);
  write_text(dir + "/state.json", s.dump());
}

}  // namespace

TEST(HostileInputs, CheckpointChecksumIsVerifiedBeforeParsing) {
  // fuzz_checkpoint: a flipped byte in model.h5 reached libhdf5 (load_model_weights did not
  // check state.json's sha256; only load_training_state did, afterwards).
  const std::string dir = small_checkpoint("flip");
  {
    std::fstream f(dir + "/model.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put('\x7f');  // the HDF5 signature: libhdf5 alone would say "not an HDF5 file"
  }
  auto w = params();
  EXPECT_EQ(error_of([&] { load_model_weights(dir, w); }),
            dir + "/model.h5: checksum mismatch (file corrupted or modified)");
  // config.yaml is checksummed too (eval reads the model section from it).
  const std::string dir2 = small_checkpoint("config");
  write_text(dir2 + "/config.yaml", "model:\n  d_model: 8\n");
  EXPECT_EQ(error_of([&] { verify_checkpoint_file(dir2, "config.yaml"); }),
            dir2 + "/config.yaml: checksum mismatch (file corrupted or modified)");
}

TEST(HostileInputs, CheckpointStateJsonIsChecked) {
  // fuzz_checkpoint: a non-string checksum, a non-integer step and a listed path outside the
  // directory escaped as nlohmann::json exceptions (no file name) or hashed arbitrary files.
  const std::string dir = small_checkpoint("state");
  auto m = params(), v = params();
  edit_state(dir, [](json& s) { s["sha256"]["model.h5"] = 12; });
  EXPECT_EQ(error_of([&] { load_training_state(dir, m, v); }),
            dir + "/state.json: key 'model.h5' must be a string, found 12");
  edit_state(dir, [](json& s) { s["sha256"]["../../etc/hostname"] = "00"; });
  EXPECT_EQ(error_of([&] { load_training_state(dir, m, v); }),
            dir + "/state.json: 'sha256' lists '../../etc/hostname', not a file of the checkpoint directory");
  const std::string dir2 = small_checkpoint("step");
  edit_state(dir2, [](json& s) { s["step"] = 1e300; });
  EXPECT_EQ(error_of([&] { load_training_state(dir2, m, v); }),
            dir2 + "/state.json: key 'step' must be an integer, found 1e+300");
}

TEST(HostileInputs, CheckpointValuesMustBeFinite) {
  // fuzz_checkpoint: NaN / inf weights and negative second moments were loaded as they were.
  const std::string dir = temp_dir("nan").string();
  {
    h5::File f = h5::File::create(dir + "/model.h5");
    f.write("a.weight", std::vector<float>{0, 1, NAN, 3, 4, 5});
    f.close();
  }
  std::vector<NamedTensor> w = {{"a.weight", Tensor::zeros({6})}};
  EXPECT_EQ(error_of([&] { load_model_weights(dir, w); }),
            dir + "/model.h5: dataset 'a.weight': value nan at index 2 is not finite");
  const float sq[3] = {1, -2, 3};
  EXPECT_EQ(error_of([&] { check_checkpoint_values("opt.h5", "exp_avg_sq/b", sq, 3); }),
            "opt.h5: dataset 'exp_avg_sq/b': value -2 at index 1 (a second moment must be finite and >= 0)");
}

// ---- sharded checkpoints (core/sharded_checkpoint.cpp) ----

namespace {

// dir/shard-00000.h5 holding all of a.weight [2, 3] as one piece described by `piece`.
std::string one_shard(const std::string& name, const json& piece) {
  const std::string dir = temp_dir(name).string();
  h5::File f = h5::File::create(dir + "/" + shard_file_name(0));
  f.write("model/a.weight", std::vector<float>{0, 1, 2, 3, 4, 5});
  f.set_attr("pieces", json::array({piece}).dump());
  f.close();
  return dir;
}

json whole_piece() {
  return {{"name", "a.weight"}, {"global_shape", {2, 3}}, {"shard_dim", -1}, {"shard_offset", 0},
          {"local_shape", {2, 3}}, {"begin", 0}, {"n", 6}};
}

}  // namespace

TEST(HostileInputs, ShardPiecesAreCheckedBeforeArithmetic) {
  std::vector<NamedTensor> w = {{"a.weight", Tensor::zeros({2, 3})}};
  // fuzz_sharded_checkpoint: begin = 2^63 - 1 overflowed begin + n (UBSan: signed overflow).
  json p = whole_piece();
  p["begin"] = INT64_MAX;
  std::string dir = one_shard("begin", p);
  EXPECT_EQ(error_of([&] { read_from_shards(dir, "model", w); }),
            dir + "/shard-00000.h5: 'pieces' entry: key 'begin' = 9223372036854775807 outside [0, 6]");
  // A float offset of 1e300 was cast to int64 (UBSan: float-cast-overflow).
  p = whole_piece();
  p["shard_dim"] = 0;
  p["shard_offset"] = 1e300;
  dir = one_shard("float", p);
  EXPECT_EQ(error_of([&] { read_from_shards(dir, "model", w); }),
            dir + "/shard-00000.h5: 'pieces' entry: key 'shard_offset' must be an integer, found 1e+300");
  // A slice larger than the parameter (local [4, 3] of [2, 3]) and a 'pieces' that is no list.
  p = whole_piece();
  p["local_shape"] = {4, 3};
  dir = one_shard("slice", p);
  EXPECT_EQ(error_of([&] { read_from_shards(dir, "model", w); }),
            dir + "/shard-00000.h5: piece of 'a.weight': slice [4, 3] at offset 0 along dim -1 does not fit [2, 3]");
  dir = one_shard("object", {{"name", "a.weight"}});
  {
    h5::File f = h5::File::create(dir + "/" + shard_file_name(0));
    f.set_attr("pieces", std::string("{\"name\": \"a.weight\"}"));
    f.close();
  }
  EXPECT_EQ(error_of([&] { read_from_shards(dir, "model", w); }),
            dir + "/shard-00000.h5: 'pieces' attribute is not a JSON list");
}

TEST(HostileInputs, StrayShardFileIsRefused) {
  // A shard-*.h5 that state.json does not list was read without any checksum.
  const std::string dir = temp_dir("stray").string();
  h5::File f = h5::File::create(dir + "/" + shard_file_name(0));
  f.write("model/a.weight", std::vector<float>{0, 1, 2, 3, 4, 5});
  f.set_attr("pieces", json::array({whole_piece()}).dump());
  f.close();
  write_text(dir + "/state.json", json{{"step", 1}, {"sha256", json::object()}}.dump());
  std::vector<NamedTensor> w = {{"a.weight", Tensor::zeros({2, 3})}};
  EXPECT_EQ(error_of([&] { load_model_weights(dir, w); }),
            dir + "/shard-00000.h5: not listed in state.json (a stray file?)");
}

// ---- distillation corpus manifest (data/distill_corpus.cpp) ----

TEST(HostileInputs, CorpusManifestNumbersAreChecked) {
  const stdfs::path dir = temp_dir("manifest");
  json m = {{"k", 2}, {"vocab_size", 8}, {"seq_len", 4}, {"tokenizer_sha256", "t"}, {"teacher_sha256", "x"},
            {"mode", "score"}, {"sample_temperature", 1.0}, {"sample_top_k", 0}, {"sample_top_p", 1.0},
            {"seed", 1}, {"shards", json::array({{{"file", "shard-00000.h5"}, {"sequences", 1}}})}};
  const std::string path = (dir / "manifest.json").string();
  // fuzz_distill_corpus: k = 1e300 went through get<int64_t>() (UBSan: float-cast-overflow).
  json bad = m;
  bad["k"] = 1e300;
  write_text(path, bad.dump());
  EXPECT_EQ(error_of([&] { CorpusReader r(dir.string()); }), path + ": key 'k' must be an integer, found 1e+300");
  // A negative logit temperature passed (distill compared it with tau and moved on).
  bad = m;
  bad["logit_temperature"] = -2.0;
  write_text(path, bad.dump());
  EXPECT_EQ(error_of([&] { CorpusReader r(dir.string()); }),
            path + ": bad metadata: logit_temperature = -2 must be a finite number > 0");
}

// ---- configs (core/config.cpp, models/model_config.cpp) ----

TEST(HostileInputs, ConfigErrorsAreOneLine) {
  // fuzz_config: yaml-cpp's message quoted the offending character raw ("unknown escape
  // character: \0"), and keys/values with newlines were printed as they were.
  const std::string nul("a: \"\\\0\"\n", 8);
  std::string msg = error_of([&] { Config::from_yaml(nul, "x.yaml"); });
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\0'), std::string::npos) << msg;
  EXPECT_TRUE(contains(msg, "x.yaml:1:")) << msg;
  msg = error_of([&] { Config::from_yaml("train:\n  \"l\\nr\": 1\n", "x.yaml"); });
  EXPECT_EQ(msg, "x.yaml: unknown key 'train.l\\nr' (did you mean 'train.lr'?)");
}

TEST(HostileInputs, ModelSizesThatOverflowAreRefused) {
  // fuzz_config: d_model = 2^62 overflowed default_d_ff and n_params (UBSan: signed overflow).
  const Config c = Config::from_yaml("model:\n  d_model: 4611686018427387904\n", "x.yaml");
  EXPECT_EQ(error_of([&] { ModelConfig::from_config(c); }),
            "x.yaml: key 'model.d_model': 4611686018427387904 is larger than the supported 65536");
}

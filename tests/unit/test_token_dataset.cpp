// SPEC §2 token datasets: round trip, h5py-written files, and every error path (message
// names the file; a failed write leaves the existing file intact).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/hdf5.h"
#include "core/sha256.h"
#include "data/token_dataset.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  fs::path d = fs::path(RETORT_BINARY_DIR) / "test_tmp" / "token_dataset";
  fs::create_directories(d);
  return d;
}

const std::vector<int32_t> kTokens = {5, 6, 2, 7, 2, 8, 9, 9, 2};
const std::vector<int64_t> kOffsets = {0, 3, 5};
const TokenDatasetMeta kMeta{10, 2, "abc123"};

// Writes a file with h5py; `body` is Python using `f` (an open h5py.File).
void h5py_write(const std::string& path, const std::string& body) {
  std::string cmd = "/usr/bin/python3 -c \"import h5py, numpy as np\nwith h5py.File('" + path +
                    "', 'w') as f:\n" + body + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

const char* kGoodPy =
    "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n"
    "  f['doc_offsets'] = np.array([0, 3], dtype=np.int64)\n"
    "  f.attrs['vocab_size'] = 10\n"
    "  f.attrs['eos_id'] = 2\n"
    "  f.attrs['tokenizer_sha256'] = 'none'\n";

}  // namespace

TEST(TokenDataset, RoundTrip) {
  std::string path = (temp_dir() / "rt.h5").string();
  write_token_dataset(path, kTokens, kOffsets, kMeta);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  TokenDataset d = TokenDataset::load(path);
  EXPECT_EQ(d.num_tokens(), 9);
  EXPECT_EQ(d.num_docs(), 3);
  EXPECT_EQ(d.doc_offsets(), kOffsets);
  EXPECT_EQ(std::vector<int32_t>(d.token_data(), d.token_data() + 9), kTokens);
  EXPECT_EQ(d.meta().vocab_size, 10);
  EXPECT_EQ(d.meta().eos_id, 2);
  EXPECT_EQ(d.meta().tokenizer_sha256, "abc123");
  EXPECT_EQ(d.tokens().dtype(), DType::I32);
  // The file really holds the SPEC types.
  h5::File f = h5::File::open_read(path);
  EXPECT_EQ(f.type_name("tokens"), "int32");
  EXPECT_EQ(f.type_name("doc_offsets"), "int64");
}

TEST(TokenDataset, EmptyDatasetIsValid) {
  std::string path = (temp_dir() / "empty.h5").string();
  write_token_dataset(path, {}, {}, kMeta);
  EXPECT_EQ(TokenDataset::load(path).num_tokens(), 0);
}

TEST(TokenDataset, AcceptsH5pyFile) {
  std::string path = (temp_dir() / "py.h5").string();
  h5py_write(path, kGoodPy);
  TokenDataset d = TokenDataset::load(path);
  EXPECT_EQ(d.num_tokens(), 5);
  EXPECT_EQ(d.num_docs(), 2);
  EXPECT_EQ(d.meta().tokenizer_sha256, "none");  // variable-length UTF-8 attribute
  EXPECT_EQ(d.meta().vocab_size, 10);
}

// Tokens stored as they are in memory are mapped, any other layout is read; both give the same
// tokens. A mapped dataset keeps its tokens when a new file is renamed over its path.
TEST(TokenDataset, MappedWhereTheFileAllows) {
  fs::path dir = temp_dir();
  std::string path = (dir / "mapped.h5").string();
  std::vector<int32_t> many(70000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = int32_t((i * 7919) % 10);
  write_token_dataset(path, many, {0, 40000}, kMeta);
  TokenDataset d = TokenDataset::load(path);
  EXPECT_TRUE(d.mapped());
  EXPECT_EQ(std::vector<int32_t>(d.token_data(), d.token_data() + d.num_tokens()), many);
  std::vector<int32_t> other(many.rbegin(), many.rend());
  write_token_dataset(path, other, {0}, kMeta);
  EXPECT_EQ(std::vector<int32_t>(d.token_data(), d.token_data() + d.num_tokens()), many);
  TokenDataset again = TokenDataset::load(path);
  EXPECT_EQ(std::vector<int32_t>(again.token_data(), again.token_data() + again.num_tokens()), other);
  EXPECT_FALSE(TokenDataset::load((dir / "empty.h5").string()).mapped());

  const std::string rest =
      "  f['doc_offsets'] = np.array([0, 3], dtype=np.int64)\n"
      "  f.attrs['vocab_size'] = 10\n  f.attrs['eos_id'] = 2\n  f.attrs['tokenizer_sha256'] = 'none'\n";
  const std::string values = "np.arange(5000) % 10";
  struct Layout {
    const char* name;
    std::string open_args, dataset;
    bool mapped;
  };
  for (const Layout& l : std::vector<Layout>{
           {"contiguous", "", "f['tokens'] = (" + values + ").astype(np.int32)", true},
           {"userblock", ", userblock_size=4096", "f['tokens'] = (" + values + ").astype(np.int32)", true},
           {"gzip", "", "f.create_dataset('tokens', data=(" + values + ").astype(np.int32), compression='gzip')", false},
           {"big_endian", "", "f['tokens'] = (" + values + ").astype('>i4')", false},
           {"int16", "", "f['tokens'] = (" + values + ").astype(np.int16)", false}}) {
    std::string p = (dir / (std::string("layout_") + l.name + ".h5")).string();
    std::string cmd = "/usr/bin/python3 -c \"import h5py, numpy as np\nwith h5py.File('" + p + "', 'w'" +
                      l.open_args + ") as f:\n  " + l.dataset + "\n" + rest + "\"";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    TokenDataset t = TokenDataset::load(p);
    EXPECT_EQ(t.mapped(), l.mapped) << l.name;
    ASSERT_EQ(t.num_tokens(), 5000) << l.name;
    for (int64_t i = 0; i < 5000; ++i) ASSERT_EQ(t.token_data()[i], i % 10) << l.name << " " << i;
  }
  // Mapping past the file's end is refused, naming the file.
  EXPECT_EQ(error_of([&] { Tensor::map_file(path, 8, {int64_t(fs::file_size(path))}, DType::I32); })
                .rfind(path + ": bytes [8, ", 0),
            0u);
}

// The streaming writer writes the same bytes as write_token_dataset; unfinished or refused, it
// leaves no temporary and an existing file as it was.
TEST(TokenDataset, WriterStreamsDocuments) {
  fs::path dir = temp_dir();
  const std::string whole = (dir / "whole.h5").string(), streamed = (dir / "streamed.h5").string();
  write_token_dataset(whole, kTokens, kOffsets, kMeta);
  fs::remove(streamed);
  {
    TokenDatasetWriter w(streamed, kMeta);
    for (size_t d = 0; d < kOffsets.size(); ++d) {
      const int64_t end = d + 1 < kOffsets.size() ? kOffsets[d + 1] : int64_t(kTokens.size());
      w.append_document(std::vector<int32_t>(kTokens.begin() + kOffsets[d], kTokens.begin() + end));
    }
    EXPECT_TRUE(fs::exists(streamed + ".tokens.tmp"));
    EXPECT_FALSE(fs::exists(streamed));
    w.finish();
    EXPECT_EQ(w.num_tokens(), 9);
    EXPECT_EQ(w.num_docs(), 3);
  }
  EXPECT_EQ(sha256_file(whole), sha256_file(streamed));
  EXPECT_FALSE(fs::exists(streamed + ".tokens.tmp"));

  const std::string before = sha256_file(streamed);
  {
    TokenDatasetWriter w(streamed, kMeta);
    w.append_document({1, 2});
    EXPECT_EQ(error_of([&] { w.append_document({3, 10}); }),
              streamed + ": refusing to write document 1: dataset 'tokens': token id 10 at index 1 outside [0, 10)");
  }  // destroyed unfinished
  EXPECT_EQ(sha256_file(streamed), before);
  EXPECT_FALSE(fs::exists(streamed + ".tokens.tmp"));
  EXPECT_FALSE(fs::exists(streamed + ".tmp"));
}

TEST(TokenDataset, FileErrors) {
  fs::path dir = temp_dir();
  std::string missing = (dir / "missing.h5").string();
  EXPECT_EQ(error_of([&] { TokenDataset::load(missing); }), missing + ": file not found");

  std::string text = (dir / "notes.txt").string();
  { std::ofstream(text) << "hello"; }
  EXPECT_EQ(error_of([&] { TokenDataset::load(text); }), text + ": not an HDF5 file");

  std::string good = (dir / "good.h5").string(), cut = (dir / "cut.h5").string();
  std::vector<int32_t> many(20000, 3);
  write_token_dataset(good, many, {0}, kMeta);
  fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(good) - 1000);
  std::string msg = error_of([&] { TokenDataset::load(cut); });
  EXPECT_EQ(msg.rfind(cut + ": cannot open HDF5 file (truncated or corrupt?)", 0), 0u) << msg;
}

TEST(TokenDataset, SchemaErrors) {
  fs::path dir = temp_dir();
  struct Case {
    const char* name;
    std::string py;
    std::string expect;  // message after "<path>: "
  };
  std::string offsets = "  f['doc_offsets'] = np.array([0, 3], dtype=np.int64)\n";
  std::string attrs =
      "  f.attrs['vocab_size'] = 10\n  f.attrs['eos_id'] = 2\n  f.attrs['tokenizer_sha256'] = 'none'\n";
  std::vector<Case> cases = {
      {"float_tokens", "  f['tokens'] = np.array([5.0, 6, 2, 7, 2])\n" + offsets + attrs,
       "dataset 'tokens': expected int32, found float64"},
      {"int64_tokens", "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int64)\n" + offsets + attrs,
       "dataset 'tokens': expected int32, found int64"},
      {"rank2_tokens", "  f['tokens'] = np.zeros((2, 2), dtype=np.int32)\n" + offsets + attrs,
       "dataset 'tokens': expected rank 1, found shape [2, 2]"},
      {"bad_token",
       "  f['tokens'] = np.array([5, 6, 2, 10, 2], dtype=np.int32)\n" + offsets + attrs,
       "dataset 'tokens': token id 10 at index 3 outside [0, 10)"},
      {"negative_token",
       "  f['tokens'] = np.array([5, -1, 2, 7, 2], dtype=np.int32)\n" + offsets + attrs,
       "dataset 'tokens': token id -1 at index 1 outside [0, 10)"},
      {"offsets_start",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n"
       "  f['doc_offsets'] = np.array([1, 3], dtype=np.int64)\n" + attrs,
       "dataset 'doc_offsets': must start at 0, found 1"},
      {"offsets_decreasing",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n"
       "  f['doc_offsets'] = np.array([0, 3, 2], dtype=np.int64)\n" + attrs,
       "dataset 'doc_offsets': decreasing at index 2 (3 > 2)"},
      {"offsets_beyond",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n"
       "  f['doc_offsets'] = np.array([0, 3, 9], dtype=np.int64)\n" + attrs,
       "dataset 'doc_offsets': value 9 at index 2 beyond the 5 tokens"},
      {"offsets_float",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n"
       "  f['doc_offsets'] = np.array([0.0, 3.0])\n" + attrs,
       "dataset 'doc_offsets': expected int64, found float64"},
      {"no_tokens", offsets + attrs, "dataset 'tokens' not found (not a token dataset?)"},
      {"no_sha",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n" + offsets +
           "  f.attrs['vocab_size'] = 10\n  f.attrs['eos_id'] = 2\n",
       "attribute 'tokenizer_sha256' not found (not a token dataset?)"},
      {"bad_eos",
       "  f['tokens'] = np.array([5, 6, 2, 7, 2], dtype=np.int32)\n" + offsets +
           "  f.attrs['vocab_size'] = 10\n  f.attrs['eos_id'] = 12\n  f.attrs['tokenizer_sha256'] = 'x'\n",
       "attribute 'eos_id': 12 outside [0, 10)"},
  };
  // One Python process writes every case (interpreter start-up dominates otherwise).
  std::string script = "import h5py, numpy as np\n";
  for (const Case& c : cases)
    script += "with h5py.File('" + (dir / (std::string(c.name) + ".h5")).string() + "', 'w') as f:\n" + c.py;
  std::string cmd = "/usr/bin/python3 -c \"" + script + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const Case& c : cases) {
    std::string path = (dir / (std::string(c.name) + ".h5")).string();
    EXPECT_EQ(error_of([&] { TokenDataset::load(path); }), path + ": " + c.expect) << c.name;
  }
}

TEST(TokenDataset, FailedWriteLeavesExistingFileIntact) {
  std::string path = (temp_dir() / "keep.h5").string();
  write_token_dataset(path, kTokens, kOffsets, kMeta);
  const std::string before = sha256_file(path);
  // Invalid content is refused before anything is written.
  std::string msg = error_of([&] { write_token_dataset(path, {1, 99}, {0}, kMeta); });
  EXPECT_EQ(msg, path + ": refusing to write: dataset 'tokens': token id 99 at index 1 outside [0, 10)");
  EXPECT_EQ(sha256_file(path), before);
  // An I/O failure mid-write (the temp path is a directory, so it cannot be created).
  fs::create_directories(path + ".tmp");
  msg = error_of([&] { write_token_dataset(path, {1, 2}, {0}, kMeta); });
  EXPECT_EQ(msg.rfind(path + ".tmp: cannot create HDF5 file", 0), 0u) << msg;
  fs::remove_all(path + ".tmp");
  EXPECT_EQ(sha256_file(path), before);
  EXPECT_EQ(TokenDataset::load(path).num_tokens(), 9);
}

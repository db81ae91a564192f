// Filesystem helpers for crash-safe outputs: write to a temporary name, fsync, rename.
// Every failure throws retort::Error as one line naming the file and the OS reason, e.g.
//   "run/checkpoints/step_00000020.tmp-77/model.h5: cannot write: No space left on device".
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace retort::fs {

// Write `content` to `path` atomically (path.tmp-PID, fsync, rename, fsync parent dir). On
// failure the temporary is removed and `path` is left as it was.
void write_file_atomic(const std::string& path, const std::string& content);
// Append `text` to `path` (created if missing) with one write(2) on an O_APPEND descriptor
// that is closed again, so no file stays open for writing between calls.
void append_file(const std::string& path, const std::string& text);
// A file written in pieces, for outputs too large to build in memory first (a model's
// safetensors). Opens `path` truncated; write() and close() (which fsyncs) throw an Error
// naming the file and the OS reason; a writer destroyed unclosed closes quietly. Callers make
// the result atomic by writing inside a temporary directory they rename when complete.
class FileWriter {
 public:
  explicit FileWriter(const std::string& path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  void write(const void* data, size_t n);
  void close();

 private:
  std::string path_;
  int fd_ = -1;
};

// Writes the directory `dir` through a fresh temporary sibling, dir.tmp-PID (its parents
// created): `fill(tmp, final_dir)` writes into tmp and moves it to final_dir (the absolute
// path of dir) as it sees fit. On any failure the temporary is removed and the error rethrown.
void write_dir_via_temp(const std::string& dir,
                        const std::function<void(const std::string& tmp, const std::string& final_dir)>& fill);

// fsync a file or directory by path.
void fsync_path(const std::string& path);
// Rename (atomic within one filesystem) and fsync the destination's parent directory.
void rename_durable(const std::string& from, const std::string& to);
// mkdir -p with an Error naming the directory and the OS reason.
void create_directories(const std::string& dir);
// rm -rf that never throws (cleanup on an error path).
void remove_all_quietly(const std::string& path);
// Whole file as a string; Error naming the file if it cannot be read.
std::string read_file(const std::string& path);
// Peak resident set size of this process in bytes (VmHWM), 0 if unknown.
int64_t peak_rss_bytes();

// Why writing under `path` may have failed when a library (HDF5) gave no errno: "read-only
// file system" or "no space left on device (N bytes free)" from statvfs of the nearest
// existing parent, or "" when neither applies.
std::string write_trouble(const std::string& path);

}  // namespace retort::fs

// Filesystem helpers for crash-safe outputs: write to a temporary name, fsync, rename.
#pragma once
#include <string>

namespace retort::fs {

// Write `content` to `path` atomically (path.tmp-PID, fsync, rename, fsync parent dir).
void write_file_atomic(const std::string& path, const std::string& content);
// fsync a file or directory by path.
void fsync_path(const std::string& path);
// Rename (atomic within one filesystem) and fsync the destination's parent directory.
void rename_durable(const std::string& from, const std::string& to);
// Whole file as a string; Error naming the file if it cannot be read.
std::string read_file(const std::string& path);
// Peak resident set size of this process in bytes (VmHWM), 0 if unknown.
int64_t peak_rss_bytes();

}  // namespace retort::fs

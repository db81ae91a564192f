#include "core/fs.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace stdfs = std::filesystem;

namespace retort::fs {

namespace {

// write(2) until every byte is out; false with errno set on failure.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;  // a preemption signal arrived mid-write
      return false;
    }
    data += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(str_cat(path, ": cannot open for fsync: ", std::strerror(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw Error(str_cat(path, ": fsync failed: ", std::strerror(err)));
}

void rename_durable(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw Error(str_cat(to, ": cannot rename from ", from, ": ", std::strerror(errno)));
  stdfs::path parent = stdfs::absolute(to).parent_path();
  fsync_path(parent.string());
}

void create_directories(const std::string& dir) {
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) throw Error(str_cat(dir, ": cannot create directory: ", ec.message()));
}

void remove_all_quietly(const std::string& path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str_cat(path, ": cannot write: ", std::strerror(errno)));
  // tmpfs and ext4 report ENOSPC at write(2); NFS may report it only at fsync or close.
  const bool ok = write_all(fd, content.data(), content.size()) && ::fsync(fd) == 0;
  const int err = errno;
  const bool closed = ::close(fd) == 0;
  if (!ok || !closed) {
    const int why = ok ? errno : err;
    ::unlink(tmp.c_str());
    throw Error(str_cat(path, ": cannot write: ", std::strerror(why)));
  }
  try {
    rename_durable(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

FileWriter::FileWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(str_cat(path, ": cannot write: ", std::strerror(errno)));
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, size_t n) {
  if (!write_all(fd_, static_cast<const char*>(data), n))
    throw Error(str_cat(path_, ": cannot write: ", std::strerror(errno)));
}

void FileWriter::close() {
  const bool synced = ::fsync(fd_) == 0;
  const int err = errno;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed)
    throw Error(str_cat(path_, ": cannot write: ", std::strerror(synced ? errno : err)));
}

void write_dir_via_temp(const std::string& dir,
                        const std::function<void(const std::string&, const std::string&)>& fill) {
  const stdfs::path final_dir = stdfs::absolute(dir);
  create_directories(final_dir.parent_path().string());
  stdfs::path tmp = final_dir;
  tmp += str_cat(".tmp-", ::getpid());
  remove_all_quietly(tmp.string());
  try {
    create_directories(tmp.string());
    fill(tmp.string(), final_dir.string());
  } catch (...) {
    remove_all_quietly(tmp.string());  // a failed write (disk full) leaves no partial copy
    throw;
  }
}

void append_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str_cat(path, ": cannot append: ", std::strerror(errno)));
  const bool ok = write_all(fd, text.data(), text.size());
  const int err = errno;
  const bool closed = ::close(fd) == 0;
  if (!ok || !closed)
    throw Error(str_cat(path, ": cannot append: ", std::strerror(ok ? errno : err)));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str_cat(path, ": cannot read: ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // kB
  }
  return 0;
}

std::string write_trouble(const std::string& path) {
  std::error_code ec;
  stdfs::path p = stdfs::absolute(path, ec);
  while (!p.empty() && !stdfs::exists(p, ec) && p != p.parent_path()) p = p.parent_path();
  struct statvfs st;
  if (p.empty() || ::statvfs(p.c_str(), &st) != 0) return "";
  if (st.f_flag & ST_RDONLY) return std::strerror(EROFS);
  const uint64_t free_bytes = uint64_t(st.f_bavail) * st.f_frsize;
  if (free_bytes < (uint64_t(1) << 20))  // under 1 MiB: the write almost surely ran out
    return str_cat(std::strerror(ENOSPC), " (", free_bytes, " bytes free)");
  return "";
}

}  // namespace retort::fs

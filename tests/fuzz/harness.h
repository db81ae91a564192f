// What every fuzz target accepts from a reader fed a hostile file: either success (and then
// the target checks the reader's documented guarantees itself) or one clean exception,
// retort::Error or retort::ConfigError, whose message is one line naming the file. Anything
// else — another exception type, a message without the file name or with a newline, a
// sanitizer report, a crash, a hang, a giant allocation (libFuzzer's -malloc_limit_mb) — is a
// bug: the target aborts (or the sanitizer/libFuzzer stops it) and libFuzzer saves the input.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint.h"

namespace retort::fuzz {

// A private scratch directory for this fuzzer process (under $TMPDIR or /tmp), created on
// first use, emptied by clear_scratch(); `name` joins a file to it.
const std::string& scratch_dir();
std::string scratch(const std::string& name);
void clear_scratch();

// Runs `read`; returns true when it succeeded, false on a clean error (see above) whose
// message contains `must_name`. Aborts with a report on anything else.
bool clean_or_error(const std::string& must_name, const std::function<void()>& read);

// A tiny model's parameters (name, shape: 2-D and 1-D, SPEC §1 names with dots) and zero
// tensors of them to load into.
const std::vector<std::pair<std::string, Shape>>& tiny_params();
std::vector<NamedTensor> tiny_param_zeros();

// XORs 1 to 4 bytes of the file `path`, at places and with values the input picks.
void flip_bytes(FuzzedDataProvider& in, const std::string& path);

// Aborts with `what` (the target's own oracle failed: the reader accepted bad data).
[[noreturn]] void bug(const std::string& what);

// Aborts when HDF5 handles are still open (a reader leaked one), then closes them.
void expect_no_open_hdf5_objects();

}  // namespace retort::fuzz

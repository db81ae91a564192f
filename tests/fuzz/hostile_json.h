// Hostile variants of a JSON document the caller means to write (a corpus manifest, a
// checkpoint's state.json, a shard file's "pieces" attribute): the input picks nodes to drop
// or to replace with null, bools, extreme or fractional numbers (1e300, 2^64−1, −1, 0.5),
// odd strings ("", "../x", "/abs", very long), empty or nested containers; or it replaces the
// whole text with garbage or cuts it short.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>

#include <nlohmann/json.hpp>
#include <string>

namespace retort::fuzz {

// Zero or more hostile edits of `j` in place; hostile integers cluster around `near`.
void mutate_json(FuzzedDataProvider& in, nlohmann::json& j, int64_t near);
// j.dump(), or (as the input decides) garbage or a truncated dump.
std::string hostile_json_text(FuzzedDataProvider& in, const nlohmann::json& j);

}  // namespace retort::fuzz

// See hostile_json.h.
#include "hostile_json.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "hostile_h5.h"

namespace retort::fuzz {
namespace {

using json = nlohmann::json;

void collect(const json& j, const json::json_pointer& at, std::vector<json::json_pointer>& out) {
  out.push_back(at);
  if (j.is_object())
    for (const auto& [k, v] : j.items()) collect(v, at / k, out);
  else if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) collect(j[i], at / i, out);
}

json hostile_value(FuzzedDataProvider& in, int64_t near) {
  switch (in.ConsumeIntegralInRange(0, 11)) {
    case 0: return nullptr;
    case 1: return in.ConsumeBool();
    case 2: case 3: return hostile_int(in, near);
    case 4: return std::numeric_limits<uint64_t>::max();
    case 5: {
      const double r = hostile_real(in);
      return r == r ? json(r) : json(1e300);  // JSON has no NaN
    }
    case 6: return 0.5;
    case 7: return in.ConsumeRandomLengthString(24);
    case 8: return in.ConsumeBool() ? "../escape.h5" : "/etc/hostname";
    case 9: return json::array();
    case 10: return json::object();
    default: return json::array({hostile_int(in, near), json::array({1, 2})});
  }
}

}  // namespace

void mutate_json(FuzzedDataProvider& in, json& j, int64_t near) {
  const int edits = in.ConsumeIntegralInRange(0, 4);
  for (int e = 0; e < edits; ++e) {
    std::vector<json::json_pointer> nodes;
    collect(j, json::json_pointer(), nodes);
    const json::json_pointer at = nodes[in.ConsumeIntegralInRange<size_t>(0, nodes.size() - 1)];
    if (!at.empty() && in.ConsumeBool()) {  // drop it
      json& parent = j[at.parent_pointer()];
      if (parent.is_object()) parent.erase(at.back());
      else if (parent.is_array()) parent.erase(size_t(std::stoull(at.back())));
    } else {
      j[at] = hostile_value(in, near);
    }
  }
}

std::string hostile_json_text(FuzzedDataProvider& in, const nlohmann::json& j) {
  // Invalid UTF-8 in a hostile string becomes U+FFFD here; garbage text (case 0) covers it raw.
  const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  switch (in.ConsumeIntegralInRange(0, 15)) {
    case 0: return in.ConsumeRandomLengthString(200);
    case 1: return text.substr(0, in.ConsumeIntegralInRange<size_t>(0, text.size()));
    default: return text;
  }
}

}  // namespace retort::fuzz

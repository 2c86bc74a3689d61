// Serializing JSON that may hold bytes we did not validate (request text, file names, actors).
#ifndef RERANK_COMMON_JSON_UTIL_H_
#define RERANK_COMMON_JSON_UTIL_H_

#include <string>

#include "nlohmann/json.hpp"

namespace rerank {

// json.dump(indent) that never throws: invalid UTF-8 in strings is replaced with U+FFFD instead
// of raising nlohmann::json::type_error (which plain dump() does). indent < 0: one line.
template <typename BasicJson>
std::string DumpJson(const BasicJson& json, int indent = -1) {
  return json.dump(indent, ' ', /*ensure_ascii=*/false, BasicJson::error_handler_t::replace);
}

}  // namespace rerank

#endif  // RERANK_COMMON_JSON_UTIL_H_

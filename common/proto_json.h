// The one JSON codec for API messages: protobuf's JSON mapping with the proto field names
// (snake_case), as the admin HTTP API renders its messages (proto/rerank/admin/v1/admin.proto)
// and rerankctl parses them.
#ifndef RERANK_COMMON_PROTO_JSON_H_
#define RERANK_COMMON_PROTO_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace rerank {

// Every field, also those at their default value (an explicit contract: a reader never has to
// guess whether a missing key means 0/false); proto3 `optional` fields only when set.
std::string MessageToJson(const google::protobuf::Message& message);

struct JsonParseOptions {
  // Servers are strict (an unknown key is a typo to report); clients ignore unknown keys, so a
  // newer server's additions do not break an older rerankctl.
  bool ignore_unknown_fields = false;
};
// Parses `json` into `message` (cleared first), strictly: InvalidArgument "<what>: invalid JSON"
// or "<what>: must be a JSON object" for the document, else naming the field's path, e.g.
// "flags.cache.enabled: must be true or false, got \"yes\"", "flags.cache.colour: unknown key",
// "top_n: must be a non-negative integer, got -1". No coercion (protobuf's own parser accepts
// "yes" for a bool); 64-bit integers may be strings, as the proto JSON mapping renders them.
// A JSON null leaves the field unset. Keys are proto field names or their lowerCamelCase form.
// A google.protobuf.Value field takes any JSON value as it is.
absl::Status JsonToMessage(absl::string_view json, google::protobuf::Message* message,
                           absl::string_view what, JsonParseOptions options = {});

// The value of `key` in a google.protobuf.Struct, or null. Looked up through reflection, i.e. by
// libprotobuf's own code: code that uses the headers' inline Map<> on a message built by
// libprotobuf breaks under ThreadSanitizer (see proto_json.cc), so all our Struct access goes
// through here and JsonToMessage.
const google::protobuf::Message* StructField(const google::protobuf::Message& s,
                                             absl::string_view key);

}  // namespace rerank

#endif  // RERANK_COMMON_PROTO_JSON_H_

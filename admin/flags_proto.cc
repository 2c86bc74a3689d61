#include "admin/flags_proto.h"

#include "common/flag_store.h"
#include "common/proto_json.h"
#include "nlohmann/json.hpp"

namespace rerank {

admin::v1::Flags FlagsToProto(const FeatureFlags& flags) {
  admin::v1::Flags out;
  // FlagsToJson covers every field of the table; an unknown key here means the proto lacks a
  // flag, which flags_proto_test catches.
  JsonToMessage(FlagsToJson(flags).dump(), &out, "flags").IgnoreError();
  return out;
}

absl::StatusOr<FeatureFlags> ApplyFlagsPatch(const admin::v1::Flags& patch,
                                             const FeatureFlags& base) {
  // Only the fields present in the patch are rendered (proto3 `optional`), so absent keys keep
  // base's values in FlagsFromJson.
  const nlohmann::json j = nlohmann::json::parse(MessageToJson(patch));
  return FlagsFromJson(j, base);
}

}  // namespace rerank

// FeatureFlags <-> the admin contract's Flags message. The bridge goes through the flags codec's
// JSON form (FlagsToJson / FlagsFromJson, whose field table is the only list of flag keys) and
// protobuf's JSON mapping, so no field list is written here; a test keeps the two in step.
#ifndef RERANK_ADMIN_FLAGS_PROTO_H_
#define RERANK_ADMIN_FLAGS_PROTO_H_

#include "absl/status/statusor.h"
#include "common/feature_flags.h"
#include "rerank/admin/v1/admin.pb.h"

namespace rerank {

// Every field set.
admin::v1::Flags FlagsToProto(const FeatureFlags& flags);

// The fields present in `patch` applied on top of `base`, validated (ValidateFlags).
// InvalidArgument naming the flags key ("cache.traffic_percent: must be 0..100, got 150").
absl::StatusOr<FeatureFlags> ApplyFlagsPatch(const admin::v1::Flags& patch,
                                             const FeatureFlags& base);

}  // namespace rerank

#endif  // RERANK_ADMIN_FLAGS_PROTO_H_

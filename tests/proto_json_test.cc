// The API JSON codec (common/proto_json.h) and the Flags bridge (admin/flags_proto.h) on the real
// admin contract messages.
#include "common/proto_json.h"

#include "admin/flags_proto.h"
#include "common/flag_store.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rerank/admin/v1/admin.pb.h"

namespace rerank {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

TEST(ProtoJsonTest, RendersProtoFieldNamesAndDefaultsAsNumbers) {
  admin::v1::Health h;
  h.mutable_reranker()->mutable_stats()->set_total_reranks(12345678901.0);
  h.mutable_reranker()->mutable_stats()->set_p95_latency_ms(12.5);
  const json j = json::parse(MessageToJson(h));
  EXPECT_EQ(j["ready"], false);  // defaults are printed: every key the contract promises is there
  EXPECT_EQ(j["reranker"]["stats"]["total_reranks"], 12345678901.0);
  EXPECT_TRUE(j["reranker"]["stats"]["total_reranks"].is_number());
  EXPECT_EQ(j["reranker"]["stats"]["p95_latency_ms"], 12.5);
  EXPECT_EQ(j["reranker"]["stats"]["cache_hit_rate_percent"], 0);
  EXPECT_TRUE(j["reranker"]["stats"].contains("target_latency_met_rate_percent"));
}

TEST(ProtoJsonTest, ParsesStrictlyAndNamesTheField) {
  struct Case {
    std::string body;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"{oops", "request body: invalid JSON"},
           {"[1]", "request body: must be a JSON object"},
           {R"({"stage": 10})", "stage: must be a string, got 10"},
           {R"({"flags": {"cache": {"enabled": "yes"}}})",
            R"(flags.cache.enabled: must be true or false, got "yes")"},
           {R"({"flags": {"cache": {"enabled": 1}}})",
            "flags.cache.enabled: must be true or false"},
           {R"({"flags": {"cache": {"traffic_percent": -1}}})",
            "flags.cache.traffic_percent: must be a non-negative integer, got -1"},
           {R"({"flags": {"cache": {"traffic_percent": 1.5}}})",
            "flags.cache.traffic_percent: must be a non-negative integer"},
           {R"({"flags": {"cache": {"traffic_percent": "10"}}})",
            "flags.cache.traffic_percent: must be a non-negative integer"},
           {R"({"flags": {"cache": {"traffic_percent": 4294967296}}})",
            "flags.cache.traffic_percent: out of range"},
           {R"({"flags": {"cache": {"colour": 1}}})", "flags.cache.colour: unknown key"},
           {R"({"flags": []})", "flags: must be an object"},
       }) {
    admin::v1::UpdateFlagsRequest m;
    absl::Status s = JsonToMessage(c.body, &m, "request body");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.body;
  }
}

TEST(ProtoJsonTest, NullLeavesAFieldUnsetAndUnknownKeysCanBeIgnored) {
  admin::v1::UpdateFlagsRequest m;
  ASSERT_TRUE(JsonToMessage(R"({"stage": "full", "actor": null, "flags": null})", &m, "b").ok());
  EXPECT_EQ(m.stage(), "full");
  EXPECT_FALSE(m.has_actor());
  EXPECT_FALSE(m.has_flags());
  admin::v1::Readiness r;
  EXPECT_FALSE(JsonToMessage(R"({"ready": true, "new_field": 1})", &r, "b").ok());
  ASSERT_TRUE(
      JsonToMessage(R"({"ready": true, "new_field": 1})", &r, "b", {/*ignore_unknown_fields=*/true})
          .ok());
  EXPECT_TRUE(r.ready());
  admin::v1::Flags f;
  ASSERT_TRUE(JsonToMessage(R"({"cache": {"traffic_percent": 20}})", &f, "b").ok());
  EXPECT_TRUE(f.cache().has_traffic_percent());
  EXPECT_FALSE(f.cache().has_enabled());
}

TEST(ProtoJsonTest, AnyJsonValueIsKeptAsItIsInAValueField) {
  // ListValue's `values` are google.protobuf.Value fields: objects nest as Structs.
  const json in = {{"values",
                    {{{"text", "a"}, {"meta", {{"x", {1, {{"y", nullptr}}, "z"}}, {"ok", true}}}},
                     "plain",
                     2.5,
                     json::object()}}};
  google::protobuf::ListValue list;
  ASSERT_TRUE(JsonToMessage(in.dump(), &list, "body").ok());
  // Read back with libprotobuf's own printer (plain options).
  std::string out;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(list, &out).ok());
  EXPECT_EQ(json::parse(out), in["values"]);
  // StructField finds a key (and only a key that is there).
  const auto* text = static_cast<const google::protobuf::Value*>(
      StructField(list.values(0).struct_value(), "text"));
  ASSERT_NE(text, nullptr);
  EXPECT_EQ(text->string_value(), "a");
  EXPECT_EQ(StructField(list.values(0).struct_value(), "nope"), nullptr);
  EXPECT_EQ(StructField(list.values(3).struct_value(), "text"), nullptr);
}

TEST(FlagsProtoTest, EveryFlagRoundTripsThroughTheContract) {
  FeatureFlags f;
  f.stage = "custom";
  f.reranker_enabled = false;
  f.cache_enabled = true;
  f.cache_traffic_percent = 37;
  f.cache_max_entries = 4242;
  f.batch_enabled = false;
  f.audit_enabled = false;
  f.overfetch_enabled = true;
  f.overfetch_candidates = 40;
  f.overfetch_top_n = 7;
  f.rate_limit_enabled = false;
  f.rate_limit_per_minute = 900;
  const admin::v1::Flags p = FlagsToProto(f);
  // The contract's JSON equals the flags codec's JSON: no flag is missing from the proto.
  EXPECT_EQ(json::parse(MessageToJson(p)), FlagsToJson(f));
  absl::StatusOr<FeatureFlags> back = ApplyFlagsPatch(p, FeatureFlags{});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, f);
}

TEST(FlagsProtoTest, APatchChangesOnlyWhatItSetsAndIsValidated) {
  const FeatureFlags base;
  admin::v1::Flags patch;
  patch.mutable_cache()->set_traffic_percent(20);
  absl::StatusOr<FeatureFlags> next = ApplyFlagsPatch(patch, base);
  ASSERT_TRUE(next.ok()) << next.status();
  FeatureFlags want = base;
  want.cache_traffic_percent = 20;
  EXPECT_EQ(*next, want);

  patch.mutable_cache()->set_traffic_percent(150);
  next = ApplyFlagsPatch(patch, base);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(next.status().message()), HasSubstr("cache.traffic_percent"));
}

}  // namespace
}  // namespace rerank

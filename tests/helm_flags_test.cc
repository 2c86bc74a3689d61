// The Helm chart stages a rollout by rendering the flags file into a ConfigMap
// (helm/rerankd/templates/_helpers.tpl, "rerankd.flagsYaml"): rollout.stage applied on top of the
// chart's `flags` values. This test holds that template to rerankd's own semantics: for every
// stage, the rendered flags.yaml must parse with rerankd's strict parser (ParseFlagsYaml) to
// exactly ApplyStage(stage, base), where base is the chart's `flags` rendered with stage "custom".
// Run for the chart's defaults and for a non-default base, so stages that keep a field are seen
// keeping it. The chart is rendered by tests/helm/render (the `helm_renderer` fixture).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/feature_flags.h"
#include "common/flag_store.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

std::string Renderer() {
  if (const char* r = std::getenv("HELM_RENDER")) return r;
  const char* build = std::getenv("RERANK_BUILD_DIR");
  return absl::StrCat(build != nullptr ? build : "build", "/tests/helm-render");
}

std::string Chart() {
  const char* src = std::getenv("RERANK_SOURCE_DIR");
  return absl::StrCat(src != nullptr ? src : ".", "/helm/rerankd");
}

// The flags.yaml of the chart rendered with `sets` (--set arguments); fails the test on error.
std::string RenderFlags(const std::vector<std::string>& sets) {
  std::string cmd = Renderer() + " --show-only templates/configmap-flags.yaml";
  for (const std::string& s : sets) absl::StrAppend(&cmd, " --set ", s);
  absl::StrAppend(&cmd, " ", Chart(), " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return "";
  }
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << cmd << " failed:\n" << out;
    return "";
  }
  YAML::Node doc = YAML::Load(out);
  if (!doc["kind"] || doc["kind"].as<std::string>() != "ConfigMap" || !doc["data"]["flags.yaml"]) {
    ADD_FAILURE() << "no flags ConfigMap in:\n" << out;
    return "";
  }
  return doc["data"]["flags.yaml"].as<std::string>();
}

FeatureFlags Parse(const std::string& text, const std::string& what) {
  absl::StatusOr<FeatureFlags> f = ParseFlagsYaml(text, what);
  EXPECT_TRUE(f.ok()) << f.status() << "\n" << text;
  return f.ok() ? *f : FeatureFlags{};
}

void ExpectStagesMatchRerankd(const std::vector<std::string>& base_sets) {
  std::vector<std::string> sets = base_sets;
  sets.push_back("rollout.stage=custom");
  const FeatureFlags base = Parse(RenderFlags(sets), "stage custom");
  EXPECT_EQ(base.stage, kCustomStage);
  for (const std::string& stage : StageNames()) {
    sets.back() = "rollout.stage=" + stage;
    const FeatureFlags rendered = Parse(RenderFlags(sets), stage);
    absl::StatusOr<FeatureFlags> expected = ApplyStage(stage, base);
    ASSERT_TRUE(expected.ok()) << expected.status();
    EXPECT_TRUE(rendered == *expected)
        << "stage " << stage << " (base " << absl::StrJoin(base_sets, " ")
        << "): the chart and rerankd differ in "
        << absl::StrJoin(ChangedFlagKeys(rendered, *expected), ", ");
  }
}

TEST(HelmFlagsTest, EveryStageMatchesApplyStageOnTheChartDefaults) { ExpectStagesMatchRerankd({}); }

TEST(HelmFlagsTest, EveryStageMatchesApplyStageOnANonDefaultBase) {
  ExpectStagesMatchRerankd(
      {"flags.cache.enabled=true", "flags.cache.trafficPercent=30", "flags.cache.maxEntries=500",
       "flags.batch.enabled=false", "flags.audit.enabled=false", "flags.overfetch.enabled=true",
       "flags.overfetch.candidates=30", "flags.overfetch.topN=10", "flags.rateLimit.enabled=false",
       "flags.rateLimit.perMinute=7", "flags.reranker.enabled=false"});
}

TEST(HelmFlagsTest, TheDefaultStageIsTheInitialFlagsOfRerankd) {
  // A fresh rerankd and a fresh chart install start from the same flags.
  EXPECT_TRUE(Parse(RenderFlags({}), "defaults") == FeatureFlags{});
}

}  // namespace
}  // namespace rerank

#include "admin/admin_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rerank {

using json = nlohmann::json;

json HealthReport::ToJson() const {
  json stats_json = {
      {"total_reranks", stats.total_requests},
      {"avg_latency_ms", stats.avg_latency_ms},
      {"p95_latency_ms", stats.p95_latency_ms},
      {"p99_latency_ms", stats.p99_latency_ms},
      {"cache_hit_rate_percent", stats.cache_hit_rate_percent},
      {"target_latency_met_rate_percent", stats.target_latency_met_rate_percent},
      {"cache_enabled", cache_enabled},
      {"cache_size", cache_size},
      {"cache_max_size", cache_max_size},
      {"target_latency_ms", static_cast<int64_t>(stats.target_latency_ms)},
      {"error_rate_percent", stats.error_rate_percent},
      {"window_seconds", stats.window_seconds},
      {"requests_in_window", stats.requests_in_window},
  };
  return json{
      {"status", status},
      {"ready", readiness.ready},
      {"uptime_seconds", uptime_seconds},
      {"model",
       {{"name", model_name}, {"version", model_version}, {"precision", precision}, {"demo", demo}}},
      {"reranker",
       {{"enabled", flags.reranker_enabled}, {"stage", flags.stage}, {"stats", std::move(stats_json)}}},
      {"flags", FlagsToJson(flags)},
  };
}

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Create(Options options, Deps deps) {
  if (deps.flags == nullptr) return absl::InvalidArgumentError("AdminCore: flags is required");
  if (deps.audit == nullptr) return absl::InvalidArgumentError("AdminCore: audit is required");
  if (deps.stats == nullptr) return absl::InvalidArgumentError("AdminCore: stats is required");
  if (deps.clock == nullptr) return absl::InvalidArgumentError("AdminCore: clock is required");
  if (!deps.readiness) return absl::InvalidArgumentError("AdminCore: readiness is required");
  return std::unique_ptr<AdminCore>(new AdminCore(std::move(options), std::move(deps)));
}

Readiness AdminCore::GetReadiness() const { return deps_.readiness(); }

HealthReport AdminCore::Health() const {
  HealthReport h;
  h.readiness = GetReadiness();
  h.uptime_seconds = std::max<int64_t>(
      0, absl::ToInt64Seconds(deps_.clock->Now() - deps_.start));
  h.model_name = deps_.model_name;
  h.model_version = deps_.model_version;
  h.precision = deps_.precision;
  h.demo = deps_.demo_model;
  h.flags = *deps_.flags->Current();
  h.stats = deps_.stats->GetSnapshot();
  h.cache_enabled = deps_.cache != nullptr && h.flags.cache_enabled;
  if (deps_.cache != nullptr) {
    const ScoreCache::Stats cs = deps_.cache->GetStats();
    h.cache_size = cs.size;
    h.cache_max_size = cs.max_entries;
  }
  if (!h.readiness.ready) {
    h.status = "unhealthy";
  } else if (h.stats.error_rate_percent > kDegradedErrorRatePercent) {
    h.status = "degraded";
  } else {
    h.status = "healthy";
  }
  return h;
}

json AdminCore::FlagsView() const {
  const std::shared_ptr<const FeatureFlags> flags = deps_.flags->Current();
  const FlagsMetadata meta = deps_.flags->metadata();
  return json{{"flags", FlagsToJson(*flags)},
              {"stage", flags->stage},
              {"updated_by", meta.updated_by},
              {"updated_at", meta.updated_at},
              {"stages", StageNames()}};
}

std::string AdminCore::MetricsText() const {
  return deps_.metrics != nullptr ? deps_.metrics->Scrape() : std::string();
}

absl::Status ValidateActor(const std::string& actor) {
  if (actor.empty() || actor.size() > kMaxActorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor: must be 1..", kMaxActorBytes, " bytes, got ", actor.size()));
  }
  for (unsigned char c : actor) {
    if (c < 0x20 || c == 0x7f) return absl::InvalidArgumentError("actor: must not contain control characters");
  }
  return absl::OkStatus();
}

bool ConstantTimeEquals(std::string_view secret, std::string_view presented) {
  // Every byte of `presented` is compared (against the secret, cycled), and the length
  // difference is folded in, so the loop never exits early.
  unsigned char diff = secret.size() == presented.size() ? 0 : 1;
  if (secret.empty()) return presented.empty();
  for (size_t i = 0; i < presented.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^ secret[i % secret.size()]);
  }
  return diff == 0;
}

std::optional<std::string> AdminTokenFromHeaders(const std::optional<std::string>& authorization,
                                                 const std::optional<std::string>& x_admin_token) {
  if (authorization.has_value()) {
    absl::string_view v = absl::StripAsciiWhitespace(*authorization);
    if (v.size() > 7 && absl::StartsWithIgnoreCase(v, "bearer ")) {
      absl::string_view t = absl::StripAsciiWhitespace(v.substr(7));
      if (!t.empty()) return std::string(t);
    }
  }
  if (x_admin_token.has_value()) {
    absl::string_view t = absl::StripAsciiWhitespace(*x_admin_token);
    if (!t.empty()) return std::string(t);
  }
  return std::nullopt;
}

absl::Status AdminCore::Authorize(const std::optional<std::string>& presented) const {
  if (options_.token.empty()) return absl::PermissionDeniedError(kTokenNotConfigured);
  if (!presented.has_value()) {
    return absl::UnauthenticatedError(
        "missing admin token: send 'Authorization: Bearer <token>' or 'X-Admin-Token: <token>'");
  }
  if (!ConstantTimeEquals(options_.token, *presented)) {
    return absl::UnauthenticatedError("invalid admin token");
  }
  return absl::OkStatus();
}

absl::StatusOr<json> AdminCore::SetStage(const std::string& stage, const std::string& actor) {
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  if (stage == kCustomStage) {
    return absl::InvalidArgumentError(
        "stage: 'custom' is not a stage to set; change individual values with a flags patch");
  }
  absl::Status s = deps_.flags->SetStage(stage, actor);
  if (absl::IsInvalidArgument(s) && !absl::StartsWith(s.message(), "stage")) {
    s = absl::InvalidArgumentError(absl::StrCat("stage: ", s.message()));
  }
  if (!s.ok()) return s;
  return FlagsView();
}

absl::StatusOr<json> AdminCore::PatchFlags(const json& patch, const std::string& actor) {
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  if (!patch.is_object()) return absl::InvalidArgumentError("flags: must be a JSON object");
  FeatureFlags base = *deps_.flags->Current();
  json rest = patch;
  if (auto it = patch.find("stage"); it != patch.end()) {
    if (!it->is_string()) return absl::InvalidArgumentError("stage: must be a string");
    const std::string stage = it->get<std::string>();
    if (stage == kCustomStage) {
      base.stage = kCustomStage;
    } else {
      // The named stage's own values first, then the rest of the patch on top, so
      // {"stage": "cache-10"} alone equals SetStage("cache-10").
      absl::StatusOr<FeatureFlags> staged = ApplyStage(stage, base);
      if (!staged.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("stage: ", staged.status().message()));
      }
      base = *std::move(staged);
    }
    rest.erase("stage");
  }
  absl::StatusOr<FeatureFlags> next = FlagsFromJson(rest, base);
  if (!next.ok()) return next.status();
  // A stage name must describe the flags: if the patch moved a value that the stage prescribes
  // (e.g. cache.traffic_percent under cache-50), the result is "custom". Values a stage does not
  // govern (rate limits, say) keep the stage's name.
  if (next->stage != kCustomStage) {
    absl::StatusOr<FeatureFlags> restaged = ApplyStage(next->stage, *next);
    if (!restaged.ok() || *restaged != *next) next->stage = kCustomStage;
  }
  if (absl::Status s = deps_.flags->Set(*next, actor); !s.ok()) return s;
  return FlagsView();
}

AdminCore::ReloadResult AdminCore::Reload(const std::string& actor, const std::string& source) {
  ReloadResult r;
  absl::StatusOr<bool> applied = deps_.flags->CheckNow();
  if (applied.ok()) {
    r.reloaded = *applied;
  } else {
    r.error = applied.status();
  }
  r.flags = FlagsToJson(*deps_.flags->Current());
  json ev = {{"actor", actor},
             {"source", source},
             {"path", deps_.flags->path()},
             {"reloaded", r.reloaded},
             {"stage", r.flags["stage"]},
             {"error", r.error.ok() ? json(nullptr) : json(std::string(r.error.message()))}};
  deps_.audit->Record("config_reload", std::move(ev));
  return r;
}

}  // namespace rerank

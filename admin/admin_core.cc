#include "admin/admin_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "admin/flags_proto.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

admin::v1::Model ModelToProto(const ModelIdentity& m) {
  admin::v1::Model p;
  p.set_name(m.name);
  p.set_version(m.version);
  p.set_precision(m.precision);
  p.set_demo(m.demo);
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Create(Options options, Deps deps) {
  if (deps.flags == nullptr) return absl::InvalidArgumentError("AdminCore: flags is required");
  if (deps.audit == nullptr) return absl::InvalidArgumentError("AdminCore: audit is required");
  if (deps.stats == nullptr) return absl::InvalidArgumentError("AdminCore: stats is required");
  if (deps.clock == nullptr) return absl::InvalidArgumentError("AdminCore: clock is required");
  if (!deps.readiness) return absl::InvalidArgumentError("AdminCore: readiness is required");
  return std::unique_ptr<AdminCore>(new AdminCore(std::move(options), std::move(deps)));
}

Readiness AdminCore::GetReadiness() const { return deps_.readiness(); }

admin::v1::Health AdminCore::Health() const {
  const Readiness readiness = GetReadiness();
  const FeatureFlags flags = *deps_.flags->Current();
  const LiveStats::Snapshot snap = deps_.stats->GetSnapshot();
  admin::v1::Health h;
  h.set_ready(readiness.ready);
  if (!readiness.ready) {
    h.set_status("unhealthy");
  } else if (snap.error_rate_percent > kDegradedErrorRatePercent) {
    h.set_status("degraded");
  } else {
    h.set_status("healthy");
  }
  h.set_uptime_seconds(static_cast<uint32_t>(
      std::max<int64_t>(0, absl::ToInt64Seconds(deps_.clock->Now() - deps_.start))));
  admin::v1::Model* model = h.mutable_model();
  if (deps_.model_control != nullptr) {
    *model = ModelToProto(deps_.model_control->CurrentModel());
  } else {
    model->set_name(deps_.model_name);
    model->set_version(deps_.model_version);
    model->set_precision(deps_.precision);
    model->set_demo(deps_.demo_model);
  }
  admin::v1::Reranker* reranker = h.mutable_reranker();
  reranker->set_enabled(flags.reranker_enabled);
  reranker->set_stage(flags.stage);
  admin::v1::Stats* s = reranker->mutable_stats();
  s->set_total_reranks(static_cast<double>(snap.total_requests));
  s->set_avg_latency_ms(snap.avg_latency_ms);
  s->set_p95_latency_ms(snap.p95_latency_ms);
  s->set_p99_latency_ms(snap.p99_latency_ms);
  s->set_cache_hit_rate_percent(snap.cache_hit_rate_percent);
  s->set_target_latency_met_rate_percent(snap.target_latency_met_rate_percent);
  s->set_cache_enabled(deps_.cache != nullptr && flags.cache_enabled);
  if (deps_.cache != nullptr) {
    const ScoreCache::Stats cs = deps_.cache->GetStats();
    s->set_cache_size(static_cast<uint32_t>(cs.size));
    s->set_cache_max_size(static_cast<uint32_t>(cs.max_entries));
  }
  s->set_target_latency_ms(static_cast<uint32_t>(snap.target_latency_ms));
  s->set_error_rate_percent(snap.error_rate_percent);
  s->set_window_seconds(static_cast<uint32_t>(snap.window_seconds));
  s->set_requests_in_window(static_cast<uint32_t>(snap.requests_in_window));
  *h.mutable_flags() = FlagsToProto(flags);
  return h;
}

admin::v1::FlagsView AdminCore::FlagsView() const {
  const std::shared_ptr<const FeatureFlags> flags = deps_.flags->Current();
  const FlagsMetadata meta = deps_.flags->metadata();
  admin::v1::FlagsView view;
  *view.mutable_flags() = FlagsToProto(*flags);
  view.set_stage(flags->stage);
  view.set_updated_by(meta.updated_by);
  view.set_updated_at(meta.updated_at);
  for (const std::string& stage : StageNames()) view.add_stages(stage);
  return view;
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
    if (c < 0x20 || c == 0x7f)
      return absl::InvalidArgumentError("actor: must not contain control characters");
  }
  return absl::OkStatus();
}

absl::Status ValidateReason(const std::string& reason) {
  if (reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: must be at most ", kMaxReasonBytes, " bytes, got ", reason.size()));
  }
  for (unsigned char c : reason) {
    if (c < 0x20 || c == 0x7f)
      return absl::InvalidArgumentError("reason: must not contain control characters");
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

absl::StatusOr<admin::v1::FlagsView> AdminCore::SetStage(const std::string& stage,
                                                         const std::string& actor,
                                                         const std::string& reason) {
  RETURN_IF_ERROR(ValidateActor(actor));
  RETURN_IF_ERROR(ValidateReason(reason));
  if (stage == kCustomStage) {
    return absl::InvalidArgumentError(
        "stage: 'custom' is not a stage to set; change individual values with a flags patch");
  }
  absl::Status s = deps_.flags->SetStage(stage, actor, reason);
  if (absl::IsInvalidArgument(s) && !absl::StartsWith(s.message(), "stage")) {
    s = absl::InvalidArgumentError(absl::StrCat("stage: ", s.message()));
  }
  RETURN_IF_ERROR(s);
  return FlagsView();
}

absl::StatusOr<admin::v1::FlagsView> AdminCore::PatchFlags(const admin::v1::Flags& patch,
                                                           const std::string& actor,
                                                           const std::string& reason) {
  RETURN_IF_ERROR(ValidateActor(actor));
  RETURN_IF_ERROR(ValidateReason(reason));
  FeatureFlags base = *deps_.flags->Current();
  admin::v1::Flags rest = patch;
  if (patch.has_stage()) {
    if (patch.stage() == kCustomStage) {
      base.stage = kCustomStage;
    } else {
      // The named stage's own values first, then the rest of the patch on top, so
      // {"stage": "cache-10"} alone equals SetStage("cache-10").
      absl::StatusOr<FeatureFlags> staged = ApplyStage(patch.stage(), base);
      if (!staged.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("stage: ", staged.status().message()));
      }
      base = *std::move(staged);
    }
    rest.clear_stage();
  }
  ASSIGN_OR_RETURN(FeatureFlags next, ApplyFlagsPatch(rest, base));
  // A stage name must describe the flags: if the patch moved a value that the stage prescribes
  // (e.g. cache.traffic_percent under cache-50), the result is "custom". Values a stage does not
  // govern (rate limits, say) keep the stage's name.
  if (next.stage != kCustomStage) {
    absl::StatusOr<FeatureFlags> restaged = ApplyStage(next.stage, next);
    if (!restaged.ok() || *restaged != next) next.stage = kCustomStage;
  }
  RETURN_IF_ERROR(deps_.flags->Set(next, actor, reason));
  return FlagsView();
}

admin::v1::ReloadResponse AdminCore::Reload(const std::string& actor, const std::string& source) {
  admin::v1::ReloadResponse r;
  absl::Status error;
  absl::StatusOr<bool> applied = deps_.flags->CheckNow();
  if (applied.ok()) {
    r.set_reloaded(*applied);
  } else {
    error = applied.status();
    r.set_error(std::string(error.message()));
  }
  const FeatureFlags flags = *deps_.flags->Current();
  *r.mutable_flags() = FlagsToProto(flags);
  nlohmann::json ev = {{"actor", actor},
                       {"source", source},
                       {"path", deps_.flags->path()},
                       {"reloaded", r.reloaded()},
                       {"stage", flags.stage},
                       {"error", error.ok() ? nlohmann::json(nullptr) : nlohmann::json(r.error())}};
  deps_.audit->Record("config_reload", std::move(ev));
  return r;
}

void AdminCore::ReloadModel(const admin::v1::ReloadModelRequest& request, const std::string& actor,
                            const std::string& source, ReloadModelDone done) {
  if (deps_.model_control == nullptr) {
    return done(absl::UnimplementedError("model reload is not available in this server"));
  }
  deps_.model_control->ReloadModel(
      request.dir(), actor, source,
      [done = std::move(done)](absl::StatusOr<ModelReloadResult> result) {
        if (!result.ok()) return done(result.status());
        admin::v1::ReloadModelResponse r;
        *r.mutable_model() = ModelToProto(result->model);
        *r.mutable_previous() = ModelToProto(result->previous);
        r.set_dir(result->model.dir);
        r.set_load_ms(result->load_ms);
        done(std::move(r));
      });
}

}  // namespace rerank

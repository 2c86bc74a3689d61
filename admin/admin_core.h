// The admin plane's logic, independent of transport: health and readiness reports, flag reads and
// changes, reloads, the metrics text, and the admin-token check. Its answers are the messages of
// the admin contract (proto/rerank/admin/v1/admin.proto); the HTTP server (admin/http_server.h,
// rendering them as JSON) and the admin gRPC service (admin/admin_service.h) are thin adapters
// over it, so both transports answer identically.
//
// Flag changes go only through the FlagStore, which writes the file, records the `flag_change`
// audit event and notifies listeners; a reload records a `config_reload` audit event here.
//
// A flags patch (PatchFlags) is applied on top of the current flags (or, when it names a stage,
// on top of that stage applied to them). If the result no longer matches what its stage
// prescribes (say cache.traffic_percent moved under cache-50), its stage becomes "custom"; a
// value no stage governs (rate_limit.*) keeps the stage's name. Read-modify-write is not atomic
// against a concurrent change from another admin or the file watcher: the last writer wins, as with
// any edit of the file.
//
// Thread-safe. Every dependency is not owned and must outlive the core.
#ifndef RERANK_ADMIN_ADMIN_CORE_H_
#define RERANK_ADMIN_ADMIN_CORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "admin/live_stats.h"
#include "admin/service_metrics.h"
#include "common/audit_sink.h"
#include "common/clock.h"
#include "common/flag_store.h"
#include "common/model_control.h"
#include "common/observers.h"
#include "common/score_cache.h"
#include "rerank/admin/v1/admin.pb.h"

namespace rerank {

// Above this windowed error rate (percent) /health reports "degraded".
inline constexpr double kDegradedErrorRatePercent = 5.0;

// The message of a state-changing call when no token is configured.
inline constexpr char kTokenNotConfigured[] =
    "admin.token is not configured; state-changing admin calls are disabled";

class AdminCore {
 public:
  struct Options {
    // The admin token (admin.token). Empty: state-changing calls fail with PERMISSION_DENIED.
    std::string token;
  };
  struct Deps {
    FlagStore* flags = nullptr;         // required
    AuditSink* audit = nullptr;         // required: config_reload events
    LiveStats* stats = nullptr;         // required
    ScoreCache* cache = nullptr;        // optional (cache_size 0 when absent)
    ServiceMetrics* metrics = nullptr;  // optional (/metrics then serves only the registry-less
                                        // empty text)
    Clock* clock = nullptr;             // required: uptime
    absl::Time start;                   // process start, by `clock`
    std::string model_name = "unknown";
    std::string model_version = "unknown";
    std::string precision;  // the precision actually served (model.precision)
    bool demo_model = false;
    std::function<Readiness()> readiness;  // required
    // Optional: the served model, changeable by a hot reload. When set, /health reports its
    // current model (the model_* fields above are then ignored) and ReloadModel works.
    ModelControl* model_control = nullptr;
  };

  // InvalidArgument naming a missing dependency.
  static absl::StatusOr<std::unique_ptr<AdminCore>> Create(Options options, Deps deps);

  Readiness GetReadiness() const;
  // GET /health, GetStats.
  admin::v1::Health Health() const;
  // GET /flags, GetFlags.
  admin::v1::FlagsView FlagsView() const;
  // Prometheus text exposition of the registry (empty without metrics).
  std::string MetricsText() const;

  // OK when `presented` matches the configured token (constant-time compare);
  // PERMISSION_DENIED when no token is configured; UNAUTHENTICATED when missing or wrong.
  absl::Status Authorize(const std::optional<std::string>& presented) const;

  // State-changing calls: the caller has Authorize()d. Return FlagsView() after the change;
  // InvalidArgument naming the key for an unknown stage / bad patch / bad actor (ValidateActor) /
  // bad reason (ValidateReason); the FlagStore's error if the file cannot be written. A
  // non-empty `reason` goes into the flag_change audit event.
  absl::StatusOr<admin::v1::FlagsView> SetStage(const std::string& stage, const std::string& actor,
                                                const std::string& reason = "");
  // `patch`: the fields present change; `patch.stage`, when set, is applied first.
  absl::StatusOr<admin::v1::FlagsView> PatchFlags(const admin::v1::Flags& patch,
                                                  const std::string& actor,
                                                  const std::string& reason = "");

  // Re-reads the flags file now (FlagStore::CheckNow) and records a `config_reload` audit event
  // {actor, source, reloaded, path, error}. The caller has validated `actor` (ValidateActor).
  admin::v1::ReloadResponse Reload(const std::string& actor, const std::string& source);

  // Hot model reload (ModelControl::ReloadModel). The caller has Authorize()d and validated
  // `actor`. `done` runs exactly once: inline for an immediate refusal (UNIMPLEMENTED without a
  // ModelControl, ABORTED while another reload runs), otherwise later on the reload thread, so
  // transports answer from it and never block on a reload.
  using ReloadModelDone = std::function<void(absl::StatusOr<admin::v1::ReloadModelResponse>)>;
  void ReloadModel(const admin::v1::ReloadModelRequest& request, const std::string& actor,
                   const std::string& source, ReloadModelDone done);

 private:
  AdminCore(Options options, Deps deps) : options_(std::move(options)), deps_(std::move(deps)) {}

  const Options options_;
  const Deps deps_;
};

// The token of a request: `Authorization: Bearer <t>` (scheme case-insensitive) if present, else
// `X-Admin-Token: <t>`; nullopt when neither is given (an empty value counts as missing).
std::optional<std::string> AdminTokenFromHeaders(const std::optional<std::string>& authorization,
                                                 const std::optional<std::string>& x_admin_token);

// Who made a change ("actor", recorded in the flags file and the audit log): 1..kMaxActorBytes
// bytes without control characters. InvalidArgument naming `actor` otherwise.
inline constexpr size_t kMaxActorBytes = 128;
absl::Status ValidateActor(const std::string& actor);

// Why a change was made (audit only): 0..kMaxReasonBytes bytes without control characters.
// InvalidArgument naming `reason` otherwise.
inline constexpr size_t kMaxReasonBytes = 1024;
absl::Status ValidateReason(const std::string& reason);

// Equality whose running time depends only on `presented`'s length, not on where the strings
// differ (no early exit), so response timing does not reveal the secret byte by byte.
bool ConstantTimeEquals(std::string_view secret, std::string_view presented);

}  // namespace rerank

#endif  // RERANK_ADMIN_ADMIN_CORE_H_

// The admin plane's handle on the served model (another interface that crosses planes, like
// common/observers.h): what is serving now, and a hot reload. The composition root (app/)
// implements it over the data plane's model bundles; the admin plane (admin/) calls it from
// /health, `POST /model/reload` and the admin gRPC ReloadModel without including server/.
#ifndef RERANK_COMMON_MODEL_CONTROL_H_
#define RERANK_COMMON_MODEL_CONTROL_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace rerank {

// What a served model is (model.yaml plus the precision it runs in).
struct ModelIdentity {
  std::string dir;
  std::string name;
  std::string version;
  std::string precision;
  bool demo = false;
};

// One reload's outcome: the model now serving and the one it replaced.
struct ModelReloadResult {
  ModelIdentity model;
  ModelIdentity previous;
  double load_ms = 0;  // loading + warming the new model, before the swap
};

// Thread-safe.
class ModelControl {
 public:
  virtual ~ModelControl() = default;
  virtual ModelIdentity CurrentModel() const = 0;

  using ReloadDone = std::function<void(absl::StatusOr<ModelReloadResult>)>;
  // Loads and warms the model in `dir` ("": the directory serving now) in the background, then
  // swaps it in; requests already running finish on the model they started with. `done` runs
  // exactly once, on the reload thread (or inline when the request is refused at once), and must
  // not block. Errors: ABORTED while another reload runs; UNAVAILABLE when shutting down; the
  // loader's error (NOT_FOUND / INVALID_ARGUMENT naming the file) for a broken model, in which
  // case the old model keeps serving. `actor` and `source` go into the `model_reload` audit event.
  virtual void ReloadModel(const std::string& dir, const std::string& actor,
                           const std::string& source, ReloadDone done) = 0;
};

}  // namespace rerank

#endif  // RERANK_COMMON_MODEL_CONTROL_H_

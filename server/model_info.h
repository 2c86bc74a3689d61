// What a model directory says about itself (model.yaml, written by tools/export_model.py).
#ifndef RERANK_SERVER_MODEL_INFO_H_
#define RERANK_SERVER_MODEL_INFO_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace rerank {

struct ModelInfo {
  std::string dir;                  // the model directory
  std::string name = "unknown";     // model.yaml name
  std::string version = "unknown";  // model.yaml version (content hash of model.pt)
  uint32_t max_length = 512;        // the model's position limit
  bool lowercase = true;            // uncased vocab: lowercase + strip accents
  std::string precision = "fp32";   // the exporter's suggestion; config decides
  std::string score_activation = "raw";
  bool demo = false;  // random weights: scores are meaningless
  std::string model_path() const { return dir + "/model.pt"; }
  std::string vocab_path() const { return dir + "/vocab.txt"; }
};

// Reads <dir>/model.yaml and checks model.pt and vocab.txt exist. Errors name the file and key.
absl::StatusOr<ModelInfo> LoadModelInfo(const std::string& dir);

// A cheap change detector for a model directory (no hashing of a large model.pt): the size and
// modification time of model.pt, vocab.txt and model.yaml, as text. A missing file reads as
// "-", so a directory in the middle of being replaced differs from both its old and new state.
std::string ModelDirFingerprint(const std::string& dir);

}  // namespace rerank

#endif  // RERANK_SERVER_MODEL_INFO_H_

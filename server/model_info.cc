#include "server/model_info.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace rerank {

absl::StatusOr<ModelInfo> LoadModelInfo(const std::string& dir) {
  namespace fs = std::filesystem;
  ModelInfo info;
  info.dir = dir;
  const std::string yaml_path = dir + "/model.yaml";
  for (const std::string& p : {info.model_path(), info.vocab_path(), yaml_path}) {
    if (!fs::exists(p)) {
      return absl::NotFoundError(
          absl::StrCat("model.dir: ", p, " not found (export a model with tools/export_model.py)"));
    }
  }
  try {
    YAML::Node y = YAML::LoadFile(yaml_path);
    if (y["name"]) info.name = y["name"].as<std::string>();
    if (y["version"]) info.version = y["version"].as<std::string>();
    if (y["max_length"]) info.max_length = y["max_length"].as<uint32_t>();
    if (y["lowercase"]) info.lowercase = y["lowercase"].as<bool>();
    if (y["precision"]) info.precision = y["precision"].as<std::string>();
    if (y["score_activation"]) info.score_activation = y["score_activation"].as<std::string>();
    if (y["demo"]) info.demo = y["demo"].as<bool>();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": ", e.what()));
  }
  if (info.max_length < 8) {
    return absl::InvalidArgumentError(absl::StrCat(yaml_path, ": max_length: must be >= 8"));
  }
  return info;
}

std::string ModelDirFingerprint(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string out;
  for (const char* name : {"model.pt", "vocab.txt", "model.yaml"}) {
    std::error_code ec;
    const fs::path p = fs::path(dir) / name;
    const uintmax_t size = fs::file_size(p, ec);
    if (ec) {
      absl::StrAppend(&out, name, "=-;");
      continue;
    }
    const auto mtime = fs::last_write_time(p, ec);
    absl::StrAppend(&out, name, "=", size, "@",
                    ec ? 0 : static_cast<int64_t>(mtime.time_since_epoch().count()), ";");
  }
  return out;
}

}  // namespace rerank

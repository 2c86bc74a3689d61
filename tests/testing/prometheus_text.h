// Parses the Prometheus text exposition format (what GET /metrics returns) into samples, so tests
// can compare metric values with /health. Handles label-value escapes (\\, \", \n), comments and
// optional timestamps. Test-only; thread-compatible.
#ifndef RERANK_TESTS_TESTING_PROMETHEUS_TEXT_H_
#define RERANK_TESTS_TESTING_PROMETHEUS_TEXT_H_

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rerank::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

class PromText {
 public:
  static absl::StatusOr<PromText> Parse(absl::string_view text) {
    PromText out;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line.empty()) continue;
      if (line[0] == '#') {
        std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
        if (parts.size() >= 4 && parts[1] == "TYPE")
          out.types_[std::string(parts[2])] = std::string(parts[3]);
        continue;
      }
      PromSample s;
      size_t i = 0;
      while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
      s.name = std::string(line.substr(0, i));
      if (i < line.size() && line[i] == '{') {
        ++i;
        while (i < line.size() && line[i] != '}') {
          const size_t eq = line.find('=', i);
          if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
            return absl::InvalidArgumentError(absl::StrCat("bad labels: ", line));
          }
          std::string key(absl::StripAsciiWhitespace(line.substr(i, eq - i)));
          std::string value;
          size_t j = eq + 2;
          for (; j < line.size() && line[j] != '"'; ++j) {
            if (line[j] == '\\' && j + 1 < line.size()) {
              ++j;
              value += line[j] == 'n' ? '\n' : line[j];
            } else {
              value += line[j];
            }
          }
          if (j >= line.size())
            return absl::InvalidArgumentError(absl::StrCat("unterminated: ", line));
          s.labels[key] = value;
          i = j + 1;
          if (i < line.size() && line[i] == ',') ++i;
        }
        if (i >= line.size()) return absl::InvalidArgumentError(absl::StrCat("no '}': ", line));
        ++i;  // '}'
      }
      absl::string_view rest = absl::StripAsciiWhitespace(line.substr(i));
      std::vector<absl::string_view> fields = absl::StrSplit(rest, ' ', absl::SkipEmpty());
      if (fields.empty()) return absl::InvalidArgumentError(absl::StrCat("no value: ", line));
      const std::string v(fields[0]);
      if (v == "+Inf") {
        s.value = INFINITY;
      } else if (v == "-Inf") {
        s.value = -INFINITY;
      } else if (v == "NaN") {
        s.value = NAN;
      } else {
        char* end = nullptr;
        s.value = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') {
          return absl::InvalidArgumentError(absl::StrCat("bad value: ", line));
        }
      }
      out.samples_.push_back(std::move(s));
    }
    return out;
  }

  // Sum over the samples named `name` whose labels include every (key, value) of `match`.
  double Sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const PromSample& s : samples_) {
      if (s.name == name && Matches(s, match)) total += s.value;
    }
    return total;
  }
  // The single sample matching exactly, or nullopt (none, or several).
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& match = {}) const {
    std::optional<double> v;
    for (const PromSample& s : samples_) {
      if (s.name != name || !Matches(s, match)) continue;
      if (v.has_value()) return std::nullopt;
      v = s.value;
    }
    return v;
  }
  bool Has(const std::string& name) const {
    for (const PromSample& s : samples_) {
      if (s.name == name) return true;
    }
    return false;
  }
  // "# TYPE" of a family ("counter", "gauge", "histogram"), or "".
  std::string Type(const std::string& family) const {
    auto it = types_.find(family);
    return it == types_.end() ? "" : it->second;
  }
  const std::vector<PromSample>& samples() const { return samples_; }

 private:
  static bool Matches(const PromSample& s, const std::map<std::string, std::string>& match) {
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) return false;
    }
    return true;
  }
  std::vector<PromSample> samples_;
  std::map<std::string, std::string> types_;
};

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_PROMETHEUS_TEXT_H_

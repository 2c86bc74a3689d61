#include "common/flags_codec.h"

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

// Every format is first turned into this tree (YAML scalars typed by the rules in the header),
// and one walker applies it. ordered_json keeps a YAML file's key order, so the first error
// reported is the first in the file, and the serializer writes keys in FlagFields() order.
using Doc = nlohmann::ordered_json;

constexpr size_t kMaxShownChars = 64;  // of a bad string value quoted in an error

// absl::string_view is not std::string_view in this build.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string JoinKey(absl::string_view prefix, absl::string_view key) {
  if (prefix.empty()) return std::string(key);
  if (key.empty()) return std::string(prefix);
  return absl::StrCat(prefix, ".", key);
}

absl::Status KeyError(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
}

// How a bad value is quoted in an error message (bounded: values may come from a request).
std::string Shown(const Doc& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() <= kMaxShownChars) return absl::StrCat("'", s, "'");
    return absl::StrCat("'", absl::string_view(s).substr(0, kMaxShownChars), "...'");
  }
  if (v.is_object()) return "a map";
  if (v.is_array()) return "a list";
  return DumpJson(v);
}

// Digits only, no sign, no leading zero.
bool IsPlainDecimal(absl::string_view s) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

// An unquoted YAML scalar (or an environment variable): true/false in any case is a boolean, a
// plain decimal (optionally negative, so that -1 is reported as out of range rather than as not a
// number) an integer; everything else, including YAML 1.1's yes/on/010/0x10, a string.
Doc PlainScalar(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true") return true;
  if (lower == "false") return false;
  if (IsPlainDecimal(text)) {
    uint64_t v = 0;
    if (absl::SimpleAtoi(text, &v)) return v;
  } else if (absl::StartsWith(text, "-") && IsPlainDecimal(text.substr(1))) {
    int64_t v = 0;
    if (absl::SimpleAtoi(text, &v)) return v;
  }
  return std::string(text);
}

// YAML -> Doc. Duplicate keys are caught here (a Doc cannot hold them). Sequences are never valid
// in the schema, so their contents are not converted.
absl::Status YamlToDoc(const YAML::Node& node, const std::string& key, Doc* out) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      *out = nullptr;
      return absl::OkStatus();
    case YAML::NodeType::Scalar:
      // yaml-cpp tags a plain scalar "?", a quoted one "!", an explicitly tagged one (!!str) with
      // its tag: only plain scalars are typed.
      *out = node.Tag() == "?" ? PlainScalar(node.Scalar()) : Doc(node.Scalar());
      return absl::OkStatus();
    case YAML::NodeType::Sequence:
      *out = Doc::array();
      return absl::OkStatus();
    case YAML::NodeType::Map:
      break;
  }
  *out = Doc::object();
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return KeyError(key.empty() ? "top level" : key, "keys must be strings");
    }
    const std::string& name = kv.first.Scalar();
    const std::string child_key = JoinKey(key, name);
    if (out->contains(name)) return KeyError(child_key, "duplicate key");
    RETURN_IF_ERROR(YamlToDoc(kv.second, child_key, &(*out)[name]));
  }
  return absl::OkStatus();
}

bool IsSection(absl::string_view relative_key) {
  const std::string prefix = absl::StrCat(relative_key, ".");
  for (const FlagField& f : FlagFields()) {
    if (absl::StartsWith(f.key, prefix)) return true;
  }
  return false;
}

// The one place a value is checked against its field and stored.
absl::Status SetField(const FlagField& field, const Doc& value, absl::string_view key,
                      FeatureFlags* flags) {
  switch (field.type) {
    case FlagField::Type::kString:
      if (!value.is_string()) {
        return KeyError(key, absl::StrCat("must be a string, got ", Shown(value)));
      }
      flags->*field.string_member = value.get<std::string>();
      return absl::OkStatus();
    case FlagField::Type::kBool: {
      if (value.is_boolean()) {
        flags->*field.bool_member = value.get<bool>();
        return absl::OkStatus();
      }
      const bool quoted_bool =
          value.is_string() && PlainScalar(value.get_ref<const std::string&>()).is_boolean();
      return KeyError(key, absl::StrCat("must be true or false, got ", Shown(value),
                                        quoted_bool ? " (quoted: a string)" : ""));
    }
    case FlagField::Type::kUint32: {
      const std::string range = absl::StrCat(field.min, "..", field.max);
      // nlohmann::json stores a non-negative integer as signed or unsigned depending on where
      // it came from (parsed text: unsigned; a C++ int: signed).
      if (value.is_number_integer()) {
        if (!value.is_number_unsigned() && value.get<int64_t>() < 0) {
          return KeyError(key, absl::StrCat("must be ", range, ", got ", value.get<int64_t>()));
        }
        const uint64_t v = value.get<uint64_t>();
        if (v < field.min || v > field.max) {
          return KeyError(key, absl::StrCat("must be ", range, ", got ", v));
        }
        flags->*field.uint_member = static_cast<uint32_t>(v);
        return absl::OkStatus();
      }
      const bool quoted_int =
          value.is_string() && PlainScalar(value.get_ref<const std::string&>()).is_number();
      return KeyError(key, absl::StrCat("must be a decimal integer in ", range, ", got ",
                                        Shown(value), quoted_int ? " (quoted: a string)" : ""));
    }
  }
  return absl::InternalError(absl::StrCat(key, ": unhandled field type"));
}

absl::Status ReadMetadata(const Doc& value, absl::string_view key, std::string* out) {
  if (value.is_null()) {
    out->clear();
  } else if (value.is_string()) {
    *out = value.get<std::string>();
  } else if (value.is_primitive()) {  // a plain YAML scalar such as 42 or true
    *out = DumpJson(value);
  } else {
    return KeyError(key, absl::StrCat("must be a string, got ", Shown(value)));
  }
  return absl::OkStatus();
}

struct Walk {
  absl::string_view prefix;  // prepended to every key in errors
  FlagsMetadataKeys metadata_keys;
  FeatureFlags* flags;
  FlagsMetadata* metadata;

  // `map` is the object at `section` ("" = the document root).
  absl::Status Map(const Doc& map, const std::string& section) const {
    for (const auto& item : map.items()) {
      const std::string& name = item.key();
      const Doc& value = item.value();
      const std::string relative = JoinKey(section, name);
      const std::string key = JoinKey(prefix, relative);
      // A dotted name ({"cache.enabled": true}) would be a second spelling of a nested key.
      if (name.empty() || absl::StrContains(name, '.')) return KeyError(key, "unknown key");
      if (section.empty() && (name == "updated_by" || name == "updated_at")) {
        switch (metadata_keys) {
          case FlagsMetadataKeys::kIgnore:
            continue;
          case FlagsMetadataKeys::kReject:
            return KeyError(key, "unknown key");
          case FlagsMetadataKeys::kRead:
            RETURN_IF_ERROR(ReadMetadata(
                value, key, name == "updated_by" ? &metadata->updated_by : &metadata->updated_at));
            continue;
        }
      }
      if (const FlagField* field = FindFlagField(relative); field != nullptr) {
        RETURN_IF_ERROR(SetField(*field, value, key, flags));
      } else if (IsSection(relative)) {
        if (!value.is_object()) {
          return KeyError(key, absl::StrCat("must be a map, got ", Shown(value)));
        }
        RETURN_IF_ERROR(Map(value, relative));
      } else {
        return KeyError(key, "unknown key");
      }
    }
    return absl::OkStatus();
  }

  absl::Status Root(const Doc& root) const {
    if (!root.is_object()) {
      return KeyError(prefix.empty() ? "top level" : prefix,
                      absl::StrCat("must be a map, got ", Shown(root)));
    }
    return Map(root, "");
  }
};

Doc ToDoc(const FeatureFlags& flags) {
  Doc doc = Doc::object();
  for (const FlagField& field : FlagFields()) {
    Doc* slot = &doc;
    for (absl::string_view part : absl::StrSplit(field.key, '.')) {
      slot = &(*slot)[std::string(part)];
    }
    switch (field.type) {
      case FlagField::Type::kString:
        *slot = flags.*field.string_member;
        break;
      case FlagField::Type::kBool:
        *slot = flags.*field.bool_member;
        break;
      case FlagField::Type::kUint32:
        *slot = flags.*field.uint_member;
        break;
    }
  }
  return doc;
}

// Replaces bytes that are not valid UTF-8 and control characters, so strings written into the
// file always parse back.
std::string SanitizeText(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (!ok) {
      out += '?';
      ++i;
    } else if (len == 1 && (c < 0x20 || c == 0x7F)) {
      out += ' ';
      ++i;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

void EmitYaml(const Doc& value, YAML::Emitter* out) {
  if (value.is_object()) {
    *out << YAML::BeginMap;
    for (const auto& item : value.items()) {
      *out << YAML::Key << item.key() << YAML::Value;
      EmitYaml(item.value(), out);
    }
    *out << YAML::EndMap;
  } else if (value.is_string()) {
    *out << YAML::DoubleQuoted << SanitizeText(value.get_ref<const std::string&>());
  } else if (value.is_boolean()) {
    *out << value.get<bool>();
  } else {
    *out << value.get<uint64_t>();  // the schema has no other scalar types
  }
}

}  // namespace

absl::Status ApplyFlagsYaml(const YAML::Node& node, std::string_view key_prefix,
                            FlagsMetadataKeys keys, FeatureFlags* flags, FlagsMetadata* metadata) {
  Doc doc;
  try {
    RETURN_IF_ERROR(YamlToDoc(node, std::string(key_prefix), &doc));
  } catch (const YAML::Exception& e) {
    return KeyError(key_prefix.empty() ? "flags" : AbslView(key_prefix),
                    absl::StrCat("invalid YAML: ", e.what()));
  }
  return Walk{AbslView(key_prefix), keys, flags, metadata}.Root(doc);
}

absl::Status ApplyFlagsJson(const nlohmann::json& json, std::string_view key_prefix,
                            FlagsMetadataKeys keys, FeatureFlags* flags, FlagsMetadata* metadata) {
  return Walk{AbslView(key_prefix), keys, flags, metadata}.Root(Doc(json));
}

absl::Status SetFlagFromText(std::string_view key, std::string_view text,
                             std::string_view display_key, FeatureFlags* flags) {
  const FlagField* field = FindFlagField(key);
  if (field == nullptr) return KeyError(AbslView(display_key), "unknown key");
  const Doc value = field->type == FlagField::Type::kString
                        ? Doc(std::string(text))
                        : PlainScalar(absl::StripAsciiWhitespace(AbslView(text)));
  return SetField(*field, value, AbslView(display_key), flags);
}

absl::StatusOr<FeatureFlags> ApplyFlagOverrides(const std::vector<FlagOverride>& overrides,
                                                const FeatureFlags& base,
                                                std::string_view key_prefix) {
  auto display = [&](const FlagOverride& o) {
    return absl::StrCat(JoinKey(AbslView(key_prefix), o.key), " (from ", o.source, ")");
  };
  FeatureFlags flags = base;
  for (const FlagOverride& o : overrides) {
    if (o.key != "stage") continue;
    absl::StatusOr<FeatureFlags> s = ApplyStage(o.text, flags);
    if (!s.ok()) return KeyError(display(o), s.status().message());
    flags = *std::move(s);
  }
  bool changed = false;
  for (const FlagOverride& o : overrides) {
    if (o.key == "stage") continue;
    const FeatureFlags before = flags;
    RETURN_IF_ERROR(SetFlagFromText(o.key, o.text, display(o), &flags));
    changed = changed || flags != before;
  }
  if (changed && flags.stage != kCustomStage) {
    // Still the stage's effect (the variable only restated it)? Then keep its name.
    absl::StatusOr<FeatureFlags> restaged = ApplyStage(flags.stage, flags);
    if (!restaged.ok() || *restaged != flags) flags.stage = kCustomStage;
  }
  if (absl::Status s = ValidateFlags(flags); !s.ok()) {
    return absl::InvalidArgumentError(JoinKey(AbslView(key_prefix), s.message()));
  }
  return flags;
}

absl::StatusOr<FeatureFlags> ParseFlagsYaml(std::string_view text, std::string_view source,
                                            FlagsMetadata* metadata) {
  FeatureFlags flags;
  FlagsMetadata meta;
  absl::Status status;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    status = root.IsNull() ? absl::InvalidArgumentError("file is empty")
                           : ApplyFlagsYaml(root, "", FlagsMetadataKeys::kRead, &flags, &meta);
  } catch (const YAML::Exception& e) {
    status = absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  if (status.ok()) status = ValidateFlags(flags);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(source), ": ", status.message()));
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return flags;
}

std::string FlagsToYaml(const FeatureFlags& flags, const FlagsMetadata& metadata) {
  Doc doc = ToDoc(flags);
  doc["updated_by"] = metadata.updated_by;
  doc["updated_at"] = metadata.updated_at;
  YAML::Emitter out;
  out << YAML::Comment(
      "rerankd feature flags. Written by the admin API (FlagStore); hand edits are picked up "
      "within the poll interval. Stages: feature-flags, cache-10, cache-50, cache-100, full, "
      "rollback, disabled; or custom.");
  EmitYaml(doc, &out);
  return std::string(out.c_str()) + "\n";
}

nlohmann::json FlagsToJson(const FeatureFlags& flags) { return nlohmann::json(ToDoc(flags)); }

absl::StatusOr<FeatureFlags> FlagsFromJson(const nlohmann::json& json, const FeatureFlags& base) {
  if (!json.is_object()) return absl::InvalidArgumentError("flags: must be a JSON object");
  FeatureFlags flags = base;
  RETURN_IF_ERROR(ApplyFlagsJson(json, "", FlagsMetadataKeys::kIgnore, &flags, nullptr));
  RETURN_IF_ERROR(ValidateFlags(flags));
  return flags;
}

std::vector<std::string> ChangedFlagKeys(const FeatureFlags& a, const FeatureFlags& b) {
  std::vector<std::string> changed;
  for (const FlagField& f : FlagFields()) {
    bool differs = false;
    switch (f.type) {
      case FlagField::Type::kString:
        differs = a.*f.string_member != b.*f.string_member;
        break;
      case FlagField::Type::kBool:
        differs = a.*f.bool_member != b.*f.bool_member;
        break;
      case FlagField::Type::kUint32:
        differs = a.*f.uint_member != b.*f.uint_member;
        break;
    }
    if (differs) changed.push_back(f.key);
  }
  return changed;
}

}  // namespace rerank

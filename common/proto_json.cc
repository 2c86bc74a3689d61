#include "common/proto_json.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace rerank {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

constexpr size_t kMaxQuotedValueBytes = 64;

// The offending value, short: error messages must not echo a whole request.
std::string Quote(const json& value) {
  std::string s = DumpJson(value);
  if (s.size() > kMaxQuotedValueBytes) s = absl::StrCat(s.substr(0, kMaxQuotedValueBytes), "...");
  return s;
}

absl::Status TypeError(const std::string& path, const char* expected, const json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": must be ", expected, ", got ", Quote(value)));
}

// An integer in [lo, hi]: a JSON integer, or (for 64-bit fields, as the proto JSON mapping
// renders them) a string holding one.
template <typename T>
absl::Status ParseInteger(const json& v, const std::string& path, bool allow_string, T* out) {
  const char* expected = std::is_signed_v<T> ? "an integer" : "a non-negative integer";
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": out of range, got ", Quote(v)));
    }
    *out = static_cast<T>(u);
    return absl::OkStatus();
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (std::is_unsigned_v<T> && i < 0) return TypeError(path, expected, v);
    if (!std::is_unsigned_v<T> && (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                                   i > static_cast<int64_t>(std::numeric_limits<T>::max()))) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": out of range, got ", Quote(v)));
    }
    *out = static_cast<T>(i);
    return absl::OkStatus();
  }
  if (allow_string && v.is_string()) {
    T parsed;
    if (absl::SimpleAtoi(v.get<std::string>(), &parsed)) {
      *out = parsed;
      return absl::OkStatus();
    }
  }
  return TypeError(path, expected, v);
}

absl::Status FillMessage(const json& object, Message* message, const std::string& path,
                         const JsonParseOptions& options);

// A google.protobuf.Value holding `v`, built directly (no render-and-reparse: request documents
// go through here). Depth is bounded by the JSON parser's own.
void ToValue(const json& v, google::protobuf::Value* out) {
  switch (v.type()) {
    case json::value_t::null:
      out->set_null_value(google::protobuf::NULL_VALUE);
      return;
    case json::value_t::boolean:
      out->set_bool_value(v.get<bool>());
      return;
    case json::value_t::string:
      out->set_string_value(v.get_ref<const std::string&>());
      return;
    case json::value_t::array: {
      google::protobuf::ListValue* list = out->mutable_list_value();
      for (const json& e : v) ToValue(e, list->add_values());
      return;
    }
    case json::value_t::object: {
      // Entries are added through reflection, i.e. by libprotobuf's own code, not the inline
      // Map<> of the headers: under ThreadSanitizer the headers give MapFieldBase two extra
      // members (map_field.h), so inline map access from an instrumented build would read an
      // uninstrumented libprotobuf's Struct with the wrong layout and crash. JSON object keys
      // are unique (nlohmann's object), so each key is one map entry.
      google::protobuf::Struct* st = out->mutable_struct_value();
      const Reflection* r = st->GetReflection();
      const FieldDescriptor* fields = st->GetDescriptor()->FindFieldByNumber(1);
      for (const auto& [key, e] : v.items()) {
        Message* entry = r->AddMessage(st, fields);
        const Reflection* er = entry->GetReflection();
        const google::protobuf::Descriptor* ed = entry->GetDescriptor();
        er->SetString(entry, ed->map_key(), key);
        ToValue(e,
                static_cast<google::protobuf::Value*>(er->MutableMessage(entry, ed->map_value())));
      }
      return;
    }
    default:  // numbers (and nlohmann's binary, which its JSON parser never produces)
      out->set_number_value(v.is_number() ? v.get<double>() : 0.0);
      return;
  }
}

}  // namespace

const google::protobuf::Message* StructField(const google::protobuf::Message& s,
                                             absl::string_view key) {
  const Reflection* r = s.GetReflection();
  const FieldDescriptor* fields = s.GetDescriptor()->FindFieldByName("fields");
  if (fields == nullptr || !fields->is_map()) return nullptr;
  for (int i = 0; i < r->FieldSize(s, fields); ++i) {
    const Message& entry = r->GetRepeatedMessage(s, fields, i);
    const Reflection* er = entry.GetReflection();
    const google::protobuf::Descriptor* ed = entry.GetDescriptor();
    if (er->GetString(entry, ed->map_key()) == key) return &er->GetMessage(entry, ed->map_value());
  }
  return nullptr;
}

namespace {

// Sets one singular value, or adds one element when the field is repeated.
absl::Status SetValue(const json& v, Message* m, const FieldDescriptor* f, const std::string& path,
                      const JsonParseOptions& options) {
  const Reflection* r = m->GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL:
      if (!v.is_boolean()) return TypeError(path, "true or false", v);
      rep ? r->AddBool(m, f, v.get<bool>()) : r->SetBool(m, f, v.get<bool>());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t x = 0;
      RETURN_IF_ERROR(ParseInteger(v, path, false, &x));
      rep ? r->AddInt32(m, f, x) : r->SetInt32(m, f, x);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t x = 0;
      RETURN_IF_ERROR(ParseInteger(v, path, false, &x));
      rep ? r->AddUInt32(m, f, x) : r->SetUInt32(m, f, x);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t x = 0;
      RETURN_IF_ERROR(ParseInteger(v, path, true, &x));
      rep ? r->AddInt64(m, f, x) : r->SetInt64(m, f, x);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t x = 0;
      RETURN_IF_ERROR(ParseInteger(v, path, true, &x));
      rep ? r->AddUInt64(m, f, x) : r->SetUInt64(m, f, x);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      if (!v.is_number()) return TypeError(path, "a number", v);
      const double d = v.get<double>();
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        rep ? r->AddDouble(m, f, d) : r->SetDouble(m, f, d);
      } else {
        rep ? r->AddFloat(m, f, static_cast<float>(d)) : r->SetFloat(m, f, static_cast<float>(d));
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      if (!v.is_string()) return TypeError(path, "a string", v);
      rep ? r->AddString(m, f, v.get<std::string>()) : r->SetString(m, f, v.get<std::string>());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_ENUM: {
      const google::protobuf::EnumValueDescriptor* e = nullptr;
      if (v.is_string()) e = f->enum_type()->FindValueByName(v.get<std::string>());
      if (v.is_number_integer()) e = f->enum_type()->FindValueByNumber(v.get<int>());
      if (e == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": unknown value ", Quote(v)));
      }
      rep ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      if (f->message_type()->full_name() == "google.protobuf.Value") {
        // Any JSON value, kept as is (e.g. a document that is a string or an object); the
        // reader checks its shape.
        Message* child = rep ? r->AddMessage(m, f) : r->MutableMessage(m, f);
        auto* value = google::protobuf::DynamicCastToGenerated<google::protobuf::Value>(child);
        if (value != nullptr) {
          ToValue(v, value);
        } else if (!google::protobuf::util::JsonStringToMessage(DumpJson(v), child).ok()) {
          return TypeError(path, "a JSON value", v);  // a dynamic message: the slow way
        }
        return absl::OkStatus();
      }
      if (!v.is_object()) return TypeError(path, "an object", v);
      Message* child = rep ? r->AddMessage(m, f) : r->MutableMessage(m, f);
      return FillMessage(v, child, path, options);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported field type"));
}

absl::Status FillMessage(const json& object, Message* message, const std::string& path,
                         const JsonParseOptions& options) {
  const Descriptor* d = message->GetDescriptor();
  for (const auto& [key, value] : object.items()) {
    const std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
    if (f == nullptr) {
      if (options.ignore_unknown_fields) continue;
      return absl::InvalidArgumentError(absl::StrCat(field_path, ": unknown key"));
    }
    // null means "not set" (SDKs send null for options they leave at their default).
    if (value.is_null()) continue;
    if (f->is_map()) {
      return absl::InvalidArgumentError(absl::StrCat(field_path, ": maps are not supported"));
    }
    if (f->is_repeated()) {
      if (!value.is_array()) return TypeError(field_path, "an array", value);
      for (size_t i = 0; i < value.size(); ++i) {
        RETURN_IF_ERROR(
            SetValue(value[i], message, f, absl::StrCat(field_path, "[", i, "]"), options));
      }
      continue;
    }
    RETURN_IF_ERROR(SetValue(value, message, f, field_path, options));
  }
  return absl::OkStatus();
}

}  // namespace

std::string MessageToJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  // Fails only for messages with unresolvable Any types, which the API does not use.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

absl::Status JsonToMessage(absl::string_view text, Message* message, absl::string_view what,
                           JsonParseOptions options) {
  message->Clear();
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON"));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": must be a JSON object"));
  }
  return FillMessage(j, message, "", options);
}

}  // namespace rerank

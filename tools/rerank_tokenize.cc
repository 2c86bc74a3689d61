// rerank-tokenize: tokenizes (query, document) pairs exactly as the server does, for parity checks
// against Hugging Face and for debugging.
//
//   rerank-tokenize --vocab PATH [--max-length N] < pairs.jsonl > encodings.jsonl
//
// Each stdin line {"query": ..., "document": ...} yields one stdout line
// {"input_ids": [...], "token_type_ids": [...]}, in order. A bad line (bad JSON, missing or
// non-string field, invalid UTF-8) yields {"error": "..."} on stdout (so lines stay aligned) and
// the same message on stderr; processing continues and the exit status is 1 at the end.
// Exit status 2: usage or vocab error.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer.h"

namespace rerank {
namespace {

constexpr char kUsage[] =
    "Usage: rerank-tokenize --vocab PATH [--max-length N]\n"
    "\n"
    "Reads JSON lines {\"query\": STRING, \"document\": STRING} on stdin and writes one JSON line\n"
    "{\"input_ids\": [...], \"token_type_ids\": [...]} per input line on stdout: the BERT pair\n"
    "encoding [CLS] query [SEP] document [SEP] with Hugging Face longest_first truncation.\n"
    "\n"
    "  --vocab PATH       BERT vocab.txt (one token per line, id = line number). Required.\n"
    "  --max-length N     maximum sequence length including the 3 special tokens (>= 3).\n"
    "                     Default 512.\n"
    "  --help             print this help.\n"
    "\n"
    "A bad input line writes {\"error\": ...} in its place and a message naming the line on\n"
    "stderr; the other lines are still processed and the exit status is then 1.\n";

struct Args {
  std::string vocab;
  int max_length = 512;
};

// Returns the value of `--name VALUE` or `--name=VALUE` at argv[*i], advancing *i.
bool FlagValue(int argc, char** argv, int* i, std::string_view name, std::string* value) {
  std::string_view arg = argv[*i];
  if (arg == name) {
    if (*i + 1 >= argc) return false;
    *value = argv[++*i];
    return true;
  }
  if (arg.size() > name.size() && arg.substr(0, name.size()) == name && arg[name.size()] == '=') {
    *value = std::string(arg.substr(name.size() + 1));
    return true;
  }
  return false;
}

// Name of the object key whose string value holds byte `offset` of `line`, or "" if unknown. Used
// only to explain lines that strict parsing rejected for invalid UTF-8, so it is a light scan of
// string literals rather than a parser.
std::string KeyAt(std::string_view line, size_t offset) {
  std::string key;  // the most recent key, i.e. a string literal followed by ':'
  size_t i = 0;
  while (i < line.size() && i <= offset) {
    if (line[i] != '"') {
      ++i;
      continue;
    }
    const size_t start = ++i;
    while (i < line.size() && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
    const size_t end = std::min(i, line.size());
    ++i;
    size_t j = i;
    while (j < line.size() && std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    const bool is_key = j < line.size() && line[j] == ':';
    if (offset >= start && offset < end) return is_key ? "" : key;
    if (is_key) key = std::string(line.substr(start, end - start));
  }
  return "";
}

// The output line for one input line, or an error message (without the line number).
absl::StatusOr<std::string> ProcessLine(const WordPieceTokenizer& tokenizer, int max_length,
                                        const std::string& line) {
  if (const size_t bad = FindInvalidUtf8(line); bad != std::string_view::npos) {
    const std::string key = KeyAt(line, bad);
    return absl::InvalidArgumentError(
        absl::StrCat(key.empty() ? "" : absl::StrCat("field \"", key, "\": "),
                     "invalid UTF-8 at byte offset ", bad, " of the line"));
  }
  nlohmann::json in;
  try {
    in = nlohmann::json::parse(line);
  } catch (const std::exception& e) {  // nlohmann::json::parse_error
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!in.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("expected a JSON object, got ", in.type_name()));
  }
  std::vector<int32_t> ids[2];
  const char* const fields[2] = {"query", "document"};
  for (int f = 0; f < 2; ++f) {
    auto it = in.find(fields[f]);
    if (it == in.end()) {
      return absl::InvalidArgumentError(absl::StrCat("field \"", fields[f], "\": missing"));
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field \"", fields[f], "\": expected a string, got ", it->type_name()));
    }
    absl::StatusOr<std::vector<int32_t>> tokens =
        tokenizer.Tokenize(it->get_ref<const std::string&>());
    if (!tokens.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field \"", fields[f], "\": ", tokens.status().message()));
    }
    ids[f] = *std::move(tokens);
  }
  Encoding enc = tokenizer.EncodePair(ids[0], ids[1], max_length);
  nlohmann::json out = {{"input_ids", enc.input_ids}, {"token_type_ids", enc.token_type_ids}};
  return out.dump();
}

int Run(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string value;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg.substr(0, 7) == "--vocab" && FlagValue(argc, argv, &i, "--vocab", &value)) {
      args.vocab = value;
    } else if (arg.substr(0, 12) == "--max-length" &&
               FlagValue(argc, argv, &i, "--max-length", &value)) {
      if (!absl::SimpleAtoi(value, &args.max_length) || args.max_length < 3) {
        std::cerr << "rerank-tokenize: --max-length must be an integer >= 3, got '" << value
                  << "'\n";
        return 2;
      }
    } else {
      std::cerr << "rerank-tokenize: unknown or incomplete argument '" << arg << "'\n\n" << kUsage;
      return 2;
    }
  }
  if (args.vocab.empty()) {
    std::cerr << "rerank-tokenize: --vocab is required\n\n" << kUsage;
    return 2;
  }
  WordPieceTokenizer::Options options;
  options.vocab_path = args.vocab;
  absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> tokenizer =
      WordPieceTokenizer::Create(options);
  if (!tokenizer.ok()) {
    std::cerr << "rerank-tokenize: " << tokenizer.status().message() << "\n";
    return 2;
  }

  std::ios::sync_with_stdio(false);
  std::string line;
  int64_t line_no = 0;
  int64_t errors = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    absl::StatusOr<std::string> out = ProcessLine(**tokenizer, args.max_length, line);
    if (out.ok()) {
      std::cout << *out << '\n';
      continue;
    }
    ++errors;
    const std::string message = absl::StrCat("line ", line_no, ": ", out.status().message());
    std::cerr << "rerank-tokenize: " << message << "\n";
    // The message may quote raw (invalid) bytes from the input; replace them rather than throw.
    std::cout << DumpJson(nlohmann::json{{"error", message}}) << '\n';
  }
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "rerank-tokenize: error writing stdout\n";
    return 2;
  }
  if (errors > 0) {
    std::cerr << "rerank-tokenize: " << errors << " of " << line_no << " lines failed\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace rerank

int main(int argc, char** argv) {
  try {
    return rerank::Run(argc, argv);
  } catch (const std::exception& e) {  // last-resort boundary: never die with an uncaught throw
    std::cerr << "rerank-tokenize: fatal: " << e.what() << "\n";
    return 2;
  }
}

#include "tools/rerankctl_eval_data.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace rerank::ctl {
namespace {

namespace fs = std::filesystem;

// Reads a file line by line without ever holding more than max_line_bytes of one line: a line
// longer than that is an error, not an allocation.
class LineReader {
 public:
  static absl::StatusOr<std::unique_ptr<LineReader>> Open(const std::string& path,
                                                          size_t max_line_bytes) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      return absl::NotFoundError(absl::StrCat("'", path, "' is a directory, not a file"));
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      return absl::NotFoundError(absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
    }
    return std::unique_ptr<LineReader>(new LineReader(path, f, max_line_bytes));
  }
  ~LineReader() { std::fclose(file_); }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line, without its "\n" or "\r\n"; false at the end of the file.
  absl::StatusOr<bool> Next(std::string* line) {
    line->clear();
    bool any = false;
    while (true) {
      if (pos_ == len_) {
        len_ = std::fread(buffer_, 1, sizeof(buffer_), file_);
        pos_ = 0;
        if (len_ == 0) {
          if (std::ferror(file_)) {
            return absl::DataLossError(absl::StrCat(path_, ": read error after line ", line_));
          }
          if (!any) return false;
          break;
        }
      }
      any = true;
      const char* start = buffer_ + pos_;
      const void* nl = std::memchr(start, '\n', len_ - pos_);
      const size_t take = nl == nullptr ? len_ - pos_ : static_cast<const char*>(nl) - start;
      if (line->size() + take > max_line_bytes_) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ":", line_ + 1, ": line longer than ", max_line_bytes_, " bytes"));
      }
      line->append(start, take);
      pos_ += take;
      if (nl != nullptr) {
        ++pos_;
        break;
      }
    }
    ++line_;
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
  }

  int64_t line_number() const { return line_; }
  const std::string& path() const { return path_; }

 private:
  LineReader(std::string path, std::FILE* file, size_t max_line_bytes)
      : path_(std::move(path)), file_(file), max_line_bytes_(max_line_bytes) {}

  const std::string path_;
  std::FILE* const file_;
  const size_t max_line_bytes_;
  char buffer_[64 << 10];
  size_t pos_ = 0;
  size_t len_ = 0;
  int64_t line_ = 0;
};

absl::Status LineError(const LineReader& r, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(r.path(), ":", r.line_number(), ": ", what));
}

std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

bool Blank(absl::string_view line) {
  return line.find_first_not_of(" \t") == absl::string_view::npos;
}

// Calls fn(reader, line) for each non-blank line of `path` (the reader gives the line number for
// errors); stops at the first error, from reading or from fn.
template <typename Fn>
absl::Status ForEachLine(const std::string& path, size_t max_line_bytes, Fn fn) {
  ASSIGN_OR_RETURN(std::unique_ptr<LineReader> reader, LineReader::Open(path, max_line_bytes));
  std::string line;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, reader->Next(&line));
    if (!more) return absl::OkStatus();
    if (Blank(line)) continue;
    RETURN_IF_ERROR(fn(*reader, absl::string_view(line)));
  }
}

std::string Quoted(absl::string_view s) {
  return absl::StrCat("'", s.size() > 80 ? absl::StrCat(s.substr(0, 77), "...") : s, "'");
}

// A BEIR "_id": a string, or an integer written as one.
absl::StatusOr<std::string> JsonId(const nlohmann::json& obj) {
  auto it = obj.find("_id");
  if (it == obj.end()) return absl::InvalidArgumentError("missing \"_id\"");
  if (it->is_string()) {
    std::string id = it->get<std::string>();
    if (id.empty()) return absl::InvalidArgumentError("\"_id\" is empty");
    return id;
  }
  if (it->is_number_integer()) return it->dump();
  return absl::InvalidArgumentError("\"_id\" must be a string or an integer");
}

// An optional string field; absent or null reads as "".
absl::StatusOr<std::string> JsonText(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be a string"));
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<BeirFiles> FindBeirFiles(const std::string& dir, bool need_texts) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("--data: '", dir, "' is not a directory"));
  }
  auto first_of = [&dir](std::initializer_list<const char*> names,
                         std::string* out) -> absl::Status {
    std::vector<std::string> tried;
    for (const char* name : names) {
      const std::string p = (fs::path(dir) / name).string();
      std::error_code e;
      if (fs::is_regular_file(p, e)) {
        *out = p;
        return absl::OkStatus();
      }
      tried.push_back(p);
    }
    return absl::NotFoundError(absl::StrCat(
        "--data: no ", tried.size() > 1 ? "file among " : "file ", absl::StrJoin(tried, ", "),
        " (a BEIR folder: corpus.jsonl, queries.jsonl "
        "or queries.test.jsonl, qrels/test.tsv or "
        "qrels.test.tsv)"));
  };
  BeirFiles files;
  RETURN_IF_ERROR(first_of({"qrels/test.tsv", "qrels.test.tsv"}, &files.qrels));
  if (need_texts) {
    RETURN_IF_ERROR(first_of({"corpus.jsonl"}, &files.corpus));
    RETURN_IF_ERROR(first_of({"queries.jsonl", "queries.test.jsonl"}, &files.queries));
  }
  return files;
}

absl::StatusOr<Qrels> ReadQrels(const std::string& path, const EvalLimits& limits) {
  Qrels qrels;
  std::map<std::string, std::map<std::string, int64_t>> seen_at;  // only for the duplicate error
  int64_t kept = 0;
  bool first = true;
  RETURN_IF_ERROR(ForEachLine(
      path, limits.max_line_bytes,
      [&](const LineReader& r, absl::string_view line) -> absl::Status {
        const bool header_allowed = first;
        first = false;
        const std::vector<absl::string_view> f = Fields(line);
        if (f.size() != 3 && f.size() != 4) {
          return LineError(r, absl::StrCat("expected 3 fields (query-id corpus-id score) or 4 "
                                           "(qid iter docid grade), got ",
                                           f.size()));
        }
        int grade = 0;
        if (!absl::SimpleAtoi(f.back(), &grade)) {
          // BEIR's header line; anywhere else a grade must be an integer.
          if (header_allowed && f.size() == 3 && f[0] == "query-id") return absl::OkStatus();
          return LineError(r, absl::StrCat("grade ", Quoted(f.back()), " is not an integer"));
        }
        if (++kept > limits.max_entries) {
          return LineError(r, absl::StrCat("more than ", limits.max_entries, " judgements"));
        }
        const std::string query(f[0]);
        const std::string doc(f.size() == 3 ? f[1] : f[2]);
        auto [it, inserted] = seen_at[query].emplace(doc, r.line_number());
        if (!inserted) {
          return LineError(r, absl::StrCat("document ", Quoted(doc), " judged twice for query ",
                                           Quoted(query), " (first at line ", it->second, ")"));
        }
        qrels[query][doc] = grade;
        return absl::OkStatus();
      }));
  return qrels;
}

absl::StatusOr<TrecRun> ReadTrecRun(const std::string& path, const EvalLimits& limits) {
  TrecRun run;
  std::map<std::string, std::map<std::string, int64_t>> seen_at;
  int64_t kept = 0;
  RETURN_IF_ERROR(ForEachLine(
      path, limits.max_line_bytes,
      [&](const LineReader& r, absl::string_view line) -> absl::Status {
        const std::vector<absl::string_view> f = Fields(line);
        if (f.size() != 6) {
          return LineError(
              r, absl::StrCat("expected 6 fields (qid Q0 docid rank score tag), got ", f.size()));
        }
        int64_t rank = 0;
        if (!absl::SimpleAtoi(f[3], &rank)) {
          return LineError(r, absl::StrCat("rank ", Quoted(f[3]), " is not an integer"));
        }
        double score = 0;
        if (!absl::SimpleAtod(f[4], &score) || !std::isfinite(score)) {
          return LineError(r, absl::StrCat("score ", Quoted(f[4]), " is not a finite number"));
        }
        if (++kept > limits.max_entries) {
          return LineError(r, absl::StrCat("more than ", limits.max_entries, " run lines"));
        }
        const std::string query(f[0]);
        const std::string doc(f[2]);
        auto [it, inserted] = seen_at[query].emplace(doc, r.line_number());
        if (!inserted) {
          return LineError(r, absl::StrCat("document ", Quoted(doc), " listed twice for query ",
                                           Quoted(query), " (first at line ", it->second, ")"));
        }
        auto [entries, new_query] = run.entries.try_emplace(query);
        if (new_query) {
          run.query_order.push_back(query);
          run.first_line[query] = r.line_number();
        }
        entries->second.push_back({doc, score, r.line_number()});
        return absl::OkStatus();
      }));
  return run;
}

absl::StatusOr<std::map<std::string, std::string>> ReadBeirTexts(
    const std::string& path, const std::set<std::string>& wanted, const EvalLimits& limits) {
  std::map<std::string, std::string> texts;
  std::map<std::string, int64_t> found_at;
  RETURN_IF_ERROR(ForEachLine(
      path, limits.max_line_bytes,
      [&](const LineReader& r, absl::string_view line) -> absl::Status {
        nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (obj.is_discarded()) return LineError(r, "not valid JSON");
        if (!obj.is_object()) return LineError(r, "not a JSON object");
        // Each field's error names the file and line.
        auto at_line = [&r](absl::Status s) { return LineError(r, s.message()); };
        absl::StatusOr<std::string> id = JsonId(obj);
        if (!id.ok()) return at_line(id.status());
        absl::StatusOr<std::string> title = JsonText(obj, "title");
        if (!title.ok()) return at_line(title.status());
        absl::StatusOr<std::string> text = JsonText(obj, "text");
        if (!text.ok()) return at_line(text.status());
        if (!obj.contains("text")) return LineError(r, "missing \"text\"");
        if (wanted.count(*id) == 0) return absl::OkStatus();
        auto [it, inserted] = found_at.emplace(*id, r.line_number());
        if (!inserted) {
          return LineError(r, absl::StrCat("\"_id\" ", Quoted(*id),
                                           " appears twice (first at line ", it->second, ")"));
        }
        std::string joined = title->empty()  ? *std::move(text)
                             : text->empty() ? *std::move(title)
                                             : absl::StrCat(*title, " ", *text);
        if (joined.size() > limits.max_document_bytes) {
          return LineError(r, absl::StrCat("\"_id\" ", Quoted(*id), ": title and text longer than ",
                                           limits.max_document_bytes, " bytes"));
        }
        texts.emplace(*id, std::move(joined));
        return absl::OkStatus();
      }));
  return texts;
}

void SortTrecOrder(std::vector<RunEntry>* entries) {
  std::sort(entries->begin(), entries->end(), [](const RunEntry& a, const RunEntry& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.doc_id > b.doc_id;
  });
}

QueryMetrics EvaluateQuery(std::vector<RunEntry> ranking, const std::map<std::string, int>& judged,
                           int relevance_level) {
  SortTrecOrder(&ranking);
  // Unjudged documents gain nothing and are never relevant, whatever the level (even 0).
  auto judged_grade = [&judged](const std::string& doc) -> std::optional<int> {
    auto it = judged.find(doc);
    if (it == judged.end()) return std::nullopt;
    return it->second;
  };
  QueryMetrics m;
  double dcg = 0;
  for (size_t i = 0; i < ranking.size() && i < 10; ++i) {
    const std::optional<int> grade = judged_grade(ranking[i].doc_id);
    if (!grade.has_value()) continue;
    if (*grade > 0) dcg += *grade / std::log2(static_cast<double>(i) + 2);
    if (m.mrr_at_10 == 0 && *grade >= relevance_level) m.mrr_at_10 = 1.0 / (i + 1);
  }
  std::vector<int> ideal;
  int64_t relevant = 0;
  for (const auto& [doc, grade] : judged) {
    if (grade > 0) ideal.push_back(grade);
    if (grade >= relevance_level) ++relevant;
  }
  std::sort(ideal.rbegin(), ideal.rend());
  double idcg = 0;
  for (size_t i = 0; i < ideal.size() && i < 10; ++i) {
    idcg += ideal[i] / std::log2(static_cast<double>(i) + 2);
  }
  m.ndcg_at_10 = idcg > 0 ? dcg / idcg : 0;
  int64_t found = 0;
  for (size_t i = 0; i < ranking.size() && i < 100; ++i) {
    const std::optional<int> grade = judged_grade(ranking[i].doc_id);
    if (grade.has_value() && *grade >= relevance_level) ++found;
  }
  m.recall_at_100 = relevant > 0 ? static_cast<double>(found) / relevant : 0;
  return m;
}

bool HasRelevant(const Qrels& qrels, const std::string& query_id, int relevance_level) {
  auto it = qrels.find(query_id);
  if (it == qrels.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [relevance_level](const auto& j) { return j.second >= relevance_level; });
}

EvalMetrics Evaluate(const TrecRun& run, const Qrels& qrels, int relevance_level) {
  EvalMetrics out;
  for (const std::string& q : run.query_order) {
    if (!HasRelevant(qrels, q, relevance_level)) continue;
    const QueryMetrics m = EvaluateQuery(run.entries.at(q), qrels.at(q), relevance_level);
    out.ndcg_at_10 += m.ndcg_at_10;
    out.mrr_at_10 += m.mrr_at_10;
    out.recall_at_100 += m.recall_at_100;
    ++out.queries;
  }
  if (out.queries > 0) {
    out.ndcg_at_10 /= out.queries;
    out.mrr_at_10 /= out.queries;
    out.recall_at_100 /= out.queries;
  }
  return out;
}

std::string FormatTrecRun(const TrecRun& run, const std::string& tag) {
  std::string out;
  for (const std::string& q : run.query_order) {
    std::vector<RunEntry> ranking = run.entries.at(q);
    SortTrecOrder(&ranking);
    for (size_t i = 0; i < ranking.size(); ++i) {
      absl::StrAppendFormat(&out, "%s Q0 %s %d %.9g %s\n", q, ranking[i].doc_id, i + 1,
                            ranking[i].score, tag);
    }
  }
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot write '", tmp, "': ", std::strerror(errno)));
  }
  const bool written = std::fwrite(contents.data(), 1, contents.size(), f) == contents.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write '", tmp, "': ", std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace rerank::ctl

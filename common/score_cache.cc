#include "common/score_cache.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rerank {

absl::StatusOr<std::unique_ptr<ScoreCache>> ScoreCache::Create(Options options) {
  if (options.max_entries < 1) {
    return absl::InvalidArgumentError("ScoreCache: max_entries must be >= 1, got 0");
  }
  if (options.max_bytes < kPerEntryOverhead) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreCache: max_bytes must be >= ", kPerEntryOverhead, ", got ", options.max_bytes));
  }
  return std::unique_ptr<ScoreCache>(new ScoreCache(options));
}

ScoreCache::ScoreCache(const Options& options)
    : max_bytes_(options.max_bytes), max_entries_(options.max_entries) {}

std::string ScoreCache::EncodeKey(std::string_view model_version, std::string_view query,
                                  std::string_view doc) {
  // "<len>:<model_version><len>:<query><doc>": the two length prefixes make the split point of
  // every component explicit; the last component needs none.
  std::string key;
  key.reserve(model_version.size() + query.size() + doc.size() + 24);
  absl::StrAppend(&key, model_version.size(), ":");
  key.append(model_version.data(), model_version.size());
  absl::StrAppend(&key, query.size(), ":");
  key.append(query.data(), query.size());
  key.append(doc.data(), doc.size());
  return key;
}

std::optional<float> ScoreCache::LookupLocked(const std::string& key) {
  auto it = index_.find(absl::string_view(key));
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);  // iterators stay valid
  return it->second->score;
}

std::optional<float> ScoreCache::Lookup(std::string_view model_version, std::string_view query,
                                        std::string_view doc) {
  const std::string key = EncodeKey(model_version, query, doc);
  absl::MutexLock lock(&mu_);
  return LookupLocked(key);
}

std::vector<std::optional<float>> ScoreCache::LookupBatch(std::string_view model_version,
                                                          std::string_view query,
                                                          absl::Span<const std::string_view> docs) {
  std::vector<std::string> keys;
  keys.reserve(docs.size());
  for (std::string_view doc : docs) keys.push_back(EncodeKey(model_version, query, doc));
  std::vector<std::optional<float>> out;
  out.reserve(docs.size());
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) out.push_back(LookupLocked(key));
  return out;
}

void ScoreCache::InsertLocked(std::string key, float score) {
  auto it = index_.find(absl::string_view(key));
  if (it != index_.end()) {
    it->second->score = score;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  const size_t entry_bytes = EntryBytes(key);
  if (max_entries_ == 0 || entry_bytes > max_bytes_) return;  // could never fit
  lru_.push_front(Entry{std::move(key), score});
  index_.emplace(absl::string_view(lru_.front().key), lru_.begin());
  bytes_ += entry_bytes;
  ++inserts_;
  EvictToBoundsLocked();
}

void ScoreCache::EvictToBoundsLocked() {
  while (!lru_.empty() && (lru_.size() > max_entries_ || bytes_ > max_bytes_)) {
    Entry& victim = lru_.back();
    bytes_ -= EntryBytes(victim.key);
    index_.erase(absl::string_view(victim.key));
    lru_.pop_back();
    ++evictions_;
  }
}

void ScoreCache::Insert(std::string_view model_version, std::string_view query,
                        std::string_view doc, float score) {
  std::string key = EncodeKey(model_version, query, doc);
  absl::MutexLock lock(&mu_);
  InsertLocked(std::move(key), score);
}

void ScoreCache::InsertBatch(std::string_view model_version, std::string_view query,
                             absl::Span<const std::string_view> docs,
                             absl::Span<const float> scores) {
  const size_t n = std::min(docs.size(), scores.size());
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) keys.push_back(EncodeKey(model_version, query, docs[i]));
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < n; ++i) InsertLocked(std::move(keys[i]), scores[i]);
}

void ScoreCache::SetMaxEntries(size_t max_entries) {
  absl::MutexLock lock(&mu_);
  max_entries_ = max_entries;
  EvictToBoundsLocked();
}

void ScoreCache::Clear() {
  absl::MutexLock lock(&mu_);
  index_.clear();
  lru_.clear();
  bytes_ = 0;
}

ScoreCache::Stats ScoreCache::GetStats() const {
  absl::MutexLock lock(&mu_);
  Stats s;
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.inserts = inserts_;
  s.size = lru_.size();
  s.bytes = bytes_;
  s.max_entries = max_entries_;
  s.max_bytes = max_bytes_;
  return s;
}

}  // namespace rerank

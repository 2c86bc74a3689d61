// LRU cache of cross-encoder scores keyed by (model version, query text, document text).
//
// The key stores the three strings in full (length-prefixed, so ("ab","c") != ("a","bc")); a hit
// is therefore always the exact same pair scored by the exact same model, never a hash collision.
// Keying per (query, doc) pair rather than per request means that overlapping candidate lists for
// the same query get partial hits and only the missing documents go to the model.
//
// Bounded twice: by entry count (runtime-adjustable, driven by the `cache.max_entries` flag) and
// by bytes (key bytes + kPerEntryOverhead per entry), so a few huge documents cannot blow the
// memory budget that the entry count alone would suggest.
//
// Thread-safe: one mutex; a lookup also takes it exclusively because a hit moves the entry to the
// front of the LRU list. Use the batch calls to take the lock once per request.
#ifndef RERANK_COMMON_SCORE_CACHE_H_
#define RERANK_COMMON_SCORE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace rerank {

class ScoreCache {
 public:
  struct Options {
    // Maximum number of cached (query, doc) scores. Must be >= 1.
    size_t max_entries = 1000;
    // Maximum accounted bytes: sum over entries of key bytes + kPerEntryOverhead. Must be at
    // least kPerEntryOverhead (room for one empty entry).
    size_t max_bytes = 64u << 20;
  };

  // Approximate fixed cost of one entry beyond its key bytes (list node, hash slot, string
  // headers, the float). Counted so that many tiny entries are also bounded by max_bytes.
  static constexpr size_t kPerEntryOverhead = 128;

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;  // entries removed to respect a bound (not Clear())
    uint64_t inserts = 0;    // new entries added (updates of an existing key are not counted)
    size_t size = 0;         // current entries
    size_t bytes = 0;        // current accounted bytes
    size_t max_entries = 0;
    size_t max_bytes = 0;
  };

  // InvalidArgument naming the field when options are out of range.
  static absl::StatusOr<std::unique_ptr<ScoreCache>> Create(Options options);

  ScoreCache(const ScoreCache&) = delete;
  ScoreCache& operator=(const ScoreCache&) = delete;

  // The cached score, moving the entry to most-recently-used; nullopt (a miss) otherwise.
  std::optional<float> Lookup(std::string_view model_version, std::string_view query,
                              std::string_view doc);

  // One lock for a whole candidate list: result[i] is the score of docs[i] or nullopt.
  std::vector<std::optional<float>> LookupBatch(std::string_view model_version,
                                                std::string_view query,
                                                absl::Span<const std::string_view> docs);

  // Inserts or updates, making the entry most-recently-used, then evicts LRU entries until both
  // bounds hold. An entry that alone exceeds max_bytes is not stored.
  void Insert(std::string_view model_version, std::string_view query, std::string_view doc,
              float score);

  // docs.size() must equal scores.size() (extra elements of the longer one are ignored).
  void InsertBatch(std::string_view model_version, std::string_view query,
                   absl::Span<const std::string_view> docs, absl::Span<const float> scores);

  // Changes the entry bound at runtime; shrinking evicts LRU entries immediately (counted as
  // evictions). 0 empties the cache and keeps it empty until raised again.
  void SetMaxEntries(size_t max_entries);

  // Drops every entry (not counted as evictions); counters are kept.
  void Clear();

  // A consistent snapshot of counters and sizes. (Named GetStats because a member function
  // cannot share the nested type's name.)
  Stats GetStats() const;

 private:
  struct Entry {
    std::string key;  // encoded (model_version, query, doc); see EncodeKey
    float score;
  };
  using EntryList = std::list<Entry>;

  explicit ScoreCache(const Options& options);

  // Length-prefixed concatenation: unambiguous, so equal keys mean equal triples.
  static std::string EncodeKey(std::string_view model_version, std::string_view query,
                               std::string_view doc);
  static size_t EntryBytes(const std::string& key) { return key.size() + kPerEntryOverhead; }

  std::optional<float> LookupLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertLocked(std::string key, float score) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictToBoundsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_bytes_;

  mutable absl::Mutex mu_;
  size_t max_entries_ ABSL_GUARDED_BY(mu_);
  EntryList lru_ ABSL_GUARDED_BY(mu_);  // front = most recently used
  // Keys view into the strings owned by lru_ nodes (std::list nodes never move).
  absl::flat_hash_map<absl::string_view, EntryList::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t inserts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rerank

#endif  // RERANK_COMMON_SCORE_CACHE_H_

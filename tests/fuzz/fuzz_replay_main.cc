// main() for a libFuzzer target built without libFuzzer (any compiler; the normal gcc build): a
// bounded, deterministic fuzz run that `make test` can afford. It feeds every file of the given
// corpus paths to LLVMFuzzerTestOneInput, then `--mutations` inputs derived from them by stacked
// byte-level mutations (bit flips, random bytes, inserts, erases, duplicated ranges, splices,
// boundary tokens), drawn from a fixed seed so that every run executes the same inputs.
// `make fuzz` (clang, libFuzzer, ASan + UBSan) is the real, coverage-guided fuzzing.
//
// Usage: <target>_replay [--mutations=N] [--seed=S] [--max_len=L] PATH...
// A crash (abort, segfault, a target's failed check) writes the input being run to
// `fuzz-replay-crash.bin` in the working directory and says which input it was; replay it with
// `<target>_replay fuzz-replay-crash.bin` (or the libFuzzer binary).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

// The input being run, for the crash handler (only read there; no allocation in the handler).
const std::string* g_current = nullptr;
constexpr char kCrashFile[] = "fuzz-replay-crash.bin";

void OnCrash(int sig) {
  if (g_current != nullptr) {
    const int fd = open(kCrashFile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      size_t off = 0;
      while (off < g_current->size()) {
        const ssize_t n = write(fd, g_current->data() + off, g_current->size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(fd);
    }
    static const char kMsg[] = "\nfuzz replay: crashing input written to fuzz-replay-crash.bin\n";
    (void)!write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

// splitmix64: tiny, and the same sequence on every platform (std distributions are not).
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

// Boundary values and bytes that parsers of text, UTF-8, YAML, JSON, HTTP and protobuf care about.
const char* const kTokens[] = {"\0",
                               "\xff",
                               "\x80",
                               "\x7f",
                               "\r\n",
                               "\n",
                               "\r\n\r\n",
                               " ",
                               "\t",
                               ":",
                               "{",
                               "}",
                               "[",
                               "]",
                               "\"",
                               "'",
                               ",",
                               "-",
                               "0",
                               "-1",
                               "1e9",
                               "999999999999",
                               "4294967296",
                               "[SEP]",
                               "##",
                               "\xc3\xa9",
                               "\xe4\xb8\xad",
                               "\xf0\x9f\x98\x80",
                               "\xed\xa0\x80",
                               "\xf4\x90\x80\x80",
                               "\xc0\xaf",
                               "\xe2\x80\xa8",
                               "Content-Length: ",
                               "Transfer-Encoding: chunked",
                               "\x0a\x00",
                               "\x12\x00",
                               "\x1a\x02",
                               "&a",
                               "*a",
                               "!!"};

std::string Mutate(std::string s, const std::vector<std::string>& corpus, size_t max_len,
                   Rng& rng) {
  const int ops = 1 + static_cast<int>(rng.Below(4));
  for (int i = 0; i < ops; ++i) {
    switch (rng.Below(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng.Below(s.size())] ^= static_cast<char>(1u << rng.Below(8));
        break;
      case 1:  // a random byte
        if (!s.empty()) s[rng.Below(s.size())] = static_cast<char>(rng.Below(256));
        break;
      case 2: {  // insert random bytes
        std::string bytes(1 + rng.Below(4), '\0');
        for (char& c : bytes) c = static_cast<char>(rng.Below(256));
        s.insert(rng.Below(s.size() + 1), bytes);
        break;
      }
      case 3:  // erase a range
        if (!s.empty()) {
          const size_t at = rng.Below(s.size());
          s.erase(at, 1 + rng.Below(std::min<size_t>(16, s.size() - at)));
        }
        break;
      case 4:  // duplicate a range somewhere
        if (!s.empty()) {
          const size_t at = rng.Below(s.size());
          const std::string chunk = s.substr(at, 1 + rng.Below(32));
          s.insert(rng.Below(s.size() + 1), chunk);
        }
        break;
      case 5: {  // a boundary token
        const size_t k = rng.Below(std::size(kTokens));
        const std::string token(kTokens[k], k == 0 ? 1 : std::strlen(kTokens[k]));
        s.insert(rng.Below(s.size() + 1), token);
        break;
      }
      case 6:  // splice: this input's head, another's tail
        if (!corpus.empty()) {
          const std::string& other = corpus[rng.Below(corpus.size())];
          s = s.substr(0, rng.Below(s.size() + 1)) + other.substr(rng.Below(other.size() + 1));
        }
        break;
      default:  // nudge a byte by +-1 (lengths, counts, varints)
        if (!s.empty()) s[rng.Below(s.size())] += rng.Below(2) ? 1 : -1;
        break;
    }
  }
  if (s.size() > max_len) s.resize(max_len);
  return s;
}

bool ReadFile(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

void Run(const std::string& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mutations = 0;
  uint64_t seed = 1;
  size_t max_len = 4096;
  std::vector<fs::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--mutations=", 0) == 0) {
      mutations = std::strtoull(arg.c_str() + 12, nullptr, 10);
    } else if (arg.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(arg.c_str() + 7, nullptr, 10);
    } else if (arg.rfind("--max_len=", 0) == 0) {
      max_len = std::strtoull(arg.c_str() + 10, nullptr, 10);
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown option %s\n", arg.c_str());
      return 2;
    } else {
      paths.emplace_back(arg);
    }
  }
  // Every file of every path, in a stable order.
  std::vector<fs::path> files;
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& entry : fs::directory_iterator(p)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "fuzz replay: %s is not a file or directory\n", p.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "fuzz replay: no corpus files given\n");
    return 2;
  }
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, OnCrash);

  std::vector<std::string> corpus;
  for (const fs::path& f : files) {
    std::string data;
    if (!ReadFile(f, &data)) {
      std::fprintf(stderr, "fuzz replay: cannot read %s\n", f.c_str());
      return 2;
    }
    std::fprintf(stderr, "fuzz replay: %s (%zu bytes)\n", f.c_str(), data.size());
    Run(data);
    corpus.push_back(std::move(data));
  }
  Rng rng{seed};
  for (size_t i = 0; i < mutations; ++i) {
    const size_t base = i % corpus.size();
    Run(Mutate(corpus[base], corpus, max_len, rng));
  }
  std::fprintf(stderr, "fuzz replay: %zu corpus inputs and %zu mutations (seed %llu) passed\n",
               corpus.size(), mutations, static_cast<unsigned long long>(seed));
  return 0;
}

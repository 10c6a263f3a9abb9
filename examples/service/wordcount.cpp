// A small service: word counts over a text corpus each replica builds when it starts, and over
// text sent in the request. Publish it with `clupy --publish examples/service/wordcount.yaml`
// (examples/service/README.md).
#include <algorithm>
#include <clupy/clupy.hpp>
#include <clupy/service.hpp>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

// The corpus: the original CluPy README's opening, repeated with variations, counted once per
// replica process.
const std::map<std::string, int>& corpus_counts() {
  static const std::map<std::string, int> counts = [] {
    const std::string text =
        "CluPy is a simple library and framework for running machine learning algorithms in "
        "clusters. A simple wrapping of a function call is sufficient to trigger large scale "
        "parallel executions. It also supports simple service deployments and efficient "
        "resource sharing and flow coordination among modules.";
    std::map<std::string, int> c;
    for (int round = 0; round < 100; ++round)
      for (const auto& w : words_of(text)) c[w] += 1 + (round % 3 == 0 && w.size() > 6);
    return c;
  }();
  return counts;
}

}  // namespace

struct WordCount {
  std::string word;
  int count = 0;
};
CLUPY_JSON_FIELDS(WordCount, word, count);

// How often each word of `text` appears, words shorter than `min_length` left out.
std::map<std::string, int> count(const std::string& text, std::optional<int> min_length) {
  std::map<std::string, int> counts;
  for (const auto& w : words_of(text))
    if (static_cast<int>(w.size()) >= min_length.value_or(1)) ++counts[w];
  return counts;
}
CLUPY_EXPORT(count, text, min_length);

// The `n` most frequent words of the corpus, most frequent first.
std::vector<WordCount> top_words(int n) {
  if (n < 0) throw std::invalid_argument("n must not be negative, got " + std::to_string(n));
  std::vector<WordCount> all;
  for (const auto& [word, c] : corpus_counts()) all.push_back({word, c});
  std::stable_sort(all.begin(), all.end(),
                   [](const WordCount& a, const WordCount& b) { return a.count > b.count; });
  if (all.size() > static_cast<std::size_t>(n)) all.resize(static_cast<std::size_t>(n));
  return all;
}
CLUPY_EXPORT(top_words, n);

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // replicas (worker processes) never return from here
  std::printf("wordcount is a service: publish it with clupy --publish wordcount.yaml\n");
  return 0;
}

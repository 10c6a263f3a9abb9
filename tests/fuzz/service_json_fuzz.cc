// A published service's request bodies as a replica decodes them: any bytes as the JSON body of
// entry points whose parameters cover the JSON codec's kinds (strings, numbers of several widths
// and signedness, bools, optionals, vectors, sets, maps with string and integer keys, arrays,
// tuples, aggregates with and without field names), run the way a replica runs them (execute_call
// on the registered JSON entry). What must hold: the function runs, or the call is a kProtocol
// failure naming what did not fit; an exception of the function itself is kException; a result
// is valid JSON; nothing crashes.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "clupy/service.hpp"

namespace {

struct Point {
  double x = 0;
  double y = 0;
};
struct Unnamed {
  std::int8_t small = 0;
  std::uint64_t large = 0;
  std::vector<bool> flags;
};

}  // namespace

CLUPY_JSON_FIELDS(Point, x, y);

namespace {

std::size_t texts(const std::string& text, std::optional<std::string> other,
                  std::vector<std::string> words) {
  return text.size() + other.value_or("").size() + words.size();
}

std::map<std::string, double> numbers(int a, unsigned b, std::int64_t c, float d, std::uint8_t e) {
  return {{"a", a}, {"b", b}, {"c", static_cast<double>(c)}, {"d", d}, {"e", e}};
}

std::vector<Point> shapes(Point p, std::array<Point, 2> pair, Unnamed raw,
                          std::tuple<int, std::string, bool> mixed) {
  if (std::get<2>(mixed) && raw.small < 0) throw std::invalid_argument("negative while mixed");
  return {p, pair[0], pair[1]};
}

std::map<int, std::set<std::string>> containers(
    std::map<int, std::set<std::string>> in, std::optional<std::vector<std::optional<int>>> maybe) {
  if (maybe) in[-1].insert(std::to_string(maybe->size()));
  return in;
}

void nothing() {}

}  // namespace

CLUPY_EXPORT(texts, text, other, words);
CLUPY_EXPORT(numbers, a, b, c, d, e);
CLUPY_EXPORT(shapes, p, pair, raw, mixed);
CLUPY_EXPORT(containers, in, maybe);
CLUPY_EXPORT(nothing);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const char* const kEntries[] = {"texts", "numbers", "shapes", "containers", "nothing"};
  clupy::detail::EncodedCall call;
  call.form = clupy::detail::CallForm::kNamed;
  call.function_name = kEntries[data[0] % 5];
  call.name = clupy::detail::json_entry_name(call.function_name);
  call.arguments.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  const clupy::detail::CallOutcome outcome = clupy::detail::execute_call(call);
  if (outcome.ok) {
    if (!nlohmann::json::accept(outcome.result)) std::abort();  // a result is JSON
  } else if (outcome.failure.kind == clupy::FailureKind::kProtocol) {
    if (outcome.failure.message.empty()) std::abort();  // says what did not fit
  } else if (outcome.failure.kind != clupy::FailureKind::kException) {
    std::abort();
  }
  return 0;
}

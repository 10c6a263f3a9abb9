// CLUPY_EXPORT: the JSON form of an entry point's call, run in this process the way a replica
// runs it (execute_call on the registered JSON entry), and the description openapi.json is
// built from.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "clupy/service.hpp"

namespace {

struct Point {
  double x = 0;
  double y = 0;
};
struct Labelled {
  std::string label;
  std::vector<int> values;
};

}  // namespace

CLUPY_JSON_FIELDS(Point, x, y);

namespace {

std::map<std::string, int> count_words(const std::string& text, int min_length) {
  std::map<std::string, int> counts;
  std::string word;
  auto flush = [&] {
    if (static_cast<int>(word.size()) >= min_length) ++counts[word];
    word.clear();
  };
  for (char c : text) {
    if (c == ' ') {
      flush();
    } else {
      word += c;
    }
  }
  flush();
  return counts;
}

double norm(Point p) { return p.x * p.x + p.y * p.y; }

std::optional<std::string> greet(std::optional<std::string> name, bool shout) {
  if (!name) return std::nullopt;
  return (shout ? "HELLO " : "hello ") + *name;
}

Labelled label(std::vector<unsigned> values, std::map<int, std::string> names) {
  Labelled out;
  for (unsigned v : values) out.values.push_back(static_cast<int>(v));
  out.label = names.empty() ? "" : names.begin()->second;
  return out;
}

int fails(int code) {
  if (code > 0) throw std::invalid_argument("code " + std::to_string(code) + " is positive");
  return code;
}

void nothing() {}

}  // namespace

CLUPY_EXPORT(count_words, text, min_length);
CLUPY_EXPORT(norm, point);
CLUPY_EXPORT(greet, name, shout);
CLUPY_EXPORT(label, values, names);
CLUPY_EXPORT(fails, code);
CLUPY_EXPORT(nothing);

namespace {

clupy::detail::CallOutcome call(const std::string& entry, const std::string& body) {
  clupy::detail::EncodedCall c;
  c.form = clupy::detail::CallForm::kNamed;
  c.name = clupy::detail::json_entry_name(entry);
  c.function_name = entry;
  c.arguments = body;
  return clupy::detail::execute_call(c);
}

std::string ok(const std::string& entry, const std::string& body) {
  auto outcome = call(entry, body);
  EXPECT_TRUE(outcome.ok) << entry << " " << body << ": " << outcome.failure.message;
  return outcome.result;
}

std::string bad(const std::string& entry, const std::string& body) {
  auto outcome = call(entry, body);
  EXPECT_FALSE(outcome.ok) << entry << " " << body << " gave " << outcome.result;
  EXPECT_EQ(outcome.failure.kind, clupy::FailureKind::kProtocol) << outcome.failure.message;
  return outcome.failure.message;
}

TEST(ServiceExport, PositionalAndNamedArgumentsGiveTheSameResult) {
  EXPECT_EQ(ok("count_words", R"(["a bb bb ccc", 2])"), R"({"bb":2,"ccc":1})");
  EXPECT_EQ(ok("count_words", R"({"min_length": 2, "text": "a bb bb ccc"})"),
            R"({"bb":2,"ccc":1})");
}

TEST(ServiceExport, AggregatesOptionalsMapsAndVoid) {
  EXPECT_EQ(ok("norm", R"([{"x": 3, "y": 4}])"), "25.0");
  EXPECT_EQ(ok("norm", R"({"point": {"x": 3, "y": 4}})"), "25.0");
  EXPECT_EQ(ok("greet", R"({"name": null, "shout": true})"), "null");
  EXPECT_EQ(ok("greet", R"({"shout": true})"), "null");  // the optional left out
  EXPECT_EQ(ok("greet", R"(["ann", false])"), R"("hello ann")");
  EXPECT_EQ(ok("label", R"([[1, 2], {"7": "seven"}])"),
            R"(["seven",[1,2]])");  // an unnamed aggregate travels as an array of fields
  EXPECT_EQ(ok("nothing", "[]"), "null");
  EXPECT_EQ(ok("count_words", R"(["x", 1.0])"), R"({"x":1})");  // 1.0 is an integer
}

TEST(ServiceExport, BadBodiesNameTheArgumentAndWhatWasExpected) {
  EXPECT_EQ(bad("count_words", R"(["text", "two"])"),
            "argument 'min_length': expected an integer, got a string");
  EXPECT_EQ(bad("count_words", R"({"text": "a"})"),
            "missing argument 'min_length' (integer): count_words(text, min_length)");
  EXPECT_EQ(bad("count_words", R"({"text": "a", "min_length": 1, "extra": 0})"),
            "unknown argument 'extra': count_words(text, min_length)");
  EXPECT_EQ(bad("count_words", R"(["a", 1, 2])"),
            "count_words(text, min_length) takes 2 argument(s); the body has 3");
  EXPECT_EQ(bad("count_words", "not json"),
            "the body is not JSON: send an array of the arguments or an object of them");
  EXPECT_EQ(bad("count_words", R"(["a", 1.5])"),
            "argument 'min_length': expected an integer, got the number 1.5");
  EXPECT_EQ(bad("count_words", R"(["a", 4294967296])"),
            "argument 'min_length': expected an integer that fits 32 bits, got the integer "
            "4294967296");
  EXPECT_EQ(bad("norm", R"([{"x": 1, "y": "2"}])"),
            "argument 'point'.y: expected a number, got a string");
  EXPECT_EQ(bad("norm", R"([{"x": 1}])"), "argument 'point'.y: missing");
  EXPECT_EQ(bad("label", R"([[1, -2], {}])"),
            "argument 'values'[1]: expected a non-negative integer, got the integer -2");
  EXPECT_EQ(bad("label", R"([[], {"seven": "x"}])"),
            "argument 'names' key: expected an integer key, got a string");
}

// A float where an integer is expected is taken only when it is whole and in range; one out of
// range is refused before any conversion (converting it was undefined: found by
// fuzz_service_json with 38.5e255 for an 8-bit parameter).
TEST(ServiceExport, FloatsForIntegersAreCheckedForRangeBeforeConversion) {
  EXPECT_EQ(ok("count_words", R"({"text": "ab ab c", "min_length": 2.0})"), R"({"ab":2})");
  for (const char* number : {"38.5e255", "-1e300", "2.5", "2147483648.0", "1e19"}) {
    const std::string message =
        bad("count_words", std::string(R"({"text": "a", "min_length": )") + number + "}");
    EXPECT_NE(message.find("min_length"), std::string::npos) << message;
  }
}

TEST(ServiceExport, AnExceptionInTheFunctionIsAnExceptionFailure) {
  auto outcome = call("fails", "[3]");
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.failure.kind, clupy::FailureKind::kException);
  EXPECT_EQ(outcome.failure.type_name, "std::invalid_argument");
  EXPECT_EQ(outcome.failure.message, "code 3 is positive");
  EXPECT_EQ(ok("fails", "[-3]"), "-3");
}

TEST(ServiceExport, TheReadinessCheckIsBuiltIn) { EXPECT_EQ(ok("clupy.ready", "[]"), "true"); }

TEST(ServiceExport, DescriptionsCarryNamesTypesAndSchemas) {
  auto all = nlohmann::json::parse(clupy::detail::describe_exports());
  ASSERT_TRUE(all.is_array());
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& e : all) by_name[e["name"]] = e;
  ASSERT_EQ(by_name.size(), 6u);
  const auto& count = by_name.at("count_words");
  ASSERT_EQ(count["parameters"].size(), 2u);
  EXPECT_EQ(count["parameters"][0]["name"], "text");
  EXPECT_EQ(count["parameters"][0]["schema"]["type"], "string");
  EXPECT_EQ(count["parameters"][1]["name"], "min_length");
  EXPECT_EQ(count["parameters"][1]["schema"]["type"], "integer");
  EXPECT_EQ(count["result"]["schema"]["type"], "object");
  EXPECT_EQ(count["result"]["schema"]["additionalProperties"]["type"], "integer");
  const auto& point = by_name.at("norm")["parameters"][0]["schema"];
  EXPECT_EQ(point["type"], "object");
  EXPECT_EQ(point["properties"]["x"]["type"], "number");
  EXPECT_EQ(point["required"], nlohmann::json({"x", "y"}));
  EXPECT_EQ(by_name.at("greet")["parameters"][0]["schema"]["oneOf"][1]["type"], "null");
  EXPECT_EQ(by_name.at("label")["result"]["schema"]["type"], "array");
  EXPECT_EQ(by_name.at("nothing")["result"]["cpp_type"], "void");
  // C++ types as a programmer writes them, not as the compiler spells them.
  EXPECT_EQ(count["parameters"][0]["cpp_type"], "std::string");
  EXPECT_EQ(count["result"]["cpp_type"], "std::map<std::string, int>");
  EXPECT_EQ(by_name.at("greet")["parameters"][0]["cpp_type"], "std::optional<std::string>");
  EXPECT_EQ(by_name.at("label")["parameters"][0]["cpp_type"], "std::vector<unsigned int>");
  EXPECT_EQ(by_name.at("label")["parameters"][1]["cpp_type"], "std::map<int, std::string>");
  // An export is a CLUPY_REMOTE name too.
  EXPECT_EQ(clupy::detail::registered_name(reinterpret_cast<std::uintptr_t>(&count_words)),
            "count_words");
}

}  // namespace

// The table of CLUPY_EXPORT descriptions and the helpers json_codec.hpp declares out of line.
#include <algorithm>
#include <map>
#include <mutex>

#include "clupy/service.hpp"

namespace clupy::detail {

namespace {

struct Exports {
  std::mutex mu;
  std::map<std::string, std::string, std::less<>> by_name;
};

Exports& exports() {
  static Exports* table = new Exports;  // never destroyed: static initializers of other objects
  return *table;                        // may register after this file's statics are gone
}

}  // namespace

std::vector<std::string> split_names(std::string_view list) {
  std::vector<std::string> names;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) names.push_back(std::move(current));
    current.clear();
  };
  for (char c : list) {
    if (c == ',') {
      flush();
    } else if (c != ' ' && c != '\t' && c != '\n') {
      current += c;
    }
  }
  flush();
  return names;
}

std::string json_kind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "the integer " + value.dump();
    case nlohmann::json::value_t::number_float:
      return "the number " + value.dump();
    case nlohmann::json::value_t::array:
      return "an array of " + std::to_string(value.size());
    case nlohmann::json::value_t::object:
      return "an object";
    default:
      return "a value that is not JSON data";
  }
}

void json_mismatch(const std::string& where, std::string_view expected, const nlohmann::json& got) {
  throw JsonMismatch(where + ": expected " + std::string(expected) + ", got " + json_kind(got));
}

std::string json_entry_name(std::string_view name) { return "clupy.json:" + std::string(name); }

bool register_export(std::string_view name, std::string description_json) noexcept {
  try {
    Exports& table = exports();
    std::lock_guard lock(table.mu);
    table.by_name[std::string(name)] = std::move(description_json);
    return true;
  } catch (...) {
    return false;
  }
}

std::string describe_exports() {
  Exports& table = exports();
  std::lock_guard lock(table.mu);
  std::string out = "[";
  for (const auto& [name, description] : table.by_name) {
    if (out.size() > 1) out += ",";
    out += description;
  }
  return out + "]";
}

}  // namespace clupy::detail

namespace clupy::detail {
namespace {

// The readiness check the front sends each replica before it takes requests.
bool service_ready() { return true; }

[[maybe_unused]] const bool kReadyRegistered =
    register_function(json_entry_name("clupy.ready"), &JsonExport<bool (*)(), bool>::invoke,
                      reinterpret_cast<std::uintptr_t>(&service_ready), "bool()");

}  // namespace
}  // namespace clupy::detail

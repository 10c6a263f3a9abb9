// JSON <-> C++ values for published services (clupy/service.hpp): what a JSON body may carry for
// each parameter type, the JSON a result becomes, and the OpenAPI schema of each type.
//   bool                         true / false
//   integers, enums              JSON integers (range-checked; enums as their underlying integer)
//   floating point               JSON numbers
//   std::string                  JSON strings
//   vector, list, deque, set, multiset, unordered_set, array<T,N>   JSON arrays
//   map / unordered_map          JSON objects (keys: strings, or integers written as strings)
//   std::optional<T>             null or T; an object body may leave the argument out
//   pair, tuple                  JSON arrays of their elements
//   aggregates (Boost.PFR)       JSON arrays of their fields, in order; or JSON objects keyed
//                                by field name when CLUPY_JSON_FIELDS(Type, a, b, ...) names them
// A value that does not fit throws JsonMismatch naming where it is ("argument 'points'[2].x")
// and what was expected.
#pragma once

#include <array>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace clupy {

// Specialize (CLUPY_JSON_FIELDS does) to give an aggregate's fields names in JSON.
template <class T>
struct json_field_names {
  static constexpr bool kNamed = false;
};

}  // namespace clupy

namespace clupy::detail {

// A JSON value that does not fit the C++ type it should become.
class JsonMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Splits "a, b,c" (a stringified macro argument list) into names.
std::vector<std::string> split_names(std::string_view list);
// "string", "integer", "an object", ... for messages about what a body carried.
std::string json_kind(const nlohmann::json& value);

constexpr std::size_t count_names(std::string_view list) {
  bool any = false;
  std::size_t commas = 0;
  for (char c : list) {
    if (c == ',') ++commas;
    if (c != ' ' && c != ',') any = true;
  }
  return any ? commas + 1 : 0;
}

template <class T>
struct JsonSequence : std::false_type {};
template <class T, class A>
struct JsonSequence<std::vector<T, A>> : std::true_type {};
template <class T, class A>
struct JsonSequence<std::list<T, A>> : std::true_type {};
template <class T, class A>
struct JsonSequence<std::deque<T, A>> : std::true_type {};
template <class T>
struct JsonSet : std::false_type {};
template <class T, class C, class A>
struct JsonSet<std::set<T, C, A>> : std::true_type {};
template <class T, class C, class A>
struct JsonSet<std::multiset<T, C, A>> : std::true_type {};
template <class T, class H, class E, class A>
struct JsonSet<std::unordered_set<T, H, E, A>> : std::true_type {};
template <class T>
struct JsonMap : std::false_type {};
template <class K, class V, class C, class A>
struct JsonMap<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct JsonMap<std::unordered_map<K, V, H, E, A>> : std::true_type {};
template <class T>
struct JsonArray : std::false_type {};
template <class T, std::size_t N>
struct JsonArray<std::array<T, N>> : std::true_type {};
template <class T>
struct JsonOptional : std::false_type {};
template <class T>
struct JsonOptional<std::optional<T>> : std::true_type {};
template <class T>
struct JsonTuple : std::false_type {};
template <class A, class B>
struct JsonTuple<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct JsonTuple<std::tuple<Ts...>> : std::true_type {};

template <class T>
concept JsonAggregate = std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_union_v<T> &&
                        !JsonArray<T>::value && std::is_default_constructible_v<T>;

// Whether T has a JSON form; the export macro's static_assert uses it.
template <class T>
constexpr bool json_supported();

template <class T, std::size_t... I>
constexpr bool json_fields_supported(std::index_sequence<I...>) {
  return (json_supported<boost::pfr::tuple_element_t<I, T>>() && ...);
}

template <class T>
constexpr bool json_supported() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool> || std::is_arithmetic_v<U> || std::is_enum_v<U> ||
                std::is_same_v<U, std::string>) {
    return true;
  } else if constexpr (JsonSequence<U>::value || JsonSet<U>::value || JsonArray<U>::value ||
                       JsonOptional<U>::value) {
    return json_supported<typename U::value_type>();
  } else if constexpr (JsonMap<U>::value) {
    using K = typename U::key_type;
    return (std::is_same_v<K, std::string> ||
            std::is_integral_v<K>)&&json_supported<typename U::mapped_type>();
  } else if constexpr (JsonTuple<U>::value) {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (json_supported<std::tuple_element_t<I, U>>() && ...);
    }
    (std::make_index_sequence<std::tuple_size_v<U>>{});
  } else if constexpr (JsonAggregate<U>) {
    return json_fields_supported<U>(std::make_index_sequence<boost::pfr::tuple_size_v<U>>{});
  } else {
    return false;
  }
}

[[noreturn]] void json_mismatch(const std::string& where, std::string_view expected,
                                const nlohmann::json& got);

template <class T>
void from_json_value(const nlohmann::json& j, T& out, const std::string& where);

template <class Integer>
Integer integer_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_number_integer()) {
    // 3.0 is an integer written as a float by some JSON writers; 3.5 is not.
    if (j.is_number_float()) {
      // The range is checked before any conversion: converting a double outside an integer
      // type's range is undefined. max() + 1.0 is a power of two, exact as a double.
      const double d = j.get<double>();
      if (d >= static_cast<double>(std::numeric_limits<Integer>::lowest()) &&
          d < static_cast<double>(std::numeric_limits<Integer>::max()) + 1.0 && std::trunc(d) == d)
        return static_cast<Integer>(d);
    }
    json_mismatch(where, "an integer", j);
  }
  if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<Integer>::max()))
      json_mismatch(where, "an integer that fits " + std::to_string(sizeof(Integer) * 8) + " bits",
                    j);
    return static_cast<Integer>(u);
  }
  const auto s = j.get<std::int64_t>();
  if constexpr (std::is_unsigned_v<Integer>) {
    if (s < 0) json_mismatch(where, "a non-negative integer", j);
    if (static_cast<std::uint64_t>(s) > std::numeric_limits<Integer>::max())
      json_mismatch(where, "an integer that fits " + std::to_string(sizeof(Integer) * 8) + " bits",
                    j);
  } else {
    if (s < std::numeric_limits<Integer>::min() || s > std::numeric_limits<Integer>::max())
      json_mismatch(where, "an integer that fits " + std::to_string(sizeof(Integer) * 8) + " bits",
                    j);
  }
  return static_cast<Integer>(s);
}

// Map keys are JSON object keys (strings); integer keys are written in decimal.
template <class K>
K key_from_json(const std::string& key, const std::string& where) {
  if constexpr (std::is_same_v<K, std::string>) {
    return key;
  } else {
    nlohmann::json parsed = nlohmann::json::parse(key, nullptr, false);
    if (!parsed.is_number_integer()) json_mismatch(where + " key", "an integer key", key);
    return integer_from_json<K>(parsed, where + " key");
  }
}
template <class K>
std::string key_to_json(const K& key) {
  if constexpr (std::is_same_v<K, std::string>) {
    return key;
  } else {
    return std::to_string(key);
  }
}

template <class T>
void from_json_value(const nlohmann::json& j, T& out, const std::string& where) {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    if (!j.is_boolean()) json_mismatch(where, "true or false", j);
    out = j.get<bool>();
  } else if constexpr (std::is_enum_v<U>) {
    out = static_cast<U>(integer_from_json<std::underlying_type_t<U>>(j, where));
  } else if constexpr (std::is_integral_v<U>) {
    out = integer_from_json<U>(j, where);
  } else if constexpr (std::is_floating_point_v<U>) {
    if (!j.is_number()) json_mismatch(where, "a number", j);
    out = j.get<U>();
  } else if constexpr (std::is_same_v<U, std::string>) {
    if (!j.is_string()) json_mismatch(where, "a string", j);
    out = j.get_ref<const std::string&>();
  } else if constexpr (JsonOptional<U>::value) {
    if (j.is_null()) {
      out.reset();
    } else {
      from_json_value(j, out.emplace(), where);
    }
  } else if constexpr (JsonSequence<U>::value || JsonSet<U>::value) {
    if (!j.is_array()) json_mismatch(where, "an array", j);
    out.clear();
    std::size_t i = 0;
    for (const auto& item : j) {
      typename U::value_type value{};
      from_json_value(item, value, where + "[" + std::to_string(i++) + "]");
      if constexpr (JsonSet<U>::value) {
        out.insert(std::move(value));
      } else {
        out.push_back(std::move(value));
      }
    }
  } else if constexpr (JsonArray<U>::value) {
    if (!j.is_array() || j.size() != out.size())
      json_mismatch(where, "an array of " + std::to_string(out.size()) + " elements", j);
    for (std::size_t i = 0; i < out.size(); ++i)
      from_json_value(j[i], out[i], where + "[" + std::to_string(i) + "]");
  } else if constexpr (JsonMap<U>::value) {
    if (!j.is_object()) json_mismatch(where, "an object", j);
    out.clear();
    for (const auto& [key, item] : j.items()) {
      typename U::mapped_type value{};
      from_json_value(item, value, where + "[\"" + key + "\"]");
      out.emplace(key_from_json<typename U::key_type>(key, where), std::move(value));
    }
  } else if constexpr (JsonTuple<U>::value) {
    constexpr std::size_t kSize = std::tuple_size_v<U>;
    if (!j.is_array() || j.size() != kSize)
      json_mismatch(where, "an array of " + std::to_string(kSize) + " elements", j);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (from_json_value(j[I], std::get<I>(out), where + "[" + std::to_string(I) + "]"), ...);
    }
    (std::make_index_sequence<kSize>{});
  } else if constexpr (JsonAggregate<U>) {
    constexpr std::size_t kFields = boost::pfr::tuple_size_v<U>;
    if constexpr (json_field_names<U>::kNamed) {
      static const std::vector<std::string> names = split_names(json_field_names<U>::kNames);
      if (!j.is_object()) json_mismatch(where, "an object", j);
      for (const auto& [key, item] : j.items()) {
        bool known = false;
        for (const auto& n : names) known = known || n == key;
        if (!known) json_mismatch(where + "." + key, "no such field", item);
      }
      boost::pfr::for_each_field(out, [&](auto& field, std::size_t i) {
        const std::string& name = names[i];
        auto it = j.find(name);
        if (it == j.end()) {
          if constexpr (JsonOptional<std::remove_cvref_t<decltype(field)>>::value) {
            field.reset();
            return;
          } else {
            throw JsonMismatch(where + "." + name + ": missing");
          }
        }
        from_json_value(*it, field, where + "." + name);
      });
    } else {
      if (!j.is_array() || j.size() != kFields)
        json_mismatch(where, "an array of its " + std::to_string(kFields) + " fields", j);
      boost::pfr::for_each_field(out, [&](auto& field, std::size_t i) {
        from_json_value(j[i], field, where + "[" + std::to_string(i) + "]");
      });
    }
  } else {
    static_assert(json_supported<U>(), "clupy: this type has no JSON form (json_codec.hpp)");
  }
}

template <class T>
nlohmann::json to_json_value(const T& value) {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_enum_v<U>) {
    return static_cast<std::underlying_type_t<U>>(value);
  } else if constexpr (std::is_arithmetic_v<U> || std::is_same_v<U, std::string>) {
    return value;
  } else if constexpr (JsonOptional<U>::value) {
    return value ? to_json_value(*value) : nlohmann::json(nullptr);
  } else if constexpr (JsonSequence<U>::value || JsonSet<U>::value || JsonArray<U>::value) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : value) out.push_back(to_json_value(item));
    return out;
  } else if constexpr (JsonMap<U>::value) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, item] : value) out[key_to_json(key)] = to_json_value(item);
    return out;
  } else if constexpr (JsonTuple<U>::value) {
    nlohmann::json out = nlohmann::json::array();
    std::apply([&](const auto&... items) { (out.push_back(to_json_value(items)), ...); }, value);
    return out;
  } else if constexpr (JsonAggregate<U>) {
    if constexpr (json_field_names<U>::kNamed) {
      static const std::vector<std::string> names = split_names(json_field_names<U>::kNames);
      nlohmann::json out = nlohmann::json::object();
      boost::pfr::for_each_field(
          value, [&](const auto& field, std::size_t i) { out[names[i]] = to_json_value(field); });
      return out;
    } else {
      nlohmann::json out = nlohmann::json::array();
      boost::pfr::for_each_field(value,
                                 [&](const auto& field) { out.push_back(to_json_value(field)); });
      return out;
    }
  } else {
    static_assert(json_supported<U>(), "clupy: this type has no JSON form (json_codec.hpp)");
    return nullptr;
  }
}

// The OpenAPI 3.1 (JSON Schema) description of T.
template <class T>
nlohmann::json json_schema() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    return {{"type", "boolean"}};
  } else if constexpr (std::is_integral_v<U> || std::is_enum_v<U>) {
    using I = typename std::conditional_t<std::is_enum_v<U>, std::underlying_type<U>,
                                          std::type_identity<U>>::type;
    nlohmann::json s = {{"type", "integer"}, {"format", sizeof(I) > 4 ? "int64" : "int32"}};
    if constexpr (std::is_unsigned_v<I>) s["minimum"] = 0;
    return s;
  } else if constexpr (std::is_floating_point_v<U>) {
    return {{"type", "number"}, {"format", sizeof(U) > 4 ? "double" : "float"}};
  } else if constexpr (std::is_same_v<U, std::string>) {
    return {{"type", "string"}};
  } else if constexpr (JsonOptional<U>::value) {
    return {{"oneOf", {json_schema<typename U::value_type>(), {{"type", "null"}}}}};
  } else if constexpr (JsonSequence<U>::value || JsonSet<U>::value) {
    nlohmann::json s = {{"type", "array"}, {"items", json_schema<typename U::value_type>()}};
    if constexpr (JsonSet<U>::value) s["uniqueItems"] = true;
    return s;
  } else if constexpr (JsonArray<U>::value) {
    return {{"type", "array"},
            {"items", json_schema<typename U::value_type>()},
            {"minItems", std::tuple_size_v<U>},
            {"maxItems", std::tuple_size_v<U>}};
  } else if constexpr (JsonMap<U>::value) {
    return {{"type", "object"}, {"additionalProperties", json_schema<typename U::mapped_type>()}};
  } else if constexpr (JsonTuple<U>::value) {
    nlohmann::json items = nlohmann::json::array();
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (items.push_back(json_schema<std::tuple_element_t<I, U>>()), ...);
    }
    (std::make_index_sequence<std::tuple_size_v<U>>{});
    return {{"type", "array"}, {"prefixItems", items}, {"items", false}};
  } else if constexpr (JsonAggregate<U>) {
    constexpr std::size_t kFields = boost::pfr::tuple_size_v<U>;
    nlohmann::json fields = nlohmann::json::array();
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (fields.push_back(json_schema<boost::pfr::tuple_element_t<I, U>>()), ...);
    }
    (std::make_index_sequence<kFields>{});
    if constexpr (json_field_names<U>::kNamed) {
      const std::vector<std::string> names = split_names(json_field_names<U>::kNames);
      nlohmann::json properties = nlohmann::json::object();
      nlohmann::json required = nlohmann::json::array();
      for (std::size_t i = 0; i < kFields; ++i) {
        properties[names[i]] = fields[i];
        if (!fields[i].contains("oneOf")) required.push_back(names[i]);
      }
      return {{"type", "object"},
              {"properties", properties},
              {"required", required},
              {"additionalProperties", false}};
    } else {
      return {{"type", "array"}, {"prefixItems", fields}, {"items", false}};
    }
  } else {
    return nlohmann::json::object();
  }
}

}  // namespace clupy::detail

// CLUPY_JSON_FIELDS(Point, x, y): the aggregate Point travels in JSON as {"x": ..., "y": ...}
// instead of [x, y]. The names are Point's fields in declaration order, all of them. Use at
// global namespace scope.
#define CLUPY_JSON_FIELDS(Type, ...)                                                              \
  template <>                                                                                     \
  struct clupy::json_field_names<Type> {                                                          \
    static constexpr bool kNamed = true;                                                          \
    static constexpr const char* kNames = #__VA_ARGS__;                                           \
    static_assert(::clupy::detail::count_names(#__VA_ARGS__) == ::boost::pfr::tuple_size_v<Type>, \
                  "clupy: CLUPY_JSON_FIELDS names every field of the type, in order");            \
  }

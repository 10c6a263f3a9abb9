// Publishing functions as an HTTP/JSON service (docs/services.md).
//
//   std::map<std::string, int> count(const std::string& text, int min_length) { ... }
//   CLUPY_EXPORT(count, text, min_length);      // the entry point "count" and its parameters
//
//   int main(int argc, char** argv) { clupy::init(argc, argv); ... }
//
// `clupy --publish service.yaml` then serves POST /count with a body of either
// ["some text", 3] or {"text": "some text", "min_length": 3}; the result comes back as JSON.
// The types that travel are those of clupy/detail/json_codec.hpp. An export is also a
// CLUPY_REMOTE function of the same name (callable from C++ by name).
#pragma once

#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "clupy/detail/call.hpp"
#include "clupy/detail/json_codec.hpp"
#include "clupy/parallel.hpp"

namespace clupy::detail {

// What the publisher learns of an export (the program prints them when started with
// CLUPY_DESCRIBE_EXPORTS=1): {"name", "parameters": [{"name", "cpp_type", "schema"}],
// "result": {"cpp_type", "schema"}}.
struct ExportDescription {
  std::string name;
  nlohmann::json description;
};

// The name under which the JSON form of export `name` is registered with the call registry.
std::string json_entry_name(std::string_view name);
// Records an export's description. Never throws.
bool register_export(std::string_view name, std::string description_json) noexcept;
// Every export of this process as a JSON array of descriptions (sorted by name).
std::string describe_exports();

// The JSON arguments of an entry point, as a positional array or an object keyed by parameter
// names, converted to the parameter types. Throws ArgumentError naming the argument and what
// was expected.
template <class... S>
std::tuple<S...> decode_json_arguments(std::string_view body, std::string_view entry,
                                       const std::vector<std::string>& names) {
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    throw ArgumentError(
        "the body is not JSON: send an array of the arguments or an object of them");
  constexpr std::size_t kArity = sizeof...(S);
  auto listed = [&] {
    std::string text;
    for (const auto& n : names) text += (text.empty() ? "" : ", ") + n;
    return std::string(entry) + "(" + text + ")";
  };
  std::tuple<S...> args;
  if (parsed.is_array()) {
    if (parsed.size() != kArity)
      throw ArgumentError(listed() + " takes " + std::to_string(kArity) +
                          " argument(s); the body has " + std::to_string(parsed.size()));
  } else if (parsed.is_object()) {
    for (const auto& [key, value] : parsed.items()) {
      bool known = false;
      for (const auto& n : names) known = known || n == key;
      if (!known) throw ArgumentError("unknown argument '" + key + "': " + listed());
    }
  } else if (kArity == 1) {
    parsed = nlohmann::json::array({std::move(parsed)});  // a lone argument given bare
  } else {
    throw ArgumentError("the body must be a JSON array of the arguments or an object of them: " +
                        listed());
  }
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    [[maybe_unused]] auto one = [&]<class T>(T& slot, std::size_t i) {
      const std::string where = "argument '" + names[i] + "'";
      try {
        if (parsed.is_array()) {
          from_json_value(parsed[i], slot, where);
        } else if (auto it = parsed.find(names[i]); it != parsed.end()) {
          from_json_value(*it, slot, where);
        } else if constexpr (!JsonOptional<T>::value) {
          throw ArgumentError("missing " + where + " (" +
                              json_schema<T>().value("type", std::string("value")) +
                              "): " + listed());
        }
      } catch (const JsonMismatch& e) {
        throw ArgumentError(e.what());
      }
    };
    (one(std::get<I>(args), I), ...);
  }
  (std::index_sequence_for<S...>{});
  return args;
}

template <class Fn, class R, class... S>
struct JsonExport {
  static inline std::vector<std::string> names;
  static void invoke(const InvokeInput& in, std::string& result) {
    auto args = decode_json_arguments<S...>(in.arguments, in.function_name, names);
    const Fn fn = reinterpret_cast<Fn>(in.function);
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(args));
      result = "null";
    } else {
      result = to_json_value(std::apply(fn, std::move(args))).dump();
    }
  }
};

template <class Fn, class Params>
struct JsonExportOf;
template <class Fn, class... P>
struct JsonExportOf<Fn, std::tuple<P...>> {
  using R = typename Signature<Fn>::Result;
  using type = JsonExport<Fn, R, Stored<P>...>;

  static nlohmann::json describe(std::string_view name, const std::vector<std::string>& names) {
    nlohmann::json parameters = nlohmann::json::array();
    std::size_t i = 0;
    (parameters.push_back({{"name", names[i++]},
                           {"cpp_type", readable_type_name<Stored<P>>()},
                           {"schema", json_schema<Stored<P>>()}}),
     ...);
    nlohmann::json result;
    if constexpr (std::is_void_v<R>) {
      result = {{"cpp_type", "void"}, {"schema", {{"type", "null"}}}};
    } else {
      result = {{"cpp_type", readable_type_name<std::decay_t<R>>()},
                {"schema", json_schema<std::decay_t<R>>()}};
    }
    return {{"name", name}, {"parameters", parameters}, {"result", result}};
  }
  static constexpr bool supported() {
    static_assert((json_supported<Stored<P>>() && ...),
                  "clupy: a parameter type of this export has no JSON form (see "
                  "clupy/detail/json_codec.hpp for the types that do)");
    static_assert(std::is_void_v<R> || json_supported<std::decay_t<R>>(),
                  "clupy: the result type of this export has no JSON form (see "
                  "clupy/detail/json_codec.hpp)");
    return (json_supported<Stored<P>>() && ...) &&
           (std::is_void_v<R> || json_supported<std::decay_t<R>>());
  }
};

template <class Fn>
bool register_json_export(std::string_view name, Fn fn, std::string_view parameter_list) {
  using Sig = Signature<Fn>;
  static_assert(Sig::kKnown, "clupy: CLUPY_EXPORT takes a plain (non-overloaded) function");
  using Of = JsonExportOf<Fn, typename Sig::Params>;
  if constexpr (Of::supported()) {
    using Export = typename Of::type;
    Export::names = split_names(parameter_list);
    register_remote(name, fn);
    register_function(json_entry_name(name), &Export::invoke, reinterpret_cast<std::uintptr_t>(fn),
                      type_name<Fn>());
    return register_export(name, Of::describe(name, Export::names).dump());
  } else {
    return false;
  }
}

// Hands an encoded call of an export to the runtime, to run in the published service `service`.
void submit_to_service(const std::string& service, std::string call,
                       const std::string& function_name, const Options& options,
                       std::shared_ptr<FutureStateBase> state);

}  // namespace clupy::detail

namespace clupy {

// A published service called from C++ over the cluster protocol (no HTTP):
//   clupy::Future<long> sum = clupy::service("calc").call<long>("add", 2L, 40L);
// The call runs an export of the service's program on its replicas, with the arguments as
// msgpack (their own decayed types; they must convert to the export's parameters where it runs,
// else the future fails with kProtocol). Needs clupy::init. An unknown service, or one with no
// ready version, fails the future with kUnavailable. Options: timeout and retries apply;
// server_count and labels are the service's own.
class ServiceClient {
 public:
  explicit ServiceClient(std::string name, Options options = {})
      : name_(std::move(name)), options_(std::move(options)) {}

  template <class R, class... Args>
  Future<R> call(std::string_view entry, Args&&... args) const {
    detail::EncodedCall encoded = detail::encode_call_by_name(entry, std::forward<Args>(args)...);
    auto pending = detail::make_pending_future<R>();
    detail::submit_to_service(name_, detail::serialize_call(encoded), encoded.function_name,
                              options_, pending.state);
    return pending.future;
  }

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Options options_;
};

inline ServiceClient service(std::string name, Options options = {}) {
  return ServiceClient(std::move(name), std::move(options));
}

}  // namespace clupy

// CLUPY_EXPORT(f, p1, p2, ...): publishes the plain function `f` as the entry point "f" of
// this program's services, with its parameters named p1, p2, ... (in order; callers may pass
// {"p1": ..., "p2": ...}). Name every parameter. Use at namespace scope, once per function.
#define CLUPY_EXPORT(f, ...)                                                                      \
  static_assert(::clupy::detail::count_names(#__VA_ARGS__) ==                                     \
                    std::tuple_size_v<typename ::clupy::detail::Signature<decltype(&f)>::Params>, \
                "clupy: CLUPY_EXPORT(" #f ", ...) names each parameter of " #f ", in order");     \
  [[maybe_unused]] static const bool CLUPY_DETAIL_CONCAT(clupy_export_, __COUNTER__) =            \
      ::clupy::detail::register_json_export(#f, &f, #__VA_ARGS__)

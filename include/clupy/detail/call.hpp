// Encoding a call so that another process running the same program image can execute it, and
// executing it there. No networking: the runtime carries the bytes.
//
// A call names its code in one of three forms (DESIGN.md, "How a closure travels"):
//   kFunction  a plain function: a typed invoker thunk and the function, each named by the
//              identity of the code segment that holds it (GNU build-id, else SHA-256 of the
//              mapped file) and its offset from that segment's load bias;
//   kClosure   a lambda or functor whose captures are trivially copyable: the invoker thunk
//              instantiated for its type plus the closure's bytes;
//   kNamed     a function registered with CLUPY_REMOTE(f): its name.
// plus the msgpack-encoded arguments, already converted to the function's parameter types.
// The executing side looks the segment up among the objects it has loaded, checks that the
// offset lies inside one of its executable segments and that the invoker is one of the thunks
// the templates below registered (InvokerRegistration) before it jumps; any mismatch is a
// kProtocol Failure, never a call into other code. A peer that can send calls can already run
// code (it ships the program image), so the check guards against skew and corruption, not
// malice.
//
// Thread-safety: encode_call, execute_call and the registry are safe to call concurrently.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "clupy/detail/codec.hpp"
#include "clupy/detail/future_state.hpp"
#include "clupy/errors.hpp"
#include "clupy/future.hpp"

namespace clupy::detail {

// A place in the code of one loaded object.
struct CodeRef {
  std::string segment_id;    // "build-id:<hex>" or "sha256:<hex>"
  std::string segment_path;  // the object's file in the encoding process, for messages only
  std::uint64_t offset = 0;  // address minus the object's load bias (dlpi_addr)
  friend bool operator==(const CodeRef&, const CodeRef&) = default;
};

enum class CallForm : std::uint8_t { kFunction = 1, kClosure = 2, kNamed = 3 };

struct EncodedCall {
  CallForm form = CallForm::kNamed;
  CodeRef invoker;            // kFunction, kClosure: the typed invoker thunk
  CodeRef function;           // kFunction: the function itself
  std::string closure;        // kClosure: the closure object's bytes
  std::string name;           // kNamed: the registered name
  std::string arguments;      // msgpack array, one element per parameter
  std::string function_name;  // for messages: registered name, symbol, or lambda type
  friend bool operator==(const EncodedCall&, const EncodedCall&) = default;
};

// The result of execute_call: msgpack bytes of the return value (nil for void) or a Failure.
struct CallOutcome {
  bool ok = false;
  std::string result;
  Failure failure;
};

// Runs `call` in this process. Never throws: an exception from the function becomes a
// kException failure (demangled type and what()); undecodable arguments, an unknown name, a
// segment that is not loaded here or an offset outside its code become kProtocol failures.
// The function runs on the calling thread.
CallOutcome execute_call(const EncodedCall& call) noexcept;

// A self-describing byte form of calls and outcomes (msgpack, versioned), so a runtime can ship
// them as one opaque field. The parsers throw DecodeError on malformed input.
std::string serialize_call(const EncodedCall& call);
EncodedCall parse_call(std::string_view bytes);
std::string serialize_outcome(const CallOutcome& outcome);
CallOutcome parse_outcome(std::string_view bytes);

// The same forms read without copying their large parts: closure, arguments and result are
// views into the parsed bytes, valid as long as those bytes are.
struct CallView {
  CallForm form = CallForm::kNamed;
  CodeRef invoker;
  CodeRef function;
  std::string_view closure;
  std::string name;
  std::string_view arguments;
  std::string function_name;
};
struct OutcomeView {
  bool ok = false;
  std::string_view result;
  Failure failure;
};
CallView parse_call_view(std::string_view bytes);
OutcomeView parse_outcome_view(std::string_view bytes);
// parse_call_view + execute_call, the arguments decoded from where they lie in `bytes`. Throws
// DecodeError when `bytes` is not a call; never throws for what the call itself does.
CallOutcome execute_serialized_call(std::string_view bytes);

// --- Used by the templates below ---

struct InvokeInput {
  std::uintptr_t function = 0;  // kFunction, kNamed: the resolved function address
  std::string_view closure;     // kClosure
  std::string_view arguments;
  std::string_view function_name;
};
// Decodes the arguments, calls, and encodes the result into `result`. Throws ArgumentError
// when the arguments or closure bytes do not fit; lets the function's own exceptions through.
using Invoker = void (*)(const InvokeInput& input, std::string& result);

class ArgumentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Names the code at `address`; throws EncodeError if it lies in no loaded object's executable
// segment or that object has no identity. Cached per object.
CodeRef locate_code(std::uintptr_t address);
// A readable name for the function at `address` (its symbol if exported, else
// "<file>+0x<offset>").
std::string describe_function(std::uintptr_t address);

// The registry of CLUPY_REMOTE names.
struct NamedFunction {
  Invoker invoker = nullptr;
  std::uintptr_t function = 0;
  std::string signature;
};
// Adds `name`. The same name given to two different functions poisons it: encoding or
// executing it then fails with a message that names both. Never throws.
bool register_function(std::string_view name, Invoker invoker, std::uintptr_t function,
                       std::string_view signature) noexcept;
// The name `function` was registered under, if any.
std::optional<std::string> registered_name(std::uintptr_t function);

// Parameter types as they travel: decayed, and string_view owned as std::string.
template <class P>
using Stored = std::conditional_t<std::is_same_v<std::decay_t<P>, std::string_view>, std::string,
                                  std::decay_t<P>>;

template <class... S>
std::tuple<S...> decode_arguments(std::string_view bytes, std::string_view function_name) {
  msgpack::object_handle handle;
  try {
    handle = unpack_exactly(bytes);
  } catch (const std::exception& e) {
    throw ArgumentError("arguments of " + std::string(function_name) +
                        " are not valid msgpack: " + e.what());
  }
  const msgpack::object& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != sizeof...(S)) {
    throw ArgumentError(std::string(function_name) + " takes " + std::to_string(sizeof...(S)) +
                        " argument(s); the call carries " +
                        (o.type == msgpack::type::ARRAY ? std::to_string(o.via.array.size)
                                                        : std::string("no argument array")));
  }
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    std::tuple<S...> args;
    [[maybe_unused]] auto convert_one = [&](auto& slot, std::size_t i) {
      try {
        o.via.array.ptr[i].convert(slot);
      } catch (const std::exception& e) {
        throw ArgumentError("argument " + std::to_string(i + 1) + " of " +
                            std::string(function_name) + " does not decode as " +
                            type_name<std::decay_t<decltype(slot)>>() + ": " + e.what());
      }
    };
    (convert_one(std::get<I>(args), I), ...);
    return args;
  }
  (std::index_sequence_for<S...>{});
}

template <class R, class Call>
void invoke_and_encode(Call&& call, std::string& result) {
  if constexpr (std::is_void_v<R>) {
    std::forward<Call>(call)();
    append_encoded(result, msgpack::type::nil_t());
  } else {
    append_encoded(result, std::forward<Call>(call)());
  }
}

template <class Fn, class R, class... S>
void function_invoker(const InvokeInput& in, std::string& result) {
  auto args = decode_arguments<S...>(in.arguments, in.function_name);
  const Fn fn = reinterpret_cast<Fn>(in.function);
  invoke_and_encode<R>([&]() -> decltype(auto) { return std::apply(fn, std::move(args)); }, result);
}

template <class F, class R, class... S>
void closure_invoker(const InvokeInput& in, std::string& result) {
  if (in.closure.size() != sizeof(F)) {
    throw ArgumentError("closure " + std::string(in.function_name) + " should be " +
                        std::to_string(sizeof(F)) + " bytes; the call carries " +
                        std::to_string(in.closure.size()));
  }
  auto args = decode_arguments<S...>(in.arguments, in.function_name);
  std::array<unsigned char, sizeof(F)> raw;
  std::memcpy(raw.data(), in.closure.data(), sizeof(F));
  F f = std::bit_cast<F>(raw);
  invoke_and_encode<R>([&]() -> decltype(auto) { return std::apply(f, std::move(args)); }, result);
}

// Adds `invoker` to this process's table of invoker thunks, with the call form it serves
// (kFunction: it calls InvokeInput::function; kClosure: it rebuilds the closure from its bytes).
// A call names its invoker by an offset; the executing side runs it only if the address it
// resolves to is in this table for the call's form, so a corrupt or crafted offset (into the
// middle of a function, or at any other function) or form fails with kProtocol instead of jumping
// there. Never throws.
bool register_invoker(Invoker invoker, CallForm form) noexcept;

// Every invoker a call can name is registered at static-initialization time of the object that
// holds it (program or shared library): invoker_ref names this member, which instantiates it.
template <Invoker kInvoker, CallForm kForm>
struct InvokerRegistration {
  static inline const bool registered = register_invoker(kInvoker, kForm);
};

// The CodeRef of an invoker, computed once per instantiation.
template <Invoker kInvoker, CallForm kForm>
const CodeRef& invoker_ref() {
  static_cast<void>(InvokerRegistration<kInvoker, kForm>::registered);
  static const CodeRef ref = locate_code(reinterpret_cast<std::uintptr_t>(kInvoker));
  return ref;
}

// --- Futures as arguments ---

// What a Future<T> argument (or a std::vector<Future<T>> one) stands for in a call: the value it
// will have. Any other argument type stands for itself.
template <class A>
struct InputArg {
  static constexpr bool kIsInput = false;
  static constexpr bool kIsList = false;
  using Value = A;
};
template <class T>
struct InputArg<Future<T>> {
  static constexpr bool kIsInput = true;
  static constexpr bool kIsList = false;
  using Element = T;
  using Value = T;
};
template <class T>
struct InputArg<std::vector<Future<T>>> {
  static constexpr bool kIsInput = true;
  static constexpr bool kIsList = true;
  using Element = T;
  using Value = std::vector<T>;
};
template <class A>
inline constexpr bool kIsInputArg = InputArg<std::remove_cvref_t<A>>::kIsInput;
template <class... A>
inline constexpr bool kHasInputArgs = (kIsInputArg<A> || ...);
// The argument type a call is checked and encoded with: the input's value type for a future.
template <class A>
using InputValue =
    std::conditional_t<kIsInputArg<A>, typename InputArg<std::remove_cvref_t<A>>::Value, A>;

// Whether a parameter stored as S decodes an input whose value was encoded as T: the same type,
// or numbers that msgpack converts without loss of kind (integers to integers, any number to
// floating point). Nothing else: the value travels as its producer encoded it.
template <class S, class T>
constexpr bool input_fits() {
  if constexpr (std::is_same_v<S, T>) {
    return true;
  } else if constexpr (std::is_arithmetic_v<S> && std::is_arithmetic_v<T> &&
                       !std::is_same_v<S, bool> && !std::is_same_v<T, bool>) {
    return std::is_floating_point_v<S> || std::is_integral_v<T>;
  } else {
    return false;
  }
}
template <class S, class T>
struct ListInputFits : std::false_type {};
template <class S, class T>
struct ListInputFits<std::vector<S>, T> : std::bool_constant<input_fits<S, T>()> {};
template <class S, class T>
constexpr bool list_input_fits() {
  return ListInputFits<S, T>::value;
}

// The check of one future argument; a separate template so that the compiler's "required from"
// line names the position, the parameter and the future.
template <std::size_t kPosition, class Param, class Arg>
constexpr bool check_input_argument() {
  using Traits = InputArg<std::remove_cvref_t<Arg>>;
  using T = typename Traits::Element;
  static_assert(!std::is_void_v<T>, "clupy: a Future<void> has no value to pass as an argument");
  if constexpr (std::is_void_v<T>) {
    return false;
  } else if constexpr (Traits::kIsList) {
    constexpr bool kFits = list_input_fits<Stored<Param>, T>();
    static_assert(kFits,
                  "clupy: a std::vector<Future<T>> argument needs a parameter of type "
                  "std::vector<T> (or const std::vector<T>&); the check_input_argument<position, "
                  "parameter, argument> instantiation names them");
    return kFits;
  } else {
    constexpr bool kFits = input_fits<Stored<Param>, T>();
    static_assert(kFits,
                  "clupy: a Future<T> argument needs a parameter of type T (or const T&): its "
                  "value is passed as it was produced; the check_input_argument<position, "
                  "parameter, argument> instantiation names them");
    return kFits;
  }
}

template <std::size_t kPosition, class Param, class Arg>
constexpr bool check_if_input() {
  if constexpr (kIsInputArg<Arg>) {
    return check_input_argument<kPosition, Param, Arg>();
  } else {
    return true;
  }
}

template <class Params, class... Args>
struct InputChecks;
template <class... P, class... Args>
struct InputChecks<std::tuple<P...>, Args...> {
  static constexpr bool ok() {
    if constexpr (sizeof...(P) != sizeof...(Args)) {
      return true;  // CallChecks says so
    } else {
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return (check_if_input<I + 1, P, std::tuple_element_t<I, std::tuple<Args...>>>() && ...);
      }
      (std::index_sequence_for<P...>{});
    }
  }
};

// One place of a call's arguments to fill with an input's value: argument `position` (0-based),
// or element `index` of it when index >= 0 (a std::vector<Future<T>> argument).
struct ArgumentFill {
  std::uint32_t position = 0;
  std::int32_t index = -1;
  std::string_view value;  // msgpack bytes of the value
};
// The serialized call `call` with each fill's value in its place (which holds a nil, put there
// by encode_call for a future argument). Throws DecodeError when `call` is not a call, or a
// place does not exist.
std::string splice_call_arguments(std::string_view call, const std::vector<ArgumentFill>& fills);

// --- Signatures ---

template <class T>
struct Signature {
  static constexpr bool kKnown = false;
};
template <class R, class... P>
struct Signature<R(P...)> {
  static constexpr bool kKnown = true;
  using Result = R;
  using Params = std::tuple<P...>;
};
template <class R, class... P>
struct Signature<R(P...) noexcept> : Signature<R(P...)> {};
template <class R, class... P>
struct Signature<R (*)(P...)> : Signature<R(P...)> {};
template <class R, class... P>
struct Signature<R (*)(P...) noexcept> : Signature<R(P...)> {};
#define CLUPY_DETAIL_MEMBER_SIGNATURE(QUALIFIERS)                      \
  template <class C, class R, class... P>                              \
  struct Signature<R (C::*)(P...) QUALIFIERS> : Signature<R(P...)> {}; \
  template <class C, class R, class... P>                              \
  struct Signature<R (C::*)(P...) QUALIFIERS noexcept> : Signature<R(P...)> {};
CLUPY_DETAIL_MEMBER_SIGNATURE()
CLUPY_DETAIL_MEMBER_SIGNATURE(const)
#undef CLUPY_DETAIL_MEMBER_SIGNATURE

// The parameter list of a callable: its declared one when it has exactly one non-template
// operator() (or is a function pointer), else the arguments' own decayed types (generic lambdas).
template <class F, class... Args>
struct ParamsOf {
  using type = std::tuple<std::decay_t<Args>...>;
};
template <class F, class... Args>
requires Signature<decltype(&F::operator())>::kKnown struct ParamsOf<F, Args...> {
  using type = typename Signature<decltype(&F::operator())>::Params;
};
template <class R, class... P, class... Args>
struct ParamsOf<R (*)(P...), Args...> {
  using type = std::tuple<P...>;
};
template <class R, class... P, class... Args>
struct ParamsOf<R (*)(P...) noexcept, Args...> {
  using type = std::tuple<P...>;
};

template <class T>
inline constexpr bool kDependentFalse = false;

// A closure that bit_cast can build in a constant expression has no reference, pointer or
// union inside: the standard makes std::bit_cast non-constant for exactly those.
template <class F>
concept NoIndirection = requires {
  typename std::integral_constant<bool,
                                  (std::bit_cast<F>(std::array<unsigned char, sizeof(F)>{}), true)>;
};

// Each check below is a separate template so that the compiler's "required from" lines name
// the argument position and both types.
template <std::size_t kPosition, class Param, class Arg>
constexpr bool check_argument() {
  static_assert(
      !(std::is_lvalue_reference_v<Param> && !std::is_const_v<std::remove_reference_t<Param>>),
      "clupy: a parameter is a non-const reference; a remote call cannot write back "
      "into the caller's variable: return the value instead");
  static_assert(std::is_convertible_v<Arg, Stored<Param>>,
                "clupy: argument does not convert to the function's parameter type (the "
                "check_argument<position, parameter, argument> instantiation names them)");
  static_assert(kSerializable<Stored<Param>>,
                "clupy: this parameter type cannot travel: use std types, aggregates, "
                "MSGPACK_DEFINE types or protobuf messages (or specialize "
                "clupy::has_custom_msgpack_adaptor); pointers cannot travel");
  return std::is_convertible_v<Arg, Stored<Param>> && kSerializable<Stored<Param>> &&
         !(std::is_lvalue_reference_v<Param> && !std::is_const_v<std::remove_reference_t<Param>>);
}

template <class R>
constexpr bool check_result() {
  static_assert(std::is_void_v<R> || kSerializable<std::decay_t<R>>,
                "clupy: the function's result type cannot travel: return std types, aggregates, "
                "MSGPACK_DEFINE types or protobuf messages (or specialize "
                "clupy::has_custom_msgpack_adaptor); pointers cannot travel");
  return std::is_void_v<R> || kSerializable<std::decay_t<R>>;
}

template <class F>
constexpr bool check_closure() {
  static_assert(std::is_trivially_copyable_v<F> && NoIndirection<F>,
                "clupy: this lambda cannot be shipped to a worker: capture by value only "
                "trivially copyable types, or pass it as an argument (a capture by reference, "
                "a pointer, a std::string, a container or a std::function cannot travel)");
  return std::is_trivially_copyable_v<F> && NoIndirection<F>;
}

template <class F, class Params, class... Args>
struct CallChecks;
template <class F, class... P, class... Args>
struct CallChecks<F, std::tuple<P...>, Args...> {
  static constexpr bool arity() {
    static_assert(sizeof...(P) == sizeof...(Args),
                  "clupy: wrong number of arguments for this function");
    return sizeof...(P) == sizeof...(Args);
  }
  static constexpr bool arguments() {
    if constexpr (arity()) {
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return (check_argument<I + 1, P, std::tuple_element_t<I, std::tuple<Args&&...>>>() && ...);
      }
      (std::index_sequence_for<P...>{});
    } else {
      return false;
    }
  }
  static constexpr bool invocable() {
    if constexpr (arguments()) {
      constexpr bool kOk = std::is_invocable_v<F&, Stored<P>&&...>;
      static_assert(kOk, "clupy: the function cannot be called with these argument types");
      return kOk;
    } else {
      return false;
    }
  }
  // Named, not instantiated: its ::type exists only when invocable() holds.
  using ResultTrait = std::invoke_result<F&, Stored<P>&&...>;
  static constexpr bool ok() {
    if constexpr (invocable()) {
      return check_result<typename ResultTrait::type>();
    } else {
      return false;
    }
  }
};

template <class... P, class... Args>
std::string encode_arguments(std::tuple<P...>*, Args&&... args) {
  std::string out;
  StringSink sink{&out};
  msgpack::packer<StringSink> packer(sink);
  packer.pack_array(static_cast<std::uint32_t>(sizeof...(P)));
  [[maybe_unused]] auto pack_one = [&]<class S, class A>(std::type_identity<S>, A&& arg) {
    if constexpr (kIsInputArg<A>) {
      // A future's place: the master or the runtime puts its value here (ArgumentFill).
      if constexpr (InputArg<std::remove_cvref_t<A>>::kIsList) {
        packer.pack_array(static_cast<std::uint32_t>(arg.size()));
        for (std::size_t i = 0; i < arg.size(); ++i) packer.pack_nil();
      } else {
        packer.pack_nil();
      }
    } else if constexpr (std::is_same_v<std::decay_t<A>, S>) {
      packer.pack(arg);
    } else {
      packer.pack(S(std::forward<A>(arg)));
    }
  };
  (pack_one(std::type_identity<Stored<P>>{}, std::forward<Args>(args)), ...);
  return out;
}

template <class Fn>
std::uintptr_t function_address(Fn fn) {
  if (fn == nullptr) throw EncodeError("clupy: cannot encode a call to a null function pointer");
  return reinterpret_cast<std::uintptr_t>(fn);
}

template <class Fn, class R, class Params>
struct FunctionInvokerOf;
template <class Fn, class R, class... P>
struct FunctionInvokerOf<Fn, R, std::tuple<P...>> {
  static constexpr Invoker value = &function_invoker<Fn, R, Stored<P>...>;
};
template <class F, class R, class Params>
struct ClosureInvokerOf;
template <class F, class R, class... P>
struct ClosureInvokerOf<F, R, std::tuple<P...>> {
  static constexpr Invoker value = &closure_invoker<F, R, Stored<P>...>;
};

template <class D>
constexpr bool closure_ok() {
  if constexpr (std::is_pointer_v<D> && std::is_function_v<std::remove_pointer_t<D>>) {
    return true;
  } else {
    return check_closure<D>();
  }
}

// The result type a call of `F` with `Args` produces (decayed; void stays void).
// A future argument counts as its value's type.
template <class F, class... Args>
using CallResult =
    std::decay_t<typename CallChecks<std::decay_t<F>,
                                     typename ParamsOf<std::decay_t<F>, InputValue<Args>...>::type,
                                     InputValue<Args>...>::ResultTrait::type>;

// Encodes f(args...). Compile errors with "clupy:" messages explain what cannot travel.
// Throws EncodeError for what only shows at run time (see errors.hpp).
template <class F, class... Args>
EncodedCall encode_call(F&& f, Args&&... args) {
  using D = std::decay_t<F>;
  static_assert(!std::is_member_pointer_v<D>,
                "clupy: member function pointers cannot be called remotely: wrap the call in a "
                "lambda that takes the object as an argument");
  // A future argument is checked as its value; encode_arguments leaves a nil in its place.
  using Params = typename ParamsOf<D, InputValue<Args>...>::type;
  using Checks = CallChecks<D, Params, InputValue<Args>...>;
  constexpr bool kIsFunction = std::is_pointer_v<D> && std::is_function_v<std::remove_pointer_t<D>>;
  EncodedCall call;
  if constexpr (closure_ok<D>() && InputChecks<Params, Args...>::ok() && Checks::ok()) {
    using R = typename Checks::ResultTrait::type;
    Params* params = nullptr;
    call.arguments = encode_arguments(params, std::forward<Args>(args)...);
    if constexpr (kIsFunction) {
      const std::uintptr_t address = function_address(static_cast<D>(f));
      if (auto name = registered_name(address)) {
        call.form = CallForm::kNamed;
        call.function_name = *name;
        call.name = std::move(*name);
      } else {
        call.form = CallForm::kFunction;
        call.invoker = invoker_ref<FunctionInvokerOf<D, R, Params>::value, CallForm::kFunction>();
        call.function = locate_code(address);
        call.function_name = describe_function(address);
      }
    } else {
      call.form = CallForm::kClosure;
      call.invoker = invoker_ref<ClosureInvokerOf<D, R, Params>::value, CallForm::kClosure>();
      call.function_name = type_name<D>();
      call.closure.resize(sizeof(D));
      std::memcpy(call.closure.data(), std::addressof(f), sizeof(D));
    }
  }
  return call;
}

// Encodes a call of the function registered as `name` (possibly in another program), with the
// arguments as their own decayed types. Whether they fit the function's parameters is checked
// where it runs (a kProtocol failure if not).
// How a by-name argument travels: decayed, with C strings and string_view as std::string.
template <class A>
using StoredByName = std::conditional_t<std::is_same_v<std::decay_t<A>, const char*> ||
                                            std::is_same_v<std::decay_t<A>, char*>,
                                        std::string, Stored<A>>;

template <class... Args>
EncodedCall encode_call_by_name(std::string_view name, Args&&... args) {
  static_assert((kSerializable<StoredByName<Args>> && ...),
                "clupy: an argument type cannot travel: use std types, aggregates, "
                "MSGPACK_DEFINE types or protobuf messages");
  EncodedCall call;
  call.form = CallForm::kNamed;
  call.name = std::string(name);
  call.function_name = call.name;
  std::tuple<StoredByName<Args>...>* params = nullptr;
  call.arguments = encode_arguments(params, std::forward<Args>(args)...);
  return call;
}

// The msgpack decoder of a Future<T>'s state.
template <class T>
std::optional<T> decode_result(std::string_view bytes, std::string& error) {
  return decode_value<T>(bytes, error);
}

// A pending Future<T> whose state decodes msgpack results, and the handle the runtime keeps to
// complete it (complete_with_result / complete_with_failure / set_cancel_hook).
template <class T>
struct PendingFuture {
  Future<T> future;
  std::shared_ptr<FutureStateBase> state;
};
template <class T>
PendingFuture<T> make_pending_future() {
  std::shared_ptr<FutureState<T>> state;
  if constexpr (std::is_void_v<T>) {
    state = std::make_shared<FutureState<void>>(&decode_void);
  } else {
    state = std::make_shared<FutureState<T>>(&decode_result<T>);
  }
  return {FutureAccess::make<T>(state), state};
}

// The checks of a call whose arguments are exactly the parameters.
template <class Fn, class Params>
struct SelfChecks;
template <class Fn, class... P>
struct SelfChecks<Fn, std::tuple<P...>> {
  using type = CallChecks<Fn, std::tuple<P...>, Stored<P>...>;
};

// Registers `fn` under `name` at static-initialization time (see CLUPY_REMOTE).
template <class Fn>
bool register_remote(std::string_view name, Fn fn) {
  using Sig = Signature<Fn>;
  static_assert(Sig::kKnown, "clupy: CLUPY_REMOTE takes a plain (non-overloaded) function");
  using Params = typename Sig::Params;
  using Checks = typename SelfChecks<Fn, Params>::type;
  if constexpr (Checks::ok()) {
    using R = typename Checks::ResultTrait::type;
    return register_function(name, FunctionInvokerOf<Fn, R, Params>::value,
                             reinterpret_cast<std::uintptr_t>(fn), type_name<Fn>());
  } else {
    return false;
  }
}

}  // namespace clupy::detail

#define CLUPY_DETAIL_CONCAT_INNER(a, b) a##b
#define CLUPY_DETAIL_CONCAT(a, b) CLUPY_DETAIL_CONCAT_INNER(a, b)

// CLUPY_REMOTE(f): gives the plain function `f` the stable name "f" (the macro argument as
// written, e.g. "ns::f"), so that calls to it travel by name and programs other than this one
// (services) can call it. Use at namespace scope, once per function, after its declaration.
#define CLUPY_REMOTE(f)                                                                \
  [[maybe_unused]] static const bool CLUPY_DETAIL_CONCAT(clupy_remote_, __COUNTER__) = \
      ::clupy::detail::register_remote(#f, &f)

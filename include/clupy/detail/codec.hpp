// How argument and result values become bytes: msgpack (msgpack-cxx) plus adaptors for what
// msgpack does not cover by itself. Supported, recursively:
//   bool, integers, floating point, enums (as their underlying integer), std::string,
//   std::vector/list/deque/array/set/multiset/unordered_set, std::map/multimap/unordered_map,
//   std::pair, std::tuple, std::optional, std::variant (as [index, value]), std::monostate;
//   aggregates with no macro at all (Boost.PFR: packed as an array of their fields);
//   MSGPACK_DEFINE types; protocol-buffer messages (anything with SerializeToString and
//   ParseFromString, packed as bin; no protobuf header is included here);
//   any type for which clupy::has_custom_msgpack_adaptor<T> is specialized to true (you wrote
//   msgpack adaptors for it by hand).
// Decoded types must be default-constructible (msgpack converts into an existing object).
#pragma once

#include <array>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace clupy {

// Specialize to true for a type you gave msgpack adaptors (msgpack::adaptor::pack/convert)
// yourself, so that CluPy's compile-time check accepts it and its own adaptors stay out.
template <class T>
inline constexpr bool has_custom_msgpack_adaptor = false;

}  // namespace clupy

namespace clupy::detail {

template <class T>
concept ProtobufMessage = requires(const T& in, T& out, std::string* bytes, const std::string& s) {
  { in.SerializeToString(bytes) } -> std::convertible_to<bool>;
  { out.ParseFromString(s) } -> std::convertible_to<bool>;
};

template <class T>
concept MsgpackDefined = requires(T& value, const msgpack::object& o) {
  value.msgpack_unpack(o);
};

template <class T>
struct IsStdArray : std::false_type {};
template <class T, std::size_t N>
struct IsStdArray<std::array<T, N>> : std::true_type {};

// msgpack's own plain structs: they have adaptors already.
template <class T>
inline constexpr bool kIsMsgpackStruct =
    std::is_same_v<T, msgpack::type::nil_t> || std::is_same_v<T, msgpack::object_kv> ||
    std::is_same_v<T, msgpack::object_array> || std::is_same_v<T, msgpack::object_map> ||
    std::is_same_v<T, msgpack::object_str> || std::is_same_v<T, msgpack::object_bin> ||
    std::is_same_v<T, msgpack::object_ext>;

// Aggregates that get the field-by-field (Boost.PFR) adaptor.
template <class T>
concept PfrAggregate = std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_union_v<T> &&
                       !IsStdArray<T>::value && !MsgpackDefined<T> && !ProtobufMessage<T> &&
                       !kIsMsgpackStruct<T> && !has_custom_msgpack_adaptor<T>;

template <class T>
concept PlainEnum = std::is_enum_v<T> && !has_custom_msgpack_adaptor<T>;

template <class T>
concept ProtobufWithoutAdaptor = ProtobufMessage<T> && !has_custom_msgpack_adaptor<T>;

// --- Serializable<T>: what the compile-time checks accept (mirrors the list at the top) ---

template <class T>
struct Serializable;
template <class T>
inline constexpr bool kSerializable = Serializable<std::remove_cv_t<T>>::value;

template <class T, std::size_t... I>
constexpr bool pfr_fields_serializable(std::index_sequence<I...>) {
  return (kSerializable<boost::pfr::tuple_element_t<I, T>> && ...);
}

template <class T>
constexpr bool serializable_scalar_or_class() {
  if constexpr (has_custom_msgpack_adaptor<T>) {
    return true;
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return true;
  } else if constexpr (MsgpackDefined<T> || ProtobufMessage<T>) {
    return std::is_default_constructible_v<T>;
  } else if constexpr (PfrAggregate<T>) {
    return std::is_default_constructible_v<T> &&
           pfr_fields_serializable<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
  } else {
    return false;
  }
}

template <class T>
struct Serializable : std::bool_constant<serializable_scalar_or_class<T>()> {};
template <>
struct Serializable<std::string> : std::true_type {};
template <>
struct Serializable<std::monostate> : std::true_type {};
template <class T, class A>
struct Serializable<std::vector<T, A>> : Serializable<std::remove_cv_t<T>> {};
template <class T, class A>
struct Serializable<std::list<T, A>> : Serializable<std::remove_cv_t<T>> {};
template <class T, class A>
struct Serializable<std::deque<T, A>> : Serializable<std::remove_cv_t<T>> {};
template <class T, std::size_t N>
struct Serializable<std::array<T, N>> : Serializable<std::remove_cv_t<T>> {};
template <class T, class C, class A>
struct Serializable<std::set<T, C, A>> : Serializable<std::remove_cv_t<T>> {};
template <class T, class C, class A>
struct Serializable<std::multiset<T, C, A>> : Serializable<std::remove_cv_t<T>> {};
template <class T, class H, class E, class A>
struct Serializable<std::unordered_set<T, H, E, A>> : Serializable<std::remove_cv_t<T>> {};
template <class K, class V, class C, class A>
struct Serializable<std::map<K, V, C, A>>
    : std::bool_constant<kSerializable<K> && kSerializable<V>> {};
template <class K, class V, class C, class A>
struct Serializable<std::multimap<K, V, C, A>>
    : std::bool_constant<kSerializable<K> && kSerializable<V>> {};
template <class K, class V, class H, class E, class A>
struct Serializable<std::unordered_map<K, V, H, E, A>>
    : std::bool_constant<kSerializable<K> && kSerializable<V>> {};
template <class A, class B>
struct Serializable<std::pair<A, B>> : std::bool_constant<kSerializable<A> && kSerializable<B>> {};
template <class... Ts>
struct Serializable<std::tuple<Ts...>> : std::bool_constant<(kSerializable<Ts> && ...)> {};
template <class T>
struct Serializable<std::optional<T>> : Serializable<std::remove_cv_t<T>> {};
template <class... Ts>
struct Serializable<std::variant<Ts...>>
    : std::bool_constant<(kSerializable<Ts> && ...) &&
                         std::is_default_constructible_v<std::variant<Ts...>>> {};

// Raised while converting a msgpack object into a C++ value that it does not describe.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --- Encoding and decoding whole values ---

// A msgpack stream that appends to a std::string.
struct StringSink {
  std::string* out;
  void write(const char* data, std::size_t size) { out->append(data, size); }
};

template <class T>
void append_encoded(std::string& out, const T& value) {
  StringSink sink{&out};
  msgpack::pack(sink, value);
}
template <class T>
std::string encode_value(const T& value) {
  std::string out;
  append_encoded(out, value);
  return out;
}

// Parses one msgpack object that must span all of `bytes`. Limits every container to the
// number of bytes it could possibly hold, so hostile input cannot make the parser allocate
// more than a small multiple of its own size. Throws std::exception subclasses on bad input.
// The handle's strings and byte arrays point into `bytes`: use it only while `bytes` lives.
msgpack::object_handle unpack_exactly(std::string_view bytes);

template <class T>
std::optional<T> decode_value(std::string_view bytes, std::string& error) {
  try {
    msgpack::object_handle handle = unpack_exactly(bytes);
    std::optional<T> value(std::in_place);
    handle.get().convert(*value);
    return value;
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}
// A void result travels as nil.
bool decode_void(std::string_view bytes, std::string& error);

}  // namespace clupy::detail

// --- The adaptors CluPy adds to msgpack ---

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <class T>
  struct convert<T, std::enable_if_t<clupy::detail::PfrAggregate<T>>> {
    const msgpack::object& operator()(const msgpack::object& o, T& value) const {
      constexpr std::size_t kFields = boost::pfr::tuple_size_v<T>;
      if (o.type != msgpack::type::ARRAY || o.via.array.size != kFields) {
        throw msgpack::type_error();
      }
      std::size_t i = 0;
      boost::pfr::for_each_field(value, [&](auto& field) { o.via.array.ptr[i++].convert(field); });
      return o;
    }
  };
  template <class T>
  struct pack<T, std::enable_if_t<clupy::detail::PfrAggregate<T>>> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const T& value) const {
      o.pack_array(static_cast<std::uint32_t>(boost::pfr::tuple_size_v<T>));
      boost::pfr::for_each_field(value, [&](const auto& field) { o.pack(field); });
      return o;
    }
  };

  template <class T>
  struct convert<T, std::enable_if_t<clupy::detail::PlainEnum<T>>> {
    const msgpack::object& operator()(const msgpack::object& o, T& value) const {
      value = static_cast<T>(o.as<std::underlying_type_t<T>>());
      return o;
    }
  };
  template <class T>
  struct pack<T, std::enable_if_t<clupy::detail::PlainEnum<T>>> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const T& value) const {
      return o.pack(static_cast<std::underlying_type_t<T>>(value));
    }
  };

  template <class T>
  struct convert<T, std::enable_if_t<clupy::detail::ProtobufWithoutAdaptor<T>>> {
    const msgpack::object& operator()(const msgpack::object& o, T& value) const {
      if (o.type != msgpack::type::BIN) throw msgpack::type_error();
      if (!value.ParseFromString(std::string(o.via.bin.ptr, o.via.bin.size))) {
        throw clupy::detail::DecodeError("bytes do not parse as protobuf message " +
                                         std::string(value.GetTypeName()));
      }
      return o;
    }
  };
  template <class T>
  struct pack<T, std::enable_if_t<clupy::detail::ProtobufWithoutAdaptor<T>>> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const T& value) const {
      std::string bytes;
      if (!value.SerializeToString(&bytes)) {
        throw clupy::detail::DecodeError("protobuf message " + std::string(value.GetTypeName()) +
                                         " did not serialize (required fields missing?)");
      }
      o.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      o.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
      return o;
    }
  };

  template <>
  struct convert<std::monostate> {
    const msgpack::object& operator()(const msgpack::object& o, std::monostate&) const {
      if (o.type != msgpack::type::NIL) throw msgpack::type_error();
      return o;
    }
  };
  template <>
  struct pack<std::monostate> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, std::monostate) const {
      return o.pack_nil();
    }
  };

  // std::variant travels as [index, value].
  template <class... Ts>
  struct convert<std::variant<Ts...>> {
    const msgpack::object& operator()(const msgpack::object& o, std::variant<Ts...>& value) const {
      if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) throw msgpack::type_error();
      const auto index = o.via.array.ptr[0].as<std::size_t>();
      if (index >= sizeof...(Ts)) throw msgpack::type_error();
      emplace(o.via.array.ptr[1], value, index, std::index_sequence_for<Ts...>{});
      return o;
    }

   private:
    template <std::size_t... I>
    static void emplace(const msgpack::object& o, std::variant<Ts...>& value, std::size_t index,
                        std::index_sequence<I...>) {
      ((index == I ? (void)o.convert(value.template emplace<I>()) : (void)0), ...);
    }
  };
  template <class... Ts>
  struct pack<std::variant<Ts...>> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o,
                                        const std::variant<Ts...>& value) const {
      if (value.valueless_by_exception()) throw msgpack::type_error();
      o.pack_array(2);
      o.pack(static_cast<std::uint64_t>(value.index()));
      std::visit([&](const auto& alternative) { o.pack(alternative); }, value);
      return o;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack

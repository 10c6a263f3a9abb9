#include "clupy/detail/call.hpp"

#include <mutex>
#include <unordered_map>

#include "base/hex.hpp"
#include "segments.hpp"

namespace clupy::detail {
namespace {

// --- The CLUPY_REMOTE registry ---

struct Entry {
  NamedFunction function;
  std::string conflict;  // non-empty: two functions claimed the name; says which
};

struct Registry {
  std::mutex mu;
  std::unordered_map<std::string, Entry> by_name;
  std::unordered_map<std::uintptr_t, std::string> by_address;
  std::unordered_map<std::uintptr_t, CallForm> invokers;  // thunk address -> the form it serves
};

Registry& registry() {
  // Never destroyed: registrations and look-ups may happen during static init and exit.
  static auto* instance = new Registry;
  return *instance;
}

Failure protocol_failure(std::string message) {
  Failure failure;
  failure.kind = FailureKind::kProtocol;
  failure.message = std::move(message);
  return failure;
}

}  // namespace

bool register_function(std::string_view name, Invoker invoker, std::uintptr_t function,
                       std::string_view signature) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    auto [it, inserted] = r.by_name.try_emplace(std::string(name));
    Entry& entry = it->second;
    if (inserted) {
      entry.function = NamedFunction{invoker, function, std::string(signature)};
    } else if (entry.function.function != function) {
      entry.conflict = "clupy: the name '" + std::string(name) + "' is registered for two " +
                       "different functions (" + entry.function.signature + " and " +
                       std::string(signature) + "); give one of them another name";
      return false;
    }
    r.by_address.try_emplace(function, std::string(name));
    return true;
  } catch (...) {
    return false;
  }
}

bool register_invoker(Invoker invoker, CallForm form) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    r.invokers.emplace(reinterpret_cast<std::uintptr_t>(invoker), form);
    return true;
  } catch (...) {
    return false;
  }
}

std::optional<std::string> registered_name(std::uintptr_t function) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.by_address.find(function);
  if (it == r.by_address.end()) return std::nullopt;
  const Entry& entry = r.by_name.at(it->second);
  if (!entry.conflict.empty()) throw EncodeError(entry.conflict);
  return it->second;
}

namespace {

// The invoker `ref` names, if it is one of this program's registered invoker thunks for calls
// of `form`; else null with `error` set. (A function thunk run for a closure call would jump to
// the null function address; a closure thunk would read a function's call as closure bytes.)
Invoker resolve_invoker(const CodeRef& ref, CallForm form, std::string& error) {
  const std::uintptr_t address = resolve_code(ref, error);
  if (address == 0) return nullptr;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  const auto it = r.invokers.find(address);
  if (it == r.invokers.end()) {
    error = "the code at offset " + std::to_string(ref.offset) + " of " + ref.segment_id +
            " is not one of this program's invoker thunks; refusing to call it (a corrupt or "
            "forged call)";
    return nullptr;
  }
  if (it->second != form) {
    error = "the invoker thunk at offset " + std::to_string(ref.offset) + " of " + ref.segment_id +
            " serves " + (it->second == CallForm::kClosure ? "closures" : "plain functions") +
            ", not this call's form; refusing to call it (a corrupt or forged call)";
    return nullptr;
  }
  return reinterpret_cast<Invoker>(address);
}

// execute_call's work, on a call whose closure and arguments may lie in a buffer it does not own.
CallOutcome execute(const CallView& call) noexcept {
  CallOutcome out;
  try {
    InvokeInput input;
    input.arguments = call.arguments;
    input.function_name = call.function_name;
    Invoker invoker = nullptr;
    std::string error;
    switch (call.form) {
      case CallForm::kNamed: {
        Registry& r = registry();
        std::lock_guard lock(r.mu);
        auto it = r.by_name.find(call.name);
        if (it == r.by_name.end()) {
          error = "no function named '" + call.name +
                  "' is registered in this process (is CLUPY_REMOTE(" + call.name +
                  ") compiled into it?)";
        } else if (!it->second.conflict.empty()) {
          error = it->second.conflict;
        } else {
          invoker = it->second.function.invoker;
          input.function = it->second.function.function;
        }
        break;
      }
      case CallForm::kFunction:
        input.function = resolve_code(call.function, error);
        if (input.function != 0) invoker = resolve_invoker(call.invoker, call.form, error);
        break;
      case CallForm::kClosure:
        input.closure = call.closure;
        invoker = resolve_invoker(call.invoker, call.form, error);
        break;
      default:
        error = "unknown call form " + std::to_string(static_cast<int>(call.form));
    }
    if (invoker == nullptr) {
      out.failure = protocol_failure(std::move(error));
    } else {
      invoker(input, out.result);
      out.ok = true;
    }
  } catch (const ArgumentError& e) {
    out.failure = protocol_failure(e.what());
  } catch (...) {
    out.failure = failure_from_exception(std::current_exception());
  }
  if (!out.ok) {
    out.result.clear();
    out.failure.function = call.function_name;
  }
  return out;
}

}  // namespace

CallOutcome execute_call(const EncodedCall& call) noexcept {
  CallView view;
  view.form = call.form;
  view.invoker = call.invoker;
  view.function = call.function;
  view.closure = call.closure;
  view.name = call.name;
  view.arguments = call.arguments;
  view.function_name = call.function_name;
  return execute(view);
}

CallOutcome execute_serialized_call(std::string_view bytes) {
  return execute(parse_call_view(bytes));
}

// --- Byte forms ---

namespace {

// Version 2 of calls names the code more compactly: segment ids as raw bytes, and the function
// by its offset alone when it lies in the invoker's segment (a no-op's call fell from ~240 to
// ~120 bytes: two hex ids and two copies of the program's path were most of it). Version 1
// calls are still read. Outcomes are still version 1.
constexpr std::uint32_t kCallFormatVersion = 2;
constexpr std::uint32_t kOutcomeFormatVersion = 1;
constexpr std::string_view kBuildIdPrefix = "build-id:";
constexpr std::string_view kSha256Prefix = "sha256:";
enum SegmentIdTag : unsigned char { kBuildIdTag = 1, kSha256Tag = 2 };

using Packer = msgpack::packer<StringSink>;

void pack_bin(Packer& p, std::string_view bytes) {
  p.pack_bin(static_cast<std::uint32_t>(bytes.size()));
  p.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "build-id:<hex>" as a tag byte and the raw bytes (the same for "sha256:<hex>"); anything else
// as it is. Empty when `id` is not of those forms.
std::string raw_segment_id(const std::string& id) {
  const bool build_id = id.starts_with(kBuildIdPrefix);
  if (!build_id && !id.starts_with(kSha256Prefix)) return {};
  const std::string_view hex =
      std::string_view(id).substr((build_id ? kBuildIdPrefix : kSha256Prefix).size());
  if (hex.empty() || hex.size() % 2 != 0) return {};
  std::string raw(1 + hex.size() / 2, static_cast<char>(build_id ? kBuildIdTag : kSha256Tag));
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = hex_value(hex[i]), low = hex_value(hex[i + 1]);
    if (high < 0 || low < 0) return {};
    raw[1 + i / 2] = static_cast<char>(high * 16 + low);
  }
  return raw;
}

// A program calls few functions, from one or two objects: the last id's raw form is kept per
// thread, so that a call costs a comparison instead of decoding 40-64 hex digits.
void pack_segment_id(Packer& p, const std::string& id) {
  thread_local std::string last_id, last_raw;
  if (id != last_id) {
    last_raw = raw_segment_id(id);
    last_id = id;
  }
  if (last_raw.empty())
    p.pack(id);
  else
    pack_bin(p, last_raw);
}

std::string segment_id(const msgpack::object& o) {
  if (o.type != msgpack::type::BIN) return o.as<std::string>();
  const std::string_view raw(o.via.bin.ptr, o.via.bin.size);
  if (raw.size() < 2 || (raw[0] != kBuildIdTag && raw[0] != kSha256Tag))
    throw DecodeError("malformed call: unknown segment id form");
  return std::string(raw[0] == kBuildIdTag ? kBuildIdPrefix : kSha256Prefix) +
         base::to_hex(raw.substr(1));
}

void pack_code(Packer& p, const CodeRef& ref) {
  p.pack_array(3);
  pack_segment_id(p, ref.segment_id);
  p.pack(ref.segment_path);
  p.pack(ref.offset);
}

// The function's code: its offset alone when it lies in the same object as the invoker.
void pack_function_code(Packer& p, const CodeRef& function, const CodeRef& invoker) {
  if (function.segment_id == invoker.segment_id && function.segment_path == invoker.segment_path)
    p.pack(function.offset);
  else
    pack_code(p, function);
}

const msgpack::object& element(const msgpack::object& o, std::uint32_t i) {
  return o.via.array.ptr[i];
}

const msgpack::object& expect_array(const msgpack::object& o, std::uint32_t size,
                                    const char* what) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != size) {
    throw DecodeError(std::string("malformed ") + what + ": expected an array of " +
                      std::to_string(size));
  }
  return o;
}

// The bytes lie in the parsed input itself (unpack_exactly references them), so the view
// lives as long as that input.
std::string_view bin(const msgpack::object& o) {
  if (o.type != msgpack::type::BIN) throw DecodeError("malformed call: expected bytes");
  return std::string_view(o.via.bin.ptr, o.via.bin.size);
}

CodeRef code(const msgpack::object& o) {
  expect_array(o, 3, "code reference");
  return {segment_id(element(o, 0)), element(o, 1).as<std::string>(),
          element(o, 2).as<std::uint64_t>()};
}

CodeRef function_code(const msgpack::object& o, const CodeRef& invoker) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return code(o);
  return {invoker.segment_id, invoker.segment_path, o.as<std::uint64_t>()};
}

// Returns the version: `newest` or any older one down to `oldest`.
std::uint32_t check_version(const msgpack::object& o, const char* what, std::uint32_t oldest,
                            std::uint32_t newest) {
  const auto version = o.as<std::uint32_t>();
  if (version < oldest || version > newest) {
    throw DecodeError(std::string("unsupported ") + what + " format version " +
                      std::to_string(version) + " (this build reads " +
                      (oldest == newest ? std::to_string(newest)
                                        : std::to_string(oldest) + "-" + std::to_string(newest)) +
                      ")");
  }
  return version;
}

template <class Parse>
auto parse_guarded(std::string_view bytes, Parse&& parse) {
  try {
    msgpack::object_handle handle = unpack_exactly(bytes);
    return parse(handle.get());
  } catch (const DecodeError&) {
    throw;
  } catch (const std::exception& e) {
    throw DecodeError(std::string("malformed call bytes: ") + e.what());
  }
}

}  // namespace

std::string serialize_call(const EncodedCall& call) {
  std::string out;
  StringSink sink{&out};
  Packer p(sink);
  p.pack_array(8);
  p.pack(kCallFormatVersion);
  p.pack(static_cast<std::uint8_t>(call.form));
  pack_code(p, call.invoker);
  pack_function_code(p, call.function, call.invoker);
  pack_bin(p, call.closure);
  p.pack(call.name);
  pack_bin(p, call.arguments);
  p.pack(call.function_name);
  return out;
}

CallView parse_call_view(std::string_view bytes) {
  return parse_guarded(bytes, [](const msgpack::object& o) {
    expect_array(o, 8, "call");
    const std::uint32_t version = check_version(element(o, 0), "call", 1, kCallFormatVersion);
    CallView call;
    const auto form = element(o, 1).as<std::uint8_t>();
    if (form < 1 || form > 3) throw DecodeError("unknown call form " + std::to_string(form));
    call.form = static_cast<CallForm>(form);
    call.invoker = code(element(o, 2));
    call.function = version >= 2 ? function_code(element(o, 3), call.invoker) : code(element(o, 3));
    call.closure = bin(element(o, 4));
    call.name = element(o, 5).as<std::string>();
    call.arguments = bin(element(o, 6));
    call.function_name = element(o, 7).as<std::string>();
    return call;
  });
}

EncodedCall parse_call(std::string_view bytes) {
  CallView view = parse_call_view(bytes);
  EncodedCall call;
  call.form = view.form;
  call.invoker = std::move(view.invoker);
  call.function = std::move(view.function);
  call.closure = std::string(view.closure);
  call.name = std::move(view.name);
  call.arguments = std::string(view.arguments);
  call.function_name = std::move(view.function_name);
  return call;
}

std::string serialize_outcome(const CallOutcome& outcome) {
  std::string out;
  StringSink sink{&out};
  Packer p(sink);
  p.pack_array(4);
  p.pack(kOutcomeFormatVersion);
  p.pack(outcome.ok);
  pack_bin(p, outcome.result);
  const Failure& f = outcome.failure;
  p.pack_array(8);
  p.pack(static_cast<std::uint8_t>(f.kind));
  p.pack(f.type_name);
  p.pack(f.message);
  p.pack(f.function);
  p.pack(f.server);
  p.pack(f.task_id);
  p.pack(f.exit_code);
  p.pack(f.signal);
  return out;
}

OutcomeView parse_outcome_view(std::string_view bytes) {
  return parse_guarded(bytes, [](const msgpack::object& o) {
    expect_array(o, 4, "outcome");
    check_version(element(o, 0), "outcome", kOutcomeFormatVersion, kOutcomeFormatVersion);
    OutcomeView outcome;
    outcome.ok = element(o, 1).as<bool>();
    outcome.result = bin(element(o, 2));
    const msgpack::object& f = expect_array(element(o, 3), 8, "failure");
    const auto kind = element(f, 0).as<std::uint8_t>();
    if (kind > static_cast<std::uint8_t>(FailureKind::kDependency)) {
      throw DecodeError("unknown failure kind " + std::to_string(kind));
    }
    outcome.failure.kind = static_cast<FailureKind>(kind);
    outcome.failure.type_name = element(f, 1).as<std::string>();
    outcome.failure.message = element(f, 2).as<std::string>();
    outcome.failure.function = element(f, 3).as<std::string>();
    outcome.failure.server = element(f, 4).as<std::string>();
    outcome.failure.task_id = element(f, 5).as<std::uint64_t>();
    outcome.failure.exit_code = element(f, 6).as<int>();
    outcome.failure.signal = element(f, 7).as<int>();
    return outcome;
  });
}

CallOutcome parse_outcome(std::string_view bytes) {
  OutcomeView view = parse_outcome_view(bytes);
  CallOutcome outcome;
  outcome.ok = view.ok;
  outcome.result = std::string(view.result);
  outcome.failure = std::move(view.failure);
  return outcome;
}

namespace {

// The number of elements of the msgpack array starting at `offset`; advances past its header.
std::uint32_t read_array_header(std::string_view bytes, std::size_t& offset) {
  if (offset >= bytes.size()) throw DecodeError("arguments end before an array");
  const auto byte = static_cast<unsigned char>(bytes[offset]);
  auto big_endian = [&](std::size_t width) {
    if (offset + 1 + width > bytes.size())
      throw DecodeError("arguments end inside an array header");
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < width; ++i)
      value = (value << 8) | static_cast<unsigned char>(bytes[offset + 1 + i]);
    offset += 1 + width;
    return value;
  };
  if ((byte & 0xf0) == 0x90) {
    ++offset;
    return byte & 0x0f;
  }
  if (byte == 0xdc) return big_endian(2);
  if (byte == 0xdd) return big_endian(4);
  throw DecodeError("a future's place in the arguments is not an array");
}

// The bytes of the msgpack value starting at `offset`; advances past it.
std::string_view next_element(std::string_view bytes, std::size_t& offset) {
  const std::size_t start = offset;
  try {
    msgpack::unpack(bytes.data(), bytes.size(), offset);
  } catch (const std::exception& e) {
    throw DecodeError(std::string("arguments do not parse: ") + e.what());
  }
  return bytes.substr(start, offset - start);
}

void append_array_header(std::string& out, std::uint32_t count) {
  StringSink sink{&out};
  msgpack::packer<StringSink>(sink).pack_array(count);
}

}  // namespace

std::string splice_call_arguments(std::string_view call_bytes,
                                  const std::vector<ArgumentFill>& fills) {
  EncodedCall call = parse_call(call_bytes);
  const std::string_view args = call.arguments;
  std::size_t offset = 0;
  const std::uint32_t count = read_array_header(args, offset);
  std::string out;
  out.reserve(args.size() + [&] {
    std::size_t total = 0;
    for (const auto& f : fills) total += f.value.size();
    return total;
  }());
  append_array_header(out, count);
  std::size_t used = 0;
  for (std::uint32_t position = 0; position < count; ++position) {
    const std::string_view element = next_element(args, offset);
    const ArgumentFill* whole = nullptr;
    bool by_element = false;
    for (const auto& f : fills) {
      if (f.position != position) continue;
      if (f.index < 0)
        whole = &f;
      else
        by_element = true;
    }
    if (whole != nullptr) {
      out += whole->value;
      ++used;
      continue;
    }
    if (!by_element) {
      out += element;
      continue;
    }
    std::size_t inner = 0;
    const std::uint32_t size = read_array_header(element, inner);
    append_array_header(out, size);
    for (std::uint32_t index = 0; index < size; ++index) {
      const std::string_view item = next_element(element, inner);
      const ArgumentFill* fill = nullptr;
      for (const auto& f : fills)
        if (f.position == position && f.index == static_cast<std::int32_t>(index)) fill = &f;
      if (fill != nullptr) {
        out += fill->value;
        ++used;
      } else {
        out += item;
      }
    }
  }
  if (used != fills.size())
    throw DecodeError("a future argument's place (position or element) is not in the call");
  call.arguments = std::move(out);
  return serialize_call(call);
}

}  // namespace clupy::detail

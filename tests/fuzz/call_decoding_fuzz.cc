// A worker's call decoding against corrupt input: execute_serialized_call on arbitrary bytes,
// and on real calls (the three forms: a plain function, a closure, a registered name) with
// fields replaced by the input: segment ids, invoker and function offsets, closure bytes,
// argument bytes, names. What must hold: nothing but the intended function ever runs; whatever
// does not name a registered invoker, a loaded segment or a registered name, or whose arguments
// or closure do not decode as its parameters, comes back as a kProtocol failure, never a crash.
//
// A kFunction call's function offset is trusted once its segment and invoker check out (a peer
// that can send calls ships the program image, call.hpp): it is replaced here only by offsets
// outside every segment, which must fail.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "clupy/detail/call.hpp"

namespace {

int add(int a, int b) { return a + b; }

std::vector<std::string> split_words(const std::string& text, char separator) {
  std::vector<std::string> words(1);
  for (char c : text) {
    if (c == separator)
      words.emplace_back();
    else
      words.back() += c;
  }
  return words;
}

std::map<std::string, double> weigh(std::vector<double> values, std::optional<double> scale) {
  std::map<std::string, double> out;
  for (std::size_t i = 0; i < values.size() && i < 8; ++i)
    out[std::to_string(i)] = values[i] * scale.value_or(1.0);
  return out;
}

}  // namespace

CLUPY_REMOTE(weigh);

namespace {

using clupy::detail::CallForm;
using clupy::detail::EncodedCall;

const std::vector<EncodedCall>& templates() {
  static const std::vector<EncodedCall> calls = [] {
    int offset = 7;  // not const: a lambda must capture it (and ship it in its closure bytes)
    std::vector<EncodedCall> out;
    out.push_back(clupy::detail::encode_call(&add, 2, 3));
    out.push_back(clupy::detail::encode_call(&split_words, std::string("a b c"), ' '));
    out.push_back(clupy::detail::encode_call([offset](int x) { return x + offset; }, 35));
    out.push_back(clupy::detail::encode_call(&weigh, std::vector<double>{1.5, 2.5}, 2.0));
    if (out[0].form != CallForm::kFunction || out[2].form != CallForm::kClosure ||
        out[3].form != CallForm::kNamed)
      std::abort();  // the templates must cover the three forms
    return out;
  }();
  return calls;
}

// A CodeRef the input may corrupt: its segment id and, for invokers, its offset.
void mutate_ref(clupy::detail::CodeRef& ref, FuzzedDataProvider& input, bool offset_free) {
  switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0:
      break;
    case 1:
      ref.segment_id = input.ConsumeRandomLengthString(80);
      break;
    case 2:
      if (offset_free)
        ref.offset = input.ConsumeIntegral<std::uint64_t>();
      else
        ref.offset += std::uint64_t{1} << 40;  // outside every segment
      break;
    case 3:
      if (offset_free) ref.offset += input.ConsumeIntegralInRange<std::int64_t>(-64, 64);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The first byte chooses: odd, the rest is taken as a serialized call (seeds: real calls by
  // name); even, the rest drives the corruption of a real call.
  if (size == 0) return 0;
  if ((data[0] & 1) != 0) {
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
      const auto outcome = clupy::detail::execute_serialized_call(bytes);
      if (!outcome.ok && outcome.failure.message.empty()) std::abort();
    } catch (const clupy::detail::DecodeError&) {
    }
    return 0;
  }
  FuzzedDataProvider input(data + 1, size - 1);
  const auto& all = templates();
  EncodedCall call = all[input.ConsumeIntegralInRange<std::size_t>(0, all.size() - 1)];
  const EncodedCall original = call;
  mutate_ref(call.invoker, input, /*offset_free=*/true);
  mutate_ref(call.function, input, /*offset_free=*/false);
  if (input.ConsumeBool()) call.closure = input.ConsumeRandomLengthString(64);
  if (input.ConsumeBool()) call.arguments = input.ConsumeRandomLengthString(256);
  if (input.ConsumeBool()) call.name = input.ConsumeRandomLengthString(32);
  if (input.ConsumeBool())
    call.form = static_cast<CallForm>(input.ConsumeIntegralInRange<int>(0, 4));
  clupy::detail::CallOutcome outcome;
  try {
    outcome = clupy::detail::execute_serialized_call(clupy::detail::serialize_call(call));
  } catch (const clupy::detail::DecodeError&) {
    // Not a call at all (a form out of range): refused before anything ran.
    if (call.form == original.form) std::abort();
    return 0;
  }
  if (outcome.ok) {
    // Only an intended function may have run: a registered name, or the very code the
    // template names (the fields its form reads: a closure call has no function).
    bool intended = false;
    switch (call.form) {
      case CallForm::kNamed:
        intended = call.name == "weigh";
        break;
      case CallForm::kClosure:
        intended = original.form == CallForm::kClosure && call.invoker == original.invoker;
        break;
      case CallForm::kFunction:
        intended = original.form == CallForm::kFunction && call.invoker == original.invoker &&
                   call.function == original.function;
        break;
    }
    if (!intended) std::abort();
  } else if (outcome.failure.kind != clupy::FailureKind::kProtocol &&
             outcome.failure.kind != clupy::FailureKind::kException) {
    std::abort();
  }
  return 0;
}

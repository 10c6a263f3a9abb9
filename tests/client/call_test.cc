// Encoding values and calls, and executing calls in this process: every type family the codec
// supports, the three call forms, failures carried with type and message, and refusals of
// calls whose code or bytes do not fit.
#include "clupy/detail/call.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <list>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "test_message.pb.h"
#include "test_types.hpp"

namespace clupy::test {

struct QuotaExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int add(int a, int b) { return a + b; }
Shape grow(const Shape& s, double factor) {
  Shape out = s;
  for (Point& p : out.outline) p = {p.x * factor, p.y * factor};
  return out;
}
std::string greet(std::string_view name) { return "hello " + std::string(name); }
void nothing() {}
long charge(Account a, long amount) {
  if (amount > a.balance())
    throw QuotaExceeded(a.owner() + " cannot pay " + std::to_string(amount));
  return a.balance() - amount;
}
Person rename(Person p, const std::string& name) {
  p.set_name(name);
  return p;
}
int registered_twice(int x) { return x * 2; }
int named_square(int x) { return x * x; }

}  // namespace clupy::test

CLUPY_REMOTE(clupy::test::named_square);

namespace clupy::test {
namespace {

using detail::CallForm;
using detail::CallOutcome;
using detail::decode_value;
using detail::encode_call;
using detail::encode_value;
using detail::EncodedCall;
using detail::execute_call;

template <class T>
T round_trip(const T& value) {
  std::string error;
  auto decoded = decode_value<T>(encode_value(value), error);
  EXPECT_TRUE(decoded.has_value()) << error;
  return decoded ? *decoded : T{};
}

// Runs `call` here and decodes its result as T, as a runtime would.
template <class T>
T run(const EncodedCall& call) {
  // Through the byte form, as a runtime would ship it.
  const CallOutcome outcome = execute_call(detail::parse_call(detail::serialize_call(call)));
  EXPECT_TRUE(outcome.ok) << outcome.failure.to_string();
  auto pending = detail::make_pending_future<T>();
  pending.state->complete_with_result(outcome.result);
  return pending.future.get();
}

TEST(CodecTest, StdTypesRoundTrip) {
  EXPECT_EQ(round_trip(std::string("zürich\0x", 9)), std::string("zürich\0x", 9));
  EXPECT_EQ(round_trip(std::vector<int>{1, -2, 3}), (std::vector<int>{1, -2, 3}));
  EXPECT_EQ(round_trip(std::map<std::string, double>{{"a", 1.5}}),
            (std::map<std::string, double>{{"a", 1.5}}));
  EXPECT_EQ(round_trip(std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}}),
            (std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}}));
  EXPECT_EQ(round_trip(std::set<std::string>{"b", "a"}), (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(round_trip(std::unordered_set<int>{4, 5}), (std::unordered_set<int>{4, 5}));
  EXPECT_EQ(round_trip(std::list<bool>{true, false}), (std::list<bool>{true, false}));
  EXPECT_EQ(round_trip(std::tuple<int, std::string, double>{1, "two", 3.0}),
            (std::tuple<int, std::string, double>{1, "two", 3.0}));
  EXPECT_EQ(round_trip(std::pair<long, char>{-9, 'c'}), (std::pair<long, char>{-9, 'c'}));
  EXPECT_EQ(round_trip(std::optional<int>{}), std::optional<int>{});
  EXPECT_EQ(round_trip(std::optional<int>{3}), std::optional<int>{3});
  EXPECT_EQ(round_trip(std::array<int, 3>{7, 8, 9}), (std::array<int, 3>{7, 8, 9}));
}

TEST(CodecTest, VariantsKeepTheirAlternative) {
  EXPECT_EQ(round_trip(Token{}), Token{});
  EXPECT_EQ(round_trip(Token{5}), Token{5});
  EXPECT_EQ(round_trip(Token{std::string("five")}), Token{std::string("five")});
  EXPECT_EQ(round_trip(Token{Point{1, 2}}), (Token{Point{1, 2}}));
  std::string error;
  // [9, 0]: an index past the alternatives.
  const std::string bad = encode_value(std::tuple<int, int>{9, 0});
  EXPECT_FALSE(decode_value<Token>(bad, error).has_value());
}

TEST(CodecTest, AggregatesEnumsAndMsgpackDefineTypesRoundTripWithoutRegistration) {
  Shape shape{"roof", {{0, 0}, {1, 2}}, Color::kBlue, 3, {{"top", {0.5, 2}}}};
  EXPECT_EQ(round_trip(shape), shape);
  EXPECT_EQ(round_trip(std::vector<Shape>{shape, Shape{}}), (std::vector<Shape>{shape, Shape{}}));
  EXPECT_EQ(round_trip(Account("ada", 10)), Account("ada", 10));
  EXPECT_EQ(round_trip(Color::kGreen), Color::kGreen);
  // An aggregate travels as an array of its fields, in declaration order.
  EXPECT_EQ(encode_value(Point{1, 2}), encode_value(std::tuple<double, double>{1, 2}));
}

TEST(CodecTest, ProtobufMessagesTravelAsTheirBytes) {
  Person person;
  person.set_name("grace");
  person.set_id(7);
  person.add_emails("g@example.org");
  const Person back = round_trip(person);
  EXPECT_EQ(back.SerializeAsString(), person.SerializeAsString());
  std::string error;
  EXPECT_FALSE(decode_value<Person>(encode_value(std::string("\xff\xff", 2)), error).has_value());
}

TEST(CodecTest, MalformedBytesAreRejectedWithAReason) {
  std::string error;
  EXPECT_FALSE(decode_value<int>(std::string("\xc1"), error).has_value());  // never-used byte
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(decode_value<int>(encode_value(1) + "x", error).has_value());
  EXPECT_NE(error.find("stray"), std::string::npos) << error;
  // An array header claiming 2^32-1 elements in five bytes must not allocate for them.
  EXPECT_FALSE(decode_value<std::vector<int>>(std::string("\xdd\xff\xff\xff\xff", 5), error));
}

TEST(CallTest, PlainFunctionsTravelAsSegmentAndOffset) {
  const EncodedCall call = encode_call(add, 2, 40);
  EXPECT_EQ(call.form, CallForm::kFunction);
  EXPECT_TRUE(call.function.segment_id.starts_with("build-id:")) << call.function.segment_id;
  EXPECT_EQ(call.invoker.segment_id, call.function.segment_id);
  EXPECT_EQ(run<int>(call), 42);
  EXPECT_EQ(run<int>(encode_call(&add, 1, 1)), 2);
}

TEST(CallTest, ArgumentsAreConvertedToTheParameterTypesBeforeTheyTravel) {
  EXPECT_EQ(run<std::string>(encode_call(greet, "ada")), "hello ada");
  EXPECT_EQ(run<int>(encode_call(add, 'a', short{1})), 98);
  Shape s{"sq", {{1, 1}}, Color::kGreen, std::nullopt, {}};
  EXPECT_EQ((run<Shape>(encode_call(grow, s, 3)).outline), (std::vector<Point>{{3, 3}}));
  Person p;
  p.set_id(4);
  const Person renamed = run<Person>(encode_call(rename, p, "bob"));
  EXPECT_EQ(renamed.name(), "bob");
  EXPECT_EQ(renamed.id(), 4);
  run<void>(encode_call(nothing));
}

TEST(CallTest, CapturingLambdasTravelAsTheirBytes) {
  const int base = 100;
  const Point offset{0.5, 0.25};
  auto shift = [base, offset](Point p, int n) { return Point{p.x + offset.x + n, p.y + base}; };
  const EncodedCall call = encode_call(shift, Point{1, 1}, 2);
  EXPECT_EQ(call.form, CallForm::kClosure);
  EXPECT_EQ(call.closure.size(), sizeof(shift));
  EXPECT_NE(call.function_name.find("lambda"), std::string::npos) << call.function_name;
  EXPECT_EQ(run<Point>(call), (Point{3.5, 101}));
  int counter = 5;
  auto count = [counter]() mutable { return ++counter; };
  EXPECT_EQ(run<int>(encode_call(count)), 6);
  auto generic = [](auto a, auto b) { return a + b; };
  EXPECT_EQ(run<std::string>(encode_call(generic, std::string("ab"), std::string("cd"))), "abcd");
}

TEST(CallTest, RegisteredFunctionsTravelByName) {
  const EncodedCall call = encode_call(named_square, 9);
  EXPECT_EQ(call.form, CallForm::kNamed);
  EXPECT_EQ(call.name, "clupy::test::named_square");
  EXPECT_EQ(run<int>(call), 81);
  EXPECT_EQ(run<int>(detail::encode_call_by_name("clupy::test::named_square", 5)), 25);
}

TEST(CallTest, ExceptionsComeBackWithTheirTypeAndMessage) {
  const CallOutcome outcome = execute_call(encode_call(charge, Account("ada", 10), 50L));
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.failure.kind, FailureKind::kException);
  EXPECT_EQ(outcome.failure.type_name, "clupy::test::QuotaExceeded");
  EXPECT_EQ(outcome.failure.message, "ada cannot pay 50");
  EXPECT_EQ(outcome.failure.function, encode_call(charge, Account(), 1L).function_name);
  const CallOutcome thrown_int = execute_call(encode_call([] { throw 7; }));
  EXPECT_EQ(thrown_int.failure.type_name, "int");
}

TEST(CallTest, CallsWhoseCodeIsNotHereAreRefusedWithoutJumping) {
  EncodedCall forged = encode_call(add, 1, 2);
  forged.function.segment_id = "build-id:00112233445566778899aabbccddeeff00112233";
  CallOutcome outcome = execute_call(forged);
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
  EXPECT_NE(outcome.failure.message.find("is not loaded in this process"), std::string::npos)
      << outcome.failure.message;

  EncodedCall far = encode_call(add, 1, 2);
  far.invoker.offset = 1ULL << 40;
  outcome = execute_call(far);
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
  EXPECT_NE(outcome.failure.message.find("outside the executable segments"), std::string::npos)
      << outcome.failure.message;

  outcome = execute_call(detail::encode_call_by_name("no_such_function", 1));
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
  EXPECT_NE(outcome.failure.message.find("no function named 'no_such_function'"),
            std::string::npos);
}

// Code that lies in an executable segment but is not one of the program's invoker thunks is
// never jumped to: a shifted offset, a plain function named as the invoker, libc's _exit.
TEST(CallTest, InvokersThatAreNotRegisteredThunksAreRefused) {
  auto expect_refused = [](const EncodedCall& call) {
    const CallOutcome outcome = execute_call(call);
    ASSERT_FALSE(outcome.ok);
    EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
    EXPECT_NE(outcome.failure.message.find("is not one of this program's invoker thunks"),
              std::string::npos)
        << outcome.failure.message;
  };
  EncodedCall shifted = encode_call(add, 1, 2);
  shifted.invoker.offset += 1;
  expect_refused(shifted);

  EncodedCall plain = encode_call(add, 1, 2);
  plain.invoker = plain.function;
  expect_refused(plain);

  EncodedCall exits = encode_call(add, 1, 2);
  exits.invoker = detail::locate_code(reinterpret_cast<std::uintptr_t>(&::_exit));
  expect_refused(exits);

  const int k = 3;
  EncodedCall closure = encode_call([k](int x) { return x + k; }, 1);
  closure.invoker.offset += 4;
  expect_refused(closure);

  // The genuine calls still run.
  EXPECT_TRUE(execute_call(encode_call(add, 1, 2)).ok);
  EXPECT_TRUE(execute_call(encode_call([k](int x) { return x + k; }, 1)).ok);
}

// A registered thunk named for a call of the other form is refused: a function's thunk run for
// a closure call would jump to the null function address (found by fuzz_call_decoding: a call
// whose form byte was flipped from 1 to 2 crashed the worker).
TEST(CallTest, AThunkOfTheOtherCallFormIsRefused) {
  auto expect_wrong_form = [](const EncodedCall& call) {
    const CallOutcome outcome = execute_call(call);
    ASSERT_FALSE(outcome.ok);
    EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
    EXPECT_NE(outcome.failure.message.find("not this call's form"), std::string::npos)
        << outcome.failure.message;
  };
  EncodedCall function_as_closure = encode_call(add, 1, 2);
  ASSERT_EQ(function_as_closure.form, CallForm::kFunction);
  function_as_closure.form = CallForm::kClosure;
  expect_wrong_form(function_as_closure);

  const int k = 3;
  EncodedCall closure_as_function = encode_call([k](int x) { return x + k; }, 1);
  ASSERT_EQ(closure_as_function.form, CallForm::kClosure);
  closure_as_function.form = CallForm::kFunction;
  closure_as_function.function = encode_call(add, 1, 2).function;
  expect_wrong_form(closure_as_function);
}

TEST(CallTest, ArgumentsThatDoNotFitTheFunctionAreAProtocolFailure) {
  CallOutcome outcome =
      execute_call(detail::encode_call_by_name("clupy::test::named_square", 1, 2));
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
  EXPECT_NE(outcome.failure.message.find("takes 1 argument(s); the call carries 2"),
            std::string::npos)
      << outcome.failure.message;
  outcome = execute_call(detail::encode_call_by_name("clupy::test::named_square", "nine"));
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
  EXPECT_NE(outcome.failure.message.find("argument 1 of clupy::test::named_square"),
            std::string::npos)
      << outcome.failure.message;

  const int k = 3;
  EncodedCall resized = encode_call([k](int x) { return x + k; }, 1);
  resized.closure += "extra";
  outcome = execute_call(resized);
  EXPECT_EQ(outcome.failure.kind, FailureKind::kProtocol);
}

TEST(CallTest, ANameClaimedByTwoFunctionsIsRefused) {
  const auto invoker = detail::FunctionInvokerOf<int (*)(int), int, std::tuple<int>>::value;
  EXPECT_TRUE(detail::register_function(
      "twice", invoker, reinterpret_cast<std::uintptr_t>(&registered_twice), "int(int)"));
  EXPECT_FALSE(detail::register_function(
      "twice", invoker, reinterpret_cast<std::uintptr_t>(&named_square), "int(int)"));
  EXPECT_THROW(encode_call(registered_twice, 1), EncodeError);
  const CallOutcome outcome = execute_call(detail::encode_call_by_name("twice", 1));
  EXPECT_NE(outcome.failure.message.find("two different functions"), std::string::npos);
}

// A call as a version-1 writer framed it: both code references in full, ids as text.
std::string version_one_bytes(const EncodedCall& call) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(&buffer);
  auto code = [&](const detail::CodeRef& ref) {
    p.pack_array(3);
    p.pack(ref.segment_id);
    p.pack(ref.segment_path);
    p.pack(ref.offset);
  };
  auto bin = [&](const std::string& bytes) {
    p.pack_bin(static_cast<std::uint32_t>(bytes.size()));
    p.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
  };
  p.pack_array(8);
  p.pack(1u);
  p.pack(static_cast<std::uint8_t>(call.form));
  code(call.invoker);
  code(call.function);
  bin(call.closure);
  p.pack(call.name);
  bin(call.arguments);
  p.pack(call.function_name);
  return std::string(buffer.data(), buffer.size());
}

TEST(CallTest, CallsNameTheirCodeCompactlyAndVersionOneCallsStillParse) {
  const EncodedCall call = encode_call(add, 1, 2);
  ASSERT_EQ(call.form, CallForm::kFunction);
  ASSERT_EQ(call.function.segment_id, call.invoker.segment_id);
  const std::string bytes = detail::serialize_call(call);
  EXPECT_EQ(bytes.find(call.invoker.segment_id), std::string::npos) << "the id travels as text";
  const std::string& path = call.invoker.segment_path;
  ASSERT_FALSE(path.empty());
  EXPECT_NE(bytes.find(path), std::string::npos);
  EXPECT_EQ(bytes.find(path, bytes.find(path) + 1), std::string::npos) << "the path twice";
  const std::string old_bytes = version_one_bytes(call);
  EXPECT_LT(bytes.size() + 60, old_bytes.size());
  EXPECT_EQ(detail::parse_call(bytes), call);
  EXPECT_EQ(detail::parse_call(old_bytes), call);
  EXPECT_EQ(execute_call(detail::parse_call(old_bytes)).ok, true);
  // Closures and named calls keep their (empty or different) function reference.
  const EncodedCall named = detail::encode_call_by_name("twice", 1);
  EXPECT_EQ(detail::parse_call(detail::serialize_call(named)), named);
  std::string future_version = bytes;
  future_version[1] = 3;  // the version, after the array header
  try {
    detail::parse_call(future_version);
    ADD_FAILURE() << "a version-3 call parsed";
  } catch (const detail::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("call format version 3"), std::string::npos) << e.what();
  }
}

TEST(CallTest, MalformedCallBytesThrowDecodeError) {
  EXPECT_THROW(detail::parse_call("garbage"), detail::DecodeError);
  std::string bytes = detail::serialize_call(encode_call(add, 1, 2));
  EXPECT_EQ(detail::parse_call(bytes), encode_call(add, 1, 2));
  bytes.pop_back();
  EXPECT_THROW(detail::parse_call(bytes), detail::DecodeError);
  CallOutcome outcome = execute_call(encode_call(charge, Account("x", 1), 2L));
  outcome.failure.server = "s1";
  outcome.failure.task_id = 99;
  const CallOutcome back = detail::parse_outcome(detail::serialize_outcome(outcome));
  EXPECT_EQ(back.failure, outcome.failure);
  EXPECT_FALSE(back.ok);
}

long sum_list(const std::vector<long>& values, long extra) {
  long total = extra;
  for (long v : values) total += v;
  return total;
}

TEST(CallInputsTest, FuturesLeaveNilsThatSplicedValuesReplace) {
  std::vector<Future<long>> parts(3);
  EncodedCall call = encode_call(&sum_list, parts, 100L);
  // [[nil, nil, nil], 100]
  EXPECT_EQ(call.arguments, std::string("\x92\x93\xc0\xc0\xc0\x64"));
  std::string one, two, three;
  detail::append_encoded(one, 1L);
  detail::append_encoded(two, 20L);
  detail::append_encoded(three, 300L);
  const std::string spliced = detail::splice_call_arguments(
      detail::serialize_call(call), {{0, 2, three}, {0, 0, one}, {0, 1, two}});
  const detail::CallOutcome outcome = detail::execute_serialized_call(spliced);
  ASSERT_TRUE(outcome.ok) << outcome.failure.message;
  std::string error;
  EXPECT_EQ(decode_value<long>(outcome.result, error).value_or(-1), 421);
}

TEST(CallInputsTest, AWholeArgumentIsReplacedAndAMissingPlaceIsAnError) {
  Future<int> input;
  EncodedCall call = encode_call(&add, input, 2);
  EXPECT_EQ(call.arguments, std::string("\x92\xc0\x02"));
  std::string forty;
  detail::append_encoded(forty, 40);
  const detail::CallOutcome outcome = detail::execute_serialized_call(
      detail::splice_call_arguments(detail::serialize_call(call), {{0, -1, forty}}));
  ASSERT_TRUE(outcome.ok) << outcome.failure.message;
  std::string error;
  EXPECT_EQ(decode_value<int>(outcome.result, error).value_or(-1), 42);
  EXPECT_THROW(detail::splice_call_arguments(detail::serialize_call(call), {{5, -1, forty}}),
               detail::DecodeError);
  EXPECT_THROW(detail::splice_call_arguments(detail::serialize_call(call), {{1, 0, forty}}),
               detail::DecodeError);
}

}  // namespace
}  // namespace clupy::test

// Value types used by the codec and call tests: one of each family the codec supports.
#pragma once

#include <map>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace clupy::test {

// Aggregates with no macro at all: Boost.PFR reflects them.
struct Point {
  double x = 0;
  double y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};

enum class Color { kRed = 1, kGreen = 2, kBlue = 7 };

struct Shape {
  std::string name;
  std::vector<Point> outline;
  Color color = Color::kRed;
  std::optional<int> layer;
  std::map<std::string, Point> anchors;
  friend bool operator==(const Shape&, const Shape&) = default;
};

// A class with private members described by MSGPACK_DEFINE.
class Account {
 public:
  Account() = default;
  Account(std::string owner, long balance) : owner_(std::move(owner)), balance_(balance) {}
  const std::string& owner() const { return owner_; }
  long balance() const { return balance_; }
  friend bool operator==(const Account&, const Account&) = default;
  MSGPACK_DEFINE(owner_, balance_)

 private:
  std::string owner_;
  long balance_ = 0;
};

using Token = std::variant<std::monostate, int, std::string, Point>;

}  // namespace clupy::test

#include "common/metrics_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/http_server.hpp"

namespace clupy::common {
namespace {

TEST(MetricsTextTest, FamiliesSamplesAndEscapedLabelsReadAsTheTextFormat) {
  MetricsText text;
  text.single("clupy_up", "gauge", "Always 1.", 1);
  text.family("clupy_runs_total", "counter", "Runs by program.");
  text.sample("clupy_runs_total", {{"program", "a\"b\\c\nd"}, {"image", "0123"}}, 42);
  text.sample("clupy_runs_total_sum", {}, 0.25);
  EXPECT_EQ(text.take(),
            "# HELP clupy_up Always 1.\n# TYPE clupy_up gauge\nclupy_up 1\n"
            "# HELP clupy_runs_total Runs by program.\n# TYPE clupy_runs_total counter\n"
            "clupy_runs_total{program=\"a\\\"b\\\\c\\nd\",image=\"0123\"} 42\n"
            "clupy_runs_total_sum 0.25\n");
}

TEST(MetricsTextTest, LabelValuesAreCutTo200Bytes) {
  EXPECT_EQ(metric_label_value(std::string(300, 'x')), std::string(200, 'x'));
}

TEST(MetricsTextTest, NumbersAreShortAndExact) {
  EXPECT_EQ(metric_number(0.0005), "0.0005");
  EXPECT_EQ(metric_number(30), "30");
  EXPECT_EQ(metric_number(12345678901234.0), "12345678901234");
  EXPECT_EQ(metric_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(metric_number(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(metric_number(std::nan("")), "NaN");
}

TEST(HttpAuthTest, TokenLoopbackAndOffLetInWhoTheySay) {
  const std::optional<std::string> token = "secret-token";
  HttpRequest remote;
  HttpRequest local;
  local.from_loopback = true;
  HttpRequest bearer;
  bearer.authorization = "Bearer secret-token";
  HttpRequest wrong;
  wrong.authorization = "Bearer secret-tokeN";
  wrong.from_loopback = false;

  EXPECT_TRUE(http_auth_allows(HttpAuth::kToken, token, bearer));
  EXPECT_FALSE(http_auth_allows(HttpAuth::kToken, token, local));
  EXPECT_FALSE(http_auth_allows(HttpAuth::kToken, token, wrong));
  EXPECT_TRUE(http_auth_allows(HttpAuth::kLoopback, token, local));
  EXPECT_FALSE(http_auth_allows(HttpAuth::kLoopback, token, remote));
  EXPECT_TRUE(http_auth_allows(HttpAuth::kOff, token, remote));
  EXPECT_TRUE(http_auth_allows(HttpAuth::kToken, std::nullopt, remote));  // no token: no auth
  EXPECT_EQ(http_token_required_text(HttpAuth::kToken),
            "this needs the cluster token: send \"Authorization: Bearer <token>\" (http_auth: "
            "token)\n");
}

}  // namespace
}  // namespace clupy::common

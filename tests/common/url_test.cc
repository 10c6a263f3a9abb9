#include "common/url.hpp"

#include <gtest/gtest.h>

#include "clupy/errors.hpp"

namespace clupy::common {
namespace {

TEST(UrlTest, ParsesTheSeedsForm) {
  auto a = parse_master_url("clupy://master_server_address:7878");
  EXPECT_EQ(a.host, "master_server_address");
  EXPECT_EQ(a.port, 7878);
}

TEST(UrlTest, DefaultsThePortAndAcceptsBareHostPort) {
  EXPECT_EQ(parse_master_url("clupy://example").port, kDefaultMasterPort);
  EXPECT_EQ(parse_master_url("10.0.0.5:9000").host, "10.0.0.5");
  EXPECT_EQ(parse_master_url("[::1]:9000").host, "::1");
  EXPECT_EQ(parse_master_url("[::1]:9000").port, 9000);
}

TEST(UrlTest, RejectsOtherSchemesAndBadPorts) {
  EXPECT_THROW(parse_master_url("http://x:1"), ConfigError);
  EXPECT_THROW(parse_master_url("clupy://x:0"), ConfigError);
  EXPECT_THROW(parse_master_url("clupy://x:99999"), ConfigError);
  EXPECT_THROW(parse_master_url("clupy://x:12ab"), ConfigError);
  EXPECT_THROW(parse_master_url("clupy://:80"), ConfigError);
  EXPECT_THROW(parse_master_url(""), ConfigError);
  EXPECT_THROW(parse_master_url("clupy://x:"), ConfigError);
}

TEST(UrlTest, LoopbackDetection) {
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.8.9.10"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
  EXPECT_FALSE(is_loopback_host("example.com"));
}

}  // namespace
}  // namespace clupy::common

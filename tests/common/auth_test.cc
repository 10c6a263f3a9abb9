#include "common/auth.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "base/hex.hpp"
#include "clupy/errors.hpp"
#include "support/process.hpp"

namespace clupy::common {
namespace {

TEST(AuthTest, HmacMatchesRfc4231TestCase2) {
  EXPECT_EQ(base::to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(AuthTest, ProofsDependOnTokenAndBothNonces) {
  const std::string a = random_bytes(kNonceSize), b = random_bytes(kNonceSize);
  EXPECT_EQ(client_proof("t", a, b), client_proof("t", a, b));
  EXPECT_NE(client_proof("t", a, b), client_proof("u", a, b));
  EXPECT_NE(client_proof("t", a, b), client_proof("t", b, a));
  // The two directions never produce the same MAC, so a proof cannot be reflected back.
  EXPECT_NE(client_proof("t", a, b), server_proof("t", b, a));
}

TEST(AuthTest, RandomBytesDiffer) {
  EXPECT_EQ(random_bytes(32).size(), 32u);
  EXPECT_NE(random_bytes(32), random_bytes(32));
}

TEST(AuthTest, ConstantTimeEqualComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

TEST(AuthTest, FirstStartCreatesAPrivateTokenFileAndReusesIt) {
  test::TempDir dir;
  const std::string path = dir.file("sub/cluster.token");
  const std::string token = load_or_create_token(path);
  EXPECT_EQ(token.size(), 2 * kTokenBytes);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(load_or_create_token(path), token);
  EXPECT_EQ(read_token_file(path), token);
}

TEST(AuthTest, TokenFileReadableByOthersIsRefused) {
  test::TempDir dir;
  const std::string path = dir.file("token");
  test::write_file(path, "secret\n");
  ::chmod(path.c_str(), 0644);
  try {
    read_token_file(path);
    FAIL() << "a world-readable token file was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
  }
}

TEST(AuthTest, MissingAndEmptyTokenFilesAreClearErrors) {
  test::TempDir dir;
  EXPECT_THROW(read_token_file(dir.file("absent")), ConfigError);
  const std::string empty = dir.file("empty");
  test::write_file(empty, "\n");
  ::chmod(empty.c_str(), 0600);
  EXPECT_THROW(read_token_file(empty), ConfigError);
}

TEST(AuthTest, EnvironmentTokenWinsOverFiles) {
  test::TempDir dir;
  const std::string path = dir.file("token");
  test::write_file(path, "from-file");
  ::chmod(path.c_str(), 0600);
  ::setenv("CLUPY_TOKEN", "from-env", 1);
  EXPECT_EQ(resolve_token(path), "from-env");
  ::unsetenv("CLUPY_TOKEN");
  EXPECT_EQ(resolve_token(path), "from-file");
  ::setenv("CLUPY_TOKEN_FILE", path.c_str(), 1);
  EXPECT_EQ(resolve_token(""), "from-file");
  ::unsetenv("CLUPY_TOKEN_FILE");
}

TEST(AuthTest, MasterFollowsTheSameTokenRuleAsServersAndClients) {
  test::TempDir dir;
  const std::string configured = dir.file("configured.token");
  const std::string exported = dir.file("exported/cluster.token");
  // CLUPY_TOKEN_FILE beats the configured file; the master creates it, servers then read it.
  ::setenv("CLUPY_TOKEN_FILE", exported.c_str(), 1);
  const MasterToken from_file = resolve_master_token(configured);
  EXPECT_EQ(from_file.source, exported);
  EXPECT_FALSE(std::filesystem::exists(configured)) << "the configured file was used";
  EXPECT_EQ(resolve_token(configured), from_file.token);
  // CLUPY_TOKEN beats both, and creates no file.
  ::setenv("CLUPY_TOKEN", "exported-token", 1);
  const MasterToken from_env = resolve_master_token(configured);
  EXPECT_EQ(from_env.token, "exported-token");
  EXPECT_EQ(from_env.source, "CLUPY_TOKEN");
  EXPECT_EQ(resolve_token(configured), "exported-token");
  ::unsetenv("CLUPY_TOKEN");
  ::unsetenv("CLUPY_TOKEN_FILE");
  // Without the environment: the configured file, as before.
  EXPECT_EQ(resolve_master_token(configured).source, configured);
  EXPECT_EQ(resolve_token(configured), read_token_file(configured));
}

}  // namespace
}  // namespace clupy::common

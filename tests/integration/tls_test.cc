// TLS between real daemons, with a certificate made for the test by the openssl command.
#include <cstdlib>

#include "clupy/errors.hpp"
#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

class TlsTest : public ClusterFixture {
 protected:
  void SetUp() override {
    const std::string command =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
        dir_.file("key.pem") + " -out " + dir_.file("cert.pem") + " >" + dir_.file("openssl.log") +
        " 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << read_file(dir_.file("openssl.log"));
  }
  std::string tls_section(bool with_key) {
    std::string yaml = "tls:\n  enabled: true\n  ca_file: " + dir_.file("cert.pem") + "\n";
    if (with_key)
      yaml +=
          "  cert_file: " + dir_.file("cert.pem") + "\n  key_file: " + dir_.file("key.pem") + "\n";
    return yaml;
  }
};

TEST_F(TlsTest, ServersRegisterOverTlsAndPlainClientsAreTurnedAway) {
  write_file(dir_.file("clupy.master.yaml"), tls_section(true) + "handshake_timeout: 2s\n");
  write_file(dir_.file("clupy.server.yaml"), tls_section(false));
  start_master();
  EXPECT_NE(read_file(dir_.file("master.log")).find("(TLS"), std::string::npos);
  start_server("secure");

  const std::string client_yaml = dir_.file("client-tls.yaml");
  write_file(client_yaml, tls_section(false));
  ConnectOptions options;
  options.master_url = master_url();
  options.token_file = token_file();
  options.config_file = client_yaml;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          auto s = cluster_status(options);
          return s.servers.size() == 1 && s.servers[0].server_id == "secure";
        } catch (const std::exception&) {
          return false;
        }
      },
      std::chrono::seconds(30), "the TLS server to register"));

  // A client without TLS fails with an error, not a hang.
  write_file(dir_.file("plain.yaml"), "");
  std::string output;
  EXPECT_EQ(run_cli({"info", "--master-url", master_url(), "--token-file", token_file(), "--config",
                     dir_.file("plain.yaml")},
                    output),
            1);
  EXPECT_NE(output.find("is the master using TLS?"), std::string::npos) << output;
}

TEST_F(TlsTest, ClientRejectsAMasterWhoseCertificateItDoesNotTrust) {
  write_file(dir_.file("clupy.master.yaml"), tls_section(true));
  start_master();
  // A second, unrelated certificate as the client's CA.
  const std::string other =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout " +
      dir_.file("other-key.pem") + " -out " + dir_.file("other.pem") + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(other.c_str()), 0);
  write_file(dir_.file("client.yaml"),
             "tls:\n  enabled: true\n  ca_file: " + dir_.file("other.pem") + "\n");
  ConnectOptions options;
  options.master_url = master_url();
  options.token_file = token_file();
  options.config_file = dir_.file("client.yaml");
  try {
    cluster_status(options);
    FAIL() << "a master with an untrusted certificate was accepted";
  } catch (const ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("TLS handshake"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace clupy::test

// examples/montecarlo on a small real cluster (a master with an embedded store, two servers):
// its 1,000,000 samples run as tasks, the CSV lands in the store and matches the closed form,
// and gnuplot's picture is a PNG.
#include <cmath>
#include <sstream>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class MontecarloTest : public ClusterFixture {};

std::vector<std::vector<double>> parse_csv(const std::string& text, std::string& header) {
  std::vector<std::vector<double>> rows;
  std::istringstream in(text);
  std::getline(in, header);
  if (!header.empty() && header.back() == '\r') header.pop_back();
  for (std::string line; std::getline(in, line);) {
    std::vector<double> row;
    std::istringstream fields(line);
    for (std::string field; std::getline(fields, field, ',');) row.push_back(std::stod(field));
    rows.push_back(row);
  }
  return rows;
}

TEST_F(MontecarloTest, TheSweepWritesItsCsvToTheStoreAndDrawsAPng) {
  write_file(dir_.file("master.yaml"), "store: embedded\n");
  start_master({"--config", dir_.file("master.yaml")});
  start_server("s1", {"--capacity", "2"});
  start_server("s2", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"s1", "s2"}));

  const std::string out = run_client_program(MONTECARLO_EXAMPLE, "montecarlo", {});
  EXPECT_NE(out.find("1000000 samples in 200 tasks of 5000; 0 failed"), std::string::npos) << out;
  EXPECT_NE(out.find("[progress] montecarlo: 200/200 100%"), std::string::npos) << out;
  EXPECT_NE(out.find("wrote montecarlo/option_prices.csv to the store"), std::string::npos) << out;
  EXPECT_NE(out.find("drew option_prices.png"), std::string::npos) << out;
  // Both servers took part.
  for (const char* s : {"s1", "s2"})
    EXPECT_NE(read_file(dir_.file(std::string(s) + ".log")).find("cached"), std::string::npos)
        << s << " ran none of it";

  // The store's copy, fetched with the CLI: 20 volatilities, each price within 5 standard
  // errors of Black-Scholes, rising with volatility.
  std::string cli;
  ASSERT_EQ(run_cli({"store", "get", "montecarlo/option_prices.csv", dir_.file("back.csv"),
                     "--master-url", master_url(), "--token-file", token_file()},
                    cli),
            0)
      << cli;
  const std::string csv = read_file(dir_.file("back.csv"));
  EXPECT_EQ(csv, read_file(dir_.file("option_prices.csv"))) << "the picture's CSV is the store's";
  std::string header;
  const auto rows = parse_csv(csv, header);
  EXPECT_EQ(header, "volatility,paths,price,std_error,black_scholes");
  ASSERT_EQ(rows.size(), 20u) << csv;
  long paths = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 5u) << csv;
    EXPECT_NEAR(rows[i][0], 0.05 * static_cast<double>(i + 1), 1e-9);
    paths += static_cast<long>(rows[i][1]);
    EXPECT_GT(rows[i][3], 0);
    EXPECT_LT(std::abs(rows[i][2] - rows[i][4]), 5 * rows[i][3]) << "volatility " << rows[i][0];
    if (i > 0) {
      EXPECT_GT(rows[i][4], rows[i - 1][4]);
    }
  }
  EXPECT_EQ(paths, 1'000'000);

  // gnuplot's picture: a PNG (signature, then an IHDR chunk of 900 x 600).
  const std::string png = read_file(dir_.file("option_prices.png"));
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned>(static_cast<unsigned char>(png[at])) << 24) |
           (static_cast<unsigned>(static_cast<unsigned char>(png[at + 1])) << 16) |
           (static_cast<unsigned>(static_cast<unsigned char>(png[at + 2])) << 8) |
           static_cast<unsigned>(static_cast<unsigned char>(png[at + 3]));
  };
  EXPECT_EQ(be32(16), 900u);
  EXPECT_EQ(be32(20), 600u);
  EXPECT_GT(png.size(), 10'000u) << "a plot, not an empty canvas";
}

}  // namespace
}  // namespace clupy::test

// A Monte Carlo parameter sweep, as a data person would write it: the price of a European call
// option for 20 volatilities, from 1,000,000 simulated paths in all, computed by the cluster's
// workers in batches of a few thousand paths per task. The prices (with their standard errors
// and the Black-Scholes closed form beside them) go to the cluster's file store as a CSV, and
// gnuplot draws them into a PNG from the store's copy.
//
//   montecarlo [--samples 1000000] [--batch 5000] [--csv montecarlo/option_prices.csv]
//              [--png option_prices.png]
//
// Without a store in the cluster (no `store:` in clupy.master.yaml, or the embedded local
// cluster), the CSV is written only to the working directory.
#include <clupy/clupy.hpp>
#include <clupy/store.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

// The option: spot 100, strike 100, one year, 3% interest; volatility is swept.
constexpr double kSpot = 100, kStrike = 100, kYears = 1, kRate = 0.03;

}  // namespace

// One task: `paths` simulated end prices at volatility `sigma`; returns the sum of the
// discounted payoffs and the sum of their squares (for the standard error). The seed makes every
// batch reproducible and independent of which worker runs it.
std::pair<double, double> simulate(double sigma, std::uint64_t seed, int paths) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const double drift = (kRate - 0.5 * sigma * sigma) * kYears;
  const double spread = sigma * std::sqrt(kYears);
  const double discount = std::exp(-kRate * kYears);
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < paths; ++i) {
    const double end = kSpot * std::exp(drift + spread * normal(rng));
    const double payoff = discount * std::max(end - kStrike, 0.0);
    sum += payoff;
    sum_sq += payoff * payoff;
  }
  return {sum, sum_sq};
}

namespace {

double black_scholes_call(double sigma) {
  const double d1 = (std::log(kSpot / kStrike) + (kRate + 0.5 * sigma * sigma) * kYears) /
                    (sigma * std::sqrt(kYears));
  const double d2 = d1 - sigma * std::sqrt(kYears);
  auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  return kSpot * cdf(d1) - kStrike * std::exp(-kRate * kYears) * cdf(d2);
}

// The picture: Monte Carlo prices with error bars (two standard errors) over the closed form.
const char* kPlot = R"(set datafile separator ','
set terminal pngcairo size 900,600 font ',11'
set output png
set title 'European call (S=100, K=100, T=1y, r=3%): Monte Carlo on a CluPy cluster'
set xlabel 'volatility'
set ylabel 'price'
set key top left
set grid
set xrange [0:1.05]
plot csv skip 1 using 1:5 with lines lw 2 lc rgb '#888888' title 'Black-Scholes', \
     csv skip 1 using 1:3:(2*$4) with yerrorbars pt 7 ps 0.8 lc rgb '#1f77b4' title 'Monte Carlo (2 s.e.)'
)";

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // a worker process serves tasks here and never returns

  long samples = 1'000'000;
  int batch = 5'000;
  std::string csv_name = "montecarlo/option_prices.csv", png = "option_prices.png";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--samples")
      samples = std::atol(value.c_str());
    else if (flag == "--batch")
      batch = std::atoi(value.c_str());
    else if (flag == "--csv")
      csv_name = value;
    else if (flag == "--png")
      png = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  constexpr int kVolatilities = 20;  // 0.05, 0.10, ..., 1.00
  const long per_volatility = samples / kVolatilities;
  if (batch <= 0 || per_volatility < batch) {
    std::fprintf(stderr, "--samples must be at least 20 x --batch\n");
    return 2;
  }
  const int batches = static_cast<int>(per_volatility / batch);

  // Submit every batch, then watch them come back.
  std::vector<clupy::Future<std::pair<double, double>>> results;
  auto task = clupy::parallel(simulate);
  for (int v = 0; v < kVolatilities; ++v)
    for (int b = 0; b < batches; ++b)
      results.push_back(
          task(0.05 * (v + 1), std::uint64_t(v) * 1'000'003 + std::uint64_t(b), batch));
  clupy::progress(results, {.title = "montecarlo", .output = stderr});

  std::vector<std::vector<std::string>> rows = {
      {"volatility", "paths", "price", "std_error", "black_scholes"}};
  double worst = 0;
  int failed = 0;
  for (int v = 0; v < kVolatilities; ++v) {
    double sum = 0, sum_sq = 0;
    long paths = 0;
    for (int b = 0; b < batches; ++b) {
      const auto& r = results[static_cast<std::size_t>(v * batches + b)];
      if (!r.successful()) {
        ++failed;
        continue;
      }
      sum += r.value().first;
      sum_sq += r.value().second;
      paths += batch;
    }
    if (paths == 0) continue;
    const double sigma = 0.05 * (v + 1);
    const double mean = sum / static_cast<double>(paths);
    const double variance = sum_sq / static_cast<double>(paths) - mean * mean;
    const double std_error = std::sqrt(variance / static_cast<double>(paths));
    const double exact = black_scholes_call(sigma);
    worst = std::max(worst, std::abs(mean - exact) / std_error);
    char line[5][32];
    std::snprintf(line[0], 32, "%.2f", sigma);
    std::snprintf(line[1], 32, "%ld", paths);
    std::snprintf(line[2], 32, "%.6f", mean);
    std::snprintf(line[3], 32, "%.6f", std_error);
    std::snprintf(line[4], 32, "%.6f", exact);
    rows.push_back({line[0], line[1], line[2], line[3], line[4]});
  }
  std::printf(
      "%ld samples in %zu tasks of %d; %d failed; largest gap to Black-Scholes %.2f "
      "standard errors\n",
      static_cast<long>(batches) * batch * kVolatilities, results.size(), batch, failed, worst);

  // The CSV goes to the cluster's store; the picture is drawn from the store's copy.
  const std::string local_csv = "option_prices.csv";
  try {
    clupy::Store store = clupy::cluster_store();
    const clupy::FileStat stat = store.write_csv(csv_name, rows);
    store.get_file(csv_name, local_csv);
    std::printf("wrote %s to the store (%llu bytes)\n", csv_name.c_str(),
                static_cast<unsigned long long>(stat.size));
  } catch (const clupy::StoreError& e) {
    if (e.code() != clupy::StoreError::Code::kNotConfigured) throw;
    std::printf("no store in this cluster (%s): writing %s here only\n", e.what(),
                local_csv.c_str());
    std::ofstream out(local_csv, std::ios::binary);
    for (const auto& row : rows) clupy::write_csv_row(out, row);
  }

  FILE* gnuplot =
      ::popen(("gnuplot -e \"csv='" + local_csv + "'; png='" + png + "'\" -").c_str(), "w");
  if (gnuplot == nullptr) {
    std::fprintf(stderr, "cannot run gnuplot (apt-get install gnuplot-nox)\n");
    return 3;
  }
  std::fputs(kPlot, gnuplot);
  const int status = ::pclose(gnuplot);
  if (status != 0) {
    std::fprintf(stderr, "gnuplot failed (status %d); is it installed (gnuplot-nox)?\n", status);
    return 3;
  }
  std::printf("drew %s\n", png.c_str());
  return failed == 0 ? 0 : 1;
}

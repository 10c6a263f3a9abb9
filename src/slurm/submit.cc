// `clupy --slurm-submit N [sbatch options]`: batch jobs of servers that join a running cluster.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>

#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "slurm/slurm.hpp"
#include "slurm/slurm_env.hpp"

namespace clupy::slurm {

namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& word) {
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string millis(std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; }

}  // namespace

int submit(int count, const std::vector<std::string>& sbatch_options, const Options& options) {
  if (count < 1) throw ConfigError("--slurm-submit: the number of jobs must be at least 1");
  std::vector<std::string> join;
  if (!options.master_url.empty()) {
    if (options.token_file.empty())
      throw ConfigError("--slurm-submit with --master-url needs --token-file (on a shared path)");
    join = {"--master-url", options.master_url, "--token-file",
            fs::absolute(options.token_file).string()};
  } else {
    std::string folder = options.join;
    if (folder.empty()) {
      const char* job = std::getenv("SLURM_JOB_ID");
      if (job == nullptr || *job == '\0')
        throw ConfigError(
            "--slurm-submit: which cluster? Give its job folder (--slurm-join DIR/.clupy/JOBID) "
            "or --master-url and --token-file, or run it inside the cluster's job");
      char cwd[4096] = {};
      const char* submit_dir = std::getenv("SLURM_SUBMIT_DIR");
      folder = job_folder(options, job, submit_dir ? submit_dir : ::getcwd(cwd, sizeof cwd));
    }
    folder = fs::absolute(folder).lexically_normal().string();
    std::ifstream published(folder + "/cluster.env");
    std::string line;
    bool has_url = false;
    while (std::getline(published, line)) has_url |= line.rfind("CLUPY_MASTER_URL=", 0) == 0;
    if (!has_url)
      throw ConfigError("--slurm-submit: no cluster is published in " + folder +
                        " (cluster.env with CLUPY_MASTER_URL)");
    join = {"--slurm-join", folder};
  }

  std::error_code ec;
  const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  std::string command = "srun --ntasks-per-node=1 " + shell_quote(self) + " --slurm";
  for (const auto& word : join) command += " " + shell_quote(word);
  command += " --slurm-drain-before " + millis(options.drain_before);
  command += " --slurm-poll " + millis(options.end_time_poll);
  if (options.capacity) command += " --capacity " + std::to_string(*options.capacity);
  if (!options.log_level.empty()) command += " --log-level " + shell_quote(options.log_level);

  int failures = 0;
  for (int i = 0; i < count; ++i) {
    std::vector<std::string> argv = {"sbatch", "--parsable", "--job-name=clupy-servers"};
    argv.insert(argv.end(), sbatch_options.begin(), sbatch_options.end());
    argv.insert(argv.end(), {"--wrap", command});
    const auto result = run_command(argv);
    std::smatch m;
    if (result.status == 0 && std::regex_search(result.output, m, std::regex(R"((\d+))"))) {
      std::cout << m[1] << "\n";
    } else {
      std::cerr << "clupy: sbatch failed (status " << result.status << "): " << result.output;
      ++failures;
    }
  }
  std::cout.flush();
  return failures == 0 ? 0 : 1;
}

int submit_command(const std::vector<std::string>& words) {
  if (words.empty()) throw ConfigError("--slurm-submit: how many server jobs? (--slurm-submit N)");
  int count = 0;
  try {
    count = std::stoi(words[0]);
  } catch (const std::exception&) {
    throw ConfigError("--slurm-submit: '" + words[0] + "' is not a number of jobs");
  }
  Options options;
  std::vector<std::string> sbatch_options;
  for (std::size_t i = 1; i < words.size(); ++i) {
    const std::string& word = words[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= words.size()) throw ConfigError(word + " needs a value");
      return words[++i];
    };
    if (word == "--slurm-dir") {
      options.dir = value();
    } else if (word == "--slurm-join") {
      options.join = value();
    } else if (word == "--master-url") {
      options.master_url = value();
    } else if (word == "--token-file") {
      options.token_file = value();
    } else if (word == "--slurm-drain-before") {
      options.drain_before = common::parse_duration(value());
    } else if (word == "--slurm-poll") {
      options.end_time_poll = common::parse_duration(value());
    } else if (word == "--capacity") {
      options.capacity = std::stoi(value());
    } else if (word == "--log-level") {
      options.log_level = value();
    } else {
      sbatch_options.push_back(word);
    }
  }
  return submit(count, sbatch_options, options);
}

}  // namespace clupy::slurm

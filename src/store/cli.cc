#include "store/cli.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "store/cluster_link.hpp"

namespace clupy::store {
namespace {

constexpr std::uint64_t kProgressMinBytes = 8u << 20;

std::string utc(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Draws "[#####.....]  42%  123.4 MiB/s" on one terminal line.
class ProgressBar {
 public:
  ProgressBar(std::ostream& err, bool enabled) : err_(err), enabled_(enabled) {}
  ~ProgressBar() {
    if (drawn_) err_ << "\n" << std::flush;
  }
  void operator()(std::uint64_t done, std::uint64_t total) {
    if (!enabled_ || total < kProgressMinBytes) return;
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    int filled = static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * kWidth);
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? static_cast<double>(done) / secs / (1 << 20) : 0;
    char line[128];
    std::snprintf(line, sizeof line, "\r[%s%s] %3d%%  %7.1f MiB/s",
                  std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                  static_cast<int>(done * 100 / total), rate);
    err_ << line << std::flush;
  }

 private:
  std::ostream& err_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_;
};

void print_stat(std::ostream& out, const FileStat& s) {
  out << "name: " << s.name << "\n"
      << "size: " << s.size << "\n"
      << "sha256: " << s.sha256 << "\n"
      << "content_type: " << s.content_type << "\n"
      << "created: " << utc(s.created) << "\n"
      << "last_access: " << utc(s.last_access) << "\n"
      << "pinned: " << (s.pinned ? "yes" : "no") << "\n";
}

}  // namespace

const char* cli_usage() {
  return "usage: clupy store COMMAND [--master-url URL] [--token-file PATH] [--config PATH]\n"
         "                          [--redis-url URL [--key-prefix PREFIX]]\n"
         "The store is the one the master names (clupy://localhost:7878 by default), or the\n"
         "Redis given with --redis-url. Commands:\n"
         "  put LOCAL_PATH NAME   upload a local file\n"
         "  get NAME LOCAL_PATH   download a file\n"
         "  ls [PREFIX]           list files (size, pinned, last access, type, name)\n"
         "  stat NAME             show a file's metadata\n"
         "  rm NAME               remove a file\n"
         "  pin NAME              keep a file from the janitor\n"
         "  unpin NAME            let the janitor remove it again\n";
}

int run_cli(std::vector<std::string> args, const StoreOptions& options) {
  return run_cli(std::move(args), options, std::cout, std::cerr, ::isatty(STDERR_FILENO) == 1);
}

namespace {

// The exit status when the command cannot run as given (help: 0, bad usage: 2), else nothing.
std::optional<int> check_command(const std::vector<std::string>& args, std::ostream& out,
                                 std::ostream& err) {
  auto usage = [&](const std::string& why) {
    err << "clupy store: " << why << "\n" << cli_usage();
    return 2;
  };
  if (args.empty()) return usage("missing command");
  const std::string& cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    out << cli_usage();
    return 0;
  }
  struct Arity {
    const char* name;
    std::size_t min, max;
  };
  static constexpr Arity kCommands[] = {{"put", 2, 2},  {"get", 2, 2}, {"ls", 0, 1},
                                        {"stat", 1, 1}, {"rm", 1, 1},  {"pin", 1, 1},
                                        {"unpin", 1, 1}};
  const Arity* arity = nullptr;
  for (const auto& a : kCommands)
    if (cmd == a.name) arity = &a;
  if (arity == nullptr) return usage("unknown command '" + cmd + "'");
  std::size_t n = args.size() - 1;
  if (n < arity->min || n > arity->max) return usage("wrong number of arguments for " + cmd);
  return std::nullopt;
}

}  // namespace

int run_cli(std::vector<std::string> args, const StoreOptions& options, std::ostream& out,
            std::ostream& err, bool progress) {
  if (auto status = check_command(args, out, err)) return *status;
  const std::string cmd = args[0];
  const std::size_t n = args.size() - 1;
  try {
    // `put` prints the digest, so the CLI computes it while writing.
    StoreOptions cli_options = options;
    cli_options.sha256_on_write = true;
    Store store(cli_options);
    if (cmd == "put") {
      ProgressBar bar(err, progress);
      FileStat s = store.put_file(args[1], args[2], std::ref(bar));
      out << "stored " << s.name << " (" << s.size << " bytes, " << s.content_type << ", sha256 "
          << s.sha256 << ")\n";
    } else if (cmd == "get") {
      ProgressBar bar(err, progress);
      FileStat s = store.get_file(args[1], args[2], std::ref(bar));
      out << "wrote " << args[2] << " (" << s.size << " bytes";
      if (!s.sha256.empty()) out << ", sha256 " << s.sha256;
      out << ")\n";
    } else if (cmd == "ls") {
      for (const FileStat& s : store.list(n == 1 ? args[1] : "")) {
        out << s.size << "\t" << (s.pinned ? "pinned" : "-") << "\t" << utc(s.last_access) << "\t"
            << s.content_type << "\t" << s.name << "\n";
      }
    } else if (cmd == "stat") {
      print_stat(out, store.stat(args[1]));
    } else if (cmd == "rm") {
      if (!store.remove(args[1])) {
        err << "clupy store: no file named '" << args[1] << "'\n";
        return 1;
      }
    } else if (cmd == "pin") {
      store.pin(args[1]);
    } else if (cmd == "unpin") {
      store.unpin(args[1]);
    }
  } catch (const StoreError& e) {
    err << "clupy store " << cmd << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

std::optional<std::string> parse_cli_target(const std::vector<std::string>& args, CliTarget& out) {
  out = CliTarget{};
  bool flags_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (flags_done || !word.starts_with("--") || word == "--help") {
      out.command.push_back(word);
      continue;
    }
    if (word == "--") {
      flags_done = true;
      continue;
    }
    std::string flag = word, value;
    if (auto eq = word.find('='); eq != std::string::npos) {
      flag = word.substr(0, eq);
      value = word.substr(eq + 1);
    } else {
      if (i + 1 == args.size()) return flag + " needs a value";
      value = args[++i];
    }
    if (flag == "--master-url")
      out.master.master_url = value;
    else if (flag == "--token-file")
      out.master.token_file = value;
    else if (flag == "--config")
      out.master.config_file = value;
    else if (flag == "--redis-url")
      out.redis_url = value;
    else if (flag == "--key-prefix")
      out.key_prefix = value;
    else
      return "unknown option " + flag;
  }
  if (!out.redis_url.empty() && !out.master.master_url.empty())
    return "give --master-url or --redis-url, not both";
  if (!out.key_prefix.empty() && out.redis_url.empty())
    return "--key-prefix goes with --redis-url (the master names its own prefix)";
  return std::nullopt;
}

int run_cli_with_flags(std::vector<std::string> args, const StoreResolver& ask_master,
                       std::ostream& out, std::ostream& err, bool progress) {
  CliTarget target;
  if (auto problem = parse_cli_target(args, target)) {
    err << "clupy store: " << *problem << "\n" << cli_usage();
    return 2;
  }
  if (auto status = check_command(target.command, out, err)) return *status;
  std::optional<StoreOptions> options;
  std::string where;
  try {
    if (!target.redis_url.empty()) {
      options = detail::store_options_from(target.redis_url, target.key_prefix, 0);
    } else if (target.master.master_url.empty() && (options = detail::store_options_from_env())) {
      // Inside a task: the server said where the store is; no master URL needed.
    } else {
      where = target.master.master_url.empty() ? "the master"
                                               : "the master at " + target.master.master_url;
      options = ask_master(target.master);
      if (!options) {
        err << "clupy store: " << where
            << " has no file store (give it a store: section in clupy.master.yaml, "
               "docs/store.md)\n";
        return 1;
      }
    }
  } catch (const StoreError& e) {
    err << "clupy store: " << e.what() << "\n";
    return 1;
  } catch (const Error& e) {
    err << "clupy store: cannot ask " << where << " where its store is: " << e.what() << "\n";
    return 1;
  }
  return run_cli(std::move(target.command), *options, out, err, progress);
}

}  // namespace clupy::store

// Libraries shipped from the client (clupy.client.dependency.yaml's libraries:) on a real
// cluster: a `clupy --master` whose dependency manifest allows them (or not) and `clupy --serve`
// daemons that fetch them from the master into their cache and give them to the job's workers,
// and only to the job's workers. The client programs are the dependency tests' own: one linked
// to a library only the build tree has (needs_program), one that opens a library by its soname
// when its task runs (deps_task_program).
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ShippedLibrariesTest : public ClusterFixture {
 protected:
  void SetUp() override {
    // Info-level client logs: the line saying when each server had the job's libraries.
    write_file(dir_.file("client.yaml"), "log_level: info\n");
  }
  void write_manifest(const std::string& body) {
    write_file(dir_.file("deps.yaml.tmp"), body);
    fs::rename(dir_.file("deps.yaml.tmp"), dir_.file("deps.yaml"));
  }
  // Rewrites the manifest and waits until the master has read it again (policy keys do not
  // change its version, so the log says it).
  void change_manifest(const std::string& body) {
    const auto reloads = [&] {
      const std::string log = master_.log();
      std::size_t count = 0;
      for (auto at = log.find(" reloaded ("); at != std::string::npos;
           at = log.find(" reloaded (", at + 1))
        ++count;
      return count;
    };
    const std::size_t before = reloads();
    write_manifest(body);
    master_.signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] { return reloads() > before; }, 30s, "the manifest reloaded"))
        << master_.log();
  }
  void start_cluster(const std::string& manifest) {
    write_manifest(manifest);
    start_master({"--dependency-file", dir_.file("deps.yaml"), "--data-dir", dir_.file("data")});
    start_server("ship-a", {"--capacity", "2"});
    ASSERT_TRUE(servers_become({"ship-a"}));
  }
  // Runs `program` with `args` in the test's folder; `dependency_file` (if not empty) is its
  // clupy.client.dependency.yaml.
  std::string run(const std::string& program, const std::string& name,
                  std::vector<std::string> args, const std::string& dependency_file) {
    std::map<std::string, std::string> env = {{"CLUPY_MASTER_URL", master_url()},
                                              {"CLUPY_TOKEN_FILE", token_file()},
                                              {"CLUPY_CLIENT_CONFIG", dir_.file("client.yaml")}};
    if (!dependency_file.empty()) {
      write_file(dir_.file(name + ".deps.yaml"), dependency_file);
      env["CLUPY_DEPENDENCY_FILE"] = dir_.file(name + ".deps.yaml");
    }
    args.insert(args.begin(), program);
    ChildProcess child({args, env, dir_.path(), dir_.file(name + ".out")});
    EXPECT_TRUE(child.wait(120s)) << name << " did not finish";
    return child.log();
  }
  static std::vector<std::string> lines_starting(const std::string& output,
                                                 const std::string& prefix) {
    std::vector<std::string> lines;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
      if (line.rfind(prefix, 0) == 0) lines.push_back(line);
    return lines;
  }
  static std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t count = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
    return count;
  }
  // The job's libraries folders on the server (the default cache_dir, in the server's folder).
  std::string server_libraries() const {
    return fs::canonical(dir_.path()).string() + "/clupy-server-cache/libraries";
  }
  // "server ship-a has this job's libraries (N ms after the job was opened)": N.
  static long waited_ms(const std::string& output) {
    const std::string marker = "server ship-a has this job's libraries (";
    const auto at = output.find(marker);
    if (at == std::string::npos) return -1;
    return std::stol(output.substr(at + marker.size()));
  }
  std::string server_log() const { return read_file(dir_.file("ship-a.log")); }
};

const std::string kShipNeeds =
    "libraries:\n  - soname: libclupytestprivate.so.1\n  - soname: libclupytestver.so.1\n";

TEST_F(ShippedLibrariesTest, AProgramNeedingALibraryOnlyTheClientHasRunsWhenItShipsIt) {
  start_cluster("allow_client_libraries: true\n");

  // Without shipping: refused at init, naming what the server lacks (the program check).
  std::string out = run(NEEDS_PROGRAM, "unshipped", {}, "");
  EXPECT_NE(out.find("REFUSED no server can run this program (dependency_check):\n  server "
                     "ship-a: libclupytestprivate.so.1 is missing; libclupytestver.so.1 is "
                     "missing"),
            std::string::npos)
      << out;
  EXPECT_TRUE(lines_starting(out, "RESULT").empty()) << out;
  // And how to ship them: this machine has both, from no package.
  EXPECT_NE(out.find("this machine has them: to ship them with the job, add to "
                     "clupy.client.dependency.yaml (with allow_client_libraries: true in the "
                     "master's manifest):\nlibraries:\n  - soname: libclupytestprivate.so.1\n  - "
                     "soname: libclupytestver.so.1"),
            std::string::npos)
      << out;

  // Shipped by soname: the files this program loaded (the build tree's) travel to the master,
  // then to the server, and the job's workers load them from the job's folder there.
  out = run(NEEDS_PROGRAM, "shipped", {}, kShipNeeds);
  auto results = lines_starting(out, "RESULT");
  ASSERT_EQ(results.size(), 2u) << out << "\nmaster log:\n"
                                << master_.log() << "\nserver log:\n"
                                << server_log();
  const std::string folder = server_libraries() + "/sets/job-";
  EXPECT_EQ(results[0].rfind("RESULT ship-a 2 " + folder, 0), 0u) << results[0];
  EXPECT_EQ(results[1].rfind("RESULT ship-a 9 " + folder, 0), 0u) << results[1];
  EXPECT_NE(results[0].find("/libclupytestprivate.so.1"), std::string::npos) << results[0];
  EXPECT_NE(out.find("uploaded libclupytestprivate.so.1"), std::string::npos) << out;
  const long first_wait = waited_ms(out);
  EXPECT_GE(first_wait, 0) << out;
  EXPECT_EQ(count_of(server_log(), "library libclupytestprivate.so.1 fetched"), 1u) << server_log();
  // Stored content-addressed on the master and on the server, with the bytes the client loaded.
  const std::string digest = base::to_hex(base::sha256(read_file(PRIVATE_LIBRARY)));
  EXPECT_TRUE(fs::exists(dir_.file("data/images/" + digest))) << digest;
  EXPECT_EQ(read_file(server_libraries() + "/" + digest), read_file(PRIVATE_LIBRARY));

  // Again: neither uploaded nor fetched (both have them), and it runs the same.
  out = run(NEEDS_PROGRAM, "again", {}, kShipNeeds);
  EXPECT_EQ(lines_starting(out, "RESULT").size(), 2u) << out;
  EXPECT_EQ(out.find("uploaded "), std::string::npos) << out;
  EXPECT_EQ(count_of(server_log(), "library libclupytestprivate.so.1 fetched"), 1u);

  // The wait of a job's first task for its shipped libraries, fetched again by the server each
  // time (its cache emptied), and with the server holding them already.
  std::vector<long> fetched;
  std::vector<long> cached;
  for (int i = 0; i < 5; ++i) {
    for (const auto& entry : fs::directory_iterator(server_libraries()))
      if (entry.is_regular_file()) fs::remove(entry.path());
    out = run(NEEDS_PROGRAM, "cold-" + std::to_string(i), {}, kShipNeeds);
    ASSERT_EQ(lines_starting(out, "RESULT").size(), 2u) << out;
    fetched.push_back(waited_ms(out));
    out = run(NEEDS_PROGRAM, "warm-" + std::to_string(i), {}, kShipNeeds);
    ASSERT_EQ(lines_starting(out, "RESULT").size(), 2u) << out;
    cached.push_back(waited_ms(out));
  }
  auto print = [](const char* what, std::vector<long> v) {
    std::sort(v.begin(), v.end());
    std::printf("%s: median %ld ms (min %ld, max %ld, %zu runs)\n", what, v[v.size() / 2],
                v.front(), v.back(), v.size());
  };
  // Each emptied cache had the server fetch them again.
  EXPECT_EQ(count_of(server_log(), "library libclupytestprivate.so.1 fetched"), 6u);
  std::printf(
      "job opened -> server has its 2 shipped libraries, uploaded by the client and "
      "fetched (first run): %ld ms\n",
      first_wait);
  print("job opened -> server has its 2 shipped libraries, fetched from the master", fetched);
  print("job opened -> server has its 2 shipped libraries, cached", cached);
}

TEST_F(ShippedLibrariesTest, ASecondJobDoesNotGetTheFirstJobsLibraries) {
  start_cluster("allow_client_libraries: true\n");
  // Both jobs run the same program at once, on the same server: one ships the library its tasks
  // open by soname, the other does not.
  const std::string ship = "libraries:\n  - path: " + std::string(SHIPPED_LIBRARY) + "\n";
  std::map<std::string, std::string> env = {{"CLUPY_MASTER_URL", master_url()},
                                            {"CLUPY_TOKEN_FILE", token_file()}};
  write_file(dir_.file("ship.yaml"), ship);
  auto with_file = env;
  with_file["CLUPY_DEPENDENCY_FILE"] = dir_.file("ship.yaml");
  ChildProcess shipping({{DEPS_TASK_PROGRAM, "30"}, with_file, dir_.path(), dir_.file("a.out")});
  ChildProcess plain({{DEPS_TASK_PROGRAM, "30"}, env, dir_.path(), dir_.file("b.out")});
  ASSERT_TRUE(shipping.wait(120s));
  ASSERT_TRUE(plain.wait(120s));
  auto a = lines_starting(shipping.log(), "RESULT");
  auto b = lines_starting(plain.log(), "RESULT");
  ASSERT_EQ(a.size(), 30u) << shipping.log() << "\nmaster log:\n" << master_.log();
  ASSERT_EQ(b.size(), 30u) << plain.log();
  for (const auto& line : a) EXPECT_EQ(line, "RESULT ship-a package=missing shipped=41");
  for (const auto& line : b) EXPECT_EQ(line, "RESULT ship-a package=missing shipped=missing");

  // And after it, a job without the file still does not see it.
  const std::string later = run(DEPS_TASK_PROGRAM, "later", {"4"}, "");
  for (const auto& line : lines_starting(later, "RESULT"))
    EXPECT_EQ(line, "RESULT ship-a package=missing shipped=missing");
  EXPECT_EQ(lines_starting(later, "RESULT").size(), 4u) << later;
}

TEST_F(ShippedLibrariesTest, TheMastersPolicyRefusesLibrariesSayingWhy) {
  start_cluster("");  // allow_client_libraries: false, the default
  std::string out = run(NEEDS_PROGRAM, "refused", {}, kShipNeeds);
  EXPECT_NE(out.find("REFUSED the master refused the job: this master takes no libraries from "
                     "jobs (allow_client_libraries: false): libclupytestprivate.so.1, "
                     "libclupytestver.so.1; ask its operator to ship them in the dependency "
                     "manifest's libraries: or to set allow_client_libraries: true"),
            std::string::npos)
      << out;
  EXPECT_TRUE(lines_starting(out, "RESULT").empty()) << out;
  EXPECT_EQ(out.find("uploaded "), std::string::npos) << out;  // nothing was sent

  change_manifest("allow_client_libraries: true\nclient_library_max_size: 1KiB\n");
  out = run(NEEDS_PROGRAM, "too-large", {}, kShipNeeds);
  const auto size = fs::file_size(PRIVATE_LIBRARY);
  EXPECT_NE(out.find("REFUSED the master refused the job: library libclupytestprivate.so.1 is " +
                     std::to_string(size) +
                     " bytes, more than this master takes from a job (client_library_max_size: "
                     "1024 bytes)"),
            std::string::npos)
      << out;

  // A soname this program did not load is the client's own error, before it asks anyone.
  out = run(NEEDS_PROGRAM, "not-loaded", {}, "libraries:\n  - soname: libnothere.so.7\n");
  EXPECT_NE(out.find("libraries: libnothere.so.7 is not loaded by this program"), std::string::npos)
      << out;
}

TEST_F(ShippedLibrariesTest, ALibraryThatArrivesDamagedIsNotUsed) {
  start_cluster("allow_client_libraries: true\n");
  const std::string ship = "libraries:\n  - path: " + std::string(SHIPPED_LIBRARY) + "\n";
  std::string out = run(DEPS_TASK_PROGRAM, "first", {"2"}, ship);
  ASSERT_EQ(lines_starting(out, "RESULT ship-a package=missing shipped=41").size(), 2u) << out;

  // The master's stored copy is damaged on its disk (same size) and the server's copy is gone:
  // the server fetches it again, finds the bytes do not match their SHA-256, and keeps nothing.
  const std::string digest = base::to_hex(base::sha256(read_file(SHIPPED_LIBRARY)));
  std::string bytes = read_file(dir_.file("data/images/" + digest));
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 0x5a;
  write_file(dir_.file("data/images/" + digest), bytes);
  fs::remove(server_libraries() + "/" + digest);
  out = run(DEPS_TASK_PROGRAM, "damaged", {"2"}, ship);
  EXPECT_TRUE(lines_starting(out, "RESULT").empty()) << out;
  EXPECT_NE(out.find("no server can install this job's libraries: server ship-a: "
                     "libclupytestshipped.so.1: failed: the fetched bytes do not match the "
                     "library's SHA-256"),
            std::string::npos)
      << out << "\nserver log:\n"
      << server_log();
  EXPECT_FALSE(fs::exists(server_libraries() + "/" + digest));
  for (const auto& entry : fs::directory_iterator(server_libraries()))
    EXPECT_EQ(entry.path().filename().string().find(".part-"), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace clupy::test

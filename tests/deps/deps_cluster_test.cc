// Dependencies on a real cluster: a `clupy --master` with a dependency manifest and `clupy
// --serve` daemons that sync to it by installing real .deb packages (built here with dpkg-deb)
// from a local folder with dpkg -i, and by fetching a library from the master. Installs go into
// this machine's dpkg database, so every package is named clupy-test-* and purged before and
// after each case; nothing else is touched.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cluster_fixture.hpp"
#include "deps/command.hpp"
#include "deps/debian.hpp"

namespace clupy::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* const kPackages[] = {"clupy-test-libfeat", "clupy-test-badpostinst",
                                 "clupy-test-slowinst"};

// Runs a shell command for the test's own set-up; fails the test with its output otherwise.
void sh(const std::string& command) {
  std::string output;
  const auto result = deps::run_query({"/bin/sh", "-c", command + " 2>&1"}, output, 120s);
  ASSERT_TRUE(result.succeeded()) << command << ": " << result.describe() << "\n" << output;
}

// Leaves no trace of the test packages in dpkg's database, whatever state an interrupted
// install left them in (an installer killed at its timeout leaves one "reinstall required").
void purge_test_packages() {
  for (const char* name : kPackages) {
    std::string ignored;  // purging a package that is not there fails; that is fine
    deps::run_query({"dpkg", "--purge", "--force-remove-reinstreq", name}, ignored, 120s);
    std::string status;
    EXPECT_FALSE(deps::run_query({"dpkg-query", "-s", name}, status).succeeded())
        << name << " is still known to dpkg after --purge:\n"
        << status;
  }
  std::string audit;
  deps::run_query({"dpkg", "--audit"}, audit);
  EXPECT_EQ(audit.find("clupy-test-"), std::string::npos) << audit;
}

class DepsClusterTest : public ClusterFixture {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests install .deb packages with dpkg and must run as "
                                  "root (tools/test.sh does)";
    purge_test_packages();
    repo_ = dir_.file("repo");  // the folder the install command installs from
    fs::create_directories(repo_);
    fs::create_directories(dir_.file("debs"));
    write_file(dir_.file("install.sh"),
               "#!/bin/sh\n"
               "# Installs the newest .deb of each named package from the test's folder, the way\n"
               "# apt would from a file: source.\n"
               "set -e\n"
               "files=\n"
               "for p in \"$@\"; do\n"
               "  f=$(ls " +
                   repo_ +
                   "/\"$p\"_*.deb 2>/dev/null | sort -V | tail -n 1)\n"
                   "  [ -n \"$f\" ] || { echo \"no package $p in " +
                   repo_ +
                   "\"; exit 100; }\n"
                   "  echo \"installing $f\"\n"
                   "  files=\"$files $f\"\n"
                   "done\n"
                   "exec dpkg -i $files\n");
  }
  void TearDown() override { purge_test_packages(); }

  // Builds clupy-test-<name>_<version>_all.deb into debs/ and returns its path. `library`
  // goes to /usr/lib/clupy-test/libclupytestfeat.so.1; `scripts` maps maintainer script names
  // (postinst, preinst) to their bodies.
  std::string build_deb(const std::string& name, const std::string& version,
                        const std::string& library, std::map<std::string, std::string> scripts) {
    const std::string root = dir_.file("build-" + name + "-" + version);
    fs::create_directories(root + "/DEBIAN");
    write_file(root + "/DEBIAN/control", "Package: " + name + "\nVersion: " + version +
                                             "\nArchitecture: all\nMaintainer: CluPy tests "
                                             "<tests@localhost>\nDescription: CluPy test "
                                             "package\n");
    for (const auto& [script, body] : scripts) {
      write_file(root + "/DEBIAN/" + script, "#!/bin/sh\n" + body + "\n");
      ::chmod((root + "/DEBIAN/" + script).c_str(), 0755);
    }
    if (!library.empty()) {
      fs::create_directories(root + "/usr/lib/clupy-test");
      fs::copy_file(library, root + "/usr/lib/clupy-test/libclupytestfeat.so.1");
    }
    const std::string deb = dir_.file("debs/" + name + "_" + version + "_all.deb");
    sh("dpkg-deb --root-owner-group --build " + root + " " + deb);
    return deb;
  }
  void publish(const std::string& deb) {
    fs::copy_file(deb, repo_ + "/" + fs::path(deb).filename().string());
  }

  void write_manifest(const std::string& body) {
    // Written whole and renamed, as an editor saving it would leave it.
    write_file(dir_.file("deps.yaml.tmp"), body);
    fs::rename(dir_.file("deps.yaml.tmp"), dir_.file("deps.yaml"));
  }
  std::string manifest(const std::string& packages, const std::string& extra = "") {
    return "packages:\n" + packages + "install_command: \"sh " + dir_.file("install.sh") +
           " {packages}\"\n" + extra;
  }
  void start_master_with_manifest() {
    start_master({"--dependency-file", dir_.file("deps.yaml"), "--data-dir", dir_.file("data")});
  }
  void start_syncing_server(const std::string& id) { start_server(id, {"--capacity", "2"}); }

  // The server's entry in the registry, once `predicate` holds for it.
  std::optional<ServerStatus> server_when(const std::string& id,
                                          const std::function<bool(const ServerStatus&)>& predicate,
                                          std::chrono::milliseconds timeout,
                                          const std::string& what) {
    std::optional<ServerStatus> found;
    const auto waited = wait_until(
        [&] {
          auto s = status();
          if (!s) return false;
          for (const auto& server : s->servers)
            if (server.server_id == id && predicate(server)) {
              found = server;
              return true;
            }
          return false;
        },
        timeout, what);
    if (!waited) {
      ADD_FAILURE() << waited.message() << "\nmaster log:\n"
                    << master_.log() << "\nserver log:\n"
                    << read_file(dir_.file(id + ".log"));
    }
    return found;
  }
  static const DependencyStatus* item(const ServerStatus& server, const std::string& name) {
    for (const auto& d : server.dependencies)
      if (d.name == name) return &d;
    return nullptr;
  }
  std::vector<std::string> results_of(const std::string& output) {
    std::vector<std::string> lines;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("RESULT ", 0) == 0 || line.rfind("FAILURE ", 0) == 0) lines.push_back(line);
    return lines;
  }

  std::string repo_;
};

TEST_F(DepsClusterTest, ServersInstallPackagesAndFetchLibrariesThenRunTasks) {
  publish(build_deb("clupy-test-libfeat", "1.0", FEATURE_V1, {}));
  fs::copy_file(SHIPPED_LIBRARY, dir_.file("libclupytestshipped.so.1"));
  write_manifest(manifest("  - name: clupy-test-libfeat\n    version: \">= 1.0\"\n",
                          "libraries:\n  - path: libclupytestshipped.so.1\n"));
  start_master_with_manifest();
  start_syncing_server("deps-a");
  auto synced = server_when(
      "deps-a", [](const ServerStatus& s) { return s.dependency_state == "satisfied"; }, 60s,
      "deps-a to install its dependencies");
  ASSERT_TRUE(synced);
  const DependencyStatus* package = item(*synced, "clupy-test-libfeat");
  ASSERT_NE(package, nullptr);
  EXPECT_EQ(package->state, "installed");
  EXPECT_EQ(package->version, "1.0");
  EXPECT_EQ(package->required, ">= 1.0");
  const DependencyStatus* library = item(*synced, "libclupytestshipped.so.1");
  ASSERT_NE(library, nullptr);
  EXPECT_EQ(library->kind, "library");
  EXPECT_EQ(library->state, "installed");
  EXPECT_EQ(deps::installed_version("clupy-test-libfeat"), "1.0");  // dpkg agrees

  // The workers load both: the package's file, and the shipped one through their library path.
  const auto results = results_of(run_client_program(DEPS_TASK_PROGRAM, "feature", {"4"}));
  ASSERT_EQ(results.size(), 4u);
  for (const auto& line : results) EXPECT_EQ(line, "RESULT deps-a package=1 shipped=41");

  // A second server finds the package present (same machine) and fetches the library anew into
  // its own cache.
  write_file(dir_.file("b.yaml"), "cache_dir: " + dir_.file("cache-b") + "\n");
  start_server("deps-b", {"--capacity", "1", "--config", dir_.file("b.yaml")});
  auto b = server_when(
      "deps-b", [](const ServerStatus& s) { return s.dependency_state == "satisfied"; }, 60s,
      "deps-b to sync");
  ASSERT_TRUE(b);
  EXPECT_EQ(item(*b, "clupy-test-libfeat")->state, "present");
  EXPECT_EQ(item(*b, "libclupytestshipped.so.1")->state, "installed");

  std::string info;
  ASSERT_EQ(run_cli({"info", "--master-url", master_url(), "--token-file", token_file()}, info), 0)
      << info;
  EXPECT_NE(info.find("  dependencies: satisfied (manifest "), std::string::npos) << info;
  EXPECT_NE(info.find("dependency manifest "), std::string::npos) << info;
  const std::string log = master_.log();
  EXPECT_NE(log.find("server deps-a: dependencies satisfied"), std::string::npos) << log;
  EXPECT_NE(read_file(dir_.file("deps-a.log")).find("package clupy-test-libfeat installed (1.0)"),
            std::string::npos);
}

// The names in a server's library cache: the cached files (by digest) and the folders (by
// manifest version).
std::set<std::string> cached(const std::string& libraries) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(libraries, ec))
    if (entry.is_regular_file()) names.insert(entry.path().filename().string());
  for (const auto& entry : fs::directory_iterator(libraries + "/sets", ec))
    names.insert("sets/" + entry.path().filename().string());
  return names;
}

TEST_F(DepsClusterTest, ReChecksRepairWhatWentMissingAndPruneLibrariesNoManifestNames) {
  publish(build_deb("clupy-test-libfeat", "1.0", FEATURE_V1, {}));
  fs::copy_file(SHIPPED_LIBRARY, dir_.file("libclupytestshipped.so.1"));
  write_manifest(manifest("  - name: clupy-test-libfeat\n",
                          "libraries:\n  - path: libclupytestshipped.so.1\n"));
  start_master_with_manifest();
  const std::string cache = dir_.file("cache-a");
  write_file(dir_.file("a.yaml"), "cache_dir: " + cache + "\ndependency_recheck_period: 300ms\n");
  start_server("deps-a", {"--capacity", "1", "--config", dir_.file("a.yaml")});
  auto first = server_when(
      "deps-a", [](const ServerStatus& s) { return s.dependency_state == "satisfied"; }, 60s,
      "deps-a to sync");
  ASSERT_TRUE(first);
  auto results = results_of(run_client_program(DEPS_TASK_PROGRAM, "feature-again", {"2"}));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& line : results) EXPECT_EQ(line, "RESULT deps-a package=1 shipped=41");
  const std::set<std::string> before = cached(cache + "/libraries");
  ASSERT_EQ(before.size(), 2u) << "one library file and one folder";

  // The shipped library changes: a new manifest, whose folder new workers get (the idle worker
  // of the first run is retired), and after three re-check periods the old file and folder go.
  fs::copy_file(FEATURE_V2, dir_.file("libclupytestshipped.so.1.new"));
  fs::rename(dir_.file("libclupytestshipped.so.1.new"), dir_.file("libclupytestshipped.so.1"));
  ASSERT_TRUE(server_when(
      "deps-a",
      [&](const ServerStatus& s) {
        return s.dependency_state == "satisfied" &&
               s.dependency_manifest != first->dependency_manifest;
      },
      60s, "deps-a to sync the changed library"));
  results = results_of(run_client_program(DEPS_TASK_PROGRAM, "feature", {"2"}));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& line : results) EXPECT_EQ(line, "RESULT deps-a package=1 shipped=2");
  std::set<std::string> after;
  EXPECT_TRUE(wait_until(
      [&] {
        after = cached(cache + "/libraries");
        return after.size() == 2 && std::none_of(before.begin(), before.end(),
                                                 [&](auto& name) { return after.contains(name); });
      },
      30s, "the first manifest's library and folder to be pruned"))
      << read_file(dir_.file("deps-a.log"));
  const std::string log = read_file(dir_.file("deps-a.log"));
  EXPECT_NE(log.find("removed the library folder"), std::string::npos) << log;
  EXPECT_NE(log.find("removed the cached library"), std::string::npos) << log;

  // Somebody removes the package by hand: the next re-check notices and installs it again.
  sh("dpkg --purge clupy-test-libfeat");
  EXPECT_TRUE(wait_until(
      [&] {
        return read_file(dir_.file("deps-a.log"))
                       .find(
                           "dependencies changed on this machine since the last sync "
                           "(clupy-test-libfeat: failed: not installed)") != std::string::npos &&
               deps::installed_version("clupy-test-libfeat") == "1.0";
      },
      60s, "deps-a to notice the removed package and install it again"))
      << read_file(dir_.file("deps-a.log"));
  auto repaired = server_when(
      "deps-a", [](const ServerStatus& s) { return s.dependency_state == "satisfied"; }, 60s,
      "deps-a to report the package installed again");
  ASSERT_TRUE(repaired);
  EXPECT_EQ(item(*repaired, "clupy-test-libfeat")->state, "installed");
}

TEST_F(DepsClusterTest, AManifestChangeUpgradesRunningServers) {
  publish(build_deb("clupy-test-libfeat", "1.0", FEATURE_V1, {}));
  const std::string v2 = build_deb("clupy-test-libfeat", "2.0", FEATURE_V2, {});
  write_manifest(manifest("  - name: clupy-test-libfeat\n"));
  start_master_with_manifest();
  // Three servers on one machine share its dpkg database: they take turns installing.
  const std::vector<std::string> ids = {"deps-a", "deps-b", "deps-c"};
  for (const auto& id : ids) start_server(id, {"--capacity", "1"});
  auto all_synced = [&](const std::string& not_manifest) {
    auto s = status();
    if (!s || s->servers.size() != ids.size() || s->dependency_manifest == not_manifest)
      return false;
    for (const auto& server : s->servers)
      if (server.dependency_state != "satisfied" ||
          server.dependency_manifest != s->dependency_manifest)
        return false;
    return true;
  };
  ASSERT_TRUE(wait_until([&] { return all_synced(""); }, 60s, "three servers to install 1.0"))
      << master_.log();
  auto first = status();
  ASSERT_TRUE(first);
  int installed = 0;
  for (const auto& server : first->servers) {
    const DependencyStatus* d = item(server, "clupy-test-libfeat");
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->version, "1.0");
    installed += d->state == "installed";
  }
  EXPECT_GE(installed, 1);  // one installed it; the others found it present or installed it too
  const std::string first_manifest = first->dependency_manifest;

  // A new version in the repository and a manifest that needs it: the running servers follow.
  publish(v2);
  const auto changed_at = std::chrono::steady_clock::now();
  write_manifest(manifest("  - name: clupy-test-libfeat\n    version: \">= 2.0\"\n"));
  ASSERT_TRUE(wait_until([&] { return all_synced(first_manifest); }, 60s,
                         "three servers to upgrade to 2.0"))
      << master_.log();
  const auto synced_in = std::chrono::steady_clock::now() - changed_at;
  std::printf("manifest change to 3 servers synced: %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(synced_in).count()));
  auto second = status();
  ASSERT_TRUE(second);
  for (const auto& server : second->servers) {
    const DependencyStatus* d = item(server, "clupy-test-libfeat");
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->version, "2.0") << server.server_id;
    EXPECT_TRUE(d->state == "installed" || d->state == "present") << d->state;
  }
  EXPECT_EQ(deps::installed_version("clupy-test-libfeat"), "2.0");
  const auto results = results_of(run_client_program(DEPS_TASK_PROGRAM, "feature", {"3"}));
  ASSERT_EQ(results.size(), 3u);
  for (const auto& line : results)
    EXPECT_NE(line.find(" package=2 shipped=missing"), std::string::npos) << line;

  // A bad edit is refused with file:line:key, on SIGHUP as on a change; the manifest stays.
  write_manifest(manifest("  - name: clupy-test-libfeat\n    versoin: 3\n"));
  master_.signal(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && !s->dependency_manifest_error.empty();
      },
      10s, "the master to refuse the bad manifest"));
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->dependency_manifest, second->dependency_manifest);
  EXPECT_EQ(s->dependency_manifest_error,
            dir_.file("deps.yaml") +
                ":3: key 'packages[0].versoin': unknown key (known keys: name, version)");
  EXPECT_NE(master_.log().find("not reloaded"), std::string::npos);
  for (const auto& server : s->servers) EXPECT_EQ(server.dependency_state, "satisfied");
}

TEST_F(DepsClusterTest, AFailedInstallIsReportedAndTheServerTakesNoTasksUntilFixed) {
  publish(build_deb("clupy-test-badpostinst", "1.0", "",
                    {{"postinst",
                      "echo 'configuring: cannot reach the license server' >&2\n"
                      "exit 7"}}));
  write_manifest(manifest("  - name: clupy-test-badpostinst\n"));
  start_master_with_manifest();
  start_syncing_server("deps-a");
  auto failed = server_when(
      "deps-a", [](const ServerStatus& s) { return s.dependency_state == "not satisfied"; }, 60s,
      "deps-a to report the failed install");
  ASSERT_TRUE(failed);
  const DependencyStatus* bad = item(*failed, "clupy-test-badpostinst");
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->state, "failed");
  EXPECT_EQ(bad->exit_code, 1);  // dpkg -i's, after the postinst's 7
  EXPECT_NE(bad->detail.find("the install command failed (exit code 1)"), std::string::npos)
      << bad->detail;
  EXPECT_NE(bad->detail.find("cannot reach the license server"), std::string::npos) << bad->detail;
  EXPECT_NE(failed->dependency_summary.find("clupy-test-badpostinst: failed: the install command "
                                            "failed (exit code 1)"),
            std::string::npos)
      << failed->dependency_summary;
  EXPECT_NE(master_.log().find("server deps-a: dependencies not satisfied"), std::string::npos);

  // A program's tasks wait: the only server takes none while it is not satisfied...
  ChildProcess program({{DEPS_TASK_PROGRAM, "2"},
                        {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                        dir_.path(),
                        dir_.file("waiting.out")});
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->queued_tasks == 2;
      },
      30s, "the program's tasks to be queued"));
  std::this_thread::sleep_for(1s);  // a chance to be (wrongly) dispatched
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->queued_tasks, 2u);
  EXPECT_EQ(s->running_tasks, 0u);
  EXPECT_EQ(results_of(read_file(dir_.file("waiting.out"))).size(), 0u);

  // ...and runs them as soon as the manifest no longer asks for what it cannot install.
  write_manifest(manifest(""));
  ASSERT_TRUE(program.wait(60s)) << "the program's tasks never ran";
  const auto results = results_of(read_file(dir_.file("waiting.out")));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& line : results) EXPECT_EQ(line.rfind("RESULT deps-a ", 0), 0u) << line;
}

TEST_F(DepsClusterTest, AnInstallPastItsTimeoutIsKilledShowingProgressFirst) {
  publish(build_deb("clupy-test-slowinst", "1.0", "",
                    {{"preinst", "echo 'preparing slowly'\nsleep 60"}}));
  write_manifest(manifest("  - name: clupy-test-slowinst\n", "install_timeout: 3s\n"));
  start_master_with_manifest();
  start_syncing_server("deps-a");
  // While it runs, the installer's last line shows.
  auto installing = server_when(
      "deps-a",
      [](const ServerStatus& s) {
        const DependencyStatus* d = item(s, "clupy-test-slowinst");
        return s.dependency_state == "syncing" && d != nullptr && d->state == "installing" &&
               d->detail == "preparing slowly";
      },
      30s, "the install's progress to show");
  ASSERT_TRUE(installing);
  const auto start = std::chrono::steady_clock::now();
  auto failed = server_when(
      "deps-a", [](const ServerStatus& s) { return s.dependency_state == "not satisfied"; }, 30s,
      "the install to be killed at its timeout");
  ASSERT_TRUE(failed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  const DependencyStatus* slow = item(*failed, "clupy-test-slowinst");
  ASSERT_NE(slow, nullptr);
  EXPECT_EQ(slow->state, "failed");
  EXPECT_EQ(slow->detail.rfind("killed after its 3s timeout (install_timeout)", 0), 0u)
      << slow->detail;
  EXPECT_NE(slow->detail.find("preparing slowly"), std::string::npos) << slow->detail;
  EXPECT_FALSE(deps::installed_version("clupy-test-slowinst"));
}

// Programs checked against servers (docs/dependencies.md#programs): a program linked to a
// library the servers lack is refused at init, naming the server and the library; shipped
// through the manifest, an older build of it (lacking a symbol version the program needs) is
// refused naming the version; the right build lets the program run, loading the shipped file.
TEST_F(DepsClusterTest, ProgramsAreCheckedAgainstWhatServersOffer) {
  write_manifest("");
  start_master_with_manifest();
  start_syncing_server("deps-a");
  ASSERT_TRUE(servers_become({"deps-a"}));
  auto run_needs_program = [&](const std::string& name, const std::string& check) {
    std::map<std::string, std::string> env = {{"CLUPY_MASTER_URL", master_url()},
                                              {"CLUPY_TOKEN_FILE", token_file()}};
    if (!check.empty()) env["CLUPY_DEPENDENCY_CHECK"] = check;
    ChildProcess program({{NEEDS_PROGRAM}, env, dir_.path(), dir_.file(name + ".out")});
    EXPECT_TRUE(program.wait(120s)) << name << " did not finish";
    return program.log();
  };

  std::string out = run_needs_program("missing", "");
  EXPECT_NE(out.find("REFUSED no server can run this program (dependency_check):\n  server "
                     "deps-a: libclupytestprivate.so.1 is missing; libclupytestver.so.1 is "
                     "missing"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("RESULT"), std::string::npos) << out;
  EXPECT_NE(master_.log().find("no server can run this program"), std::string::npos);

  // With the check off it runs here (this machine has the build tree the program points to).
  out = run_needs_program("unchecked", "off");
  EXPECT_NE(out.find("RESULT deps-a 2 " + std::string(PRIVATE_LIBRARY)), std::string::npos) << out;

  // Shipped by the master, but an older build of the versioned library.
  fs::copy_file(PRIVATE_LIBRARY, dir_.file("libclupytestprivate.so.1"));
  fs::copy_file(VERSIONED_V1, dir_.file("libclupytestver-1.so"));
  fs::copy_file(VERSIONED_V2, dir_.file("libclupytestver-2.so"));
  auto ship = [&](const std::string& versioned) {
    write_manifest("libraries:\n  - path: libclupytestprivate.so.1\n  - path: " + versioned +
                   "\n    name: libclupytestver.so.1\n");
    const auto before = status();
    ASSERT_TRUE(before);
    const auto changed_at = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_until(
        [&] {
          auto s = status();
          if (!s || s->dependency_manifest.empty() || s->servers.empty() ||
              s->dependency_manifest == before->dependency_manifest)
            return false;
          const auto& server = s->servers.front();
          return server.dependency_manifest == s->dependency_manifest &&
                 server.dependency_state == "satisfied";
        },
        60s, "deps-a to fetch the libraries"));
    std::printf("manifest with %s to server synced: %lld ms\n", versioned.c_str(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - changed_at)
                                           .count()));
  };
  ship("libclupytestver-1.so");
  out = run_needs_program("old-build", "");
  EXPECT_NE(out.find("REFUSED no server can run this program (dependency_check):\n  server "
                     "deps-a: needs CLUPYTEST_2.0 from libclupytestver.so.1; the newest it has is "
                     "CLUPYTEST_1.0"),
            std::string::npos)
      << out;

  ship("libclupytestver-2.so");
  out = run_needs_program("shipped", "");
  std::vector<std::string> results;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("RESULT ", 0) == 0) results.push_back(line);
  ASSERT_EQ(results.size(), 2u) << out;
  // The workers loaded the shipped copy, from the server's library folder.
  const std::string folder =
      fs::canonical(dir_.path()).string() + "/clupy-server-cache/libraries/sets/";
  EXPECT_EQ(results[0].rfind("RESULT deps-a 2 " + folder, 0), 0u) << results[0];
  EXPECT_EQ(results[1].rfind("RESULT deps-a 9 " + folder, 0), 0u) << results[1];
}

// ---- a job's own packages (clupy.client.dependency.yaml) ----------------------------------------

TEST_F(DepsClusterTest, AJobsOwnPackagesAreInstalledBeforeItsTasksRun) {
  publish(build_deb("clupy-test-libfeat", "1.0", FEATURE_V1, {}));
  write_manifest(manifest("", "allow_client_packages: true\n"));
  start_master_with_manifest();
  start_syncing_server("deps-a");
  ASSERT_TRUE(server_when(
      "deps-a", [](const ServerStatus&) { return true; }, 30s, "deps-a to register"));
  ASSERT_EQ(deps::installed_version("clupy-test-libfeat"), std::nullopt);
  // The program's working directory holds its dependency file.
  write_file(dir_.file("clupy.client.dependency.yaml"),
             "packages:\n  - name: clupy-test-libfeat\n    version: \">= 1.0\"\n");
  const std::string output = run_client_program(DEPS_TASK_PROGRAM, "own-packages", {"3"});
  const auto results = results_of(output);
  ASSERT_EQ(results.size(), 3u) << output << "\nmaster log:\n" << master_.log();
  for (const auto& line : results) EXPECT_EQ(line, "RESULT deps-a package=1 shipped=missing");
  EXPECT_EQ(deps::installed_version("clupy-test-libfeat"), "1.0");  // dpkg agrees
  EXPECT_NE(master_.log().find("server deps-a has the job's packages"), std::string::npos)
      << master_.log();
  EXPECT_NE(read_file(dir_.file("deps-a.log")).find("package clupy-test-libfeat installed (1.0)"),
            std::string::npos);

  // A server that registers while such a job is open is asked too, and takes its tasks once it
  // has them (present already here: the same machine).
  ChildProcess program({{DEPS_TASK_PROGRAM, "40"},
                        {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                        dir_.path(),
                        dir_.file("late.out")});
  write_file(dir_.file("b.yaml"), "cache_dir: " + dir_.file("cache-b") + "\n");
  start_server("deps-b", {"--capacity", "1", "--config", dir_.file("b.yaml")});
  ASSERT_TRUE(program.wait(120s));
  const std::string log = master_.log();
  EXPECT_NE(log.find("server deps-b has the job's packages"), std::string::npos) << log;
}

TEST_F(DepsClusterTest, AJobWhosePackagesNoServerCanInstallIsRefusedAtInit) {
  publish(build_deb("clupy-test-badpostinst", "1.0", "",
                    {{"postinst", "echo 'configuring: no licence' >&2\nexit 7"}}));
  write_manifest(manifest("", "allow_client_packages: true\n"));
  start_master_with_manifest();
  start_syncing_server("deps-a");
  ASSERT_TRUE(server_when(
      "deps-a", [](const ServerStatus&) { return true; }, 30s, "deps-a to register"));
  write_file(dir_.file("own.yaml"), "packages:\n  - name: clupy-test-badpostinst\n");
  ChildProcess program({{DEPS_TASK_PROGRAM, "2"},
                        {{"CLUPY_MASTER_URL", master_url()},
                         {"CLUPY_TOKEN_FILE", token_file()},
                         {"CLUPY_DEPENDENCY_FILE", dir_.file("own.yaml")}},
                        dir_.path(),
                        dir_.file("refused.out")});
  auto status = program.wait(120s);
  ASSERT_TRUE(status);
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  const std::string output = read_file(dir_.file("refused.out"));
  EXPECT_EQ(results_of(output).size(), 0u) << output;
  EXPECT_NE(output.find("no server can install this job's packages: server deps-a: "
                        "clupy-test-badpostinst: failed: the install command failed (exit code 1)"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("no licence"), std::string::npos) << output;
}

TEST_F(DepsClusterTest, AMasterThatTakesNoClientPackagesSaysSo) {
  write_manifest(manifest(""));  // allow_client_packages: false, the default
  start_master_with_manifest();
  start_syncing_server("deps-a");
  write_file(dir_.file("clupy.client.dependency.yaml"),
             "packages:\n  - name: clupy-test-libfeat\n");
  const std::string output = run_client_program(DEPS_TASK_PROGRAM, "policy", {"1"});
  EXPECT_EQ(results_of(output).size(), 0u) << output;
  EXPECT_NE(output.find("this master takes no packages from jobs that its dependency manifest "
                        "does not list (allow_client_packages: false): clupy-test-libfeat"),
            std::string::npos)
      << output;
  EXPECT_EQ(deps::installed_version("clupy-test-libfeat"), std::nullopt);  // nothing was installed
}

}  // namespace
}  // namespace clupy::test

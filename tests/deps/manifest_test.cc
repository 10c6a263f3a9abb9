// The dependency manifest's parsing, versions and reloading; dpkg's version comparison and the
// installer runner, for real (dpkg and /bin/sh are on every Debian machine).
#include "deps/manifest.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "clupy/errors.hpp"
#include "deps/command.hpp"
#include "deps/debian.hpp"
#include "deps/package_sync.hpp"
#include "master/dependencies.hpp"
#include "support/process.hpp"

namespace clupy::deps {
namespace {

using test::TempDir;
using test::write_file;

std::string error_of(const std::string& yaml, const std::string& dir = "/nonexistent") {
  try {
    parse_manifest(yaml, "deps.yaml", dir);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ManifestTest, ParsesEveryKey) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("lib"));
  write_file(dir.file("lib/libfeatures.so.2"), "ELF pretend");
  const Manifest m = parse_manifest(
      "packages:\n"
      "  - name: libopenblas0\n"
      "    version: \">= 0.3\"\n"
      "  - name: zlib1g\n"
      "  - name: libfoo1\n"
      "    version: 1.2\n"
      "  - name: libbar2:amd64\n"
      "    version: \"< 2\"\n"
      "libraries:\n"
      "  - path: ./lib/libfeatures.so.2\n"
      "  - path: lib/libfeatures.so.2\n"
      "    name: libfeatures.so\n"
      "install_command: \"apt-get install -y {packages}\"\n"
      "install_timeout: 90s\n"
      "allow_client_packages: true\n"
      "allow_client_libraries: true\n"
      "client_library_max_size: 16MiB\n",
      "deps.yaml", dir.path());
  ASSERT_EQ(m.packages.size(), 4u);
  EXPECT_EQ(m.packages[0], (PackageRequirement{"libopenblas0", ">=", "0.3"}));
  EXPECT_EQ(m.packages[1], (PackageRequirement{"zlib1g", "", ""}));
  EXPECT_EQ(m.packages[2], (PackageRequirement{"libfoo1", ">=", "1.2"}));  // bare: that or newer
  EXPECT_EQ(m.packages[3], (PackageRequirement{"libbar2:amd64", "<<", "2"}));
  EXPECT_EQ(m.packages[0].describe(), "libopenblas0 (>= 0.3)");
  ASSERT_EQ(m.libraries.size(), 2u);
  EXPECT_EQ(m.libraries[0].name, "libfeatures.so.2");
  EXPECT_EQ(m.libraries[0].path, dir.file("lib/libfeatures.so.2"));
  EXPECT_EQ(m.libraries[0].sha256, base::sha256("ELF pretend"));
  EXPECT_EQ(m.libraries[0].size, 11u);
  EXPECT_EQ(m.libraries[1].name, "libfeatures.so");
  EXPECT_EQ(m.install_command, "apt-get install -y {packages}");
  EXPECT_EQ(m.install_timeout, std::chrono::seconds(90));
  EXPECT_TRUE(m.allow_client_packages);
  EXPECT_TRUE(m.allow_client_libraries);
  EXPECT_EQ(m.client_library_max_size, std::size_t{16} << 20);
  EXPECT_EQ(m.version.size(), 64u);

  wire::DependencyManifest announced;
  to_wire(m, announced);
  EXPECT_EQ(announced.version(), m.version);
  EXPECT_EQ(announced.packages_size(), 4);
  EXPECT_EQ(announced.libraries(1).sha256(), base::sha256("ELF pretend"));
  EXPECT_EQ(announced.install_timeout_ms(), 90'000u);
  EXPECT_EQ(packages_of(announced), m.packages);
}

TEST(ManifestTest, DefaultsAndEmptyFileMeanNothingRequired) {
  const Manifest m = parse_manifest("# nothing yet\n", "deps.yaml", "/");
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.version, "");
  EXPECT_EQ(m.install_command, kDefaultInstallCommand);
  EXPECT_EQ(m.install_timeout, std::chrono::minutes(10));
  EXPECT_FALSE(m.allow_client_packages);
  EXPECT_FALSE(m.allow_client_libraries);
  EXPECT_EQ(m.client_library_max_size, std::size_t{64} << 20);
  wire::DependencyManifest announced;
  to_wire(m, announced);
  EXPECT_EQ(announced.version(), "");
}

TEST(ManifestTest, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of("packages:\n  - name: libfoo1\n    verison: 1\n"),
            "deps.yaml:3: key 'packages[0].verison': unknown key (known keys: name, version)");
  EXPECT_EQ(error_of("packages:\n  - name: zlib1g\n  - name: LibFoo\n"),
            "deps.yaml:3: key 'packages[1]': 'LibFoo' is not a Debian package name (lower-case "
            "letters, digits, + - ., at least two characters, optionally :arch)");
  EXPECT_EQ(error_of("packages:\n  - name: \"libfoo1; rm -rf /\"\n"),
            "deps.yaml:2: key 'packages[0]': 'libfoo1; rm -rf /' is not a Debian package name "
            "(lower-case letters, digits, + - ., at least two characters, optionally :arch)");
  EXPECT_EQ(error_of("packages:\n  - name: libfoo1\n    version: \">= abc\"\n"),
            "deps.yaml:2: key 'packages[0]': version 'abc' must start with a digit (Debian's "
            "rule)");
  EXPECT_EQ(error_of("packages:\n  - name: zlib1g\n  - name: zlib1g\n"),
            "deps.yaml:3: key 'packages[1]': package 'zlib1g' is listed twice");
  EXPECT_EQ(error_of("install_timeout: soon\n").rfind("deps.yaml:1: key 'install_timeout': ", 0),
            0u);
  EXPECT_EQ(error_of("install_command: apt-get install -y\n"),
            "deps.yaml:1: key 'install_command': must contain {packages}, where the names to "
            "install go");
  EXPECT_EQ(error_of("\nlibraries:\n  - path: lib/missing.so\n"),
            "deps.yaml:3: key 'libraries[0]': '/nonexistent/lib/missing.so' is not a readable "
            "file: No such file or directory");
  EXPECT_EQ(error_of("extra: 1\n").rfind("deps.yaml:1: key 'extra': unknown key", 0), 0u);
  EXPECT_EQ(error_of("packages: [\n"), "deps.yaml:2: end of sequence flow not found");
}

TEST(ManifestTest, VersionFollowsContentNotFormatting) {
  TempDir dir;
  write_file(dir.file("libx.so.1"), "one");
  const std::string text = "packages:\n  - name: zlib1g\nlibraries:\n  - path: libx.so.1\n";
  const Manifest a = parse_manifest(text, "a", dir.path());
  const Manifest b =
      parse_manifest("# a comment\n" + text + "allow_client_packages: true\n", "b", dir.path());
  EXPECT_EQ(a.version, b.version);
  write_file(dir.file("libx.so.1"), "two");  // a new build of the library
  const Manifest c = parse_manifest(text, "c", dir.path());
  EXPECT_NE(a.version, c.version);
  const Manifest d = parse_manifest(text + "install_timeout: 1m\n", "d", dir.path());
  EXPECT_NE(c.version, d.version);
}

TEST(ManifestKeeperTest, BadReloadKeepsThePreviousManifestAndSaysWhy) {
  TempDir dir;
  const std::string path = dir.file("clupy.master.dependency.yaml");
  write_file(path, "packages:\n  - name: zlib1g\n");
  master::ManifestKeeper keeper(path, dir.file("data"));
  const std::string first = keeper.version();
  ASSERT_EQ(first.size(), 64u);
  EXPECT_EQ(keeper.announcement().packages(0).name(), "zlib1g");

  write_file(path, "packages:\n  - name: zlib1g\n    versoin: 1\n");
  EXPECT_FALSE(keeper.reload("test"));
  EXPECT_EQ(keeper.version(), first);
  EXPECT_EQ(keeper.last_error(),
            path + ":3: key 'packages[0].versoin': unknown key (known keys: name, version)");

  write_file(path, "packages:\n  - name: zlib1g\n    version: \">= 1\"\n");
  EXPECT_TRUE(keeper.reload("test"));
  EXPECT_NE(keeper.version(), first);
  EXPECT_EQ(keeper.last_error(), "");
  EXPECT_EQ(keeper.announcement().packages(0).relation(), ">=");
}

TEST(ManifestKeeperTest, NoticesChangesOfTheFileAndItsLibraries) {
  TempDir dir;
  const std::string path = dir.file("deps.yaml");
  write_file(dir.file("libx.so.1"), "one");
  write_file(path, "libraries:\n  - path: libx.so.1\n");
  master::ManifestKeeper keeper(path, dir.file("data"));
  const std::string first = keeper.version();
  EXPECT_FALSE(keeper.reload_if_changed());
  // The stored copy is what servers get, whatever happens to the source later.
  const auto stored = keeper.library_file(base::sha256("one"));
  ASSERT_TRUE(stored);
  EXPECT_EQ(test::read_file(*stored), "one");

  write_file(dir.file("libx.so.1"), "a new build");
  EXPECT_TRUE(keeper.reload_if_changed());
  EXPECT_NE(keeper.version(), first);
  EXPECT_EQ(test::read_file(*keeper.library_file(base::sha256("a new build"))), "a new build");
  EXPECT_TRUE(keeper.library_file(base::sha256("one")));  // servers still syncing may want it
}

TEST(ManifestKeeperTest, WithoutAFileNothingIsRequired) {
  TempDir dir;
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  master::ManifestKeeper keeper("", dir.file("data"));
  EXPECT_EQ(keeper.version(), "");
  wire::DependencyReport nothing;
  EXPECT_TRUE(keeper.satisfied_by(nothing));
  // The default file appearing later is picked up.
  write_file("clupy.master.dependency.yaml", "packages:\n  - name: zlib1g\n");
  EXPECT_TRUE(keeper.reload_if_changed());
  EXPECT_EQ(keeper.version().size(), 64u);
  EXPECT_FALSE(keeper.satisfied_by(nothing));
  std::filesystem::current_path(cwd);
}

TEST(DebianVersionTest, ComparesTheWayDpkgDoes) {
  EXPECT_TRUE(version_satisfies("0.3.21+ds-4", ">=", "0.3"));  // a patch release is fine
  EXPECT_TRUE(version_satisfies("1.0-1", ">=", "1.0"));
  EXPECT_FALSE(version_satisfies("1.0~rc1", ">=", "1.0"));  // ~ sorts before release
  EXPECT_TRUE(version_satisfies("1:0.9", ">>", "2.0"));     // the epoch wins
  EXPECT_TRUE(version_satisfies("1.10", ">>", "1.9"));      // numeric, not text
  EXPECT_TRUE(version_satisfies("2.0", "=", "2.0"));
  EXPECT_FALSE(version_satisfies("2.0", "<<", "2.0"));
  EXPECT_TRUE(version_satisfies("2.0", "<=", "2.0"));
  EXPECT_FALSE(version_satisfies("2.0", "~", "2.0"));  // not a relation
  EXPECT_TRUE(requirement_met({"x", "", ""}, std::string("0")));
  EXPECT_FALSE(requirement_met({"x", "", ""}, std::nullopt));
}

TEST(DebianVersionTest, ReadsDpkgsDatabase) {
  // dpkg itself is installed on every Debian machine, and owns /usr/bin/dpkg.
  const auto version = installed_version("dpkg");
  ASSERT_TRUE(version);
  EXPECT_TRUE(version_satisfies(*version, ">=", "1.16"));
  EXPECT_FALSE(installed_version("clupy-test-never-installed"));
  EXPECT_EQ(owning_package("/usr/bin/dpkg"), "dpkg");
  const auto items = check_packages(
      {{"dpkg", ">=", "1.0"}, {"dpkg", ">>", "999"}, {"clupy-test-never-installed", "", ""}});
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].state(), wire::DependencyItem::PRESENT);
  EXPECT_EQ(items[0].version(), *version);
  EXPECT_EQ(items[1].state(), wire::DependencyItem::FAILED);
  EXPECT_EQ(items[1].detail(), *version + " installed, needs >> 999");
  EXPECT_EQ(items[2].detail(), "not installed");
  EXPECT_FALSE(all_satisfied(items));
  EXPECT_EQ(summarize(items), "dpkg: failed: " + *version +
                                  " installed, needs >> 999; clupy-test-never-installed: failed: "
                                  "not installed");
}

TEST(InstallCommandTest, NamesAreQuotedIntoThePlaceholder) {
  EXPECT_EQ(install_command_for("apt-get install -y {packages} && echo {packages}",
                                {{"libfoo1", ">=", "1"}, {"zlib1g", "", ""}}),
            "apt-get install -y 'libfoo1' 'zlib1g' && echo 'libfoo1' 'zlib1g'");
  EXPECT_THROW(install_command_for("x {packages}", {{"a$(id)", "", ""}}), ConfigError);
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
}

std::string client_error_of(const std::string& yaml) {
  try {
    parse_client_dependencies(yaml, "clupy.client.dependency.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ClientDependenciesTest, PackagesFollowTheManifestsRules) {
  const ClientDependencies d = parse_client_dependencies(
      "packages:\n  - name: libfoo1\n    version: \">= 1.2\"\n  - name: zlib1g\n",
      "clupy.client.dependency.yaml");
  ASSERT_EQ(d.packages.size(), 2u);
  EXPECT_EQ(d.packages[0], (PackageRequirement{"libfoo1", ">=", "1.2"}));
  EXPECT_EQ(d.packages[1], (PackageRequirement{"zlib1g", "", ""}));
  EXPECT_TRUE(parse_client_dependencies("# nothing\n", "x.yaml").packages.empty());

  EXPECT_EQ(client_error_of("packages:\n  - name: libfoo1\n    verison: 1\n"),
            "clupy.client.dependency.yaml:3: key 'packages[0].verison': unknown key (known keys: "
            "name, version)");
  EXPECT_EQ(client_error_of("packages:\n  - name: \"libfoo1; rm -rf /\"\n"),
            "clupy.client.dependency.yaml:2: key 'packages[0]': 'libfoo1; rm -rf /' is not a "
            "Debian package name (lower-case letters, digits, + - ., at least two characters, "
            "optionally :arch)");
  EXPECT_EQ(client_error_of("install_command: \"sh x {packages}\"\n"),
            "clupy.client.dependency.yaml:1: key 'install_command': unknown key (known keys: "
            "packages, libraries)");
}

TEST(ClientDependenciesTest, LibrariesAreNamedBySonameOrByPath) {
  const ClientDependencies d = parse_client_dependencies(
      "libraries:\n"
      "  - soname: libonly_here.so.1\n"
      "  - path: build/libextra.so.2.1\n"
      "  - path: /opt/lib/libmodel.so\n"
      "    name: libmodel.so.3\n",
      "clupy.client.dependency.yaml", "/work/app");
  ASSERT_EQ(d.libraries.size(), 3u);
  EXPECT_EQ(d.libraries[0].soname, "libonly_here.so.1");
  EXPECT_EQ(d.libraries[0].name, "libonly_here.so.1");
  EXPECT_EQ(d.libraries[0].path, "");
  EXPECT_EQ(d.libraries[1].path, "/work/app/build/libextra.so.2.1");  // the file's folder
  EXPECT_EQ(d.libraries[1].name, "");  // its DT_SONAME, read when the client loads it
  EXPECT_EQ(d.libraries[2].path, "/opt/lib/libmodel.so");
  EXPECT_EQ(d.libraries[2].name, "libmodel.so.3");

  EXPECT_EQ(client_error_of("libraries:\n  - soname: libx.so.1\n    path: libx.so.1\n"),
            "clupy.client.dependency.yaml:2: key 'libraries[0]': a library is named by exactly "
            "one of soname (as this program loaded it) or path");
  EXPECT_EQ(client_error_of("libraries:\n  - name: libx.so.1\n"),
            "clupy.client.dependency.yaml:2: key 'libraries[0]': a library is named by exactly "
            "one of soname (as this program loaded it) or path");
  EXPECT_EQ(client_error_of("libraries:\n  - soname: ../libx.so.1\n"),
            "clupy.client.dependency.yaml:2: key 'libraries[0]': '../libx.so.1' is not a soname");
  EXPECT_EQ(client_error_of("libraries:\n  - path: a.so\n    name: sub/a.so\n"),
            "clupy.client.dependency.yaml:2: key 'libraries[0]': 'sub/a.so' is not a file name");
  EXPECT_EQ(client_error_of("libraries:\n  - soname: libx.so.1\n    sonme: y\n"),
            "clupy.client.dependency.yaml:3: key 'libraries[0].sonme': unknown key (known keys: "
            "soname, path, name)");
}

TEST(ClientDependenciesTest, TheLibrarySetDigestIgnoresOrder) {
  wire::JobPackagesRequest a;
  auto add = [](wire::JobPackagesRequest& r, const std::string& name, const std::string& bytes) {
    auto* l = r.add_libraries();
    l->set_name(name);
    l->set_sha256(base::sha256(bytes));
  };
  add(a, "liba.so.1", "A");
  add(a, "libb.so.1", "B");
  wire::JobPackagesRequest b;
  add(b, "libb.so.1", "B");
  add(b, "liba.so.1", "A");
  wire::JobPackagesRequest c;
  add(c, "liba.so.1", "A");
  add(c, "libb.so.1", "B2");
  EXPECT_EQ(library_set_digest(a.libraries()).size(), 32u);
  EXPECT_EQ(library_set_digest(a.libraries()), library_set_digest(b.libraries()));
  EXPECT_NE(library_set_digest(a.libraries()), library_set_digest(c.libraries()));
  EXPECT_EQ(library_set_digest(wire::JobPackagesRequest().libraries()), "");
}

TEST(CommandTest, ReportsLinesExitCodeAndTail) {
  std::vector<std::string> lines;
  CommandOptions options;
  options.on_line = [&](const std::string& line) { lines.push_back(line); };
  const CommandResult result =
      run_shell_command("echo first; echo second >&2; printf 'no newline'; exit 3", options);
  EXPECT_TRUE(result.started);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_FALSE(result.succeeded());
  EXPECT_EQ(result.describe(), "exit code 3");
  EXPECT_EQ(lines, (std::vector<std::string>{"first", "second", "no newline"}));
  EXPECT_EQ(result.last_line, "no newline");
  EXPECT_EQ(result.output_tail, "first\nsecond\nno newline");
  const CommandResult env = run_shell_command("echo $DEBIAN_FRONTEND", {});
  EXPECT_EQ(env.last_line, "noninteractive");  // an installer never waits for a question
}

TEST(CommandTest, TimeoutKillsTheWholeProcessGroup) {
  TempDir dir;
  const std::string pid_file = dir.file("child.pid");
  CommandOptions options;
  options.timeout = std::chrono::milliseconds(500);
  const auto start = std::chrono::steady_clock::now();
  // A grandchild that would outlive a kill of the shell alone.
  const CommandResult result =
      run_shell_command("sleep 60 & echo $! > " + pid_file + "; echo waiting; wait", options);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.error, "killed after its 500ms timeout (install_timeout)");
  EXPECT_EQ(result.last_line, "waiting");
  EXPECT_LT(took, std::chrono::seconds(10));
  const pid_t grandchild = std::stoi(test::read_file(pid_file));
  EXPECT_TRUE(test::wait_until([&] { return ::kill(grandchild, 0) != 0; }, std::chrono::seconds(5),
                               "the grandchild to be gone"));
}

TEST(CommandTest, CancelStopsIt) {
  std::atomic<bool> cancel{false};
  CommandOptions options;
  options.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  const CommandResult result = run_shell_command("sleep 60", options);
  canceller.join();
  EXPECT_TRUE(result.cancelled);
  EXPECT_EQ(result.signal, SIGKILL);
}

}  // namespace
}  // namespace clupy::deps

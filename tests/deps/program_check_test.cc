// Program checks: ELF needs and definitions read from real files built here, Debian version
// comparison held to dpkg itself, and the rules that compare a program with a server.
#include "deps/program_check.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "deps/debian.hpp"
#include "deps/elf_needs.hpp"

namespace clupy::deps {
namespace {

TEST(DebianVersionTest, InProcessComparisonAgreesWithDpkg) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"1.0", "1.0"},
      {"1.0", "1.0-1"},
      {"1.0-1", "1.0-2"},
      {"1.0~rc1", "1.0"},
      {"1:0.9", "2.0"},
      {"1.10", "1.9"},
      {"0.3.21+ds-4", "0.3"},
      {"2.36-9+deb12u4", "2.36-9"},
      {"1.0a", "1.0"},
      {"1.0+b1", "1.0"},
      {"1.0~~", "1.0~"},
      {"1.0.0", "1.0"},
      {"12.2.0-14", "12.2.0-14+deb12u1"},
      {"0:1.2", "1.2"},
      {"1.2-3ubuntu1", "1.2-3"},
      {"3.0.11-1~deb12u2", "3.0.11-1"},
      {"2:1.0", "1:9.9"},
      {"1.001", "1.1"},
      {"a", "b"}};
  for (const auto& [a, b] : pairs) {
    const int mine = compare_debian_versions(a, b);
    const bool less = version_satisfies(a, "<<", b);
    const bool equal = version_satisfies(a, "=", b);
    EXPECT_EQ(mine < 0, less) << a << " vs " << b;
    EXPECT_EQ(mine == 0, equal) << a << " vs " << b;
    EXPECT_EQ(compare_debian_versions(b, a) < 0, version_satisfies(b, "<<", a)) << b << " vs " << a;
  }
}

TEST(ElfNeedsTest, ReadsNeededSonamesAndSymbolVersions) {
  const ElfDependencies program = read_elf_dependencies(NEEDS_PROGRAM);
  EXPECT_EQ(program.soname, "");
  for (const char* soname : {"libclupytestprivate.so.1", "libclupytestver.so.1", "libc.so.6"})
    EXPECT_NE(std::find(program.needed.begin(), program.needed.end(), soname), program.needed.end())
        << soname;
  EXPECT_TRUE(program.version_needs.at("libclupytestver.so.1").contains("CLUPYTEST_2.0"));
  EXPECT_FALSE(program.version_needs.at("libc.so.6").empty());  // GLIBC_2.x

  const ElfDependencies v1 = read_elf_dependencies(VERSIONED_V1);
  const ElfDependencies v2 = read_elf_dependencies(VERSIONED_V2);
  EXPECT_EQ(v1.soname, "libclupytestver.so.1");
  EXPECT_EQ(v1.version_definitions, (std::set<std::string>{"CLUPYTEST_1.0"}));
  EXPECT_EQ(v2.version_definitions, (std::set<std::string>{"CLUPYTEST_1.0", "CLUPYTEST_2.0"}));
  EXPECT_EQ(newest_version(v2.version_definitions, "CLUPYTEST_"), "CLUPYTEST_2.0");
  EXPECT_EQ(newest_version({"GLIBC_2.9", "GLIBC_2.17", "GLIBC_PRIVATE"}, "GLIBC_"), "GLIBC_2.17");
  EXPECT_EQ(version_family("GLIBCXX_3.4.30"), "GLIBCXX_");
  EXPECT_THROW(read_elf_dependencies("/proc/self/status"), std::runtime_error);
}

TEST(ProgramCheckTest, ReadsThisProgramsNeedsWithPackages) {
  const wire::ProgramNeeds needs = read_program_needs("/proc/self/exe");
  const auto libc = std::find_if(needs.libraries().begin(), needs.libraries().end(),
                                 [](const auto& l) { return l.soname() == "libc.so.6"; });
  ASSERT_NE(libc, needs.libraries().end());
  EXPECT_NE(libc->path(), "");
  EXPECT_EQ(libc->package().rfind("libc6", 0), 0u) << libc->package();
  EXPECT_EQ(libc->package_version(), installed_version("libc6"));
  EXPECT_GT(libc->versions_size(), 0);
}

TEST(ProgramCheckTest, NeedsAreRememberedPerImageAndDpkgState) {
  char folder[] = "/tmp/clupy-needs-XXXXXX";
  ASSERT_NE(::mkdtemp(folder), nullptr);
  ::setenv("XDG_CACHE_HOME", folder, 1);
  const std::string sha(32, 'x');
  const wire::ProgramNeeds first = read_program_needs_cached("/proc/self/exe", sha);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator(std::string(folder) + "/clupy/needs"))
    ++files;
  EXPECT_EQ(files, 1u);
  const wire::ProgramNeeds again = read_program_needs_cached("/proc/self/exe", sha);
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(first.SerializeAsString(), read_program_needs("/proc/self/exe").SerializeAsString());
  ::unsetenv("XDG_CACHE_HOME");
  std::filesystem::remove_all(folder);
}

TEST(ProgramCheckTest, ReadsWhatThisMachineOffers) {
  const wire::ServerOffer offer = read_server_offer({});
  const auto libc = std::find_if(offer.libraries().begin(), offer.libraries().end(),
                                 [](const auto& l) { return l.soname() == "libc.so.6"; });
  ASSERT_NE(libc, offer.libraries().end());
  EXPECT_TRUE(libc->versions_known());
  EXPECT_NE(std::find(libc->versions().begin(), libc->versions().end(), "GLIBC_2.2.5"),
            libc->versions().end());
  EXPECT_EQ(libc->package().rfind("libc6", 0), 0u);
  // This process's own libraries count (libclupy is not in the loader's cache in a build tree).
  EXPECT_TRUE(std::any_of(offer.libraries().begin(), offer.libraries().end(),
                          [](const auto& l) { return l.soname() == "libclupy.so.0"; }));
  // The program's needs from this machine, against this machine: nothing differs.
  EXPECT_TRUE(compare_program(read_program_needs("/proc/self/exe"), offer).empty());
}

TEST(ProgramCheckTest, TheOfferIsRememberedUntilWhatItDependsOnChanges) {
  char folder[] = "/tmp/clupy-offer-XXXXXX";
  ASSERT_NE(::mkdtemp(folder), nullptr);
  ::setenv("XDG_CACHE_HOME", folder, 1);
  const std::string libraries = std::string(folder) + "/libraries";
  std::filesystem::create_directories(libraries);
  auto offers_soname = [](const wire::ServerOffer& offer, const std::string& soname) {
    return std::any_of(offer.libraries().begin(), offer.libraries().end(),
                       [&](const auto& l) { return l.soname() == soname; });
  };
  auto remembered_files = [&] {
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator(std::string(folder) + "/clupy/offer"))
      ++files;
    return files;
  };
  const wire::ServerOffer first = read_server_offer_cached({libraries});
  EXPECT_EQ(remembered_files(), 1u);
  EXPECT_EQ(first.SerializeAsString(), read_server_offer({libraries}).SerializeAsString());
  EXPECT_EQ(read_server_offer_cached({libraries}).SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(remembered_files(), 1u);
  // A library added to the folder is a new key: read again, and offered.
  std::filesystem::copy_file(std::filesystem::canonical("/proc/self/exe"),
                             libraries + "/libclupy_offer_test.so.1");
  const wire::ServerOffer after = read_server_offer_cached({libraries});
  EXPECT_EQ(remembered_files(), 2u);
  EXPECT_FALSE(offers_soname(first, "libclupy_offer_test.so.1"));
  EXPECT_TRUE(offers_soname(after, "libclupy_offer_test.so.1"));
  ::unsetenv("XDG_CACHE_HOME");
  std::filesystem::remove_all(folder);
}

wire::NeededLibrary need(const std::string& soname, const std::string& package,
                         const std::string& version, std::vector<std::string> versions = {}) {
  wire::NeededLibrary n;
  n.set_soname(soname);
  n.set_path("/usr/lib/" + soname);
  n.set_package(package);
  n.set_package_version(version);
  for (const auto& v : versions) n.add_versions(v);
  return n;
}

wire::OfferedLibrary offered(const std::string& soname, const std::string& package,
                             const std::string& version, std::vector<std::string> defined = {},
                             bool known = false) {
  wire::OfferedLibrary o;
  o.set_soname(soname);
  o.set_package(package);
  o.set_package_version(version);
  for (const auto& d : defined) o.add_versions(d);
  o.set_versions_known(known);
  return o;
}

TEST(ProgramCheckTest, RulesAreSemantic) {
  wire::ProgramNeeds needs;
  *needs.add_libraries() = need("libfoo.so.2", "libfoo2:amd64", "2.1-1");
  *needs.add_libraries() = need("libc.so.6", "libc6:amd64", "2.36-9", {"GLIBC_2.34", "GLIBC_2.38"});
  *needs.add_libraries() = need("libbar.so.1", "libbar1:amd64", "1.4-2");
  *needs.add_libraries() = need("libbaz.so.3", "libbaz3", "3.0-1");
  wire::ServerOffer offer;
  *offer.add_libraries() = offered("libfoo.so.1", "libfoo1", "1.9-1");
  *offer.add_libraries() = offered("libc.so.6", "libc6:amd64", "2.36-9",
                                   {"GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.36"}, true);
  *offer.add_libraries() = offered("libbar.so.1", "libbar1:amd64", "1.3-7");    // older
  *offer.add_libraries() = offered("libbaz.so.3", "libbaz3:amd64", "3.0.1-1");  // newer: fine
  const auto differences = compare_program(needs, offer);
  ASSERT_EQ(differences.size(), 3u);
  EXPECT_TRUE(differences[0].fatal());
  EXPECT_EQ(differences[0].text(),
            "libfoo.so.2 is missing (it has libfoo.so.1: a different major version); here it "
            "comes from libfoo2:amd64 2.1-1");
  EXPECT_TRUE(differences[1].fatal());
  EXPECT_EQ(differences[1].text(),
            "needs GLIBC_2.38 from libc.so.6; the newest it has is GLIBC_2.36");
  EXPECT_FALSE(differences[2].fatal());  // a patch level older: warned, not refused
  EXPECT_EQ(differences[2].text(), "libbar.so.1 comes from libbar1 1.3-7, older than 1.4-2 here");
  EXPECT_TRUE(refuses(differences, false));
  EXPECT_TRUE(refuses({differences[2]}, true));
  EXPECT_FALSE(refuses({differences[2]}, false));
  EXPECT_FALSE(refuses({}, true));
}

}  // namespace
}  // namespace clupy::deps

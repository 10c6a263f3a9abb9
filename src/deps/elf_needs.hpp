// What an ELF file asks of the dynamic loader and what it offers: its DT_NEEDED sonames, the
// symbol versions it requires from each (GLIBC_2.34 from libc.so.6, GLIBCXX_3.4.30 from
// libstdc++.so.6: ELF verneed), its own soname and the versions it defines (verdef). Read from
// the section headers; 64-bit little-endian files (the machines CluPy builds for).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace clupy::deps {

struct ElfDependencies {
  std::string soname;               // DT_SONAME; empty for an executable
  std::vector<std::string> needed;  // DT_NEEDED, in order
  // For each needed file, the version names required from it.
  std::map<std::string, std::set<std::string>> version_needs;
  std::set<std::string> version_definitions;  // verdef names, for a library
};

// Throws std::runtime_error naming the file and what is wrong with it.
ElfDependencies read_elf_dependencies(const std::string& path);

// "GLIBC_2.34" → {2, 34}; nullopt for a name without a dotted number after its prefix.
std::optional<std::vector<int>> version_numbers(const std::string& version_name);
// The prefix of a version name: "GLIBC_2.34" → "GLIBC_"; "GLIBCXX_3.4.30" → "GLIBCXX_".
std::string version_family(const std::string& version_name);
// The newest version a library defines in `family` ("GLIBC_"), by numeric comparison; "" if none.
std::string newest_version(const std::set<std::string>& definitions, const std::string& family);

}  // namespace clupy::deps

#include "deps/debian.hpp"

#include "deps/command.hpp"

namespace clupy::deps {

std::optional<std::string> installed_version(const std::string& name) {
  std::string out;
  const CommandResult result =
      run_query({"dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}\\n", name}, out);
  // dpkg-query exits 1 for a package it has never heard of.
  if (!result.succeeded()) return std::nullopt;
  // "ii |1.2-3": the first two letters are the wanted and the current state.
  const auto bar = out.find('|');
  if (bar == std::string::npos || out.size() < 2 || out.compare(0, 2, "ii") != 0)
    return std::nullopt;
  std::string version = out.substr(bar + 1);
  while (!version.empty() && (version.back() == '\n' || version.back() == ' ')) version.pop_back();
  if (version.find('\n') != std::string::npos) version.erase(version.find('\n'));
  return version;
}

bool version_satisfies(const std::string& installed, const std::string& relation,
                       const std::string& required) {
  static const std::pair<const char*, const char*> kOperators[] = {
      {"<<", "lt"}, {"<=", "le"}, {"=", "eq"}, {">=", "ge"}, {">>", "gt"}};
  const char* op = nullptr;
  for (const auto& [symbol, word] : kOperators)
    if (relation == symbol) op = word;
  if (op == nullptr) return false;
  std::string ignored;
  const CommandResult result =
      run_query({"dpkg", "--compare-versions", installed, op, required}, ignored);
  return result.succeeded();
}

bool requirement_met(const PackageRequirement& requirement,
                     const std::optional<std::string>& installed) {
  if (!installed) return false;
  if (requirement.relation.empty()) return true;
  return version_satisfies(*installed, requirement.relation, requirement.version);
}

std::optional<std::string> owning_package(const std::string& path) {
  std::string out;
  const CommandResult result = run_query({"dpkg-query", "-S", path}, out);
  if (!result.succeeded()) return std::nullopt;
  // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
  const auto sep = out.find(": ");
  if (sep == std::string::npos) return std::nullopt;
  std::string package = out.substr(0, sep);
  if (package.find(',') != std::string::npos) package.erase(package.find(','));
  return package;
}

}  // namespace clupy::deps

#include "deps/manifest.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "common/config_keys.hpp"

namespace clupy::deps {

namespace {

namespace fs = std::filesystem;
using common::KeyTable;
using common::located_error;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Debian version: [epoch:]upstream[-revision], upstream starting with a digit; the characters
// dpkg allows (deb-version(7)).
void check_version(const std::string& version) {
  if (version.empty()) throw ConfigError("the version is empty");
  std::string upstream = version;
  if (auto colon = version.find(':'); colon != std::string::npos) {
    const std::string epoch = version.substr(0, colon);
    if (epoch.empty() ||
        !std::all_of(epoch.begin(), epoch.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw ConfigError("version '" + version + "': the epoch before ':' must be a number");
    upstream = version.substr(colon + 1);
  }
  if (upstream.empty() || !(upstream[0] >= '0' && upstream[0] <= '9'))
    throw ConfigError("version '" + version + "' must start with a digit (Debian's rule)");
  for (char c : upstream)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '+' || c == '~' ||
          c == '-' || c == ':'))
      throw ConfigError("version '" + version + "' contains '" + std::string(1, c) +
                        "' (allowed: letters, digits and . + ~ - :)");
}

std::string canonical_text(const Manifest& m) {
  std::ostringstream out;
  for (const auto& p : m.packages)
    out << "package\t" << p.name << '\t' << p.relation << '\t' << p.version << '\n';
  for (const auto& l : m.libraries)
    out << "library\t" << l.name << '\t' << base::to_hex(l.sha256) << '\n';
  out << "install_command\t" << m.install_command << '\n';
  out << "install_timeout_ms\t" << m.install_timeout.count() << '\n';
  return out.str();
}

std::vector<PackageRequirement> parse_package_list(const YAML::Node& list,
                                                   const std::string& source_name) {
  if (!list.IsSequence() && !list.IsNull()) throw ConfigError("expected a list of {name, version}");
  std::vector<PackageRequirement> packages;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const YAML::Node item = list[i];
    std::string name;
    std::string version;
    KeyTable entry(source_name, "packages[" + std::to_string(i) + "]");
    entry.add("name", common::string_key(name));
    entry.add("version", common::string_key(version));
    entry.apply(item);
    try {
      if (name.empty()) throw ConfigError("a package needs a name");
      if (!seen.insert(name).second) throw ConfigError("package '" + name + "' is listed twice");
      packages.push_back(parse_requirement(name, version));
    } catch (const ConfigError& e) {
      throw located_error(source_name, item, "packages[" + std::to_string(i) + "]", e.what());
    }
  }
  return packages;
}

YAML::Node load_yaml(const std::string& yaml, const std::string& source_name) {
  try {
    return YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

std::string read_whole(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read " + what + " " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string PackageRequirement::describe() const {
  return relation.empty() ? name : name + " (" + relation + " " + version + ")";
}

void check_package_name(const std::string& name) {
  // Debian policy 5.6.1: lower-case letters, digits, + - . ; at least two characters, starting
  // with a letter or digit. An architecture qualifier (":amd64") is allowed.
  const std::string base = name.substr(0, name.find(':'));
  const bool ok = base.size() >= 2 && is_lower_alnum(base[0]) &&
                  std::all_of(base.begin(), base.end(), [](char c) {
                    return is_lower_alnum(c) || c == '+' || c == '-' || c == '.';
                  });
  const std::string arch =
      name.find(':') == std::string::npos ? "" : name.substr(name.find(':') + 1);
  const bool arch_ok = name.find(':') == std::string::npos ||
                       (!arch.empty() && std::all_of(arch.begin(), arch.end(), [](char c) {
                         return is_lower_alnum(c) || c == '-';
                       }));
  if (!ok || !arch_ok)
    throw ConfigError("'" + name +
                      "' is not a Debian package name (lower-case letters, digits, + - ., at "
                      "least two characters, optionally :arch)");
}

PackageRequirement parse_requirement(const std::string& name, const std::string& constraint) {
  check_package_name(name);
  PackageRequirement requirement{name, "", ""};
  std::string text = constraint;
  auto trim = [](std::string s) {
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string::npos) return std::string();
    return s.substr(first, s.find_last_not_of(" \t") - first + 1);
  };
  text = trim(text);
  if (text.empty()) return requirement;
  static const char* const kRelations[] = {"<<", "<=", ">=", ">>", "=", "<", ">"};
  std::string relation;
  for (const char* candidate : kRelations) {
    if (text.rfind(candidate, 0) == 0) {
      relation = candidate;
      break;
    }
  }
  std::string version = trim(text.substr(relation.size()));
  // "<" and ">" are strict here, as people mean them (dpkg's obsolete forms meant <= and >=).
  if (relation == "<") relation = "<<";
  if (relation == ">") relation = ">>";
  if (relation.empty()) relation = ">=";  // a bare version: that one or newer
  check_version(version);
  requirement.relation = relation;
  requirement.version = version;
  return requirement;
}

Manifest parse_manifest(const std::string& yaml, const std::string& source_name,
                        const std::string& base_dir) {
  const YAML::Node root = load_yaml(yaml, source_name);
  Manifest manifest;
  if (!root.IsNull()) {
    KeyTable table(source_name, "");
    table.add("packages", [&](const YAML::Node& list) {
      manifest.packages = parse_package_list(list, source_name);
    });
    table.add("libraries", [&](const YAML::Node& list) {
      if (!list.IsSequence() && !list.IsNull()) throw ConfigError("expected a list of {path}");
      std::set<std::string> seen;
      for (std::size_t i = 0; i < list.size(); ++i) {
        const YAML::Node item = list[i];
        const std::string key = "libraries[" + std::to_string(i) + "]";
        LibraryFile library;
        KeyTable entry(source_name, key);
        entry.add("path", common::string_key(library.path));
        entry.add("name", common::string_key(library.name));
        entry.apply(item);
        try {
          if (library.path.empty()) throw ConfigError("a library needs a path");
          fs::path path(library.path);
          if (path.is_relative()) path = fs::path(base_dir) / path;
          library.path = path.lexically_normal().string();
          if (library.name.empty()) library.name = path.filename().string();
          if (!is_library_file_name(library.name))
            throw ConfigError("'" + library.name + "' is not a file name");
          if (!seen.insert(library.name).second)
            throw ConfigError("two libraries are named '" + library.name + "'");
          std::error_code ec;
          if (!fs::is_regular_file(path, ec))
            throw ConfigError("'" + library.path + "' is not a readable file" +
                              (ec ? ": " + ec.message() : ""));
          auto digest = base::sha256_file(library.path);
          if (!digest) throw ConfigError("cannot read '" + library.path + "'");
          library.sha256 = *digest;
          library.size = fs::file_size(path);
          manifest.libraries.push_back(std::move(library));
        } catch (const ConfigError& e) {
          throw located_error(source_name, item, key, e.what());
        }
      }
    });
    table.add("install_command", [&](const YAML::Node& n) {
      manifest.install_command = common::scalar(n);
      if (manifest.install_command.find("{packages}") == std::string::npos)
        throw ConfigError("must contain {packages}, where the names to install go");
    });
    table.add("install_timeout", common::duration_key(manifest.install_timeout));
    table.add("allow_client_packages", common::bool_key(manifest.allow_client_packages));
    table.add("allow_client_libraries", common::bool_key(manifest.allow_client_libraries));
    table.add("client_library_max_size", common::size_key(manifest.client_library_max_size));
    table.apply(root);
  }
  if (manifest.install_timeout.count() > 0xffffffffLL)
    throw ConfigError(source_name + ": key 'install_timeout': at most 49 days");
  if (!manifest.empty()) manifest.version = base::to_hex(base::sha256(canonical_text(manifest)));
  return manifest;
}

Manifest load_manifest(const std::string& path) {
  const std::string dir = fs::absolute(fs::path(path)).parent_path().string();
  return parse_manifest(read_whole(path, "dependency manifest"), path, dir);
}

ClientDependencies parse_client_dependencies(const std::string& yaml,
                                             const std::string& source_name,
                                             const std::string& base_dir) {
  const YAML::Node root = load_yaml(yaml, source_name);
  ClientDependencies dependencies;
  if (root.IsNull()) return dependencies;
  KeyTable table(source_name, "");
  table.add("packages", [&](const YAML::Node& list) {
    dependencies.packages = parse_package_list(list, source_name);
  });
  table.add("libraries", [&](const YAML::Node& list) {
    if (!list.IsSequence() && !list.IsNull())
      throw ConfigError("expected a list of {soname} or {path, name}");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      const std::string key = "libraries[" + std::to_string(i) + "]";
      ClientLibrary library;
      KeyTable entry(source_name, key);
      entry.add("soname", common::string_key(library.soname));
      entry.add("path", common::string_key(library.path));
      entry.add("name", common::string_key(library.name));
      entry.apply(item);
      try {
        if (library.soname.empty() == library.path.empty())
          throw ConfigError(
              "a library is named by exactly one of soname (as this program loaded it) or path");
        if (!library.soname.empty()) {
          if (!library.name.empty())
            throw ConfigError("name goes with path; a library named by soname keeps its soname");
          if (!is_library_file_name(library.soname))
            throw ConfigError("'" + library.soname + "' is not a soname");
          library.name = library.soname;
        } else {
          fs::path path(library.path);
          if (path.is_relative()) path = fs::path(base_dir) / path;
          library.path = path.lexically_normal().string();
          if (!library.name.empty() && !is_library_file_name(library.name))
            throw ConfigError("'" + library.name + "' is not a file name");
        }
      } catch (const ConfigError& e) {
        throw located_error(source_name, item, key, e.what());
      }
      dependencies.libraries.push_back(std::move(library));
    }
  });
  table.apply(root);
  return dependencies;
}

ClientDependencies load_client_dependencies(const std::string& path) {
  const std::string dir = fs::absolute(fs::path(path)).parent_path().string();
  return parse_client_dependencies(read_whole(path, "dependency file"), path, dir);
}

std::string library_set_digest(
    const google::protobuf::RepeatedPtrField<wire::DependencyLibrary>& libraries) {
  if (libraries.empty()) return "";
  std::vector<std::string> lines;
  for (const auto& library : libraries)
    lines.push_back(library.name() + '\t' + base::to_hex(library.sha256()) + '\n');
  std::sort(lines.begin(), lines.end());
  std::string text;
  for (const auto& line : lines) text += line;
  return base::sha256(text);
}

bool is_library_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c != '/' && static_cast<unsigned char>(c) > ' ' && c != 0x7f;
  });
}

void to_wire(const Manifest& manifest, wire::DependencyManifest& out) {
  out.Clear();
  if (manifest.empty()) return;  // nothing required: an empty version
  out.set_version(manifest.version);
  for (const auto& p : manifest.packages) {
    auto* package = out.add_packages();
    package->set_name(p.name);
    package->set_relation(p.relation);
    package->set_version(p.version);
  }
  for (const auto& l : manifest.libraries) {
    auto* library = out.add_libraries();
    library->set_name(l.name);
    library->set_sha256(l.sha256);
    library->set_size(l.size);
  }
  out.set_install_command(manifest.install_command);
  out.set_install_timeout_ms(static_cast<std::uint32_t>(manifest.install_timeout.count()));
}

std::vector<PackageRequirement> packages_of(const wire::DependencyManifest& manifest) {
  std::vector<PackageRequirement> out;
  for (const auto& p : manifest.packages()) out.push_back({p.name(), p.relation(), p.version()});
  return out;
}

}  // namespace clupy::deps

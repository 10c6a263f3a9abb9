#include "deps/elf_needs.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace clupy::deps {

namespace {

class Image {
 public:
  Image(std::string path) : path_(std::move(path)) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path_);
    std::stringstream bytes;
    bytes << in.rdbuf();
    data_ = bytes.str();
  }
  template <class T>
  T at(std::uint64_t offset) const {
    if (offset > data_.size() || data_.size() - offset < sizeof(T)) fail("truncated");
    T value;
    std::memcpy(&value, data_.data() + offset, sizeof(T));
    return value;
  }
  std::string string_at(std::uint64_t table_offset, std::uint64_t table_size,
                        std::uint64_t index) const {
    if (index >= table_size || table_offset + table_size > data_.size()) fail("bad string index");
    const char* start = data_.data() + table_offset + index;
    const std::size_t limit = table_size - index;
    return std::string(start, strnlen(start, limit));
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path_ + ": not a readable ELF file (" + what + ")");
  }
  std::size_t size() const { return data_.size(); }

 private:
  std::string path_;
  std::string data_;
};

}  // namespace

ElfDependencies read_elf_dependencies(const std::string& path) {
  const Image image(path);
  const auto header = image.at<Elf64_Ehdr>(0);
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) image.fail("no ELF magic");
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB)
    image.fail("only 64-bit little-endian files are read");
  if (header.e_shentsize != sizeof(Elf64_Shdr)) image.fail("unexpected section header size");
  std::vector<Elf64_Shdr> sections;
  for (unsigned i = 0; i < header.e_shnum; ++i)
    sections.push_back(
        image.at<Elf64_Shdr>(header.e_shoff + std::uint64_t{i} * sizeof(Elf64_Shdr)));
  auto linked_strings = [&](const Elf64_Shdr& section) {
    if (section.sh_link >= sections.size()) image.fail("bad sh_link");
    return sections[section.sh_link];
  };

  ElfDependencies out;
  for (const auto& section : sections) {
    if (section.sh_type == SHT_DYNAMIC) {
      const Elf64_Shdr strings = linked_strings(section);
      for (std::uint64_t at = 0; at + sizeof(Elf64_Dyn) <= section.sh_size;
           at += sizeof(Elf64_Dyn)) {
        const auto entry = image.at<Elf64_Dyn>(section.sh_offset + at);
        if (entry.d_tag == DT_NULL) break;
        if (entry.d_tag == DT_NEEDED)
          out.needed.push_back(
              image.string_at(strings.sh_offset, strings.sh_size, entry.d_un.d_val));
        if (entry.d_tag == DT_SONAME)
          out.soname = image.string_at(strings.sh_offset, strings.sh_size, entry.d_un.d_val);
      }
    } else if (section.sh_type == SHT_GNU_verneed) {
      const Elf64_Shdr strings = linked_strings(section);
      std::uint64_t at = section.sh_offset;
      for (unsigned n = 0; n < section.sh_info; ++n) {
        const auto need = image.at<Elf64_Verneed>(at);
        const std::string file = image.string_at(strings.sh_offset, strings.sh_size, need.vn_file);
        std::uint64_t aux_at = at + need.vn_aux;
        for (unsigned k = 0; k < need.vn_cnt; ++k) {
          const auto aux = image.at<Elf64_Vernaux>(aux_at);
          out.version_needs[file].insert(
              image.string_at(strings.sh_offset, strings.sh_size, aux.vna_name));
          if (aux.vna_next == 0) break;
          aux_at += aux.vna_next;
        }
        if (need.vn_next == 0) break;
        at += need.vn_next;
      }
    } else if (section.sh_type == SHT_GNU_verdef) {
      const Elf64_Shdr strings = linked_strings(section);
      std::uint64_t at = section.sh_offset;
      for (unsigned n = 0; n < section.sh_info; ++n) {
        const auto def = image.at<Elf64_Verdef>(at);
        // The base definition (the file's own name) is not a version anyone requires.
        if (def.vd_cnt > 0 && (def.vd_flags & VER_FLG_BASE) == 0) {
          const auto aux = image.at<Elf64_Verdaux>(at + def.vd_aux);
          out.version_definitions.insert(
              image.string_at(strings.sh_offset, strings.sh_size, aux.vda_name));
        }
        if (def.vd_next == 0) break;
        at += def.vd_next;
      }
    }
  }
  return out;
}

std::string version_family(const std::string& version_name) {
  const auto underscore = version_name.rfind('_');
  return underscore == std::string::npos ? "" : version_name.substr(0, underscore + 1);
}

std::optional<std::vector<int>> version_numbers(const std::string& version_name) {
  const auto underscore = version_name.rfind('_');
  if (underscore == std::string::npos || underscore + 1 >= version_name.size()) return std::nullopt;
  std::vector<int> numbers;
  std::istringstream in(version_name.substr(underscore + 1));
  for (std::string part; std::getline(in, part, '.');) {
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    numbers.push_back(std::stoi(part));
  }
  return numbers;
}

std::string newest_version(const std::set<std::string>& definitions, const std::string& family) {
  std::string best;
  std::vector<int> best_numbers;
  for (const auto& name : definitions) {
    if (version_family(name) != family) continue;
    auto numbers = version_numbers(name);
    if (!numbers) continue;
    if (best.empty() || *numbers > best_numbers) {
      best = name;
      best_numbers = *numbers;
    }
  }
  return best;
}

}  // namespace clupy::deps

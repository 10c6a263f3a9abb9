#include "segments.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <charconv>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/hex.hpp"
#include "base/sha256.hpp"

namespace clupy::detail {
namespace {

std::string hex_offset(std::uint64_t offset) {
  char digits[16];
  const auto end = std::to_chars(std::begin(digits), std::end(digits), offset, 16).ptr;
  return "0x" + std::string(std::begin(digits), end);
}

struct Range {
  std::uint64_t begin;  // link-time addresses (p_vaddr), i.e. offsets from the load bias
  std::uint64_t end;
};

struct LoadedObject {
  std::string path;       // file as the loader names it; /proc/self/exe's target for the main
  std::string read_path;  // what to open to hash it
  std::uintptr_t bias = 0;
  std::vector<Range> code;
  std::string build_id;           // empty if it has none
  std::optional<std::string> id;  // "build-id:…" or "sha256:…", once known; "" if unhashable
};

// The GNU build-id note of an object, read from its mapped PT_NOTE segments.
std::string read_build_id(const dl_phdr_info& info) {
  for (int i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const std::size_t align = ph.p_align == 8 ? 8 : 4;
    auto pad = [align](std::size_t n) { return (n + align - 1) & ~(align - 1); };
    const auto* p = reinterpret_cast<const unsigned char*>(info.dlpi_addr + ph.p_vaddr);
    const auto* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, p, sizeof note);
      const unsigned char* name = p + sizeof note;
      const unsigned char* desc = name + pad(note.n_namesz);
      const unsigned char* next = desc + pad(note.n_descsz);
      if (next > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0 && note.n_descsz > 0) {
        return base::to_hex(std::string_view(reinterpret_cast<const char*>(desc), note.n_descsz));
      }
      p = next;
    }
  }
  return {};
}

std::optional<std::string> sha256_of_file(const std::string& path) {
  std::optional<std::string> digest = base::sha256_file(path);
  if (!digest) return std::nullopt;
  return base::to_hex(*digest);
}

std::string main_program_path() {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string("/proc/self/exe");
}

// The loaded objects, rebuilt whenever the loader's add/remove counters move. Identities are
// computed lazily: build-ids are read from memory, hashing a file happens only if it has none.
class SegmentTable {
 public:
  static SegmentTable& instance() {
    // Never destroyed: tasks may run during other objects' static destruction.
    static SegmentTable* table = new SegmentTable;
    return *table;
  }

  CodeRef locate(std::uintptr_t address) {
    std::lock_guard lock(mu_);
    refresh();
    if (auto cached = located_.find(address); cached != located_.end()) return cached->second;
    for (LoadedObject& object : objects_) {
      if (address < object.bias) continue;
      const std::uint64_t offset = address - object.bias;
      for (const Range& r : object.code) {
        if (offset < r.begin || offset >= r.end) continue;
        const std::string& id = identity(object);
        if (id.empty()) {
          throw EncodeError("clupy: the code at " + hex_offset(offset) + " in " + object.path +
                            " cannot be named: the object has no build-id and its file cannot "
                            "be read to hash it");
        }
        CodeRef ref{id, object.path, offset};
        located_.emplace(address, ref);
        return ref;
      }
    }
    throw EncodeError("clupy: address " + hex_offset(address) +
                      " is not in the code of any loaded object (JIT or freed code cannot travel)");
  }

  std::uintptr_t resolve(const CodeRef& ref, std::string& error) {
    std::lock_guard lock(mu_);
    refresh();
    const bool by_hash = ref.segment_id.starts_with("sha256:");
    for (LoadedObject& object : objects_) {
      // Objects with a build-id are never named by hash; skip hashing them.
      if (by_hash != object.build_id.empty()) continue;
      if (identity(object) != ref.segment_id) continue;
      for (const Range& r : object.code) {
        if (ref.offset >= r.begin && ref.offset < r.end) return object.bias + ref.offset;
      }
      error = "offset " + hex_offset(ref.offset) + " is outside the executable segments of " +
              object.path + " (" + ref.segment_id + "); refusing to call into it";
      return 0;
    }
    error = "code segment " + ref.segment_id + " (" + ref.segment_path +
            " in the calling process) is not loaded in this process; refusing to call into "
            "it (is this worker running a different build of the program or library?)";
    return 0;
  }

 private:
  const std::string& identity(LoadedObject& object) {
    if (!object.id) {
      if (!object.build_id.empty()) {
        object.id = "build-id:" + object.build_id;
      } else {
        auto digest = sha256_of_file(object.read_path);
        object.id = digest ? "sha256:" + *digest : std::string();
      }
    }
    return *object.id;
  }

  struct Scan {
    std::vector<LoadedObject>* objects;
    unsigned long long adds = 0;
    unsigned long long subs = 0;
    bool counters_only = false;
  };

  static int visit(dl_phdr_info* info, std::size_t size, void* data) {
    auto* scan = static_cast<Scan*>(data);
    if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
      scan->adds = info->dlpi_adds;
      scan->subs = info->dlpi_subs;
    }
    if (scan->counters_only) return 1;
    LoadedObject object;
    const bool is_main = scan->objects->empty();
    object.path = is_main ? main_program_path() : std::string(info->dlpi_name);
    object.read_path = is_main ? "/proc/self/exe" : object.path;
    object.bias = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      const ElfW(Phdr)& ph = info->dlpi_phdr[i];
      if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0) {
        object.code.push_back({ph.p_vaddr, ph.p_vaddr + ph.p_memsz});
      }
    }
    object.build_id = read_build_id(*info);
    scan->objects->push_back(std::move(object));
    return 0;
  }

  void refresh() {
    Scan probe{nullptr, 0, 0, true};
    dl_iterate_phdr(&SegmentTable::visit, &probe);
    if (scanned_ && probe.adds == adds_ && probe.subs == subs_) return;
    std::vector<LoadedObject> objects;
    Scan scan{&objects, 0, 0, false};
    dl_iterate_phdr(&SegmentTable::visit, &scan);
    objects_ = std::move(objects);
    located_.clear();
    adds_ = scan.adds;
    subs_ = scan.subs;
    scanned_ = true;
  }

  std::mutex mu_;
  bool scanned_ = false;
  unsigned long long adds_ = 0;
  unsigned long long subs_ = 0;
  std::vector<LoadedObject> objects_;
  std::map<std::uintptr_t, CodeRef> located_;
};

}  // namespace

CodeRef locate_code(std::uintptr_t address) { return SegmentTable::instance().locate(address); }

std::uintptr_t resolve_code(const CodeRef& ref, std::string& error) {
  return SegmentTable::instance().resolve(ref, error);
}

std::string describe_function(std::uintptr_t address) {
  static std::mutex mu;
  static auto* names = new std::map<std::uintptr_t, std::string>;
  std::lock_guard lock(mu);
  if (auto it = names->find(address); it != names->end()) return it->second;
  std::string name;
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(address), &info) != 0 && info.dli_sname != nullptr &&
      reinterpret_cast<std::uintptr_t>(info.dli_saddr) == address) {
    name = demangle(info.dli_sname);
  } else {
    const CodeRef ref = SegmentTable::instance().locate(address);
    const auto slash = ref.segment_path.rfind('/');
    name = ref.segment_path.substr(slash == std::string::npos ? 0 : slash + 1) + "+" +
           hex_offset(ref.offset);
  }
  names->emplace(address, name);
  return name;
}

}  // namespace clupy::detail

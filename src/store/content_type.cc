#include "store/content_type.hpp"

#include <algorithm>
#include <cctype>
#include <clupy/store.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace clupy::store {
namespace {

constexpr std::string_view kParquetMagic = "PAR1";

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - static_cast<long>(suffix.size()),
                    [](char a, char b) {
                      return std::tolower(static_cast<unsigned char>(a)) ==
                             std::tolower(static_cast<unsigned char>(b));
                    });
}

}  // namespace

bool looks_like_csv(std::string_view head, bool complete) {
  if (head.empty() || head.find('\0') != std::string_view::npos) return false;
  if (!complete) {
    auto nl = head.rfind('\n');
    if (nl == std::string_view::npos) return false;
    head = head.substr(0, nl + 1);
  }
  std::istringstream in{std::string(head)};
  CsvReader reader(in);
  std::vector<std::string> row;
  std::size_t fields = 0, records = 0;
  try {
    while (reader.next(row)) {
      if (row.empty()) continue;
      if (records++ == 0) fields = row.size();
      if (row.size() != fields) return false;
    }
  } catch (const StoreError&) {
    // A quoted field that spans the cut is not an error in a truncated head.
    return !complete && records > 0;
  }
  return records > 0;
}

std::string_view detect_content_type(std::string_view name, std::string_view head,
                                     std::string_view tail, std::uint64_t size) {
  bool parquet_name = ends_with_ci(name, ".parquet") || ends_with_ci(name, ".parq");
  bool parquet_head = head.starts_with(kParquetMagic);
  if (parquet_name || parquet_head) {
    // Layout: "PAR1" <data> <footer> <4-byte little-endian footer length> "PAR1".
    std::string why;
    if (size < 12) {
      why = "it is only " + std::to_string(size) + " bytes";
    } else if (!parquet_head) {
      why = "it does not start with the PAR1 magic";
    } else if (tail.size() < kSniffTailBytes || !tail.ends_with(kParquetMagic)) {
      why = "it does not end with the PAR1 magic (truncated or not Parquet)";
    } else {
      std::uint32_t footer = 0;
      for (int i = 3; i >= 0; --i)
        footer = (footer << 8) | static_cast<unsigned char>(tail[static_cast<std::size_t>(i)]);
      if (footer == 0 || footer > size - 12) why = "its footer length is out of range";
    }
    if (!why.empty())
      throw StoreError(StoreError::Code::kRefused,
                       "refusing '" + std::string(name) + "': it claims to be Parquet but " + why);
    return kContentTypeParquet;
  }
  if ((ends_with_ci(name, ".csv") || ends_with_ci(name, ".tsv")) &&
      looks_like_csv(head, size <= head.size()))
    return kContentTypeCsv;
  return kContentTypeBinary;
}

}  // namespace clupy::store

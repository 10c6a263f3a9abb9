// Content-type detection of store files: Parquet by its magic and footer, CSV by extension and a
// parse of the head; anything else is stored as opaque bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace clupy::store {

// How many leading bytes detection looks at.
inline constexpr std::size_t kSniffHeadBytes = 64 * 1024;
// How many trailing bytes detection needs (Parquet: footer length + "PAR1").
inline constexpr std::size_t kSniffTailBytes = 8;

// `head` holds the first min(size, kSniffHeadBytes) bytes and `tail` the last
// min(size, kSniffTailBytes). Returns one of the kContentType* constants. Throws StoreError
// kRefused when the file claims to be Parquet (".parquet"/".parq" name or "PAR1" first bytes)
// but is not a structurally valid Parquet file.
std::string_view detect_content_type(std::string_view name, std::string_view head,
                                     std::string_view tail, std::uint64_t size);

// True when `head` parses as RFC 4180 CSV with the same number of fields in every record.
// `complete` says whether head is the whole file (otherwise its cut-off last line is ignored).
bool looks_like_csv(std::string_view head, bool complete);

}  // namespace clupy::store

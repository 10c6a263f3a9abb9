// RFC 4180 CSV: the record reader and writer of include/clupy/store.hpp.
#include <clupy/store.hpp>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

namespace clupy {
namespace {

using Traits = std::char_traits<char>;

[[noreturn]] void csv_error(std::size_t line, const std::string& what) {
  throw StoreError(StoreError::Code::kCsv, "CSV line " + std::to_string(line) + ": " + what);
}

}  // namespace

CsvReader::CsvReader(std::istream& in) : in_(&in) {}
CsvReader::CsvReader(std::unique_ptr<std::istream> in) : owned_(std::move(in)), in_(owned_.get()) {}
CsvReader::CsvReader(CsvReader&&) noexcept = default;
CsvReader& CsvReader::operator=(CsvReader&&) noexcept = default;
CsvReader::~CsvReader() = default;

std::size_t CsvReader::line() const noexcept { return line_; }

bool CsvReader::next(std::vector<std::string>& row) {
  row.clear();
  std::streambuf* sb = in_->rdbuf();
  const auto eof = Traits::eof();
  // Reading through the streambuf is much faster than istream::get; a stream error (a
  // StoreError from a StoreReader) propagates as is.
  auto end_of_line = [&](int c) {
    sb->sbumpc();
    if (c == '\r' && sb->sgetc() == '\n') sb->sbumpc();
    ++line_;
  };
  int c = sb->sgetc();
  if (c == eof) return false;
  if (c == '\r' || c == '\n') {
    end_of_line(c);
    return true;
  }
  std::string field;
  while (true) {
    field.clear();
    c = sb->sgetc();
    if (c == '"') {
      std::size_t start = line_;
      sb->sbumpc();
      while (true) {
        c = sb->sbumpc();
        if (c == eof) csv_error(start, "unterminated quoted field");
        if (c == '"') {
          if (sb->sgetc() != '"') break;
          sb->sbumpc();
        } else if (c == '\n') {
          ++line_;
        }
        field += Traits::to_char_type(c);
      }
      c = sb->sgetc();
      if (c != ',' && c != '\r' && c != '\n' && c != eof)
        csv_error(line_, std::string("unexpected '") + Traits::to_char_type(c) +
                             "' after a closing quote (a quote inside a quoted field is written "
                             "as \"\")");
    } else {
      // Unquoted field: read to the delimiter. A stray quote is kept as data, as most readers do.
      while (c != ',' && c != '\r' && c != '\n' && c != eof) {
        field += Traits::to_char_type(c);
        sb->sbumpc();
        c = sb->sgetc();
      }
    }
    row.push_back(std::move(field));
    if (c == ',') {
      sb->sbumpc();
      continue;
    }
    if (c != eof) end_of_line(c);
    return true;
  }
}

void write_csv_row(std::ostream& out, const std::vector<std::string>& row) {
  for (std::size_t i = 0; i < row.size(); ++i) {
    if (i > 0) out.put(',');
    const std::string& f = row[i];
    // A lone empty field is quoted so the record is not mistaken for an empty line.
    bool quote = f.find_first_of(",\"\r\n") != std::string::npos || (row.size() == 1 && f.empty());
    if (!quote) {
      out.write(f.data(), static_cast<std::streamsize>(f.size()));
      continue;
    }
    out.put('"');
    for (char ch : f) {
      if (ch == '"') out.put('"');
      out.put(ch);
    }
    out.put('"');
  }
  out.write("\r\n", 2);
}

}  // namespace clupy

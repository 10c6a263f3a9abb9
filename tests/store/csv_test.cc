// RFC 4180 parsing and writing, and content-type detection; in-process, no Redis.
#include <gtest/gtest.h>

#include <clupy/store.hpp>
#include <sstream>

#include "store/content_type.hpp"

namespace clupy {
namespace {

using Rows = std::vector<std::vector<std::string>>;

Rows parse(const std::string& text) {
  std::istringstream in(text);
  CsvReader reader(in);
  Rows rows;
  std::vector<std::string> row;
  while (reader.next(row)) rows.push_back(row);
  return rows;
}

TEST(CsvReaderTest, SplitsFieldsAndRecords) {
  EXPECT_EQ(parse("a,b,c\r\n1,2,3\r\n"), (Rows{{"a", "b", "c"}, {"1", "2", "3"}}));
}

TEST(CsvReaderTest, AcceptsLfAndAMissingFinalNewline) {
  EXPECT_EQ(parse("a,b\n1,2"), (Rows{{"a", "b"}, {"1", "2"}}));
}

TEST(CsvReaderTest, QuotedFieldsHoldDelimitersNewlinesAndDoubledQuotes) {
  EXPECT_EQ(parse("\"a,b\",\"line1\r\nline2\",\"say \"\"hi\"\"\"\r\n"),
            (Rows{{"a,b", "line1\r\nline2", "say \"hi\""}}));
}

TEST(CsvReaderTest, EmptyFieldsAreKept) {
  EXPECT_EQ(parse(",,\r\n\"\",x,\r\n"), (Rows{{"", "", ""}, {"", "x", ""}}));
}

TEST(CsvReaderTest, EmptyLineIsARecordWithoutFields) {
  EXPECT_EQ(parse("a\r\n\r\nb\r\n"), (Rows{{"a"}, {}, {"b"}}));
}

TEST(CsvReaderTest, EmptyInputHasNoRecords) { EXPECT_TRUE(parse("").empty()); }

TEST(CsvReaderTest, StrayQuoteInUnquotedFieldIsData) {
  EXPECT_EQ(parse("5\" disk,x\n"), (Rows{{"5\" disk", "x"}}));
}

TEST(CsvReaderTest, UnterminatedQuoteNamesItsLine) {
  try {
    parse("ok\r\n\"never closed,\r\nmore\r\n");
    FAIL() << "no error";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kCsv);
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(CsvReaderTest, TextAfterClosingQuoteIsAnError) {
  EXPECT_THROW(parse("\"a\"b,c\n"), StoreError);
}

TEST(CsvReaderTest, LineCountsEmbeddedNewlines) {
  std::istringstream in("\"a\nb\",c\nd\n");
  CsvReader reader(in);
  std::vector<std::string> row;
  ASSERT_TRUE(reader.next(row));
  EXPECT_EQ(reader.line(), 3u);
}

TEST(CsvWriterTest, QuotesOnlyWhenNeededAndRoundTrips) {
  Rows rows = {{"plain", "with,comma", "with \"quote\"", "multi\nline", ""}, {""}, {}, {"x"}};
  std::ostringstream out;
  for (const auto& r : rows) write_csv_row(out, r);
  EXPECT_EQ(out.str(),
            "plain,\"with,comma\",\"with \"\"quote\"\"\",\"multi\nline\",\r\n\"\"\r\n\r\nx\r\n");
  EXPECT_EQ(parse(out.str()), rows);
}

TEST(ContentTypeTest, CsvNeedsExtensionAndConsistentFields) {
  using store::detect_content_type;
  std::string csv = "a,b\n1,2\n3,4\n";
  EXPECT_EQ(detect_content_type("x.csv", csv, csv.substr(csv.size() - 8), csv.size()),
            kContentTypeCsv);
  EXPECT_EQ(detect_content_type("x.txt", csv, "", csv.size()), kContentTypeBinary);
  std::string ragged = "a,b\n1,2,3\n";
  EXPECT_EQ(detect_content_type("x.csv", ragged, "", ragged.size()), kContentTypeBinary);
}

TEST(ContentTypeTest, TruncatedHeadIgnoresItsCutOffLine) {
  EXPECT_TRUE(store::looks_like_csv("a,b\n1,2\n3,\"unfinished", false));
  EXPECT_FALSE(store::looks_like_csv("a,b\n1,2\n3,\"unfinished", true));
}

TEST(ContentTypeTest, ParquetNeedsMagicAtBothEndsAndASaneFooter) {
  using store::detect_content_type;
  std::string good = "PAR1" + std::string(20, 'd') + std::string("\x10\0\0\0", 4) + "PAR1";
  EXPECT_EQ(detect_content_type("x.bin", good, good.substr(good.size() - 8), good.size()),
            kContentTypeParquet);
  std::string bad_footer = "PAR1" + std::string(20, 'd') + std::string("\xff\0\0\0", 4) + "PAR1";
  EXPECT_THROW(detect_content_type("x.parquet", bad_footer,
                                   bad_footer.substr(bad_footer.size() - 8), bad_footer.size()),
               StoreError);
  EXPECT_THROW(detect_content_type("x.parquet", "a,b\n", "a,b\n", 4), StoreError);
  EXPECT_THROW(detect_content_type("x.PARQUET", "abcdefghijklmnop", "ijklmnop", 16), StoreError);
}

}  // namespace
}  // namespace clupy

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "runtime/env_options.h"
#include "runtime/internal_printer.h"

namespace jsmalloc {
namespace {

TEST(PrinterTest, FormatsAndCountsTruncatedOutput) {
  char buf[16];
  Printer p(buf, sizeof(buf));
  p.Str("a=").U(1234).Char(' ').I(-5).Char(' ').Hex(255);
  EXPECT_STREQ(buf, "a=1234 -5 0xff");
  p.Str("0123456789");
  EXPECT_EQ(p.needed(), 24u);
  EXPECT_EQ(std::string(buf).size(), 15u) << "truncated, NUL-terminated";
  char big[64];
  Printer q(big, sizeof(big));
  q.F(3.14159, 2).Char('|').UW(42, 5).Char('|').StrW("ab", 4).Char('|').MiB(3 << 20);
  EXPECT_STREQ(big, "3.14|   42|ab  |3.0");
}

TEST(EnvOptionsTest, ParseSize) {
  size_t v = 7;
  EXPECT_TRUE(ParseSize("1048576", &v));
  EXPECT_EQ(v, 1048576u);
  EXPECT_TRUE(ParseSize("64K", &v));
  EXPECT_EQ(v, 65536u);
  EXPECT_TRUE(ParseSize("32MiB", &v));
  EXPECT_EQ(v, size_t{32} << 20);
  EXPECT_TRUE(ParseSize("2g", &v));
  EXPECT_EQ(v, size_t{2} << 30);
  v = 7;
  EXPECT_FALSE(ParseSize("", &v));
  EXPECT_FALSE(ParseSize("abc", &v));
  EXPECT_FALSE(ParseSize("12Q", &v));
  EXPECT_FALSE(ParseSize("-1", &v));
  EXPECT_FALSE(ParseSize("99999999999999999999999", &v));
  EXPECT_FALSE(ParseSize("17179869184G", &v)) << "overflow on shift";
  EXPECT_EQ(v, 7u) << "bad input leaves the value alone";
}

TEST(EnvOptionsTest, ParseBool) {
  bool b = false;
  EXPECT_TRUE(ParseBool("1", &b));
  EXPECT_TRUE(b);
  EXPECT_TRUE(ParseBool("off", &b));
  EXPECT_FALSE(b);
  EXPECT_FALSE(ParseBool("maybe", &b));
  EXPECT_FALSE(b);
}

TEST(EnvOptionsTest, BadValueWarnsOnceAndKeepsDefault) {
  setenv("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES", "lots", 1);
  setenv("JSMALLOC_STATS_ON_EXIT", "1", 1);
  Options o;
  ::testing::internal::CaptureStderr();
  ParseOptions(&o);
  std::string err = ::testing::internal::GetCapturedStderr();
  unsetenv("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES");
  unsetenv("JSMALLOC_STATS_ON_EXIT");
  EXPECT_EQ(o.max_total_thread_cache_bytes, Options().max_total_thread_cache_bytes);
  EXPECT_TRUE(o.stats_on_exit);
  EXPECT_NE(err.find("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES='lots'"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace
}  // namespace jsmalloc

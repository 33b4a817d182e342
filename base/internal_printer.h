// Text formatting into a caller's buffer without stdio (which may allocate).
// Output beyond the buffer is counted but dropped, so callers can learn the
// full length and retry with a larger buffer.
#ifndef JSMALLOC_BASE_INTERNAL_PRINTER_H_
#define JSMALLOC_BASE_INTERNAL_PRINTER_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc {

class Printer {
 public:
  Printer(char* buf, size_t len) : buf_(buf), cap_(len) {
    if (cap_ > 0) buf_[0] = '\0';
  }

  Printer& Str(const char* s);
  Printer& Str(const char* s, size_t n);
  Printer& U(uint64_t v);
  Printer& I(int64_t v);
  Printer& Hex(uint64_t v);
  // Right-aligned unsigned in a field of `width` characters.
  Printer& UW(uint64_t v, int width);
  Printer& StrW(const char* s, int width);  // left-aligned
  // Fixed-point with `decimals` digits after the point.
  Printer& F(double v, int decimals);
  // Bytes as "1234567 (1.2 MiB)".
  Printer& Bytes(uint64_t v);
  // Bytes in MiB with one decimal, e.g. "12.5".
  Printer& MiB(uint64_t v);
  Printer& Char(char c);
  Printer& Repeat(char c, int n);

  // Bytes the full output needs (excluding the terminating NUL).
  size_t needed() const { return used_; }
  const char* data() const { return buf_; }
  size_t written() const { return used_ < cap_ ? used_ : (cap_ > 0 ? cap_ - 1 : 0); }

 private:
  char* buf_;
  size_t cap_;
  size_t used_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_INTERNAL_PRINTER_H_

#include "base/internal_printer.h"

#include <cstring>

namespace jsmalloc {

Printer& Printer::Char(char c) {
  if (used_ + 1 < cap_) {
    buf_[used_] = c;
    buf_[used_ + 1] = '\0';
  }
  ++used_;
  return *this;
}

Printer& Printer::Str(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) Char(s[i]);
  return *this;
}

Printer& Printer::Str(const char* s) { return Str(s, strlen(s)); }

Printer& Printer::Repeat(char c, int n) {
  for (int i = 0; i < n; ++i) Char(c);
  return *this;
}

static int FormatU(uint64_t v, char* out) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

Printer& Printer::U(uint64_t v) {
  char tmp[24];
  return Str(tmp, static_cast<size_t>(FormatU(v, tmp)));
}

Printer& Printer::I(int64_t v) {
  if (v < 0) {
    Char('-');
    return U(static_cast<uint64_t>(-(v + 1)) + 1);
  }
  return U(static_cast<uint64_t>(v));
}

Printer& Printer::Hex(uint64_t v) {
  char tmp[17];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  Str("0x");
  while (n > 0) Char(tmp[--n]);
  return *this;
}

Printer& Printer::UW(uint64_t v, int width) {
  char tmp[24];
  int n = FormatU(v, tmp);
  if (n < width) Repeat(' ', width - n);
  return Str(tmp, static_cast<size_t>(n));
}

Printer& Printer::StrW(const char* s, int width) {
  int n = static_cast<int>(strlen(s));
  Str(s);
  if (n < width) Repeat(' ', width - n);
  return *this;
}

Printer& Printer::F(double v, int decimals) {
  if (v < 0) {
    Char('-');
    v = -v;
  }
  uint64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  uint64_t fixed = static_cast<uint64_t>(v * static_cast<double>(scale) + 0.5);
  U(fixed / scale);
  if (decimals > 0) {
    Char('.');
    uint64_t frac = fixed % scale;
    char tmp[24];
    int n = FormatU(frac, tmp);
    Repeat('0', decimals - n);
    Str(tmp, static_cast<size_t>(n));
  }
  return *this;
}

Printer& Printer::MiB(uint64_t v) { return F(static_cast<double>(v) / 1048576.0, 1); }

Printer& Printer::Bytes(uint64_t v) {
  U(v);
  Str(" (");
  MiB(v);
  return Str(" MiB)");
}

}  // namespace jsmalloc

#include "runtime/stack_trace.h"
#include "runtime/runtime_locks.h"

#include <link.h>
#include <unwind.h>

#include <atomic>
#include <cstring>

#include "os/os.h"
#include "base/spinlock.h"

extern "C" {
// Defined by the linker around the section (hidden: resolved within the
// object that holds the allocator).
extern const char __start_jsmalloc_entry[] __attribute__((visibility("hidden")));
extern const char __stop_jsmalloc_entry[] __attribute__((visibility("hidden")));
}

// libgcc's unwinder is not in the library's DT_NEEDED: a C program would
// map libgcc_s (~84 KiB of RSS) for a fallback it almost never needs. These
// bind to the process's libgcc_s when it has one (every C++ program: it comes
// with libstdc++) and stay null otherwise; then a frame the walker below
// cannot handle ends the stack.
#pragma weak _Unwind_Backtrace
#pragma weak _Unwind_GetIP
#pragma weak _Unwind_Find_FDE

namespace jsmalloc {

namespace {
// libgcc_s defines all three, so one stands for them.
bool HaveLibgccUnwinder() {
  // Through a volatile: the compiler may assume a plain address is non-null.
  void* volatile p = reinterpret_cast<void*>(&_Unwind_Backtrace);
  return p != nullptr;
}
}  // namespace

bool InAllocatorEntry(uintptr_t pc) {
  return pc >= reinterpret_cast<uintptr_t>(__start_jsmalloc_entry) &&
         pc < reinterpret_cast<uintptr_t>(__stop_jsmalloc_entry);
}

namespace {

// ---- libgcc's unwinder (the reference, and the fallback) ----------------------

struct UnwindState {
  void** out;
  int max;
  int n;
  bool skipping;  // still in the allocator's frames
};

_Unwind_Reason_Code CollectFrame(struct _Unwind_Context* ctx, void* arg) {
  UnwindState* st = static_cast<UnwindState*>(arg);
  uintptr_t pc = _Unwind_GetIP(ctx);
  if (pc == 0) return _URC_END_OF_STACK;
  if (st->skipping) {
    if (InAllocatorEntry(pc - 1)) return _URC_NO_REASON;  // the call instruction
    st->skipping = false;
  }
  st->out[st->n++] = reinterpret_cast<void*>(pc);
  return st->n < st->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

}  // namespace

JSMALLOC_ENTRY_SECTION __attribute__((noinline)) int CaptureStackWithLibgcc(void** out, int max) {
  if (max <= 0 || !HaveLibgccUnwinder()) return 0;
  UnwindState st = {out, max, 0, true};
  _Unwind_Backtrace(&CollectFrame, &st);
  return st.n;
}

#if defined(__x86_64__)

// ---- A caching unwinder over the same call frame information -----------------
//
// libgcc finds and interprets each frame's CFI on every unwind (over a
// thousand instructions per frame). The rule that takes a frame to its
// caller depends only on the PC, and for code compiled by GCC or Clang it is
// almost always "CFA = rsp or rbp + constant, return address and maybe rbp
// saved at constant offsets from the CFA". So the rule of each PC is worked
// out once (libgcc's _Unwind_Find_FDE finds the FDE; the CIE/FDE programs are
// interpreted here) and cached; anything this interpreter does not handle
// (CFA in another register or by expression, rbp or the return address kept
// by expression or in a register, signal frames) is marked unsupported and
// the whole capture falls back to _Unwind_Backtrace. A PC without an FDE, or
// whose return address is undefined (_start, clone), ends the stack, as it
// does for libgcc.

namespace {

struct DwarfEhBases {
  void* tbase;
  void* dbase;
  void* func;
};

extern "C" const void* _Unwind_Find_FDE(void* pc, DwarfEhBases* bases);

constexpr int kRegRbp = 6;
constexpr int kRegRsp = 7;
constexpr int kRegRa = 16;

// A rule packed in 64 bits: kind (2), cfa register is rbp (1), rbp saved (1),
// return-address offset (int16), rbp offset (int16), CFA offset (int24).
struct Rule {
  enum Kind : uint8_t { kNone = 0, kFrame = 1, kEnd = 2, kUnsupported = 3 };
  Kind kind = kNone;
  bool cfa_is_rbp = false;
  bool rbp_saved = false;
  int16_t ra_off = 0;
  int16_t rbp_off = 0;
  int32_t cfa_off = 0;

  uint64_t Pack() const {
    return static_cast<uint64_t>(kind) | (uint64_t{cfa_is_rbp} << 2) | (uint64_t{rbp_saved} << 3) |
           (static_cast<uint64_t>(static_cast<uint16_t>(ra_off)) << 8) |
           (static_cast<uint64_t>(static_cast<uint16_t>(rbp_off)) << 24) |
           (static_cast<uint64_t>(static_cast<uint32_t>(cfa_off) & 0xffffff) << 40);
  }
  static Rule Unpack(uint64_t v) {
    Rule r;
    r.kind = static_cast<Kind>(v & 3);
    r.cfa_is_rbp = (v >> 2) & 1;
    r.rbp_saved = (v >> 3) & 1;
    r.ra_off = static_cast<int16_t>((v >> 8) & 0xffff);
    r.rbp_off = static_cast<int16_t>((v >> 24) & 0xffff);
    int32_t off = static_cast<int32_t>((v >> 40) & 0xffffff);
    r.cfa_off = (off ^ 0x800000) - 0x800000;  // sign-extend 24 bits
    return r;
  }
};

Rule Unsupported() {
  Rule r;
  r.kind = Rule::kUnsupported;
  return r;
}

Rule End() {
  Rule r;
  r.kind = Rule::kEnd;
  return r;
}

// Reads DWARF data without running past `end`.
class Reader {
 public:
  Reader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  bool ok() const { return ok_; }
  bool done() const { return p_ >= end_; }
  const uint8_t* pos() const { return p_; }
  uint8_t U8() {
    if (p_ + 1 > end_) return Fail();
    return *p_++;
  }
  uint64_t Fixed(int n) {
    if (p_ + n > end_) return Fail();
    uint64_t v = 0;
    memcpy(&v, p_, static_cast<size_t>(n));
    p_ += n;
    return v;
  }
  uint64_t Uleb() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = U8();
      if (!ok_) return 0;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return Fail();
  }
  int64_t Sleb() {
    int64_t v = 0;
    int shift = 0;
    uint8_t b;
    do {
      b = U8();
      if (!ok_ || shift >= 64) return static_cast<int64_t>(Fail());
      v |= static_cast<int64_t>(b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40)) v |= -(int64_t{1} << shift);
    return v;
  }
  // Skips a value in DWARF EH pointer encoding `enc`.
  void SkipEncoded(uint8_t enc) {
    if (enc == 0xff) return;  // DW_EH_PE_omit
    switch (enc & 0x0f) {
      case 0x00: Fixed(8); break;   // absptr
      case 0x01: Uleb(); break;     // uleb128
      case 0x02: Fixed(2); break;   // udata2
      case 0x03: Fixed(4); break;   // udata4
      case 0x04: Fixed(8); break;   // udata8
      case 0x09: Sleb(); break;     // sleb128
      case 0x0a: Fixed(2); break;   // sdata2
      case 0x0b: Fixed(4); break;   // sdata4
      case 0x0c: Fixed(8); break;   // sdata8
      default: Fail();
    }
  }
  void Skip(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) {
      Fail();
      return;
    }
    p_ += n;
  }

 private:
  uint8_t Fail() {
    ok_ = false;
    p_ = end_;
    return 0;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

// The register rules the unwinder needs, while a CFI program runs.
struct CfiState {
  int cfa_reg = kRegRsp;
  int64_t cfa_off = 8;
  enum RegRule : uint8_t { kSame, kOffset, kUndefined, kOther };
  RegRule rbp = kSame;
  int64_t rbp_off = 0;
  RegRule ra = kOffset;
  int64_t ra_off = -8;
  bool unsupported = false;
};

struct CieInfo {
  uint64_t code_align = 1;
  int64_t data_align = -8;
  uint64_t ra_reg = kRegRa;
  uint8_t fde_encoding = 0;  // absptr
  bool has_z = false;
  bool signal_frame = false;
  const uint8_t* insns = nullptr;
  const uint8_t* end = nullptr;
};

bool ParseCie(const uint8_t* cie, CieInfo* out) {
  uint32_t len;
  memcpy(&len, cie, 4);
  if (len == 0 || len == 0xffffffffu) return false;  // 64-bit DWARF: not handled
  Reader r(cie + 4, cie + 4 + len);
  if (r.Fixed(4) != 0) return false;  // CIE id
  uint8_t version = r.U8();
  if (version != 1 && version != 3) return false;
  const uint8_t* aug = r.pos();
  size_t aug_len = strnlen(reinterpret_cast<const char*>(aug), 16);
  if (aug_len >= 16) return false;
  r.Skip(aug_len + 1);
  if (aug[0] == 'e' && aug[1] == 'h') return false;  // ancient GCC
  out->code_align = r.Uleb();
  out->data_align = r.Sleb();
  out->ra_reg = version == 1 ? r.U8() : r.Uleb();
  if (aug[0] == 'z') {
    out->has_z = true;
    uint64_t n = r.Uleb();
    const uint8_t* data_end = r.pos() + n;
    for (size_t i = 1; i < aug_len && r.ok(); ++i) {
      switch (aug[i]) {
        case 'R': out->fde_encoding = r.U8(); break;
        case 'L': r.U8(); break;
        case 'P': {
          uint8_t enc = r.U8();
          r.SkipEncoded(enc & 0x7f);  // DW_EH_PE_indirect does not change the size
          break;
        }
        case 'S': out->signal_frame = true; break;
        default: return false;
      }
    }
    if (!r.ok() || r.pos() > data_end) return false;
    r.Skip(static_cast<uint64_t>(data_end - r.pos()));
  } else if (aug_len != 0) {
    return false;
  }
  if (!r.ok()) return false;
  out->insns = r.pos();
  out->end = cie + 4 + len;
  return true;
}

// Runs a CFI program up to (and including the row for) `target`, starting at
// *loc. `init` is the state after the CIE's program (DW_CFA_restore).
void RunCfi(const uint8_t* p, const uint8_t* end, const CieInfo& cie, uintptr_t* loc, uintptr_t target,
            const CfiState& init, CfiState* st) {
  CfiState stack[8];
  int depth = 0;
  Reader r(p, end);
  auto set_offset = [&](uint64_t reg, int64_t off) {
    if (reg == kRegRbp) {
      st->rbp = CfiState::kOffset;
      st->rbp_off = off;
    } else if (reg == cie.ra_reg) {
      st->ra = CfiState::kOffset;
      st->ra_off = off;
    }
  };
  auto set_other = [&](uint64_t reg, CfiState::RegRule rule) {
    if (reg == kRegRbp) st->rbp = rule;
    else if (reg == cie.ra_reg) st->ra = rule;
  };
  auto advance = [&](uint64_t delta) {
    uintptr_t next = *loc + delta * cie.code_align;
    if (next > target) return false;
    *loc = next;
    return true;
  };
  while (!r.done() && r.ok() && !st->unsupported) {
    uint8_t op = r.U8();
    uint8_t low = op & 0x3f;
    switch (op & 0xc0) {
      case 0x40:
        if (!advance(low)) return;
        continue;
      case 0x80:
        set_offset(low, static_cast<int64_t>(r.Uleb()) * cie.data_align);
        continue;
      case 0xc0:
        if (low == kRegRbp) {
          st->rbp = init.rbp;
          st->rbp_off = init.rbp_off;
        } else if (low == cie.ra_reg) {
          st->ra = init.ra;
          st->ra_off = init.ra_off;
        }
        continue;
      default:
        break;
    }
    switch (op) {
      case 0x00:  // nop
        break;
      case 0x02:
        if (!advance(r.U8())) return;
        break;
      case 0x03:
        if (!advance(r.Fixed(2))) return;
        break;
      case 0x04:
        if (!advance(r.Fixed(4))) return;
        break;
      case 0x05: {  // offset_extended
        uint64_t reg = r.Uleb();
        set_offset(reg, static_cast<int64_t>(r.Uleb()) * cie.data_align);
        break;
      }
      case 0x06: {  // restore_extended
        uint64_t reg = r.Uleb();
        if (reg == kRegRbp) {
          st->rbp = init.rbp;
          st->rbp_off = init.rbp_off;
        } else if (reg == cie.ra_reg) {
          st->ra = init.ra;
          st->ra_off = init.ra_off;
        }
        break;
      }
      case 0x07:  // undefined
        set_other(r.Uleb(), CfiState::kUndefined);
        break;
      case 0x08:  // same_value
        set_other(r.Uleb(), CfiState::kSame);
        break;
      case 0x09: {  // register
        uint64_t reg = r.Uleb();
        r.Uleb();
        set_other(reg, CfiState::kOther);
        break;
      }
      case 0x0a:  // remember_state
        if (depth == 8) {
          st->unsupported = true;
          return;
        }
        stack[depth++] = *st;
        break;
      case 0x0b:  // restore_state: the CFA rule is restored too (as libgcc does)
        if (depth == 0) {
          st->unsupported = true;
          return;
        }
        *st = stack[--depth];
        break;
      case 0x0c:  // def_cfa
        st->cfa_reg = static_cast<int>(r.Uleb());
        st->cfa_off = static_cast<int64_t>(r.Uleb());
        break;
      case 0x0d:  // def_cfa_register
        st->cfa_reg = static_cast<int>(r.Uleb());
        break;
      case 0x0e:  // def_cfa_offset
        st->cfa_off = static_cast<int64_t>(r.Uleb());
        break;
      case 0x0f:  // def_cfa_expression
        st->unsupported = true;
        return;
      case 0x10: {  // expression
        uint64_t reg = r.Uleb();
        r.Skip(r.Uleb());
        set_other(reg, CfiState::kOther);
        break;
      }
      case 0x11: {  // offset_extended_sf
        uint64_t reg = r.Uleb();
        set_offset(reg, r.Sleb() * cie.data_align);
        break;
      }
      case 0x12:  // def_cfa_sf
        st->cfa_reg = static_cast<int>(r.Uleb());
        st->cfa_off = r.Sleb() * cie.data_align;
        break;
      case 0x13:  // def_cfa_offset_sf
        st->cfa_off = r.Sleb() * cie.data_align;
        break;
      case 0x14:    // val_offset
      case 0x15: {  // val_offset_sf
        uint64_t reg = r.Uleb();
        if (op == 0x14) r.Uleb();
        else r.Sleb();
        set_other(reg, CfiState::kOther);
        break;
      }
      case 0x16: {  // val_expression
        uint64_t reg = r.Uleb();
        r.Skip(r.Uleb());
        set_other(reg, CfiState::kOther);
        break;
      }
      case 0x2e:  // GNU_args_size
        r.Uleb();
        break;
      case 0x2f: {  // GNU_negative_offset_extended
        uint64_t reg = r.Uleb();
        set_offset(reg, -static_cast<int64_t>(r.Uleb()) * cie.data_align);
        break;
      }
      default:  // set_loc, vendor extensions
        st->unsupported = true;
        return;
    }
  }
  if (!r.ok()) st->unsupported = true;
}

// ---- Finding a PC's FDE ---------------------------------------------------
//
// libgcc's _Unwind_Find_FDE searches .eh_frame_hdr and reads .eh_frame
// through the object's mapping, and the kernel maps 64 KiB of the file
// around every page first touched (fault-around): the first sampled stack
// of a process put ~0.3 MiB of libc's and libstdc++'s unwind tables into
// its RSS (small_process: 6.6-6.8 MiB against 6.3 without sampling). The
// same bytes are read here from the object's file with pread, which leaves
// them in the page cache only. The file must be the one mapped: its
// build-ID note is compared with the mapped one (on the first page, which
// the loader has touched already). Whatever this does not handle (no
// build ID or file, other encodings, 64-bit DWARF, code outside any object)
// goes to libgcc as before.

struct FdeCopy {
  uint8_t fde[1024];
  uint8_t cie[256];
  uintptr_t func = 0;  // start of the code the FDE covers
};

enum class FdeLookup { kFound, kNone, kFallback };

constexpr uint32_t kPtLoad = 1, kPtNote = 4, kPtGnuEhFrame = 0x6474e550;

std::atomic<size_t> fde_reads_from_file{0};
std::atomic<size_t> fde_reads_from_mapping{0};

// What the file reads need of the object that holds a PC, copied while
// dl_iterate_phdr holds the loader's lock; the reads run after it is
// released. With the reads inside the callback (a dozen system calls under
// the lock), the child of a fork made meanwhile by another thread hung on
// that lock (sampling.HeapProfile.ThreadsAndForkWhileSampling), so it is
// held no longer than libgcc holds it. The copy also means that no mapped
// byte of the object is read once the lock is dropped (it may be dlclosed).
struct ObjectCopy {
  static constexpr int kMaxPhdrs = 16;  // PT_LOAD, PT_NOTE and PT_GNU_EH_FRAME only
  static constexpr size_t kMaxNotes = 256;
  char path[256];
  ElfW(Phdr) phdr[kMaxPhdrs];
  int phnum = 0;
  uintptr_t bias = 0;
  int eh_frame_hdr = -1;          // index in phdr[] of PT_GNU_EH_FRAME
  uint8_t notes[kMaxNotes];       // the mapped PT_NOTE segments, one after another
  size_t notes_bytes = 0;
};

struct FileQuery {
  uintptr_t pc;
  ObjectCopy* object;
  bool first = true;    // the first object dl_iterate_phdr reports is the program
  bool copied = false;  // *object describes the object holding pc, which has a file
};

// The file offset of link-time address `vaddr` (n bytes), or -1.
int64_t FileOffset(const ElfW(Phdr)* ph, int phnum, uint64_t vaddr, uint64_t n) {
  for (int i = 0; i < phnum; ++i) {
    if (ph[i].p_type != kPtLoad) continue;
    if (vaddr >= ph[i].p_vaddr && vaddr + n <= ph[i].p_vaddr + ph[i].p_filesz) {
      return static_cast<int64_t>(ph[i].p_offset + (vaddr - ph[i].p_vaddr));
    }
  }
  return -1;
}

// The file is the mapped object if its notes (with the GNU build ID among
// them) equal the mapped ones.
bool SameObject(int fd, const ObjectCopy& o) {
  bool has_build_id = false;
  size_t at_copy = 0;
  for (int i = 0; i < o.phnum; ++i) {
    const ElfW(Phdr)& ph = o.phdr[i];
    if (ph.p_type != kPtNote) continue;
    uint8_t file_notes[ObjectCopy::kMaxNotes];
    if (ph.p_filesz > sizeof(file_notes) || at_copy + ph.p_filesz > o.notes_bytes ||
        !os::ReadAt(fd, ph.p_offset, file_notes, ph.p_filesz)) {
      return false;
    }
    if (memcmp(o.notes + at_copy, file_notes, ph.p_filesz) != 0) return false;
    at_copy += ph.p_filesz;
    // Notes: namesz, descsz, type, name (padded to 4), desc (padded to 4).
    for (size_t at = 0; at + 12 <= ph.p_filesz;) {
      uint32_t h[3];
      memcpy(h, file_notes + at, 12);
      const size_t name_at = at + 12, desc_at = name_at + ((h[0] + 3) & ~3u);
      if (h[2] == 3 && h[0] == 4 && desc_at <= ph.p_filesz && memcmp(file_notes + name_at, "GNU", 4) == 0 &&
          h[1] >= 8) {
        has_build_id = true;  // NT_GNU_BUILD_ID
      }
      at = desc_at + ((h[1] + 3) & ~3u);
    }
  }
  return has_build_id;
}

// Reads the FDE that covers pc (and its CIE) from the object's file.
FdeLookup ReadFdeFromFile(int fd, const ObjectCopy& o, uintptr_t pc, FdeCopy* out) {
  const ElfW(Phdr)* ph = o.phdr;
  const int phnum = o.phnum;
  const ElfW(Phdr)& eh = o.phdr[o.eh_frame_hdr];
  // .eh_frame_hdr: version 1, then the encodings of eh_frame_ptr, fde_count
  // and the table. GNU ld and lld write pcrel|sdata4, udata4 and
  // datarel|sdata4 (entries: two int32 relative to the header).
  const int64_t hdr_off = FileOffset(ph, phnum, eh.p_vaddr, 12);
  uint8_t hdr[12];
  if (hdr_off < 0 || !os::ReadAt(fd, static_cast<uint64_t>(hdr_off), hdr, sizeof(hdr))) {
    return FdeLookup::kFallback;
  }
  if (hdr[0] != 1 || hdr[1] != 0x1b || hdr[2] != 0x03 || hdr[3] != 0x3b) return FdeLookup::kFallback;
  uint32_t count;
  memcpy(&count, hdr + 8, 4);
  if (count == 0) return FdeLookup::kNone;
  const uint64_t table_off = static_cast<uint64_t>(hdr_off) + 12;
  const uintptr_t hdr_addr = o.bias + eh.p_vaddr;
  const int64_t rel = static_cast<int64_t>(pc - hdr_addr);
  if (FileOffset(ph, phnum, eh.p_vaddr + 12, uint64_t{count} * 8) < 0) return FdeLookup::kFallback;
  // The last entry whose start is at or below pc: halve with single reads,
  // then read the last few entries at once.
  uint32_t lo = 0, hi = count;  // the answer is in [lo, hi); entry lo starts at or below pc once lo > 0
  int32_t entries[2 * 32];
  while (hi - lo > 32) {
    const uint32_t mid = lo + (hi - lo) / 2;
    int32_t start;
    if (!os::ReadAt(fd, table_off + uint64_t{mid} * 8, &start, 4)) return FdeLookup::kFallback;
    if (start <= rel) lo = mid;
    else hi = mid;
  }
  if (!os::ReadAt(fd, table_off + uint64_t{lo} * 8, entries, size_t{hi - lo} * 8)) return FdeLookup::kFallback;
  int found = -1;
  for (uint32_t i = 0; i < hi - lo; ++i) {
    if (entries[2 * i] <= rel) found = static_cast<int>(i);
  }
  if (found < 0) return FdeLookup::kNone;  // pc lies before the first function
  const uint64_t fde_vaddr = eh.p_vaddr + static_cast<uint64_t>(static_cast<int64_t>(entries[2 * found + 1]));
  out->func = hdr_addr + static_cast<uintptr_t>(static_cast<intptr_t>(entries[2 * found]));
  // The FDE, then its CIE (at the FDE's CIE pointer field minus its value).
  uint32_t len;
  int64_t fde_off = FileOffset(ph, phnum, fde_vaddr, 4);
  if (fde_off < 0 || !os::ReadAt(fd, static_cast<uint64_t>(fde_off), &len, 4)) return FdeLookup::kFallback;
  if (len < 8 || len > sizeof(out->fde) - 4) return FdeLookup::kFallback;  // also 64-bit DWARF
  if (FileOffset(ph, phnum, fde_vaddr, len + 4) < 0 ||
      !os::ReadAt(fd, static_cast<uint64_t>(fde_off), out->fde, len + 4)) {
    return FdeLookup::kFallback;
  }
  int32_t cie_delta;
  memcpy(&cie_delta, out->fde + 4, 4);
  if (cie_delta <= 0) return FdeLookup::kFallback;  // 0 would make it a CIE
  const uint64_t cie_vaddr = fde_vaddr + 4 - static_cast<uint64_t>(cie_delta);
  const int64_t cie_off = FileOffset(ph, phnum, cie_vaddr, 4);
  if (cie_off < 0 || !os::ReadAt(fd, static_cast<uint64_t>(cie_off), &len, 4)) return FdeLookup::kFallback;
  if (len < 4 || len > sizeof(out->cie) - 4 || FileOffset(ph, phnum, cie_vaddr, len + 4) < 0 ||
      !os::ReadAt(fd, static_cast<uint64_t>(cie_off), out->cie, len + 4)) {
    return FdeLookup::kFallback;
  }
  return FdeLookup::kFound;
}

// dl_iterate_phdr's callback: finds the object holding q->pc and copies
// what ReadFdeFromFile needs (no system call under the loader's lock).
int FindObject(dl_phdr_info* info, size_t, void* arg) {
  FileQuery* q = static_cast<FileQuery*>(arg);
  const bool program = q->first;
  q->first = false;
  bool holds_pc = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != kPtLoad) continue;
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (q->pc >= lo && q->pc < lo + ph.p_memsz) holds_pc = true;
  }
  if (!holds_pc) return 0;
  ObjectCopy& o = *q->object;
  // The program's own name is empty; /proc/self/exe is its file even if the
  // path was replaced since. A library's name is the path the loader opened.
  const char* path = info->dlpi_name != nullptr && info->dlpi_name[0] != '\0' ? info->dlpi_name
                     : program ? "/proc/self/exe" : nullptr;
  if (path == nullptr) return 1;  // libgcc (registered frames, vdso)
  const size_t path_len = strnlen(path, sizeof(o.path));
  if (path_len == sizeof(o.path)) return 1;
  memcpy(o.path, path, path_len + 1);
  o.bias = info->dlpi_addr;
  // Only the headers the reads use (an object has 10-20 in all).
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != kPtLoad && ph.p_type != kPtNote && ph.p_type != kPtGnuEhFrame) continue;
    if (o.phnum == ObjectCopy::kMaxPhdrs) return 1;
    if (ph.p_type == kPtGnuEhFrame) o.eh_frame_hdr = o.phnum;
    o.phdr[o.phnum++] = ph;
    if (ph.p_type == kPtNote) {
      if (o.notes_bytes + ph.p_filesz > sizeof(o.notes)) return 1;
      memcpy(o.notes + o.notes_bytes, reinterpret_cast<const void*>(info->dlpi_addr + ph.p_vaddr), ph.p_filesz);
      o.notes_bytes += ph.p_filesz;
    }
  }
  q->copied = o.eh_frame_hdr >= 0;
  return 1;
}

FdeLookup FindFdeInFile(uintptr_t pc, FdeCopy* out) {
  ObjectCopy object;
  FileQuery q;
  q.pc = pc;
  q.object = &object;
  dl_iterate_phdr(&FindObject, &q);
  if (!q.copied) return FdeLookup::kFallback;
  const int fd = os::OpenForReading(object.path);
  if (fd < 0) return FdeLookup::kFallback;
  FdeLookup result = SameObject(fd, object) ? ReadFdeFromFile(fd, object, pc, out) : FdeLookup::kFallback;
  os::CloseFile(fd);
  return result;
}

// Works out the rule for the frame whose code is at `pc` (a return address
// minus one, or an exact PC for the first frame) from its FDE.
Rule RuleFromFde(uintptr_t pc, const uint8_t* fde, const uint8_t* cie, uintptr_t func, bool check_range) {
  uint32_t len;
  memcpy(&len, fde, 4);
  if (len == 0 || len == 0xffffffffu) return Unsupported();
  CieInfo info;
  if (!ParseCie(cie, &info) || info.signal_frame) return Unsupported();
  Reader r(fde + 8, fde + 4 + len);
  r.SkipEncoded(info.fde_encoding);  // pc_begin (func has it)
  // pc_range, an unsigned size in the low bits of the encoding.
  uint64_t range = 0;
  switch (info.fde_encoding & 0x0f) {
    case 0x00: case 0x04: case 0x0c: range = r.Fixed(8); break;
    case 0x02: case 0x0a: range = r.Fixed(2); break;
    case 0x03: case 0x0b: range = r.Fixed(4); break;
    case 0x01: range = r.Uleb(); break;
    case 0x09: range = static_cast<uint64_t>(r.Sleb()); break;
    default: return Unsupported();
  }
  if (info.has_z) r.Skip(r.Uleb());  // augmentation data
  if (!r.ok()) return Unsupported();
  if (func == 0 || func > pc) return Unsupported();
  // The table's entry below pc may end before it (a gap between functions,
  // code without CFI): no FDE covers pc, as _Unwind_Find_FDE would find.
  if (check_range && pc - func >= range) return End();
  CfiState st;
  uintptr_t loc = func;
  RunCfi(info.insns, info.end, info, &loc, ~uintptr_t{0}, st, &st);
  CfiState init = st;
  loc = func;
  RunCfi(r.pos(), fde + 4 + len, info, &loc, pc, init, &st);
  if (st.unsupported) return Unsupported();
  if (st.ra == CfiState::kUndefined) return End();
  if (st.ra != CfiState::kOffset || (st.cfa_reg != kRegRsp && st.cfa_reg != kRegRbp) ||
      (st.rbp != CfiState::kSame && st.rbp != CfiState::kOffset)) {
    return Unsupported();
  }
  if (st.cfa_off < -(1 << 23) || st.cfa_off >= (1 << 23) || st.ra_off < -32768 || st.ra_off > 32767 ||
      st.rbp_off < -32768 || st.rbp_off > 32767) {
    return Unsupported();
  }
  Rule rule;
  rule.kind = Rule::kFrame;
  rule.cfa_is_rbp = st.cfa_reg == kRegRbp;
  rule.cfa_off = static_cast<int32_t>(st.cfa_off);
  rule.ra_off = static_cast<int16_t>(st.ra_off);
  rule.rbp_saved = st.rbp == CfiState::kOffset;
  rule.rbp_off = static_cast<int16_t>(st.rbp_off);
  return rule;
}

Rule RuleThroughMapping(uintptr_t pc) {
  if (!HaveLibgccUnwinder()) return End();  // no libgcc_s in the process (above)
  DwarfEhBases bases = {};
  const uint8_t* fde = static_cast<const uint8_t*>(_Unwind_Find_FDE(reinterpret_cast<void*>(pc), &bases));
  fde_reads_from_mapping.fetch_add(1, std::memory_order_relaxed);
  if (fde == nullptr) return End();  // no unwind information: libgcc stops here too
  uint32_t len;
  memcpy(&len, fde, 4);
  if (len == 0 || len == 0xffffffffu) return Unsupported();
  int32_t cie_delta;
  memcpy(&cie_delta, fde + 4, 4);
  return RuleFromFde(pc, fde, fde + 4 - cie_delta, reinterpret_cast<uintptr_t>(bases.func), false);
}

Rule RuleThroughFile(uintptr_t pc, bool* handled) {
  FdeCopy copy;
  const FdeLookup result = FindFdeInFile(pc, &copy);
  *handled = result != FdeLookup::kFallback;
  if (result == FdeLookup::kFallback) return Unsupported();
  fde_reads_from_file.fetch_add(1, std::memory_order_relaxed);
  if (result == FdeLookup::kNone) return End();
  return RuleFromFde(pc, copy.fde, copy.cie, copy.func, true);
}

constinit std::atomic<bool> read_fdes_from_files{true};

Rule ComputeRule(uintptr_t pc) {
  if (read_fdes_from_files.load(std::memory_order_relaxed)) {
    bool handled;
    Rule r = RuleThroughFile(pc, &handled);
    if (handled) return r;
  }
  return RuleThroughMapping(pc);
}

// Rules by PC: direct-mapped, read without a lock (a sequence check on the
// key), written by one thread at a time.
struct CacheSlot {
  std::atomic<uintptr_t> pc;  // 0: empty or being written
  std::atomic<uint64_t> rule;
};
constexpr size_t kCacheSlots = 8192;
constinit CacheSlot rule_cache[kCacheSlots] = {};
constinit SpinLock& rule_cache_lock = g_runtime_locks.unwinder.lock;
// The slots in use: the first 256 (one 4 KiB page), four times more each
// time the fills reach half of them. Hashing PCs over all 128 KiB at once
// faulted in most of its 32 pages for the few dozen PCs of a small
// process's samples (~90 KiB of its peak). A slot left outside the mask
// after a growth is only a lost entry: every hit checks the PC.
constexpr size_t kFirstCacheSlots = 256;
constinit std::atomic<size_t> cache_mask{kFirstCacheSlots - 1};
constinit size_t cache_fills = 0;  // under rule_cache_lock

size_t SlotOf(uintptr_t pc) {
  return static_cast<size_t>((pc * 0x9e3779b97f4a7c15ull) >> 51) & cache_mask.load(std::memory_order_relaxed);
}

Rule RuleFor(uintptr_t pc) {
  CacheSlot& s = rule_cache[SlotOf(pc)];
  uintptr_t k1 = s.pc.load(std::memory_order_acquire);
  if (k1 == pc) {
    uint64_t v = s.rule.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.pc.load(std::memory_order_relaxed) == pc) return Rule::Unpack(v);
  }
  Rule r = ComputeRule(pc);
  if (rule_cache_lock.TryLock()) {
    s.pc.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    s.rule.store(r.Pack(), std::memory_order_relaxed);
    s.pc.store(pc, std::memory_order_release);
    const size_t mask = cache_mask.load(std::memory_order_relaxed);
    if (++cache_fills > (mask + 1) / 2 && mask + 1 < kCacheSlots) {
      const size_t grown = mask * 4 + 3;
      cache_mask.store(grown < kCacheSlots ? grown : kCacheSlots - 1, std::memory_order_relaxed);
      cache_fills = 0;
    }
    rule_cache_lock.Unlock();
  }
  return r;
}

// Largest frame believed: a CFA further than this above the stack pointer
// ends the walk.
constexpr uintptr_t kMaxFrameBytes = uintptr_t{64} << 20;

}  // namespace

// The stack walk with cached rules; -1 if a frame needs libgcc.
JSMALLOC_ENTRY_SECTION __attribute__((noinline)) int CaptureStackCached(void** out, int max) {
  return CaptureStackFrom(UnwindStartHere(), out, max);
}

JSMALLOC_ENTRY_SECTION int CaptureStackFrom(const UnwindStart& start, void** out, int max) {
  uintptr_t sp = start.sp, fp = start.fp;
  // The first rule is for the start's exact PC; callers' rules are looked up
  // at their return address minus one (inside the call instruction).
  uintptr_t lookup = start.pc;
  int n = 0;
  bool skipping = true;
  while (n < max) {
    Rule r = RuleFor(lookup);
    if (r.kind == Rule::kUnsupported) return -1;
    if (r.kind != Rule::kFrame) break;
    uintptr_t cfa = (r.cfa_is_rbp ? fp : sp) + static_cast<intptr_t>(r.cfa_off);
    if (cfa <= sp || cfa - sp > kMaxFrameBytes) break;
    // The saved return address and rbp lie in the frame being left (between
    // its stack pointer and a little above its CFA).
    uintptr_t ra_at = cfa + static_cast<intptr_t>(r.ra_off);
    uintptr_t fp_at = cfa + static_cast<intptr_t>(r.rbp_off);
    if (ra_at < sp || ra_at > cfa + 256 || (r.rbp_saved && (fp_at < sp || fp_at > cfa + 256))) break;
    uintptr_t ra = *reinterpret_cast<const uintptr_t*>(ra_at);
    if (r.rbp_saved) fp = *reinterpret_cast<const uintptr_t*>(fp_at);
    sp = cfa;
    if (ra == 0) break;
    if (skipping && InAllocatorEntry(ra - 1)) {
      // Still inside the allocator.
    } else {
      skipping = false;
      out[n++] = reinterpret_cast<void*>(ra);
    }
    lookup = ra - 1;
  }
  return n;
}

FdeReadCounts FdeReads() {
  FdeReadCounts c;
  c.from_file = fde_reads_from_file.load(std::memory_order_relaxed);
  c.from_mapping = fde_reads_from_mapping.load(std::memory_order_relaxed);
  return c;
}

void UnwinderLockForFork() { rule_cache_lock.Lock(); }

void UnwinderUnlockAfterFork(bool child) {
  if (child) rule_cache_lock.ResetAfterFork();
  else rule_cache_lock.Unlock();
}

void ResetUnwindRulesForTest() {
  rule_cache_lock.Lock();
  for (CacheSlot& s : rule_cache) s.pc.store(0, std::memory_order_release);
  cache_mask.store(kFirstCacheSlots - 1, std::memory_order_relaxed);
  cache_fills = 0;
  rule_cache_lock.Unlock();
}

void SetReadFdesFromFilesForTest(bool on) { read_fdes_from_files.store(on, std::memory_order_relaxed); }

uint64_t UnwindRuleFromFileForTest(uintptr_t pc, bool* handled) { return RuleThroughFile(pc, handled).Pack(); }

uint64_t UnwindRuleForTest(uintptr_t pc) { return RuleFor(pc).Pack(); }

uint64_t UnwindRuleUncachedForTest(uintptr_t pc) { return ComputeRule(pc).Pack(); }

size_t UnwindRuleCacheSlotsForTest() { return cache_mask.load(std::memory_order_relaxed) + 1; }

uint64_t UnwindRuleThroughMappingForTest(uintptr_t pc) { return RuleThroughMapping(pc).Pack(); }

#else   // !__x86_64__

int CaptureStackCached(void**, int) { return -1; }
int CaptureStackFrom(const UnwindStart&, void**, int) { return -1; }
FdeReadCounts FdeReads() { return FdeReadCounts(); }
void UnwinderLockForFork() {}
void UnwinderUnlockAfterFork(bool) {}
void ResetUnwindRulesForTest() {}
void SetReadFdesFromFilesForTest(bool) {}
uint64_t UnwindRuleFromFileForTest(uintptr_t, bool* handled) {
  *handled = false;
  return 0;
}
uint64_t UnwindRuleThroughMappingForTest(uintptr_t) { return 0; }

#endif  // __x86_64__

// In the section itself, so the section exists in every link that uses it
// (unit tests link the components without the entry points).
JSMALLOC_ENTRY_SECTION __attribute__((noinline)) int CaptureStack(void** out, int max) {
  if (max <= 0) return 0;
#if defined(__x86_64__)
  int n = CaptureStackCached(out, max);
  if (n >= 0) return n;
#endif
  return CaptureStackWithLibgcc(out, max);
}

}  // namespace jsmalloc

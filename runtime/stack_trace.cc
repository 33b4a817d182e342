#include "runtime/stack_trace.h"

#include <unwind.h>

#include <atomic>
#include <cstring>

#include "runtime/spinlock.h"

extern "C" {
// Defined by the linker around the section (hidden: resolved within the
// object that holds the allocator).
extern const char __start_jsmalloc_entry[] __attribute__((visibility("hidden")));
extern const char __stop_jsmalloc_entry[] __attribute__((visibility("hidden")));
}

namespace jsmalloc {

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
  if (max <= 0) return 0;
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

// Works out the rule for the frame whose code is at `pc` (a return address
// minus one, or an exact PC for the first frame).
Rule ComputeRule(uintptr_t pc) {
  DwarfEhBases bases = {};
  const uint8_t* fde = static_cast<const uint8_t*>(_Unwind_Find_FDE(reinterpret_cast<void*>(pc), &bases));
  if (fde == nullptr) return End();  // no unwind information: libgcc stops here too
  uint32_t len;
  memcpy(&len, fde, 4);
  if (len == 0 || len == 0xffffffffu) return Unsupported();
  int32_t cie_delta;
  memcpy(&cie_delta, fde + 4, 4);
  const uint8_t* cie = fde + 4 - cie_delta;
  CieInfo info;
  if (!ParseCie(cie, &info) || info.signal_frame) return Unsupported();
  Reader r(fde + 8, fde + 4 + len);
  r.SkipEncoded(info.fde_encoding);         // pc_begin (bases.func has it)
  r.SkipEncoded(info.fde_encoding & 0x0f);  // pc_range
  if (info.has_z) r.Skip(r.Uleb());         // augmentation data
  if (!r.ok()) return Unsupported();
  uintptr_t func = reinterpret_cast<uintptr_t>(bases.func);
  if (func == 0 || func > pc) return Unsupported();
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

// Rules by PC: direct-mapped, read without a lock (a sequence check on the
// key), written by one thread at a time.
struct CacheSlot {
  std::atomic<uintptr_t> pc;  // 0: empty or being written
  std::atomic<uint64_t> rule;
};
constexpr size_t kCacheSlots = 8192;
constinit CacheSlot rule_cache[kCacheSlots] = {};
constinit SpinLock rule_cache_lock;

size_t SlotOf(uintptr_t pc) { return static_cast<size_t>((pc * 0x9e3779b97f4a7c15ull) >> 51) & (kCacheSlots - 1); }

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

#else   // !__x86_64__

int CaptureStackCached(void**, int) { return -1; }
int CaptureStackFrom(const UnwindStart&, void**, int) { return -1; }

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

// Heap misuse, in a process running on JSMalloc (docs/reliability.md):
//   MisuseAlways    - what is detected in every configuration;
//   MisuseCheck     - JSMALLOC_CHECK=1: every free validated at once, double
//                     frees and interior pointers of small objects, sized
//                     delete with the wrong size;
//   MisuseHardened  - JSMALLOC_HARDENED=1: free-list links also validated
//                     against the pagemap.
// Each suite runs only under its setting (tests/CMakeLists.txt sets it).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <unistd.h>
#include <new>
#include <thread>
#include <vector>

#include "jsmalloc/jsmalloc.h"

namespace {

bool EnvIs(const char* name, const char* value) {
  const char* v = getenv(name);
  return v != nullptr && strcmp(v, value) == 0;
}

// The compiler must not see through these (it may drop or fold a
// malloc/free pair, or warn about the misuse we want).
void* volatile sink;
__attribute__((noinline)) void* Opaque(void* p) {
  sink = p;
  return sink;
}

// ---- No false alarm ----------------------------------------------------------

// Every allocation entry point, with sizes and alignments at the edges (0, 1,
// class boundaries, page multiples, large, impossible), as the first call of
// a new thread, right after the main thread freed a block of the same kind
// (so the new thread may be handed that block, freed mark and all), then the
// matching deallocation, in a seeded random order. A false report aborts the
// process. This once failed in check mode: posix_memalign(&p, 64, 0) as a
// thread's first call skipped the check that clears a block's freed mark,
// and its free was reported as a double free; so did every allocation of a
// thread after it asked for an impossible size.
enum class Entry { kMalloc, kCalloc, kRealloc, kPosixMemalign, kAlignedAlloc, kMemalign, kValloc, kPvalloc,
                   kNew, kNewArray, kNewAligned, kNewNothrow, kCount };

void* AllocateVia(Entry e, size_t size, size_t align) {
  void* p = nullptr;
  switch (e) {
    case Entry::kMalloc: return malloc(size);
    case Entry::kCalloc: return calloc(1, size);
    case Entry::kRealloc: return realloc(nullptr, size);
    case Entry::kPosixMemalign: return posix_memalign(&p, align, size) == 0 ? p : nullptr;
    case Entry::kAlignedAlloc: return aligned_alloc(align, (size + align - 1) / align * align);
    case Entry::kMemalign: return memalign(align, size);
    case Entry::kValloc: return valloc(size);
    case Entry::kPvalloc: return pvalloc(size);
    case Entry::kNew:
      try { return ::operator new(size); } catch (const std::bad_alloc&) { return nullptr; }
    case Entry::kNewArray:
      try { return ::operator new[](size); } catch (const std::bad_alloc&) { return nullptr; }
    case Entry::kNewAligned:
      try { return ::operator new(size, std::align_val_t{align}); } catch (const std::bad_alloc&) { return nullptr; }
    case Entry::kNewNothrow: return ::operator new(size, std::nothrow);
    default: return nullptr;
  }
}

void ReleaseVia(Entry e, void* p, size_t size, size_t align) {
  if (p == nullptr) return;
  switch (e) {
    case Entry::kNew: ::operator delete(p, size); return;
    case Entry::kNewArray: ::operator delete[](p, size); return;
    case Entry::kNewAligned: ::operator delete(p, size, std::align_val_t{align}); return;
    case Entry::kNewNothrow: ::operator delete(p, std::nothrow); return;
    default: free(p); return;
  }
}

void EveryEntryPointAsAThreadsFirstCall() {
  std::vector<size_t> sizes = {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1023, 1024, 1025, 4095, 4096, 4097, 8192,
                               65536, 262143, 262144, 262145, size_t{1} << 20, size_t{5} << 20};
  const size_t aligns[] = {8, 16, 64, 4096, 65536};
  struct Case {
    Entry e;
    size_t size, align;
  };
  std::vector<Case> cases;
  for (int e = 0; e < static_cast<int>(Entry::kCount); ++e) {
    for (size_t size : sizes) {
      for (size_t align : aligns) cases.push_back({static_cast<Entry>(e), size, align});
    }
  }
  // Impossible sizes: nothing to free, nothing to report.
  for (int e = 0; e < static_cast<int>(Entry::kCount); ++e) cases.push_back({static_cast<Entry>(e), ~size_t{0} >> 1, 64});
  unsigned seed = 20261207;
  for (size_t i = cases.size(); i > 1; --i) std::swap(cases[i - 1], cases[rand_r(&seed) % i]);
  for (const Case& c : cases) {
    ReleaseVia(c.e, Opaque(AllocateVia(c.e, c.size, c.align)), c.size, c.align);
    std::thread([c] {
      void* p = Opaque(AllocateVia(c.e, c.size, c.align));
      if (p != nullptr && c.size > 0 && c.size < (size_t{1} << 30)) static_cast<char*>(p)[0] = 1;
      ReleaseVia(c.e, p, c.size, c.align);
    }).join();
  }
}

// ---- Always on -------------------------------------------------------------

class MisuseAlways : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(MisuseAlways, LargeBlockDoubleFreeAndInteriorFreeAbortNamingTheAddress) {
  EXPECT_DEATH(
      {
        void* q = malloc(1 << 20);
        free(q);
        free(Opaque(q));
      },
      "jsmalloc: (invalid|double) free.* 0x[0-9a-f]+");
  EXPECT_DEATH(
      {
        char* q = static_cast<char*>(malloc(600000));
        free(Opaque(q + 8192));
      },
      // A large block's pagemap entries cover its first and last pages only.
      "jsmalloc: invalid free of pointer (that is not the start of an object|not allocated by jsmalloc): "
      "0x[0-9a-f]+");
}

TEST_F(MisuseAlways, EveryEntryPointAsAThreadsFirstCallRaisesNoFalseAlarm) {
  EveryEntryPointAsAThreadsFirstCall();
  SUCCEED();
}

TEST_F(MisuseAlways, ForeignPointersAbort) {
  static char global[64];
  EXPECT_DEATH(free(Opaque(global)), "jsmalloc: invalid free of pointer not allocated by jsmalloc: 0x");
  EXPECT_DEATH(free(Opaque(reinterpret_cast<void*>(uintptr_t{1} << 47))), "jsmalloc: invalid free");
  EXPECT_DEATH(
      {
        int x;
        free(Opaque(&x));
      },
      "jsmalloc: invalid free");
  // realloc and malloc_usable_size of a foreign pointer too.
  EXPECT_DEATH(Opaque(realloc(Opaque(global), 100)), "jsmalloc: .*0x");
}

TEST_F(MisuseAlways, SmallDoubleFreeIsCaughtWhenTheObjectsReachTheCentralList) {
  // Without check mode a small double free is found when both copies come
  // back to their span: here when malloc_trim drains the caches. Only if
  // every other object of that span comes back too, so the size is one
  // nothing else in the process uses: with 4096 B objects, which share
  // spans with buffers that live on (stdio's are that size), the double free
  // went undetected in 1 run in 60 under load.
  EXPECT_DEATH(
      {
        std::vector<void*> v;
        for (int i = 0; i < 64; ++i) v.push_back(malloc(13000));
        // Delayed: another free comes between the two (an immediate one is
        // caught at once, below).
        free(v[7]);
        free(v[8]);
        free(Opaque(v[7]));
        for (int i = 0; i < 64; ++i) {
          if (i != 7 && i != 8) free(v[i]);
        }
        malloc_trim(0);
        fprintf(stderr, "not detected\n");
        _exit(0);
      },
      // Per-thread, the second free rewrote the first copy's link: walking
      // the list may also read a link from a span released meanwhile.
      "jsmalloc: ((double|invalid) free|corrupted free-list link).*0x[0-9a-f]+");
}

TEST_F(MisuseAlways, DelayedDoubleFreeIsCaughtWhenItsCopiesLeaveTheCaches) {
  // Another free between the two, or the second on another thread: both
  // copies sit in caches until they overflow or are drained (here
  // malloc_trim); the second to reach a transfer cache finds the first's
  // free mark and aborts, whatever else of the class is live.
  for (int cross_thread = 0; cross_thread < 2; ++cross_thread) {
    for (size_t size : {size_t{16}, size_t{64}, size_t{1000}, size_t{13000}}) {
      EXPECT_DEATH(
          {
            std::vector<void*> live;
            for (int i = 0; i < 100; ++i) live.push_back(malloc(size));
            void* p = live[10];
            free(p);
            free(live[11]);
            if (cross_thread) {
              std::thread([p] { free(Opaque(p)); }).join();
            } else {
              free(Opaque(p));
            }
            malloc_trim(0);
            fprintf(stderr, "not detected\n");
            _exit(0);
          },
          "jsmalloc: (double free of pointer|corrupted free-list link .*) 0x[0-9a-f]+")
          << size << (cross_thread ? " across threads" : "");
    }
  }
}

TEST_F(MisuseAlways, ImmediateSmallDoubleFreeAbortsBeforeTheObjectIsHandedOutTwice) {
  // free(p); free(p): the second push finds p on top of its class (per-CPU
  // slab or thread cache) and aborts, for every size class, before the two
  // allocations below could both get p.
  for (size_t size : {size_t{16}, size_t{64}, size_t{100}, size_t{1000}, size_t{4096}, size_t{100000}}) {
    EXPECT_DEATH(
        {
          void* p = malloc(size);
          free(p);
          free(Opaque(p));
          void* a = malloc(size);
          void* b = malloc(size);
          fprintf(stderr, "not detected: %p %p\n", a, b);
          _exit(0);
        },
        "jsmalloc: double free of pointer 0x[0-9a-f]+")
        << size;
  }
}

TEST_F(MisuseAlways, InteriorPointerOfASmallObjectAbortsAtOnce) {
  // A free of an address inside an object that is not aligned as the
  // class's objects are (p + 8 of any object of 16 bytes or more; for a
  // power-of-two size up to a page, any offset) aborts on the free fast
  // path, before the address could be handed out.
  struct Case {
    size_t size, offset;
  };
  const Case cases[] = {{16, 8}, {64, 8}, {64, 16}, {64, 32}, {64, 48}, {100, 8}, {1000, 8},
                        {1024, 512}, {4096, 8}, {4096, 2048}, {100000, 8}};
  for (const Case& c : cases) {
    EXPECT_DEATH(
        {
          char* p = static_cast<char*>(malloc(c.size));
          free(Opaque(p + c.offset));
          void* a = malloc(c.size);
          void* b = malloc(c.size);
          fprintf(stderr, "not detected: %p %p\n", a, b);
          _exit(0);
        },
        "jsmalloc: invalid free of pointer that is not the start of an object: 0x[0-9a-f]+")
        << c.size << " + " << c.offset;
  }
}

TEST_F(MisuseAlways, ReallocOfABlockJustFreedAborts) {
  // realloc(p) right after free(p), whether the block would stay in place
  // (the same class) or move; and realloc of a pointer into an object.
  for (size_t size : {size_t{64}, size_t{1000}, size_t{100000}}) {
    for (size_t new_size : {size - 4, 4 * size}) {
      EXPECT_DEATH(
          {
            void* p = malloc(size);
            free(p);
            void* q = realloc(Opaque(p), new_size);
            void* a = malloc(size);
            fprintf(stderr, "not detected: %p %p\n", q, a);
            _exit(0);
          },
          "jsmalloc: realloc of freed pointer 0x[0-9a-f]+")
          << size << " -> " << new_size;
    }
    EXPECT_DEATH(
        {
          char* p = static_cast<char*>(malloc(size));
          void* q = realloc(Opaque(p + 8), size / 2);
          fprintf(stderr, "not detected: %p\n", q);
          _exit(0);
        },
        "jsmalloc: invalid realloc of pointer that is not the start of an object: 0x[0-9a-f]+")
        << size;
  }
  // Freed earlier, with another free after it, and drained from the caches
  // (malloc_trim): the transfer caches' free mark gives it away.
  EXPECT_DEATH(
      {
        std::vector<void*> live;
        for (int i = 0; i < 100; ++i) live.push_back(malloc(64));
        free(live[10]);
        free(live[11]);
        malloc_trim(0);
        void* q = realloc(Opaque(live[10]), 48);
        fprintf(stderr, "not detected: %p\n", q);
        _exit(0);
      },
      "jsmalloc: realloc of freed pointer 0x[0-9a-f]+");
  // A large block, freed: its pages are no longer a block.
  EXPECT_DEATH(
      {
        void* p = malloc(size_t{1} << 20);
        free(p);
        void* q = realloc(Opaque(p), 100);
        fprintf(stderr, "not detected: %p\n", q);
        _exit(0);
      },
      "jsmalloc: invalid realloc of pointer not allocated by jsmalloc \\(or freed\\): 0x[0-9a-f]+");
}

TEST_F(MisuseAlways, InteriorPointerAlignedLikeAnObjectIsCaughtWhenItLeavesTheCache) {
  // p + 16 of a 48-byte object passes the free path's alignment test; the
  // transfer cache checks that what it takes in is an object's start.
  for (size_t size : {size_t{48}, size_t{80}, size_t{1000}}) {
    EXPECT_DEATH(
        {
          std::vector<char*> live;
          for (int i = 0; i < 100; ++i) live.push_back(static_cast<char*>(malloc(size)));
          free(Opaque(live[10] + 16));
          malloc_trim(0);
          fprintf(stderr, "not detected\n");
          _exit(0);
        },
        "jsmalloc: invalid free of pointer that is not the start of an object: 0x[0-9a-f]+")
        << size;
  }
}

TEST_F(MisuseAlways, FreeingTheTopObjectOnceIsNotADoubleFree) {
  // The check compares with the top of the class only: alternating frees
  // and allocations of one object, and frees of objects handed out in any
  // order, never trip it.
  for (int round = 0; round < 1000; ++round) {
    void* p = malloc(64);
    free(Opaque(p));
  }
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(malloc(48));
  for (int i = 999; i >= 0; i -= 2) free(v[static_cast<size_t>(i)]);
  for (int i = 0; i < 1000; i += 2) free(v[static_cast<size_t>(i)]);
  SUCCEED();
}

// Free-list links are encoded by default (base/freelist_link.h): a use
// after free that writes an address (or zeros) into a free object's first
// word cannot steer allocation there; the next read of that link aborts.
TEST_F(MisuseAlways, AWriteIntoAFreedObjectCannotSteerAllocation) {
  static char target[4096] __attribute__((aligned(64)));
  for (int zeros = 0; zeros < 2; ++zeros) {
    EXPECT_DEATH(
        {
          // Free every other object, so no span empties, and drain the
          // caches (malloc_trim): the freed objects sit linked in their
          // spans' free lists (per-thread lists link them the same way).
          std::vector<void*> v;
          for (int i = 0; i < 4000; ++i) v.push_back(malloc(64));
          for (size_t i = 1; i < v.size(); i += 2) free(v[i]);
          malloc_trim(0);
          // Use after free: every freed object now "points" at target, or
          // its first word is cleared.
          for (size_t i = 1; i < v.size(); i += 2) {
            *static_cast<void**>(v[i]) = zeros ? nullptr : static_cast<void*>(target);
          }
          for (int i = 0; i < 8000; ++i) {
            void* q = malloc(64);
            if (q == static_cast<void*>(target)) {
              fprintf(stderr, "steered to the target\n");
              _exit(3);
            }
          }
          jsmalloc_release_memory_to_os(~size_t{0});
          fprintf(stderr, "not detected\n");
          _exit(0);
        },
        "jsmalloc: corrupted free-list link \\(a write to freed memory\\?\\) in the free object at 0x")
        << (zeros ? "zeros" : "an address");
  }
}

// ---- Check mode ------------------------------------------------------------

class MisuseCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EnvIs("JSMALLOC_CHECK", "1")) GTEST_SKIP() << "runs with JSMALLOC_CHECK=1";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(MisuseCheck, EverySmallDoubleFreeAbortsAtOnce) {
  for (size_t size : {16, 48, 100, 1024, 5000, 70000, 262144}) {
    EXPECT_DEATH(
        {
          void* p = malloc(size);
          free(p);
          free(Opaque(p));
        },
        "jsmalloc: double free of pointer 0x[0-9a-f]+")
        << size;
  }
  // With other traffic in between, and across threads.
  EXPECT_DEATH(
      {
        void* p = malloc(64);
        free(p);
        std::vector<void*> v;
        // Other classes only: an allocation of its own class could reuse p.
        for (int i = 0; i < 1000; ++i) v.push_back(malloc(512 + i % 200));
        std::thread([&] { free(Opaque(p)); }).join();
      },
      "jsmalloc: double free of pointer 0x");
}

TEST_F(MisuseCheck, ReallocOfAFreedBlockAbortsLater) {
  // Another free in between: check mode's mark finds it.
  EXPECT_DEATH(
      {
        void* p = malloc(64);
        void* other = malloc(64);
        free(p);
        free(other);
        void* q = realloc(Opaque(p), 48);
        fprintf(stderr, "not detected: %p\n", q);
        _exit(0);
      },
      "jsmalloc: realloc of freed pointer 0x[0-9a-f]+");
}

TEST_F(MisuseCheck, InteriorPointerOfASmallObjectAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(malloc(256));
        free(Opaque(p + 16));
      },
      "jsmalloc: invalid free of pointer that is not the start of an object: 0x[0-9a-f]+");
}

TEST_F(MisuseCheck, SizedDeleteWithTheWrongSizeAborts) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(::operator new(100));
        ::operator delete(Opaque(p), 2000);
      },
      "jsmalloc: sized delete of pointer 0x[0-9a-f]+ with size 2000, but the block holds [0-9]+ bytes");
  EXPECT_DEATH(
      {
        void* p = ::operator new(size_t{3} << 20);
        ::operator delete(Opaque(p), size_t{1} << 20);
      },
      "jsmalloc: sized delete of pointer 0x[0-9a-f]+ with size 1048576");
  EXPECT_DEATH(
      {
        void* p = ::operator new(64, std::align_val_t{256});
        ::operator delete(Opaque(p), 100000, std::align_val_t{256});
      },
      "jsmalloc: sized delete");
}

TEST_F(MisuseCheck, EveryEntryPointAsAThreadsFirstCallRaisesNoFalseAlarm) {
  EveryEntryPointAsAThreadsFirstCall();
  SUCCEED();
}

TEST_F(MisuseCheck, CorrectProgramsRunUnchanged) {
  // Right sizes everywhere, reuse of freed memory, realloc, threads.
  for (size_t size : {size_t{1}, size_t{8}, size_t{16}, size_t{17}, size_t{100}, size_t{4096}, size_t{100000},
                      size_t{262144}, size_t{300000}, size_t{5} << 20}) {
    for (int round = 0; round < 3; ++round) {
      char* p = static_cast<char*>(::operator new(size));
      memset(p, 0x5a, size);
      ::operator delete(p, size);
      void* a = ::operator new(size, std::align_val_t{64});
      ::operator delete(a, size, std::align_val_t{64});
    }
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      std::vector<char*> live;
      unsigned seed = 11 + t;
      for (int i = 0; i < 100000; ++i) {
        if (live.size() < 500 || rand_r(&seed) % 2) {
          size_t n = 1 + rand_r(&seed) % 3000;
          char* p = static_cast<char*>(malloc(n));
          p[0] = 1;
          if (n >= 16) memset(p, 0, 16);  // a program writing where the mark sits
          live.push_back(p);
        } else {
          size_t k = rand_r(&seed) % live.size();
          if (rand_r(&seed) % 4 == 0) {
            live[k] = static_cast<char*>(realloc(live[k], 1 + rand_r(&seed) % 5000));
          } else {
            free(live[k]);
            live[k] = live.back();
            live.pop_back();
          }
        }
      }
      for (char* p : live) free(p);
    });
  }
  for (auto& th : threads) th.join();
  SUCCEED();
}

// ---- Hardened free-list links ----------------------------------------------

class MisuseHardened : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EnvIs("JSMALLOC_HARDENED", "1")) GTEST_SKIP() << "runs with JSMALLOC_HARDENED=1";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

// Hardened mode also checks each link against the pagemap: a link copied
// from a free object of another size class (a valid encoding, so the default
// check passes it) aborts instead of handing out a block of the wrong size.
TEST_F(MisuseHardened, ALinkCopiedFromAnotherSizeClassAborts) {
  EXPECT_DEATH(
      {
        std::vector<void*> small;
        std::vector<void*> large;
        for (int i = 0; i < 4000; ++i) small.push_back(malloc(64));
        for (int i = 0; i < 400; ++i) large.push_back(malloc(2048));
        for (size_t i = 1; i < small.size(); i += 2) free(small[i]);
        for (size_t i = 1; i < large.size(); i += 2) free(large[i]);
        malloc_trim(0);
        // Each freed 64 B object now links to where a freed 2 KiB one did.
        for (size_t i = 1; i < small.size(); i += 2) {
          memcpy(small[i], large[1 + (i / 2 % (large.size() / 2)) * 2], sizeof(void*));
        }
        for (int i = 0; i < 8000; ++i) Opaque(malloc(64));
        fprintf(stderr, "not detected\n");
        _exit(0);
      },
      // A copied link that decodes to the end of the other list cuts the span's
      // list short: the central list finds its objects missing.
      "jsmalloc: corrupted free.list( link)? \\(a write to freed memory\\?\\)(:| in the free object at 0x)");
}

TEST_F(MisuseHardened, EveryEntryPointAsAThreadsFirstCallRaisesNoFalseAlarm) {
  EveryEntryPointAsAThreadsFirstCall();
  SUCCEED();
}

TEST_F(MisuseHardened, CorrectProgramsRunUnchanged) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      std::vector<void*> live;
      unsigned seed = 3 + t;
      for (int i = 0; i < 200000; ++i) {
        if (live.size() < 1000 || rand_r(&seed) % 2) {
          live.push_back(malloc(1 + rand_r(&seed) % 4000));
        } else {
          size_t k = rand_r(&seed) % live.size();
          free(live[k]);
          live[k] = live.back();
          live.pop_back();
        }
      }
      for (void* p : live) free(p);
    });
  }
  for (auto& th : threads) th.join();
  jsmalloc_release_memory_to_os(~size_t{0});
  SUCCEED();
}

}  // namespace

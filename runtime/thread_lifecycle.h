// Thread lifecycle: a thread's cache is made at its first cached
// allocation, given back when the thread exits (a pthread key's destructor)
// or when it calls jsmalloc_mark_thread_idle.
#ifndef JSMALLOC_RUNTIME_THREAD_LIFECYCLE_H_
#define JSMALLOC_RUNTIME_THREAD_LIFECYCLE_H_

#include "caches/thread_cache.h"

namespace jsmalloc {

// Creates the pthread key whose destructor gives an exiting thread's cache
// back. Called once, by Static::RegisterThreadHooks; false when no key is
// left (threads then run uncached).
bool CreateThreadKey();

// Attaches a new cache to the calling thread; nullptr while that is not
// possible (the key is not ready, the thread is exiting or already inside
// this call).
ThreadCache* CreateThreadCache();

// Gives the calling thread's cache back (jsmalloc_mark_thread_idle): its
// objects to the transfer caches, its budget share to the registry.
void ReleaseThreadCache();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_THREAD_LIFECYCLE_H_

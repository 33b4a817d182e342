// The allocator's one doubly linked list: intrusive (an element carries its
// own links, so nothing is allocated), circular, with a head of links only.
//
// An all-zero list is empty: the head links itself on the first push. Big
// arrays of lists can then live in memory the kernel zeroed (or in zeroed
// static storage) without being written, and cost no RSS until used; a
// constructor writes nothing either.
//
// An element type derives (publicly, once) from IntrusiveLinks; an element
// is in at most one list at a time. Push and remove are O(1); Remove needs
// no list (the links know their neighbours) and clears the element's links.
#ifndef JSMALLOC_BASE_INTRUSIVE_LIST_H_
#define JSMALLOC_BASE_INTRUSIVE_LIST_H_

#include <cstddef>

namespace jsmalloc {

struct IntrusiveLinks {
  IntrusiveLinks* next = nullptr;
  IntrusiveLinks* prev = nullptr;
};

template <typename T>
class IntrusiveList {
 public:
  constexpr IntrusiveList() = default;
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == nullptr || head_.next == &head_; }
  // The first and the last element; nullptr when the list is empty.
  T* first() const { return empty() ? nullptr : static_cast<T*>(head_.next); }
  T* last() const { return empty() ? nullptr : static_cast<T*>(head_.prev); }

  void PushFront(T* t) {
    LinkHead();
    InsertAfter(&head_, t);
  }
  void PushBack(T* t) {
    LinkHead();
    InsertAfter(head_.prev, t);  // after the last (the head when empty)
  }
  static void Remove(T* t) {
    IntrusiveLinks* l = t;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = nullptr;
  }

  // Calls f(element) from first to last; f may remove the element it is
  // given (but no other).
  template <typename F>
  void ForEach(F f) const {
    if (head_.next == nullptr) return;
    for (IntrusiveLinks* l = head_.next; l != &head_;) {
      IntrusiveLinks* next = l->next;
      f(static_cast<T*>(l));
      l = next;
    }
  }
  // The first element for which pred is true, or nullptr.
  template <typename Pred>
  T* Find(Pred pred) const {
    if (head_.next == nullptr) return nullptr;
    for (IntrusiveLinks* l = head_.next; l != &head_; l = l->next) {
      if (pred(static_cast<T*>(l))) return static_cast<T*>(l);
    }
    return nullptr;
  }
  // Walks the list: O(length).
  size_t Count() const {
    size_t n = 0;
    ForEach([&](T*) { ++n; });
    return n;
  }

 private:
  void LinkHead() {
    if (head_.next == nullptr) head_.next = head_.prev = &head_;
  }
  // `at` is the head or an element; the head is linked.
  void InsertAfter(IntrusiveLinks* at, T* t) {
    IntrusiveLinks* l = t;
    l->next = at->next;
    l->prev = at;
    at->next->prev = l;
    at->next = l;
  }

  IntrusiveLinks head_;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_INTRUSIVE_LIST_H_

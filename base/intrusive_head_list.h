// A doubly linked intrusive list whose head is one pointer: for big arrays of
// lists, most of them empty, where IntrusiveList's two-pointer head would
// double the memory a small heap touches (the hugepage filler's lists).
//
// An element links to the next element and to the pointer that points at it
// (the head, or the previous element's `next`), so Remove needs neither the
// list nor a walk. An all-zero head is an empty list: arrays of heads can
// live in memory the kernel zeroed and cost no RSS until used. An element is
// in at most one list at a time; a list must not move while it holds
// elements (they point into it).
#ifndef JSMALLOC_BASE_INTRUSIVE_HEAD_LIST_H_
#define JSMALLOC_BASE_INTRUSIVE_HEAD_LIST_H_

namespace jsmalloc {

struct HeadListLinks {
  HeadListLinks* next = nullptr;
  HeadListLinks** pprev = nullptr;  // the pointer that points at this element
};

template <typename T>
class HeadList {
 public:
  constexpr HeadList() = default;
  HeadList(const HeadList&) = delete;
  HeadList& operator=(const HeadList&) = delete;

  bool empty() const { return first_ == nullptr; }
  T* first() const { return static_cast<T*>(first_); }

  void PushFront(T* t) {
    HeadListLinks* l = t;
    l->next = first_;
    if (first_ != nullptr) first_->pprev = &l->next;
    first_ = l;
    l->pprev = &first_;
  }
  static void Remove(T* t) {
    HeadListLinks* l = t;
    *l->pprev = l->next;
    if (l->next != nullptr) l->next->pprev = l->pprev;
    l->next = nullptr;
    l->pprev = nullptr;
  }
  static bool Linked(const T* t) { return static_cast<const HeadListLinks*>(t)->pprev != nullptr; }

  // Calls f(element) from first to last; f may remove the element it is
  // given (but no other).
  template <typename F>
  void ForEach(F f) const {
    for (HeadListLinks* l = first_; l != nullptr;) {
      HeadListLinks* next = l->next;
      f(static_cast<T*>(l));
      l = next;
    }
  }

 private:
  HeadListLinks* first_ = nullptr;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_INTRUSIVE_HEAD_LIST_H_

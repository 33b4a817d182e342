// symbolic: many tiny, short-lived objects through operator new/delete, as
// in compilers, interpreters and symbolic algebra. Two parts:
//  - binary trees (after the binarytrees benchmark): build and check many
//    complete trees of several depths next to one long-lived tree;
//  - an expression simplifier: random expression trees are rebuilt bottom-up
//    into a hash-consed DAG (std::unordered_map from node keys to nodes) with
//    constant folding and algebraic identities, evaluated, and torn down.
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_symbolic: tiny short-lived objects with operator new/delete.\n"
    "Single-threaded (--threads is ignored). Binary trees of depth 4-18 (8M x scale\n"
    "nodes per depth, next to a long-lived depth-18 tree), then 12000 x scale expression\n"
    "trees of ~2-8k nodes each simplified into a hash-consed DAG and evaluated.\n";

// ----------------------------------------------------------- binary trees

struct TreeNode {
  TreeNode* left;
  TreeNode* right;
  uint32_t value;
};

TreeNode* Bottom(int depth, uint32_t value) {
  TreeNode* n = new TreeNode{nullptr, nullptr, value};
  if (depth > 0) {
    n->left = Bottom(depth - 1, value * 2);
    n->right = Bottom(depth - 1, value * 2 + 1);
  }
  return n;
}

uint64_t Check(const TreeNode* n) {
  uint64_t c = 1 + (n->value & 7);
  if (n->left != nullptr) c += Check(n->left) + Check(n->right);
  return c;
}

void Destroy(TreeNode* n) {
  if (n->left != nullptr) {
    Destroy(n->left);
    Destroy(n->right);
  }
  delete n;
}

uint64_t BinaryTrees(int min_depth, int max_depth, double scale) {
  uint64_t sum = 0;
  TreeNode* long_lived = Bottom(max_depth, 1);
  for (int d = min_depth; d <= max_depth; d += 2) {
    uint64_t iters = wl::Scaled(uint64_t{1} << (max_depth - d + min_depth), scale);
    for (uint64_t i = 0; i < iters; ++i) {
      TreeNode* t = Bottom(d, static_cast<uint32_t>(i));
      sum += Check(t);
      Destroy(t);
    }
  }
  sum += Check(long_lived);
  Destroy(long_lived);
  return sum;
}

// ----------------------------------------------------- expression DAGs

enum Op : uint8_t { kConst, kVar, kAdd, kMul, kNeg, kSub };

// A raw (not shared) expression tree, as a parser would produce it.
struct Expr {
  Op op;
  int64_t value;  // constant value or variable index
  Expr* a;
  Expr* b;
};

// A hash-consed node: structurally equal nodes are one object.
struct Node {
  Op op;
  int64_t value;
  const Node* a;
  const Node* b;
  uint32_t id;
};

struct Key {
  Op op;
  int64_t value;
  uint32_t a, b;  // child ids (+1; 0 = none)
  bool operator==(const Key& o) const {
    return op == o.op && value == o.value && a == o.a && b == o.b;
  }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    return wl::Mix64(static_cast<uint64_t>(k.op) * 0x100000001b3ULL ^ static_cast<uint64_t>(k.value) ^
                     (static_cast<uint64_t>(k.a) << 32) ^ (static_cast<uint64_t>(k.b) << 7));
  }
};

Expr* RandomExpr(wl::Rng& rng, int depth) {
  if (depth == 0 || rng.Chance(1, 8)) {
    if (rng.Chance(1, 2)) return new Expr{kConst, static_cast<int64_t>(rng.Below(4)), nullptr, nullptr};
    return new Expr{kVar, static_cast<int64_t>(rng.Below(6)), nullptr, nullptr};
  }
  uint64_t r = rng.Below(10);
  if (r == 0) return new Expr{kNeg, 0, RandomExpr(rng, depth - 1), nullptr};
  Op op = r < 5 ? kAdd : r < 8 ? kMul : kSub;
  Expr* a = RandomExpr(rng, depth - 1);
  Expr* b = RandomExpr(rng, depth - 1);
  return new Expr{op, 0, a, b};
}

void FreeExpr(Expr* e) {
  if (e->a != nullptr) FreeExpr(e->a);
  if (e->b != nullptr) FreeExpr(e->b);
  delete e;
}

uint64_t CountExpr(const Expr* e) {
  return 1 + (e->a ? CountExpr(e->a) : 0) + (e->b ? CountExpr(e->b) : 0);
}

class Dag {
 public:
  ~Dag() {
    for (Node* n : nodes_) delete n;
  }

  const Node* Make(Op op, int64_t value, const Node* a, const Node* b) {
    Key k{op, value, a ? a->id + 1 : 0, b ? b->id + 1 : 0};
    auto it = table_.find(k);
    if (it != table_.end()) return it->second;
    Node* n = new Node{op, value, a, b, static_cast<uint32_t>(nodes_.size())};
    nodes_.push_back(n);
    table_.emplace(k, n);
    return n;
  }

  const Node* Const(int64_t v) { return Make(kConst, v, nullptr, nullptr); }

  // Rebuilds e bottom-up with folding and identities.
  const Node* Simplify(const Expr* e) {
    switch (e->op) {
      case kConst:
        return Const(e->value);
      case kVar:
        return Make(kVar, e->value, nullptr, nullptr);
      case kNeg: {
        const Node* a = Simplify(e->a);
        if (a->op == kConst) return Const(-a->value);
        if (a->op == kNeg) return a->a;
        return Make(kNeg, 0, a, nullptr);
      }
      default:
        break;
    }
    const Node* a = Simplify(e->a);
    const Node* b = Simplify(e->b);
    if (e->op == kSub) {
      if (a == b) return Const(0);
      if (b->op == kConst && b->value == 0) return a;
      if (a->op == kConst && b->op == kConst) return Const(Wrap(a->value - b->value));
      return Make(kSub, 0, a, b);
    }
    // Commutative: order children by id so that a+b and b+a share a node.
    if (a->id > b->id) std::swap(a, b);
    if (e->op == kAdd) {
      if (a->op == kConst && b->op == kConst) return Const(Wrap(a->value + b->value));
      if (a->op == kConst && a->value == 0) return b;
      if (b->op == kConst && b->value == 0) return a;
      if (a == b) return Make(kMul, 0, Const(2), a);
      return Make(kAdd, 0, a, b);
    }
    if (a->op == kConst && b->op == kConst) return Const(Wrap(a->value * b->value));
    if ((a->op == kConst && a->value == 0) || (b->op == kConst && b->value == 0)) return Const(0);
    if (a->op == kConst && a->value == 1) return b;
    if (b->op == kConst && b->value == 1) return a;
    return Make(kMul, 0, a, b);
  }

  // Evaluates the DAG (each node once) for variable values xs, modulo 2^61-1.
  uint64_t Eval(const Node* root, const uint64_t* xs) {
    memo_.assign(nodes_.size(), UINT64_MAX);
    return EvalNode(root, xs);
  }

  size_t size() const { return nodes_.size(); }

 private:
  static constexpr uint64_t kMod = (uint64_t{1} << 61) - 1;
  static int64_t Wrap(int64_t v) { return v % 1000003; }

  uint64_t EvalNode(const Node* n, const uint64_t* xs) {
    uint64_t& m = memo_[n->id];
    if (m != UINT64_MAX) return m;
    uint64_t r;
    switch (n->op) {
      case kConst:
        r = static_cast<uint64_t>(n->value % static_cast<int64_t>(kMod) + static_cast<int64_t>(kMod)) % kMod;
        break;
      case kVar:
        r = xs[n->value] % kMod;
        break;
      case kNeg:
        r = (kMod - EvalNode(n->a, xs)) % kMod;
        break;
      case kAdd:
        r = (EvalNode(n->a, xs) + EvalNode(n->b, xs)) % kMod;
        break;
      case kSub:
        r = (EvalNode(n->a, xs) + kMod - EvalNode(n->b, xs)) % kMod;
        break;
      default:
        r = static_cast<uint64_t>(
            static_cast<unsigned __int128>(EvalNode(n->a, xs)) * EvalNode(n->b, xs) % kMod);
        break;
    }
    memo_[n->id] = r;
    return r;
  }

  std::vector<Node*> nodes_;
  std::unordered_map<Key, Node*, KeyHash> table_;
  std::vector<uint64_t> memo_;
};

uint64_t Expressions(uint64_t count) {
  wl::Rng rng(1618);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < count; ++i) {
    Expr* e = RandomExpr(rng, 10 + static_cast<int>(rng.Below(4)));
    sum += CountExpr(e);
    Dag* dag = new Dag();
    const Node* root = dag->Simplify(e);
    uint64_t xs[6];
    for (int round = 0; round < 3; ++round) {
      for (uint64_t& x : xs) x = rng.Below(1000);
      sum = sum * 31 + dag->Eval(root, xs);
    }
    sum += dag->size();
    delete dag;
    FreeExpr(e);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  double t0 = wl::NowSeconds();
  uint64_t sum = BinaryTrees(4, 18, args.scale);
  double t1 = wl::NowSeconds();
  sum ^= Expressions(wl::Scaled(12000, args.scale)) * 3;
  double t2 = wl::NowSeconds();
  fprintf(stderr, "wl: binarytrees_s=%.3f expressions_s=%.3f\n", t1 - t0, t2 - t1);
  return wl::Finish("symbolic", sum, t0);
}

#!/usr/bin/env python3
"""Structure rules CI holds the code to (issue 12). Fails (exit 1) on:

  (a) an import cycle between top-level modules of src/. A top-level module is src/X.rs or src/X/
      (its files talk among themselves freely); lib.rs and main.rs are roots, not modules. What
      counts as "X imports Y" is any path in X's files that reaches Y: `use crate::…` trees
      (groups, aliases, globs, `pub use`), `crate::y::…` and `$crate::y::…` anywhere, `super::`
      and `self::` resolved from where they stand (inline `mod tests {}` included), and
      `crate::Name` where lib.rs re-exports Name from Y. Comments, doc comments and string
      literals are ignored. Paths built by macros from pieces are not seen.
  (b) a .rs, .py or .sh file over the line limit (700) anywhere in the repository, except under
      target/ and .git/.

usage: scripts/check-structure.py [--root DIR] [--src DIR] [--max-lines N]
       scripts/check-structure.py --self-test     # the checker against small synthetic trees
(every normal run does the self-test first, quietly, and fails if the checker is broken)
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import sys
import tempfile

MAX_LINES = 700
CHECKED_SUFFIXES = (".rs", ".py", ".sh")
SKIPPED_DIRS = {"target", ".git"}

IDENT = r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------------------------
# Rust text: comments and literals out, inline module scopes, use trees


def strip_rust(text: str) -> str:
    """`text` with comments, string/char literals blanked (newlines kept, so offsets and line
    numbers still match the file)."""
    out = list(text)
    n, i = len(text), 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":  # block comments nest in Rust
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and \
                re.match(r"(?:br|r)#*\"", text[i:i + 260]):
            m = re.match(r"(?:br|r)(#*)\"", text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a, 'static): only the former
            # has a closing quote right after one (possibly escaped) character.
            m = re.match(r"'(?:\\(?:u\{[0-9A-Fa-f]*\}|x[0-9A-Fa-f]{2}|.)|[^\\'\n])'", text[i:i + 12])
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def scope_changes(code: str) -> list[tuple[int, tuple]]:
    """(offset, inline module path) at every point where `mod name { … }` nesting changes."""
    changes: list[tuple[int, tuple]] = [(0, ())]
    stack: list[tuple[str, int]] = []  # (module name, brace depth of its body)
    depth = 0
    for m in re.finditer(rf"\bmod\s+({IDENT})\s*\{{|[{{}}]", code):
        if m.group(0) == "}":
            if stack and stack[-1][1] == depth:
                stack.pop()
                changes.append((m.end(), tuple(s for s, _ in stack)))
            depth -= 1
        else:
            depth += 1
            if m.group(1):
                stack.append((m.group(1).removeprefix("r#"), depth))
                changes.append((m.end(), tuple(s for s, _ in stack)))
    return changes


def scope_at(changes: list, offset: int) -> tuple:
    k = bisect.bisect_right([c[0] for c in changes], offset) - 1
    return changes[k][1]


USE_RE = re.compile(r"\buse\s+([^;]*);")
TOKEN_RE = re.compile(rf"\$?{IDENT}|::|[{{}},*]")


def expand_use(tree: str) -> list[tuple[list[str], str | None]]:
    """`a::{b, c::{self, d as e}, f::*}` -> [(path, name it binds)] for every leaf."""
    toks = [t.removeprefix("r#") for t in TOKEN_RE.findall(tree)]
    pos = 0
    out: list[tuple[list[str], str | None]] = []

    def walk(prefix: list[str]) -> None:
        nonlocal pos
        path = list(prefix)
        if pos < len(toks) and toks[pos] == "::":  # 2015-style leading `::`
            pos += 1
        while pos < len(toks):
            t = toks[pos]
            if t == "{":
                pos += 1
                while pos < len(toks) and toks[pos] != "}":
                    walk(path)
                    if pos < len(toks) and toks[pos] == ",":
                        pos += 1
                pos += 1
                return
            if t == "*":
                pos += 1
                out.append((path + ["*"], None))
                return
            if t in (",", "}"):
                break
            path.append(t)
            pos += 1
            if pos < len(toks) and toks[pos] == "::":
                pos += 1
                continue
            break
        alias = None
        if pos + 1 < len(toks) and toks[pos] == "as":
            alias = toks[pos + 1]
            pos += 2
        if path:
            if path[-1] == "self":
                path = path[:-1]
            out.append((path, alias or (path[-1] if path else None)))

    while pos < len(toks):
        before = pos
        walk([])
        if pos < len(toks) and toks[pos] == ",":
            pos += 1
        if pos == before:
            pos += 1
    return out


PATH_RE = re.compile(rf"(?<![\w$:])(\$crate|crate|super|self)((?:\s*::\s*{IDENT})+)")


# ---------------------------------------------------------------------------------------------
# The module graph


class Crate:
    def __init__(self, src: str) -> None:
        self.src = src
        self.files: list[tuple[str, list[str]]] = []  # (path, module path), modules only
        self.roots: list[str] = []
        for entry in sorted(os.listdir(src)):
            p = os.path.join(src, entry)
            if entry in ("lib.rs", "main.rs"):
                self.roots.append(p)
            elif entry.endswith(".rs") and os.path.isfile(p):
                self.files.append((p, [entry[:-3]]))
            elif os.path.isdir(p) and entry != "bin":  # src/bin/*.rs are crates of their own
                for dirpath, dirs, names in os.walk(p):
                    dirs.sort()
                    for name in sorted(names):
                        if name.endswith(".rs"):
                            rel = os.path.relpath(os.path.join(dirpath, name), src)[:-3].split(os.sep)
                            if rel[-1] == "mod":
                                rel = rel[:-1]
                            self.files.append((os.path.join(dirpath, name), rel))
        self.modules = sorted({mp[0] for _, mp in self.files})
        self.reexports: dict[str, str] = {}  # name the root binds -> module it comes from
        # The library's root is what `crate::` means in its modules; main.rs only when there
        # is no lib.rs (then the modules belong to the binary).
        lib = [r for r in self.roots if r.endswith("lib.rs")] or self.roots
        for root in lib:
            code = strip_rust(_read(root))
            for m in USE_RE.finditer(code):
                for path, name in expand_use(m.group(1)):
                    mod = self.top_of(self.absolute(path, [], in_root=True))
                    if mod and name and name != "*":
                        self.reexports[name] = mod

    def absolute(self, path: list[str], context: list[str], in_root: bool = False) -> list[str] | None:
        """The crate-absolute form of `path` written in module `context`, or None when it does
        not start inside this crate (an extern crate, a local item)."""
        if not path:
            return None
        head = path[0]
        if head in ("crate", "$crate"):
            rest = path[1:]
        elif head == "super":
            ctx = list(context)
            k = 0
            while k < len(path) and path[k] == "super":
                if not ctx:
                    return None  # above the root: not valid Rust, not ours to judge
                ctx.pop()
                k += 1
            rest = ctx + path[k:]
        elif head == "self":
            rest = list(context) + path[1:]
        elif in_root and not context and head in self.modules:
            rest = path  # in lib.rs/main.rs a module is in scope by its bare name
        else:
            return None
        return [s for s in rest if s not in ("self", "*")]

    def top_of(self, abs_path: list[str] | None) -> str | None:
        if not abs_path:
            return None
        if abs_path[0] in self.modules:
            return abs_path[0]
        return self.reexports.get(abs_path[0])

    def edges(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(from, to) -> [('src/x.rs:12', 'crate::y::Z')] for every cross-module reference."""
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for path, modpath in self.files:
            text = _read(path)
            code = strip_rust(text)
            lines = [i for i, ch in enumerate(code) if ch == "\n"]
            scopes = scope_changes(code)
            refs: list[tuple[int, list[str], str]] = []
            for m in USE_RE.finditer(code):
                for p, _ in expand_use(m.group(1)):
                    refs.append((m.start(), p, "use " + "::".join(p)))
            no_use = USE_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
            for m in PATH_RE.finditer(no_use):
                p = [m.group(1)] + [s.strip().removeprefix("r#") for s in m.group(2).split("::") if s.strip()]
                refs.append((m.start(), p, "::".join(p)))
            for offset, p, shown in refs:
                target = self.top_of(self.absolute(p, modpath + list(scope_at(scopes, offset))))
                if target and target != modpath[0]:
                    line = bisect.bisect_right(lines, offset) + 1
                    where = f"{os.path.relpath(path, os.path.dirname(self.src) or '.')}:{line}"
                    found.setdefault((modpath[0], target), []).append((where, shown))
        return found


def cycles(nodes: list[str], edges: dict) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    succ: dict[str, list[str]] = {v: [] for v in nodes}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return sorted(groups)


def one_loop(group: list[str], edges: dict) -> list[str]:
    """A shortest closed path through the group's first module, for the message."""
    start, members = group[0], set(group)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for (a, b) in sorted(edges):
                if a != v or b not in members:
                    continue
                if b == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if b not in prev:
                    prev[b] = v
                    nxt.append(b)
        frontier = nxt
    return group


# ---------------------------------------------------------------------------------------------
# Line limits


def long_files(root: str, limit: int) -> list[tuple[int, str]]:
    out = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            if name.endswith(CHECKED_SUFFIXES):
                p = os.path.join(dirpath, name)
                with open(p, "rb") as f:
                    n = len(f.read().splitlines())
                if n > limit:
                    out.append((n, os.path.relpath(p, root)))
    return sorted(out, key=lambda x: (-x[0], x[1]))


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------


def layer_violations(src: str, edges: dict) -> tuple[list[str], list]:
    """lib.rs declares the top-level modules bottom up; each may use only those declared before
    it, so the graph is not just acyclic but one-way in a stated order. Returns the order and
    every (user, used, references) edge that points up."""
    lib = os.path.join(src, "lib.rs")
    text = strip_rust(_read(lib)) if os.path.exists(lib) else ""
    order = re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M)
    upward = [(a, b, refs) for (a, b), refs in sorted(edges.items())
              if a in order and b in order and order.index(b) > order.index(a)]
    return order, upward


def check(root: str, src: str, limit: int, out=sys.stdout) -> int:
    problems = 0
    crate = Crate(src)
    edges = crate.edges()
    groups = cycles(crate.modules, edges)
    for g in groups:
        problems += 1
        print(f"FAIL import cycle between top-level modules of {os.path.relpath(src, root)}: "
              f"{{{', '.join(g)}}}, e.g. {' -> '.join(one_loop(g, edges))}", file=out)
        for (a, b), refs in sorted(edges.items()):
            if a in g and b in g:
                by_place: dict[str, list[str]] = {}
                for where, shown in refs:
                    by_place.setdefault(where, []).append(shown)
                places = [f"{w} {', '.join(p)}" for w, p in by_place.items()]
                more = f"; and {len(places) - 3} more places" if len(places) > 3 else ""
                print(f"  {a} -> {b}: " + "; ".join(places[:3]) + more, file=out)
    if not groups:
        print(f"ok   no import cycle among {len(crate.modules)} top-level modules of "
              f"{os.path.relpath(src, root)} ({len(edges)} module-to-module dependencies)", file=out)
    order, upward = layer_violations(src, edges)
    for a, b, refs in upward:
        problems += 1
        where = "; ".join(f"{w} {shown}" for w, shown in refs[:3])
        print(f"FAIL layer order (src/lib.rs): {a} uses {b}, which lib.rs declares above it: {where}",
              file=out)
    if order and not upward:
        print(f"ok   every top-level module uses only those lib.rs declares before it "
              f"({' < '.join(order)})", file=out)
    big = long_files(root, limit)
    for n, p in big:
        print(f"FAIL {p}: {n} lines (limit {limit}; split it)", file=out)
    problems += len(big)
    if not big:
        print(f"ok   no .rs/.py/.sh file over {limit} lines", file=out)
    return 1 if problems else 0


def self_test(out=sys.stdout) -> int:
    """Synthetic crates with and without cycles; the checker must tell them apart."""
    base = {
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
        "src/main.rs": "use crate::a::Ay;\nuse crate::c::Cee;\nfn main() {}\n",  # roots: no edges
        "src/a.rs": (
            "use crate::b::Bee;\n"
            "// crate::c::X in a comment is not a dependency\n"
            "pub struct Ay;\n"
            "pub fn f() -> crate::Thing { let _s = \"crate::c::Y\"; let _r = r#\"super::c::Z\"#; todo!() }\n"
            "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::b::Bee2;\n}\n"
        ),
        "src/b/mod.rs": "mod inner;\npub use self::inner::Bee;\npub struct Bee2;\n",
        "src/b/inner.rs": "use super::Bee2;\npub struct Bee(Bee2);\npub fn g() -> crate::c::Cee { todo!() }\n",
        "src/c.rs": (
            "//! [crate::a::Ay] in a doc comment\n"
            "/* crate::a /* nested */ crate::b */\n"
            "pub struct Thing;\npub struct Cee;\n"
            "fn l<'a>(x: &'a str) -> &'a str { let _c = '\"'; let _d = 'x'; let _e = \"super::a::f\"; x }\n"
            "mod tests { use super::*; fn t() { let _ = self::Cee; } }\n"
        ),
    }
    cases = [
        ("no cycle (comments, strings, lifetimes, inline test modules, roots)", {}, []),
        ("grouped use with self and alias", {"src/c.rs": "use crate::{a::{self, Ay as A2}, b};\n"}, [["a", "b", "c"]]),
        ("super:: from a top-level file", {"src/c.rs": "fn h() { super::a::f(); }\n"}, [["a", "b", "c"]]),
        ("name re-exported by lib.rs", {"src/lib.rs": "pub use a::Ay as Ay2;\n", "src/c.rs": "use crate::Ay2;\n"},
         [["a", "b", "c"]]),
        ("pub use of another module", {"src/c.rs": "pub use crate::a::Ay;\n"}, [["a", "b", "c"]]),
        ("$crate in a macro", {"src/c.rs": "macro_rules! m { () => { $crate::a::f() } }\n"}, [["a", "b", "c"]]),
        ("super::super from a nested file", {"src/b/inner.rs": "fn k() { super::super::a::f(); }\n"}, [["a", "b"]]),
        ("path inside an inline module", {"src/c.rs": "mod deep { mod deeper { fn z() { crate::b::g(); } } }\n"},
         [["b", "c"]]),
        ("two separate cycles", {"src/c.rs": "use crate::b::Bee;\n", "src/d.rs": "use crate::e::E;\n",
                                 "src/e.rs": "pub struct E; fn q() { crate::d::x(); }\n"}, [["b", "c"], ["d", "e"]]),
    ]
    failed = 0
    for name, extra, want in cases:
        with tempfile.TemporaryDirectory(prefix="check-structure-") as root:
            for rel, text in {**base}.items():
                _write(root, rel, text + extra.get(rel, ""))
            for rel, text in extra.items():
                if rel not in base:
                    _write(root, rel, text)
            crate = Crate(os.path.join(root, "src"))
            edges = crate.edges()
            got = cycles(crate.modules, edges)
        ok = got == want
        if not extra:  # the clean tree: exactly its real dependencies, a -> c only via crate::Thing
            seen = {k: len(v) for k, v in edges.items()}
            ok = ok and seen == {("a", "b"): 2, ("a", "c"): 1, ("b", "c"): 1}
            got = f"{got}, references {seen}"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} cycles: {name}: got {got}" + ("" if ok else f", want {want}"), file=out)
    for name, lib, want in (
        ("declared top down: every edge points up", "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
         [("a", "b"), ("a", "c"), ("b", "c")]),
        ("declared bottom up (doc comments between)",
         "/// C\npub mod c;\n/// B\npub(crate) mod b;\nmod a;\npub use c::Thing;\n", []),
    ):
        with tempfile.TemporaryDirectory(prefix="check-structure-") as root:
            for rel, text in base.items():
                _write(root, rel, lib if rel == "src/lib.rs" else text)
            crate = Crate(os.path.join(root, "src"))
            _, upward = layer_violations(os.path.join(root, "src"), crate.edges())
        got = [(a, b) for a, b, _ in upward]
        ok = got == want
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} layers: {name}: got {got}" + ("" if ok else f", want {want}"), file=out)
    with tempfile.TemporaryDirectory(prefix="check-structure-") as root:
        for rel, n in (("src/ok.rs", MAX_LINES), ("src/long.rs", MAX_LINES + 1), ("a.py", MAX_LINES + 5),
                       ("s/x.sh", MAX_LINES + 2), ("notes.txt", 2000), ("target/gen.rs", 2000),
                       (".git/hook.sh", 2000), ("sub/target/deep.py", 2000)):
            _write(root, rel, "x\n" * n)
        got = long_files(root, MAX_LINES)
        want = [(705, "a.py"), (702, os.path.join("s", "x.sh")), (701, os.path.join("src", "long.rs"))]
        ok = got == want
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} line limit: got {got}" + ("" if ok else f", want {want}"), file=out)
        _write(root, "src/lib.rs", "pub mod ok;\n")
        with open(os.devnull, "w") as devnull:
            code = check(root, os.path.join(root, "src"), MAX_LINES, out=devnull)
        ok = code == 1
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} exit status with long files: {code}", file=out)
    print(f"self-test: {'passed' if not failed else f'{failed} FAILED'}", file=out)
    return 1 if failed else 0


def _write(root: str, rel: str, text: str) -> None:
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)


def main() -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--root", default=here, help="repository root (default: this script's repository)")
    ap.add_argument("--src", help="the crate's src/ (default: ROOT/src)")
    ap.add_argument("--max-lines", type=int, default=MAX_LINES, help=f"line limit (default {MAX_LINES})")
    ap.add_argument("--self-test", action="store_true", help="check the checker on synthetic trees")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    # A checker that no longer finds what it should must not pass CI silently: the synthetic
    # trees run first (about 50 ms).
    with open(os.devnull, "w") as devnull:
        if self_test(out=devnull):
            print("FAIL check-structure.py no longer passes its own --self-test; run it to see why")
            return 1
    root = os.path.abspath(args.root)
    src = os.path.abspath(args.src or os.path.join(root, "src"))
    if not os.path.isdir(src):
        ap.error(f"no such directory: {src}")
    return check(root, src, args.max_lines)


if __name__ == "__main__":
    sys.exit(main())

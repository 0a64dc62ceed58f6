#!/usr/bin/env python3
"""Measure livepush/src: crate::<module> edges of non-test code, SCCs, root names, longest fn."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'livepush/src'

def strip_tests(text):
    # drop `#[cfg(test)]` items (mod blocks or single items) by brace matching
    out = []; i = 0
    while True:
        j = text.find('#[cfg(test)]', i)
        if j < 0: out.append(text[i:]); break
        out.append(text[i:j])
        k = j + len('#[cfg(test)]')
        # find end of item: first ';' or balanced '{...}'
        depth = 0; m = k
        while m < len(text):
            c = text[m]
            if c == ';' and depth == 0: m += 1; break
            if c == '{': depth += 1
            if c == '}':
                depth -= 1
                if depth == 0: m += 1; break
            m += 1
        i = m
    return ''.join(out)

def strip_comments(text):
    text = re.sub(r'//[^\n]*', '', text)
    return text

files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f); rel = os.path.relpath(p, root)
            files[rel] = open(p).read()

lib = files['lib.rs']
mods = set(re.findall(r'^\s*(?:pub(?:\([a-z]+\))? )?mod (\w+);', lib, re.M))
# root re-exports: `pub use module::{A, B}` / `pub use module::A`
rootmap = {}
for m in re.finditer(r'pub use (?:self::|crate::)?(\w+)::(\{[^}]*\}|\w+)\s*;', lib, re.S):
    mod, names = m.group(1), m.group(2)
    for n in re.findall(r'\w+', names):
        rootmap[n] = mod

def module_of(rel):
    return rel.split('/')[0].removesuffix('.rs')

edges = {}
for rel, text in files.items():
    if rel == 'lib.rs': continue
    src = strip_comments(strip_tests(text))
    me = module_of(rel)
    tgt = set()
    # expand grouped imports `crate::{a::X, b}`
    for g in re.finditer(r'crate::\{([^}]*)\}', src):
        for part in g.group(1).split(','):
            part = part.strip()
            if part: tgt.add(part.split('::')[0].strip())
    for n in re.findall(r'crate::(\w+)', src):
        tgt.add(n)
    res = set()
    for n in tgt:
        if n in mods: res.add(n)
        elif n in rootmap: res.add(rootmap[n])
        elif n == '__private': pass
        else: res.add('?' + n)
    res.discard(me)
    edges[me] = edges.get(me, set()) | res

allm = sorted(set(edges) | mods)
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w.startswith('?'): continue
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in allm:
    if v not in idx: sc(v)
cyc = [sorted(s) for s in sccs if len(s) > 1]
if '-v' in sys.argv:
    for m in allm: print(f'{m:10} -> {", ".join(sorted(edges.get(m, ())))}')
print('cycles (strongly connected components >1):', len(cyc))
for s in cyc: print('  ', ' ⇄ '.join(s))

# root names: pub use items + pub fn/const/struct directly in lib.rs (excl. doc-hidden __private and cfg(doctest))
names = set()
for m in re.finditer(r'^pub use ([^;]*);', lib, re.M | re.S):
    body = m.group(1)
    if '{' in body:
        inner = body[body.index('{')+1:body.rindex('}')]
        for part in inner.split(','):
            part = part.strip()
            if part: names.add(part.split(' as ')[-1].split('::')[-1].strip())
    else:
        names.add(body.split(' as ')[-1].split('::')[-1].strip())
print('root names (pub use):', len(names), sorted(names))
pubmods = re.findall(r'^pub mod (\w+)', lib, re.M)
print('public modules:', [m for m in pubmods if m != '__private'])

# longest fn: lines from `fn` signature to its closing brace (non-test code)
best = []
for rel, text in files.items():
    lines = text.split('\n')
    body = strip_tests(text)
    blines = body.split('\n')
    for i, l in enumerate(blines):
        if re.match(r'\s*(pub(\([a-z]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+\w+', l):
            depth = 0; started = False
            for j in range(i, len(blines)):
                s = re.sub(r'//.*', '', blines[j])
                s = re.sub(r'"(\\.|[^"\\])*"', '""', s)
                s = re.sub(r"'(\\.|[^'\\])'", "''", s)
                for ch in s:
                    if ch == '{': depth += 1; started = True
                    elif ch == '}': depth -= 1
                if started and depth == 0: break
                if not started and s.rstrip().endswith(';'): break
            if started:
                name = re.search(r'fn\s+(\w+)', l).group(1)
                best.append((j - i + 1, rel, name, i + 1))
best.sort(reverse=True)
print('longest functions (lines):')
for b in best[:6]: print('  ', b[0], f'{b[1]}:{b[3]}', b[2])

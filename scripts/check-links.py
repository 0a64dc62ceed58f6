#!/usr/bin/env python3
"""Checks that every relative link of the repository's Markdown pages leads somewhere real.

Usage: python3 scripts/check-links.py [FILE.md ...]   (default: README.md and docs/*.md)

A link `[text](path)`, `[text](path#heading)`, `[text](#heading)` or a reference definition
`[name]: path` must name a file or folder that exists, relative to the page, and a heading
(or `<a id=…>`/`<a name=…>`) of the target page, as GitHub turns it into an anchor. Links with
a scheme (`https:`, `mailto:`) are not followed: this checks the repository, offline. Code
blocks and code spans are skipped (a `# comment` in a shell block is no heading, a `[x](y)` in
Rust code no link). Prints each broken link as `file:line: link: why`; exits 1 if any.
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    fence = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = FENCE.match(line)
            if m:
                marker = m.group(1)
                if fence is None:
                    fence = marker
                elif marker[0] == fence[0] and len(marker) >= len(fence):
                    fence = None
                continue
            if fence is None:
                yield n, line.rstrip("\n")


def slug(heading):
    """GitHub's anchor of a heading: its text lowercased, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


ANCHORS = {}


def anchors(path):
    """Every anchor a page defines, duplicates numbered as GitHub does (`a`, `a-1`, …)."""
    if path not in ANCHORS:
        found, seen = set(), {}
        for _, line in prose_lines(path):
            found.update(HTML_ANCHOR.findall(line))
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        ANCHORS[path] = found
    return ANCHORS[path]


def links(path):
    for n, line in prose_lines(path):
        code_free = CODE_SPAN.sub("", line)
        for m in INLINE_LINK.finditer(code_free):
            yield n, m.group(1)
        m = REFERENCE.match(code_free)
        if m:
            yield n, m.group(1)


def problem(page, target):
    """Why `target`, linked from `page`, leads nowhere; None when it is fine."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
        return None  # another site: not checked offline
    file_part, _, anchor = target.partition("#")
    if file_part:
        if file_part.startswith("/"):
            return "absolute path (GitHub resolves it against the site, not the repository)"
        dest = os.path.normpath(os.path.join(os.path.dirname(page), file_part))
        if not os.path.exists(dest):
            return f"no file {os.path.relpath(dest, ROOT)}"
    else:
        dest = page
    if anchor and dest.endswith(".md") and os.path.isfile(dest):
        if anchor not in anchors(dest):
            return f"no heading #{anchor} in {os.path.relpath(dest, ROOT)}"
    return None


def main(args):
    pages = args or ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT))
    broken = 0
    for rel in pages:
        page = os.path.join(ROOT, rel)
        for n, target in links(page):
            why = problem(page, target)
            if why:
                broken += 1
                print(f"{rel}:{n}: {target}: {why}")
    if broken:
        print(f"{broken} broken link(s)", file=sys.stderr)
        return 1
    print(f"links ok in {len(pages)} page(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

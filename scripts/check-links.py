#!/usr/bin/env python3
"""Check the repository's relative Markdown links and the alerts' runbook URLs.

    python3 scripts/check-links.py              # check the repository; exit 1 if a link is broken
    python3 scripts/check-links.py --root DIR   # check another tree laid out the same way
    python3 scripts/check-links.py --self-test  # build a tree of good and broken links, check the checker

Markdown: README.md, CONTRIBUTING.md, CHANGELOG.md, bench/RESULTS.md (those that
exist) and every docs/**/*.md. Every relative link -- inline `[x](path)`,
`[x](path#anchor)`, `[x](#anchor)`, images, reference definitions `[id]: path`,
and `<a href>` -- must name a file or directory of the repository, and an anchor
must be a heading of the target Markdown file under GitHub's slug rules (or an
explicit `<a id>` / `<a name>`). A full reference `[x][id]` must have its
definition. Skipped: links with a scheme (http:, https:, mailto:, ...) and
anything inside fenced code blocks, inline code or HTML comments.

Runbooks: every `runbook_url` of deploy/prometheus/rules/*.yml and
deploy/kubernetes/monitoring/prometheusrule.yaml must start with the rules'
default base at this crate's version (Cargo.toml), the base of
src/rules/mod.rs's DEFAULT_RUNBOOK_BASE_URL, and name docs/runbooks/<X>.md
whose first line is the H1 `# <X>` (and an anchor, if any, must be one of its
headings).

Prints one line per broken link (`file:line: link: why`), then
`links: N checked, M broken`. Python standard library only.
"""
import argparse
import os
import re
import sys
import tempfile
import urllib.parse

MARKDOWN_FILES = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md", "bench/RESULTS.md")
MARKDOWN_DIRS = ("docs",)
RULE_FILES_DIR = "deploy/prometheus/rules"
RULE_FILES = ("deploy/kubernetes/monitoring/prometheusrule.yaml",)
RUNBOOK_DIR = "docs/runbooks"
# The one place this is spelled outside the generator: src/rules/mod.rs
# (DEFAULT_RUNBOOK_BASE_URL) builds the same from CARGO_PKG_VERSION.
RUNBOOK_BASE = "https://github.com/statuswatch/statuswatch/blob/v{version}/" + RUNBOOK_DIR + "/"

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
COMMENT = re.compile(r"<!--.*?-->", re.S)
# [text](dest "title"): text may hold one level of brackets, dest one level of parentheses
INLINE = re.compile(
    r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>\n]*>|(?:[^\s()]|\([^\s()]*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)")
FULL_REF = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])+)\]\[([^\[\]]*)\]")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
HTML_LINK = re.compile(r"<a\s[^>]*?\bhref\s*=\s*[\"']([^\"']*)[\"']", re.I)
EXPLICIT_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
LINE_ANCHOR = re.compile(r"^L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?$")
RUNBOOK_URL = re.compile(r"^\s*runbook_url:\s*(.*?)\s*$")


def blank(m):
    """The match with every character but newlines turned into a space (columns and lines kept)."""
    return re.sub(r"[^\n]", " ", m.group(0))


def lines_outside_code(text):
    """(line number, line) of the lines outside fenced code blocks, HTML comments removed."""
    text = COMMENT.sub(blank, text)
    fence = None
    for no, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                continue
            yield no, line
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
            fence = None


def heading_text(raw):
    """A heading's text as GitHub renders it: links to their text, no code ticks, no tags."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "")


def slug(text):
    """GitHub's anchor of a heading: lower-case, punctuation but - and _ dropped, spaces to -."""
    text = heading_text(text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


class Markdown:
    """One Markdown file's anchors and links."""

    def __init__(self, text):
        self.headings = []  # (line, level, text)
        self.anchors = set()
        self.code_free = list(lines_outside_code(text))
        prev = None  # the previous line, if it could be a setext heading's text
        for no, line in self.code_free:
            m = ATX.match(line)
            s = SETEXT.match(line)
            if m:
                self.headings.append((no, len(m.group(1)), (m.group(2) or "").strip()))
                prev = None
                continue
            if s and prev is not None and prev[0] == no - 1:
                self.headings.append((prev[0], 1 if s.group(1)[0] == "=" else 2, prev[1].strip()))
                prev = None
                continue
            stripped = line.strip()
            starts_block = stripped[:1] in ("", "|", ">", "-", "*", "+", "<") or re.match(r"\d+[.)]\s", stripped)
            prev = None if starts_block else (no, line)
        seen = {}
        for _, _, text_ in self.headings:
            base = slug(text_)
            n = seen.get(base, 0)
            self.anchors.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
        for _, line in self.code_free:
            self.anchors.update(EXPLICIT_ANCHOR.findall(line))

    def h1(self):
        """The first heading's text if it is a level-1 heading, else None."""
        return self.headings[0][2] if self.headings and self.headings[0][1] == 1 else None

    def links(self):
        """(line, destination, kind) of every link outside code; kind 'ref' for undefined references."""
        defs = {}
        out = []
        for no, line in self.code_free:
            d = REF_DEF.match(line)
            if d:
                defs[norm_label(d.group(1))] = True
                out.append((no, d.group(2).strip("<>"), "link"))
                continue
            line = CODE_SPAN.sub(blank, line)
            for m in INLINE.finditer(line):
                out.append((no, m.group(2).strip("<>"), "link"))
            for m in HTML_LINK.finditer(line):
                out.append((no, m.group(1), "link"))
            for m in FULL_REF.finditer(INLINE.sub(blank, line)):
                label = m.group(2) or m.group(1)
                out.append((no, label, "ref"))
        return [(no, dest, kind) for no, dest, kind in out
                if kind == "link" or norm_label(dest) not in defs]


def norm_label(label):
    return " ".join(label.lower().split())


class Checker:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.checked = 0
        self.broken = []  # (file, line, link, why)
        self.cache = {}

    def markdown(self, path):
        if path not in self.cache:
            with open(path, encoding="utf-8") as f:
                self.cache[path] = Markdown(f.read())
        return self.cache[path]

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def bad(self, path, line, link, why):
        self.broken.append((self.rel(path), line, link, why))

    def anchor_problem(self, target, anchor):
        """Why `anchor` does not resolve in the file or directory `target`, or None."""
        if os.path.isdir(target):
            readme = os.path.join(target, "README.md")
            if not os.path.isfile(readme):
                return f"anchor #{anchor} on a directory without README.md"
            target = readme
        if not target.endswith(".md"):
            if LINE_ANCHOR.match(anchor):
                return None
            return f"anchor #{anchor} on a file that is not Markdown"
        if anchor in self.markdown(target).anchors:
            return None
        return f"no heading or <a id> #{anchor} in {self.rel(target)}"

    def check_link(self, path, line, dest):
        self.checked += 1
        if dest.startswith("#"):
            target, anchor = path, dest[1:]
        else:
            target, _, anchor = dest.partition("#")
            target = urllib.parse.unquote(target.split("?", 1)[0])
            if not target:
                target = path
            elif target.startswith("/"):
                target = os.path.join(self.root, target.lstrip("/"))
            else:
                target = os.path.join(os.path.dirname(path), target)
            target = os.path.realpath(target)
            if target != self.root and not target.startswith(self.root + os.sep):
                return self.bad(path, line, dest, "points outside the repository")
            if not os.path.exists(target):
                return self.bad(path, line, dest, f"{self.rel(target)} does not exist")
        anchor = urllib.parse.unquote(anchor)
        if anchor:
            why = self.anchor_problem(target, anchor)
            if why:
                self.bad(path, line, dest, why)

    def check_markdown(self, path):
        for line, dest, kind in self.markdown(path).links():
            if kind == "ref":
                self.checked += 1
                self.bad(path, line, f"[{dest}]", "reference without a definition")
            elif not SCHEME.match(dest):
                self.check_link(path, line, dest)

    def markdown_files(self):
        files = [os.path.join(self.root, f) for f in MARKDOWN_FILES]
        for d in MARKDOWN_DIRS:
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, d)):
                dirnames.sort()
                files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".md")]
        return [f for f in files if os.path.isfile(f)]

    def version(self):
        with open(os.path.join(self.root, "Cargo.toml"), encoding="utf-8") as f:
            m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', f.read(), re.M | re.S)
        if not m:
            sys.exit("check-links: no [package] version in Cargo.toml")
        return m.group(1)

    def rule_files(self):
        d = os.path.join(self.root, RULE_FILES_DIR)
        files = [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith((".yml", ".yaml"))] \
            if os.path.isdir(d) else []
        return files + [f for f in (os.path.join(self.root, r) for r in RULE_FILES) if os.path.isfile(f)]

    def check_runbook(self, path, line, url, base):
        self.checked += 1
        if not url.startswith(base):
            return self.bad(path, line, url, f"not under the default runbook base {base}")
        page, _, anchor = url[len(base):].partition("#")
        name = page[:-3] if page.endswith(".md") else None
        if not name or "/" in name:
            return self.bad(path, line, url, f"not {base}<AlertName>.md")
        target = os.path.join(self.root, RUNBOOK_DIR, page)
        if not os.path.isfile(target):
            return self.bad(path, line, url, f"{RUNBOOK_DIR}/{page} does not exist")
        if self.markdown(target).h1() != name or self.markdown(target).headings[0][0] != 1:
            return self.bad(path, line, url, f"{RUNBOOK_DIR}/{page} does not start with '# {name}'")
        if anchor:
            why = self.anchor_problem(target, urllib.parse.unquote(anchor))
            if why:
                self.bad(path, line, url, why)

    def run(self):
        for path in self.markdown_files():
            self.check_markdown(path)
        base = RUNBOOK_BASE.format(version=self.version())
        for path in self.rule_files():
            with open(path, encoding="utf-8") as f:
                for no, text in enumerate(f, 1):
                    m = RUNBOOK_URL.match(text)
                    if m:
                        self.check_runbook(path, no, m.group(1).strip("\"'"), base)
        return self


def report(checker, out=sys.stdout):
    for f, line, link, why in checker.broken:
        print(f"{f}:{line}: {link}: {why}", file=out)
    print(f"links: {checker.checked} checked, {len(checker.broken)} broken", file=out)


def self_test():
    """A tree with every kind of good link and every kind of break; the checker must tell them apart."""
    files = {
        "Cargo.toml": '[package]\nname = "x"\nversion = "9.8.7"\n\n[dependencies]\nversion = "1"\n',
        "src/main.rs": "fn main() {}\n",
        "README.md": """# Title

## Setup `code` here
## Setup `code` here
Setext heading
--------------
<a id="custom-anchor"></a>
## Caf\u00e9, 100% (really!) -- done_now

good: [f](docs/guide.md) [d](docs/) [a](docs/guide.md#a-section) [s](#title) [dup](#setup-code-here-1)
good: [st](#setext-heading) [x](#custom-anchor) [u](#café-100-really----done_now) ![img](src/main.rs)
good: [line](src/main.rs#L1-L2) [abs](/docs/guide.md) [ext](https://example.com/nope) [m](mailto:a@b.c)
good: [ref][guide] [t](docs/guide.md "title") [sp](<docs/guide.md>) `[code](missing-in-code.md)`
<a href="docs/guide.md#a-section">html</a>
<!-- [comment](missing-in-comment.md) -->

```sh
[fenced](missing-in-fence.md)
```

bad: [nofile](docs/missing.md)
bad: [noanchor](docs/guide.md#nope)
bad: [selfanchor](#nowhere)
bad: [escape](../outside.md)
bad: [undefined][nodef]
bad: [dupmiss](#setup-code-here-2)
bad: [notmd](src/main.rs#main)
<a href="docs/gone.md">html</a>

[guide]: docs/guide.md
[broken-def]: docs/nothing.md
""",
        "docs/guide.md": "# Guide\n\n## A section\n\n[back](../README.md#title) [bad](../README.md#no-such)\n",
        "docs/runbooks/AlertA.md": "# AlertA\n\n## Steps\n",
        "docs/runbooks/AlertB.md": "# Not AlertB\n",
        "deploy/prometheus/rules/x.rules.yml": """groups:
  - rules:
      - alert: AlertA
        annotations:
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertA.md"
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertA.md#steps"
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/main/README.md#runbook-alerta"
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertC.md"
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertB.md"
          runbook_url: "https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertA.md#nope"
""",
        "deploy/kubernetes/monitoring/prometheusrule.yaml":
            "spec:\n  x:\n        runbook_url: https://github.com/statuswatch/statuswatch/blob/v9.8.7/docs/runbooks/AlertA\n",
    }
    # (file, a text on the line, substring of the reason) of every expected break
    expected = [
        ("README.md", "[nofile]", "docs/missing.md does not exist"),
        ("README.md", "[noanchor]", "no heading or <a id> #nope in docs/guide.md"),
        ("README.md", "[selfanchor]", "#nowhere in README.md"),
        ("README.md", "[escape]", "outside the repository"),
        ("README.md", "[undefined]", "reference without a definition"),
        ("README.md", "[dupmiss]", "#setup-code-here-2 in README.md"),
        ("README.md", "[notmd]", "not Markdown"),
        ("README.md", "docs/gone.md", "docs/gone.md does not exist"),
        ("README.md", "[broken-def]", "docs/nothing.md does not exist"),
        ("docs/guide.md", "[bad]", "#no-such in README.md"),
        ("deploy/prometheus/rules/x.rules.yml", "README.md#runbook", "not under the default runbook base"),
        ("deploy/prometheus/rules/x.rules.yml", "AlertC", "docs/runbooks/AlertC.md does not exist"),
        ("deploy/prometheus/rules/x.rules.yml", "AlertB", "does not start with '# AlertB'"),
        ("deploy/prometheus/rules/x.rules.yml", "#nope", "#nope in docs/runbooks/AlertA.md"),
        ("deploy/kubernetes/monitoring/prometheusrule.yaml", "runbook_url", "<AlertName>.md"),
    ]
    expected = [(f, 1 + files[f][:files[f].index(marker)].count("\n"), why) for f, marker, why in expected]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "repo")
        for name, text in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        with open(os.path.join(tmp, "outside.md"), "w", encoding="utf-8") as f:
            f.write("# Outside\n")
        c = Checker(root).run()
    failures = []
    found = list(c.broken)
    for f, line, why in sorted(expected):
        hit = [b for b in found if b[0] == f and b[1] == line and why in b[3]]
        if not hit:
            failures.append(f"not caught: {f}:{line}: {why}")
        for b in hit:
            found.remove(b)
    failures += [f"false alarm: {f}:{line}: {link}: {why}" for f, line, link, why in found]
    # the good links checked (links with a scheme are skipped, not counted): README's 13
    # inline, its <a href> and [guide] definition, guide.md's one, two runbook URLs
    good = 13 + 2 + 1 + 2
    if c.checked != good + len(expected):
        failures.append(f"checked {c.checked} links, expected {good + len(expected)}")
    for f in failures:
        print(f"self-test: {f}")
    if failures:
        report(c)
        print(f"self-test: FAILED ({len(failures)} problem(s))")
        return 1
    print(f"self-test: ok ({len(expected)} kinds of broken links caught among {c.checked}, no false alarm)")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                    help="repository root (default: this script's parent directory)")
    ap.add_argument("--self-test", action="store_true", help="check the checker on a built tree")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    c = Checker(args.root).run()
    report(c)
    return 1 if c.broken else 0


if __name__ == "__main__":
    sys.exit(main())

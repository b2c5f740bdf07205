//! Every relative link in the repository's Markdown resolves: README.md, docs/*.md,
//! deploy/README.md, benches/ and any other `*.md` outside `target/` and hidden directories.
//!
//! A link is `[text](target)`, `![alt](target)` or a reference definition `[label]: target`
//! (and `[text][label]` must name a defined label). Links inside fenced code blocks and inline
//! code spans do not count. External targets (any `scheme:`, e.g. `https:`, `mailto:`) are
//! skipped. A relative target must name an existing file or directory inside the repository; a
//! `#anchor` on a Markdown file (or alone, for the same file) must be the GitHub slug of one of its
//! headings (lower case, spaces to `-`, punctuation other than `-` and `_` dropped, `-1`, `-2`, …
//! for repeated headings) or an HTML `id` / `name`.
//!
//! Plain std + `regex`: no operator code, no network, no cluster.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use regex::Regex;

/// Directories never searched for Markdown: build output, and hidden ones (`.git`, `.dev`, …).
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];

/// Every `*.md` under `root`, sorted, skipping [`SKIPPED_DIRS`] and hidden directories.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                    dirs.push(path);
                }
            } else if name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `text` with the contents of fenced code blocks blanked (the fence lines too), newlines kept, so
/// that byte offsets and line numbers still match the file.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        let is_fence = indent <= 3 && run >= 3;
        let blank = match fence {
            None if is_fence => {
                fence = Some((marker.expect("a fence marker"), run));
                true
            }
            None => false,
            Some((c, n)) => {
                let closes =
                    is_fence && marker == Some(c) && run >= n && trimmed[run..].trim().is_empty();
                if closes {
                    fence = None;
                }
                true
            }
        };
        if blank {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `text` with inline code spans blanked (a run of N backticks up to the next run of exactly N),
/// newlines kept. An unmatched run stays as it is, as in CommonMark.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    end = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match end {
            Some(j) => {
                for c in &mut out[i..j + n] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    out.into_iter().collect()
}

/// The GitHub anchor of a heading's text: inline links reduced to their text, HTML tags and
/// code-span backticks removed, lower case, every space a `-`, every character other than a letter,
/// digit, mark, `-` or `_` dropped.
fn slug(heading: &str) -> String {
    let link = Regex::new(r"!?\[([^\]]*)\]\([^)]*\)").expect("regex");
    let tag = Regex::new(r"<[^>]+>").expect("regex");
    let text = link.replace_all(heading, "$1");
    let text = tag.replace_all(&text, "");
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a Markdown document defines: its headings' slugs (ATX `#` and setext `===`/`---`,
/// repeated ones numbered as GitHub does) and HTML `id` / `name` attributes.
fn anchors(text: &str) -> HashSet<String> {
    let atx = Regex::new(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$").expect("regex");
    let setext = Regex::new(r"^ {0,3}(?:=+|-+)[ \t]*$").expect("regex");
    let not_setext_text = Regex::new(r"^ {0,3}(?:[#|>]|[-*+] |\d+[.)] |$)").expect("regex");
    let html = Regex::new(r#"<[^>]*\s(?:id|name)\s*=\s*["']([^"']+)["']"#).expect("regex");
    let prose = without_fences(text);
    let mut seen = HashSet::new();
    let mut add = |base: String| {
        let mut candidate = base.clone();
        let mut n = 0;
        while !seen.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
    };
    let lines: Vec<&str> = prose.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(c) = atx.captures(line) {
            add(slug(c.get(1).map_or("", |m| m.as_str())));
        } else if i > 0 && setext.is_match(line) && !not_setext_text.is_match(lines[i - 1]) {
            add(slug(lines[i - 1]));
        }
    }
    let mut all = seen;
    all.extend(html.captures_iter(&prose).map(|c| c[1].to_string()));
    all
}

/// A link found in a document: where its target starts (1-based line) and the target as written.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// Every link of a Markdown document outside code, in order: inline links and images (also inside
/// another link's text), reference definitions, and `[text][label]` uses of an undefined label
/// (reported with the target `[label]`, which never resolves).
fn links(text: &str) -> Vec<Link> {
    let inline = Regex::new(
        r#"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)"#,
    )
    .expect("regex");
    let definition = Regex::new(r"(?m)^ {0,3}\[([^\]]+)\]:[ \t]*(<[^>\n]*>|\S+)").expect("regex");
    let full_reference = Regex::new(r"\[([^\[\]]+)\]\[([^\[\]]*)\]").expect("regex");
    let prose = without_code_spans(&without_fences(text));
    let line_of = |offset: usize| prose[..offset].matches('\n').count() + 1;
    let unbracket = |t: &str| t.trim_start_matches('<').trim_end_matches('>').to_string();
    let label = |l: &str| {
        l.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };

    let mut found = Vec::new();
    let mut pending = vec![(0usize, prose.as_str())];
    while let Some((base, chunk)) = pending.pop() {
        for c in inline.captures_iter(chunk) {
            let target = c.get(2).expect("a target");
            found.push(Link {
                line: line_of(base + target.start()),
                target: unbracket(target.as_str()),
            });
            let text = c.get(1).expect("a text");
            pending.push((base + text.start(), text.as_str()));
        }
    }
    let mut defined = HashSet::new();
    for c in definition.captures_iter(&prose) {
        defined.insert(label(&c[1]));
        let target = c.get(2).expect("a target");
        found.push(Link {
            line: line_of(target.start()),
            target: unbracket(target.as_str()),
        });
    }
    for c in full_reference.captures_iter(&prose) {
        let used = if c[2].is_empty() { &c[1] } else { &c[2] };
        if !defined.contains(&label(used)) {
            found.push(Link {
                line: line_of(c.get(0).expect("a match").start()),
                target: format!("[{used}]"),
            });
        }
    }
    found.sort_by_key(|l| l.line);
    found
}

/// `%XX` escapes decoded (a link to `a%20b.md` names `a b.md`).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above `root`.
fn normalized(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(root).then_some(out)
}

/// Checks every link of `files` (under `root`). Returns how many relative links were checked, and
/// one line per broken link: `file:line → target (why)`, with `file` relative to `root`.
fn check(root: &Path, files: &[PathBuf]) -> (usize, Vec<String>) {
    let external = Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*:").expect("regex");
    let mut anchor_cache: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for link in links(&text) {
            let target = link.target.as_str();
            if external.is_match(target) {
                continue;
            }
            checked += 1;
            let mut report = |why: &str| {
                broken.push(format!("{shown}:{} → {target} ({why})", link.line));
            };
            if target.starts_with('[') {
                report("no definition of this reference label");
                continue;
            }
            let (path_part, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(percent_decoded(a))),
                None => (target, None),
            };
            let path_part = path_part.split('?').next().unwrap_or_default();
            let resolved = if path_part.is_empty() {
                Some(file.clone())
            } else {
                let decoded = percent_decoded(path_part);
                let joined = match decoded.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => file.parent().expect("a parent directory").join(decoded),
                };
                normalized(root, &joined)
            };
            let Some(resolved) = resolved else {
                report("outside the repository");
                continue;
            };
            if !resolved.exists() {
                report("no such file or directory");
                continue;
            }
            let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                continue;
            };
            if resolved.extension().is_none_or(|e| e != "md") {
                continue; // anchors of other files (`#L10` in code) are not headings
            }
            let defined = anchor_cache
                .entry(resolved.clone())
                .or_insert_with(|| anchors(&fs::read_to_string(&resolved).unwrap_or_default()));
            if !defined.contains(&anchor) {
                report("no heading with this anchor");
            }
        }
    }
    (checked, broken)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let root = root();
    let files = markdown_files(&root);
    for expected in ["README.md", "deploy/README.md", "docs/how-it-works.md"] {
        assert!(
            files.contains(&root.join(expected)),
            "{expected} not among the Markdown files searched: {files:?}"
        );
    }
    let (checked, broken) = check(&root, &files);
    assert!(
        broken.is_empty(),
        "{} broken relative link(s) in the Markdown (file:line → target):\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
    // A parser that finds nothing would pass; the README alone links to every file in docs/.
    assert!(
        checked >= 20,
        "only {checked} relative links found in {files:?}"
    );
}

#[test]
fn the_checker_reports_every_broken_link_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("tmo-docs-links-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("docs")).expect("a scratch directory");
    fs::write(
        dir.join("README.md"),
        "# Title\n\n## Same\n\n## Same\n\n## RBAC: what `it` may do — [really](docs/a.md)\n\n\
         [ok](docs/a.md#part-two) [ok](#same-1) [ok](#rbac-what-it-may-do--really) [ok](docs/)\n\
         [ok](https://example.com/missing) [ok](mailto:a@b.c) ![ok](docs/a.md) [ok][ref]\n\
         `[not a link](missing.md)` and\n```sh\n[not a link](missing.md)\n```\n\
         [bad](docs/missing.md) [bad](#same-2) [bad](docs/a.md#part-three)\n\
         [bad][nowhere] [wrapped\ntext](../outside.md) [ok](docs/a%20b.md)\n\
         [![bad](missing.svg)](docs/a.md)\n\n[ref]: docs/a.md#part-two\n[bad-ref]: nothing.md\n",
    )
    .expect("README.md");
    fs::write(
        dir.join("docs/a.md"),
        "# A\n\nPart two\n--------\n\n[ok](../README.md#same)\n",
    )
    .expect("docs/a.md");
    fs::write(dir.join("docs/a b.md"), "[bad](a.md#title)\n").expect("docs/a b.md");

    let files = markdown_files(&dir);
    let (_, broken) = check(&dir, &files);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        broken,
        [
            "README.md:15 → docs/missing.md (no such file or directory)",
            "README.md:15 → #same-2 (no heading with this anchor)",
            "README.md:15 → docs/a.md#part-three (no heading with this anchor)",
            "README.md:16 → [nowhere] (no definition of this reference label)",
            "README.md:17 → ../outside.md (outside the repository)",
            "README.md:18 → missing.svg (no such file or directory)",
            "README.md:21 → nothing.md (no such file or directory)",
            "docs/a b.md:1 → a.md#title (no heading with this anchor)",
        ]
    );
}

#[test]
fn slugs_are_githubs() {
    for (heading, expected) in [
        ("How it works", "how-it-works"),
        (
            "RBAC: what the operator may do",
            "rbac-what-the-operator-may-do",
        ),
        (
            "The VPC traffic-mirror emulator (`hwc-vpc-emulator`)",
            "the-vpc-traffic-mirror-emulator-hwc-vpc-emulator",
        ),
        (
            "TrafficMirrorSession (`tms`, namespaced)",
            "trafficmirrorsession-tms-namespaced",
        ),
        ("Crash-safe create", "crash-safe-create"),
        ("snake_case and 1.30", "snake_case-and-130"),
        ("A — B", "a--b"),
        ("See [the docs](docs/x.md)", "see-the-docs"),
    ] {
        assert_eq!(slug(heading), expected, "{heading}");
    }
    let defined = anchors("# A\n## A\n```\n# not a heading\n```\n### A ###\n<a id=\"x\"></a>\n");
    let mut defined: Vec<_> = defined.into_iter().collect();
    defined.sort();
    assert_eq!(defined, ["a", "a-1", "a-2", "x"]);
}

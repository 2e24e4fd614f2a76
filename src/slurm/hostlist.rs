//! Slurm hostlist expression expansion and compression.
//!
//! [`expand`] turns `node[001-003,7],gpu1,rack[1-2]-n[01-02]` into host names;
//! [`compress`] turns host names back into a canonical hostlist, as
//! `scontrol show hostlist` does.

use std::collections::BTreeSet;

/// Upper bound on the number of names one [`expand`] call may produce.
pub const MAX_HOSTS: usize = 65_536;

/// Why a hostlist expression could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostlistError {
    /// An empty item between commas (`a,,b`, `a,`).
    #[error("empty host name in hostlist {expr:?}")]
    Empty { expr: String },
    /// A `[` without `]`, a `]` without `[`, or nested brackets.
    #[error("unbalanced or nested brackets in {name:?}")]
    UnbalancedBrackets { name: String },
    /// `[]` or an empty element inside brackets (`[1,]`).
    #[error("empty range in {name:?}")]
    EmptyRange { name: String },
    /// A range whose start exceeds its end (`[5-3]`).
    #[error("reversed range {range:?} in {name:?}")]
    ReversedRange { range: String, name: String },
    /// A range element that is not `N` or `N-M` with 64-bit decimal numbers.
    #[error("invalid range {range:?} in {name:?}: expected N or N-M with decimal numbers")]
    BadRange { range: String, name: String },
    /// The expression would expand to more than [`MAX_HOSTS`] names.
    #[error("hostlist {expr:?} expands to more than {max} hosts")]
    TooManyHosts { expr: String, max: usize },
    /// A character Slurm never allows in a node name.
    #[error("invalid character {ch:?} in host name {name:?}")]
    InvalidCharacter { ch: char, name: String },
}

use HostlistError as E;

/// An inclusive numeric range; `width` is the zero-padding width of its start token.
#[derive(Debug, Clone, Copy)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

/// A piece of one host name pattern.
#[derive(Debug)]
enum Part<'a> {
    Literal(&'a str),
    Ranges(Vec<Range>),
}

/// Expand a hostlist expression into host names, in Slurm's order (items left to
/// right, the first bracket group of a name varying slowest), duplicates kept.
///
/// Empty or whitespace-only input is an empty nodelist.
pub fn expand(expr: &str) -> Result<Vec<String>, HostlistError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Ok(Vec::new());
    }
    let mut patterns = Vec::new();
    let mut total: u64 = 0;
    for item in split_top_level(expr) {
        let item = item.trim();
        if item.is_empty() {
            return Err(E::Empty { expr: expr.into() });
        }
        let parts = parse_name(item)?;
        total = total.saturating_add(count(&parts));
        if total > MAX_HOSTS as u64 {
            return Err(E::TooManyHosts {
                expr: expr.into(),
                max: MAX_HOSTS,
            });
        }
        patterns.push(parts);
    }
    let mut out = Vec::with_capacity(total as usize);
    for parts in &patterns {
        let mut names = vec![String::new()];
        for part in parts {
            match part {
                Part::Literal(s) => names.iter_mut().for_each(|n| n.push_str(s)),
                Part::Ranges(ranges) => {
                    names = names
                        .iter()
                        .flat_map(|n| {
                            ranges.iter().flat_map(move |r| {
                                (r.lo..=r.hi).map(move |v| format!("{n}{v:0w$}", w = r.width))
                            })
                        })
                        .collect();
                }
            }
        }
        out.append(&mut names);
    }
    Ok(out)
}

/// Split on commas outside brackets. Bracket errors are left to [`parse_name`].
fn split_top_level(expr: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    expr.split(move |c| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        c == ',' && depth == 0
    })
}

/// Whether Slurm never allows `c` in a node name.
fn is_forbidden(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            ';' | '$' | '`' | '(' | ')' | '|' | '&' | '<' | '>' | '\'' | '"' | '\\' | '/' | '*'
        )
}

/// Parse one top-level item (`rack[1-2]-n[01-04]`) into literal and range parts.
fn parse_name(name: &str) -> Result<Vec<Part<'_>>, HostlistError> {
    if let Some(ch) = name.chars().find(|&c| is_forbidden(c)) {
        return Err(E::InvalidCharacter {
            ch,
            name: name.into(),
        });
    }
    let unbalanced = || E::UnbalancedBrackets { name: name.into() };
    let mut parts = Vec::new();
    let mut rest = name;
    while let Some(open) = rest.find(['[', ']']) {
        if rest[open..].starts_with(']') {
            return Err(unbalanced());
        }
        if open > 0 {
            parts.push(Part::Literal(&rest[..open]));
        }
        let body = &rest[open + 1..];
        let close = body.find(['[', ']']).ok_or_else(unbalanced)?;
        if body[close..].starts_with('[') {
            return Err(unbalanced());
        }
        parts.push(Part::Ranges(parse_ranges(&body[..close], name)?));
        rest = &body[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// Parse a bracket body such as `1-3,5,07-08`.
fn parse_ranges(body: &str, name: &str) -> Result<Vec<Range>, HostlistError> {
    body.split(',')
        .map(|elem| {
            if elem.is_empty() {
                return Err(E::EmptyRange { name: name.into() });
            }
            let bad = || E::BadRange {
                range: elem.into(),
                name: name.into(),
            };
            let number = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(bad)
            };
            let (lo_tok, hi_tok) = elem.split_once('-').unwrap_or((elem, elem));
            let (lo, hi) = (number(lo_tok)?, number(hi_tok)?);
            if lo > hi {
                return Err(E::ReversedRange {
                    range: elem.into(),
                    name: name.into(),
                });
            }
            Ok(Range {
                lo,
                hi,
                width: lo_tok.len(),
            })
        })
        .collect()
}

/// Number of names a parsed pattern expands to, saturating.
fn count(parts: &[Part]) -> u64 {
    parts.iter().fold(1, |acc: u64, part| match part {
        Part::Literal(_) => acc,
        Part::Ranges(ranges) => acc.saturating_mul(ranges.iter().fold(0, |sum: u64, r| {
            sum.saturating_add((r.hi - r.lo).saturating_add(1))
        })),
    })
}

/// Canonical sort key of a name: `(prefix, width, value)`; width 0 marks a name kept
/// verbatim (no numeric suffix, or one too large for `u64`).
type Key<'a> = (&'a str, usize, u64);

/// Deduplicated names in compress order: by prefix, then padding width, then number.
///
/// A zero-padded suffix (`007`) has its own width; an unpadded one (`10`) joins the
/// widest padded group of its prefix that can print it (`n09,n10` → width 2), else 1.
fn sorted_keys<S: AsRef<str>>(names: &[S]) -> Vec<Key<'_>> {
    let split: Vec<_> = names
        .iter()
        .map(|n| {
            let name = n.as_ref();
            let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
            let digits = &name[prefix.len()..];
            let padded = digits.len() > 1 && digits.starts_with('0');
            match digits.parse::<u64>() {
                Ok(v) => (prefix, digits.len(), v, padded),
                Err(_) => (name, 0, 0, false),
            }
        })
        .collect();
    let padded_widths: BTreeSet<(&str, usize)> = split
        .iter()
        .filter(|s| s.3)
        .map(|&(p, len, _, _)| (p, len))
        .collect();
    let mut keys: Vec<Key> = split
        .iter()
        .map(|&(p, len, v, padded)| match len {
            0 => (p, 0, 0),
            _ if padded => (p, len, v),
            _ => {
                let fit = padded_widths.range((p, 1)..=(p, len)).next_back();
                (p, fit.map_or(1, |&(_, w)| w), v)
            }
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Compress host names into a canonical hostlist, as `scontrol show hostlist` does.
///
/// Names are sorted and deduplicated; names sharing a prefix and padding width have
/// their trailing numbers merged into one bracket group (`node[001-003,005]`). Names
/// without a trailing number are kept as-is. Names are not validated: ones holding
/// `,`, `[` or `]` will not round-trip through [`expand`].
pub fn compress<S: AsRef<str>>(names: &[S]) -> String {
    let keys = sorted_keys(names);
    let mut out = Vec::new();
    for group in keys.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (prefix, w, _) = group[0];
        if w == 0 || group.len() == 1 {
            out.push(render(group[0]));
            continue;
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &(_, _, v) in group {
            match runs.last_mut() {
                Some((_, hi)) if hi.checked_add(1) == Some(v) => *hi = v,
                _ => runs.push((v, v)),
            }
        }
        let body: Vec<String> = runs
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    format!("{lo:0w$}")
                } else {
                    format!("{lo:0w$}-{hi:0w$}")
                }
            })
            .collect();
        out.push(format!("{prefix}[{}]", body.join(",")));
    }
    out.join(",")
}

/// The name a key stands for.
fn render((prefix, w, v): Key) -> String {
    match w {
        0 => prefix.to_owned(),
        _ => format!("{prefix}{v:0w$}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(expr: &str) -> Vec<String> {
        expand(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
    }

    fn err(expr: &str) -> HostlistError {
        expand(expr).expect_err(expr)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn canonical<S: AsRef<str>>(names: &[S]) -> Vec<String> {
        sorted_keys(names).into_iter().map(render).collect()
    }

    #[test]
    fn expands_the_documented_example() {
        assert_eq!(
            ok("node[001-003,7],gpu1,rack[1-2]-n[01-02]"),
            s(&[
                "node001",
                "node002",
                "node003",
                "node7",
                "gpu1",
                "rack1-n01",
                "rack1-n02",
                "rack2-n01",
                "rack2-n02",
            ])
        );
    }

    #[test]
    fn empty_input_is_an_empty_nodelist() {
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok(" \t\n "), Vec::<String>::new());
    }

    #[test]
    fn plain_names_and_top_level_whitespace() {
        assert_eq!(ok("a"), s(&["a"]));
        assert_eq!(ok(" a , b\t,\nc "), s(&["a", "b", "c"]));
        assert_eq!(ok("login-1.example"), s(&["login-1.example"]));
    }

    #[test]
    fn keeps_order_and_duplicates_as_written() {
        assert_eq!(ok("b,a,b,n[2,1,2]"), s(&["b", "a", "b", "n2", "n1", "n2"]));
    }

    #[test]
    fn ranges_and_singles_mixed() {
        assert_eq!(ok("n[1-3,5,7-8]"), s(&["n1", "n2", "n3", "n5", "n7", "n8"]));
        assert_eq!(ok("n[4]"), s(&["n4"]));
        assert_eq!(ok("[1-2]"), s(&["1", "2"]));
    }

    #[test]
    fn zero_padding_follows_the_start_token() {
        assert_eq!(ok("n[8-10]"), s(&["n8", "n9", "n10"]));
        let padded = ok("n[01-10]");
        assert_eq!(padded.len(), 10);
        assert_eq!((padded[0].as_str(), padded[9].as_str()), ("n01", "n10"));
        assert_eq!(ok("n[001-3]"), s(&["n001", "n002", "n003"]));
        assert_eq!(ok("n[98-100]"), s(&["n98", "n99", "n100"]));
        assert_eq!(ok("n[098-100]"), s(&["n098", "n099", "n100"]));
        assert_eq!(ok("n[007,7]"), s(&["n007", "n7"]));
    }

    #[test]
    fn several_bracket_groups_first_varies_slowest() {
        assert_eq!(
            ok("rack[1-2]-n[01-04]"),
            s(&[
                "rack1-n01",
                "rack1-n02",
                "rack1-n03",
                "rack1-n04",
                "rack2-n01",
                "rack2-n02",
                "rack2-n03",
                "rack2-n04",
            ])
        );
        assert_eq!(
            ok("r[1-2]c[3,5]-ib"),
            s(&["r1c3-ib", "r1c5-ib", "r2c3-ib", "r2c5-ib"])
        );
        assert_eq!(ok("[1-2][3-4]"), s(&["13", "14", "23", "24"]));
    }

    #[test]
    fn commas_inside_brackets_belong_to_the_range_list() {
        assert_eq!(ok("a[1,2],b"), s(&["a1", "a2", "b"]));
    }

    #[test]
    fn empty_items_are_errors() {
        for expr in ["a,,b", ",a", "a,", ",", "a, ,b"] {
            assert_eq!(err(expr), E::Empty { expr: expr.into() }, "{expr:?}");
        }
    }

    #[test]
    fn unbalanced_brackets() {
        for (expr, name) in [
            ("node[1-3", "node[1-3"),
            ("node1-3]", "node1-3]"),
            ("node[[1-3]]", "node[[1-3]]"),
            ("n[1[2]]", "n[1[2]]"),
            ("n[1]]", "n[1]]"),
            ("n]1[", "n]1["),
            ("a,node[1,b", "node[1,b"),
            ("[", "["),
        ] {
            assert_eq!(
                err(expr),
                E::UnbalancedBrackets { name: name.into() },
                "{expr:?}"
            );
        }
    }

    #[test]
    fn empty_ranges() {
        for expr in ["node[]", "n[1,]", "n[,1]", "n[1,,2]"] {
            assert_eq!(err(expr), E::EmptyRange { name: expr.into() }, "{expr:?}");
        }
    }

    #[test]
    fn reversed_range() {
        assert_eq!(
            err("n[1,5-3]"),
            E::ReversedRange {
                range: "5-3".into(),
                name: "n[1,5-3]".into()
            }
        );
    }

    #[test]
    fn bad_ranges() {
        for (expr, range) in [
            ("n[a-c]", "a-c"),
            ("n[1-c]", "1-c"),
            ("n[x]", "x"),
            ("n[1-]", "1-"),
            ("n[-3]", "-3"),
            ("n[1-2-3]", "1-2-3"),
            ("n[+3]", "+3"),
            ("n[1-+3]", "1-+3"),
            ("n[1-99999999999999999999]", "1-99999999999999999999"),
            ("n[٣]", "٣"),
        ] {
            assert_eq!(
                err(expr),
                E::BadRange {
                    range: range.into(),
                    name: expr.into()
                },
                "{expr:?}"
            );
        }
    }

    #[test]
    fn too_many_hosts_errors_without_allocating() {
        let too_many = |expr: &str| E::TooManyHosts {
            expr: expr.into(),
            max: MAX_HOSTS,
        };
        for expr in [
            "n[0-999999999]",
            "n[0-18446744073709551615]",
            "a[0-18446744073709551615,0-18446744073709551615]",
            "a[0-4294967296]b[0-4294967296]c[0-4294967296]",
            "n[0-65535],extra",
            "a[0-255]b[0-256]",
        ] {
            assert_eq!(err(expr), too_many(expr), "{expr:?}");
        }
        assert_eq!(ok("n[0-65535]").len(), MAX_HOSTS);
        assert_eq!(ok("a[0-255]b[0-255]").len(), MAX_HOSTS);
    }

    #[test]
    fn invalid_characters() {
        for ch in [
            ';', '$', '`', '(', ')', '|', '&', '<', '>', '\'', '"', '\\', '/', '*', '\0',
        ] {
            let name = format!("no{ch}de1");
            assert_eq!(
                err(&format!("ok,{name}")),
                E::InvalidCharacter {
                    ch,
                    name: name.clone()
                },
                "{ch:?}"
            );
        }
        for (expr, ch, name) in [
            ("node 1", ' ', "node 1"),
            ("a,no\tde", '\t', "no\tde"),
            ("n[1, 2]", ' ', "n[1, 2]"),
            ("n[1 -2]", ' ', "n[1 -2]"),
        ] {
            assert_eq!(
                err(expr),
                E::InvalidCharacter {
                    ch,
                    name: name.into()
                },
                "{expr:?}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        assert_eq!(
            err("n[5-3]").to_string(),
            r#"reversed range "5-3" in "n[5-3]""#
        );
        assert_eq!(
            err("n[0-99999]").to_string(),
            r#"hostlist "n[0-99999]" expands to more than 65536 hosts"#
        );
        assert!(err("a,,b").to_string().contains(r#""a,,b""#));
        assert!(err("x;y").to_string().contains("';'"));
    }

    #[test]
    fn compress_basic() {
        assert_eq!(compress::<&str>(&[]), "");
        assert_eq!(compress(&["node7"]), "node7");
        assert_eq!(compress(&["login"]), "login");
        assert_eq!(
            compress(&["node003", "node001", "node005", "node002", "node001"]),
            "node[001-003,005]"
        );
        assert_eq!(
            compress(&["n1", "n2", "n3", "n5", "n7", "n8"]),
            "n[1-3,5,7-8]"
        );
        assert_eq!(
            compress(&["gpu2", "login", "gpu1", "cpu10", "cpu9", "head"]),
            "cpu[9-10],gpu[1-2],head,login"
        );
    }

    #[test]
    fn compress_accepts_owned_strings() {
        let names = vec!["b1".to_string(), "b2".to_string()];
        assert_eq!(compress(&names), "b[1-2]");
    }

    #[test]
    fn compress_groups_by_prefix_and_width() {
        assert_eq!(compress(&["n9", "n10"]), "n[9-10]");
        assert_eq!(compress(&["n10", "n09"]), "n[09-10]");
        assert_eq!(compress(&["n1", "n2", "n01", "n02"]), "n[1-2],n[01-02]");
        assert_eq!(compress(&["n001", "n1", "n01"]), "n1,n01,n001");
        assert_eq!(compress(&["n099", "n100", "n5"]), "n5,n[099-100]");
        assert_eq!(compress(&["n99", "n100", "n01"]), "n[01,99-100]");
        assert_eq!(compress(&["n0", "n00", "n1"]), "n[0-1],n00");
    }

    #[test]
    fn compress_uses_only_the_trailing_number() {
        assert_eq!(
            compress(&["rack1-n02", "rack1-n01", "rack2-n01"]),
            "rack1-n[01-02],rack2-n01"
        );
        assert_eq!(compress(&["n1-ib", "n2-ib"]), "n1-ib,n2-ib");
        assert_eq!(compress(&["1", "2", "3"]), "[1-3]");
    }

    #[test]
    fn compress_edge_numbers() {
        let huge = "n99999999999999999999999";
        assert_eq!(compress(&[huge, "n1"]), format!("n1,{huge}"));
        assert_eq!(
            compress(&["n18446744073709551615", "n18446744073709551614"]),
            "n[18446744073709551614-18446744073709551615]"
        );
        assert_eq!(compress(&["n", "n1"]), "n,n1");
    }

    #[test]
    fn compress_then_expand_round_trips() {
        let expr = "node[001-003,7],gpu1,rack[1-2]-n[01-02]";
        let compressed = compress(&ok(expr));
        assert_eq!(
            compressed,
            "gpu1,node7,node[001-003],rack1-n[01-02],rack2-n[01-02]"
        );
        assert_eq!(compress(&ok(&compressed)), compressed);
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (
                prop::sample::select(vec!["n", "node", "gpu-", "rack1-n", ""]),
                0u64..300,
                0usize..5,
            )
                .prop_map(|(p, v, w)| format!("{p}{v:0w$}")),
            1 => prop::sample::select(vec!["login", "head", "n", "gpu-"]).prop_map(String::from),
        ]
    }

    proptest! {
        #[test]
        fn expand_of_compress_is_sorted_dedup(names in prop::collection::vec(arb_name(), 0..60)) {
            let expanded = expand(&compress(&names)).unwrap();
            prop_assert_eq!(&expanded, &canonical(&names));
            let unique: BTreeSet<&String> = names.iter().collect();
            prop_assert_eq!(expanded.len(), unique.len());
            prop_assert_eq!(expanded.iter().collect::<BTreeSet<_>>(), unique);
        }

        #[test]
        fn compress_is_idempotent(names in prop::collection::vec(arb_name(), 0..60)) {
            let once = compress(&names);
            prop_assert_eq!(compress(&expand(&once).unwrap()), once);
        }

        #[test]
        fn compress_ignores_input_order(
            names in prop::collection::vec(arb_name(), 0..40).prop_shuffle(),
        ) {
            let mut sorted = names.clone();
            sorted.sort();
            prop_assert_eq!(compress(&names), compress(&sorted));
        }

        #[test]
        fn expand_never_panics(expr in ".*") {
            let _ = expand(&expr);
        }

        #[test]
        fn expand_never_panics_on_hostlist_like_input(expr in "[a0-9,\\[\\]\\- ;]{0,40}") {
            if let Ok(names) = expand(&expr) {
                prop_assert!(names.len() <= MAX_HOSTS);
            }
        }
    }
}

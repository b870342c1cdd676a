//! Action and resource patterns: parsing, classification and allocation-free matching.

use std::fmt;

/// Most atoms (characters and wildcards) a general wildcard pattern may hold; the matcher
/// keeps one bit per atom in a `u128`.
pub(crate) const MAX_GLOB_ATOMS: usize = 127;

/// A parsed action or resource pattern.
///
/// Syntax:
/// * a string without `*` matches exactly that string;
/// * `*` on its own, or `**` on its own, matches anything (including the empty string);
/// * elsewhere, `*` matches any run of characters that contains no `/` (within one segment),
///   and `**` matches any run of characters, `/` included (any number of segments);
/// * `***` and longer runs of `*` are rejected.
///
/// `weather.*` and `fs/read_*` are prefix patterns, `reports/**` matches everything under
/// `reports/`, and `file:///*/summary.csv` matches one directory level.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    kind: PatternKind,
}

/// How a pattern is matched; decides which index structure holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatternKind {
    /// Matches everything.
    Any,
    /// Matches exactly the source text.
    Exact,
    /// Matches strings that start with `prefix`; when `deep` is false the rest holds no `/`.
    Prefix { prefix: Box<str>, deep: bool },
    /// A general wildcard pattern.
    Glob(Glob),
}

/// Why a pattern was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// Three or more `*` in a row.
    #[error("`***` is not a wildcard: use `*` (one segment) or `**` (any segments)")]
    TripleStar,
    /// A general wildcard pattern longer than the matcher supports.
    #[error("wildcard pattern has more than {MAX_GLOB_ATOMS} characters")]
    TooLong,
}

impl Pattern {
    /// Parses a pattern.
    ///
    /// ```
    /// use mcp_rbac::Pattern;
    ///
    /// let p = Pattern::parse("fs/read_*").unwrap();
    /// assert!(p.matches("fs/read_file"));
    /// assert!(!p.matches("fs/read_dir/x"));
    /// assert!(Pattern::parse("reports/**").unwrap().matches("reports/2024/q1.csv"));
    /// ```
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        if source.contains("***") {
            return Err(PatternError::TripleStar);
        }
        let kind = if source == "*" || source == "**" {
            PatternKind::Any
        } else if !source.contains('*') {
            PatternKind::Exact
        } else {
            let (deep, stem) = match source.strip_suffix("**") {
                Some(stem) => (true, stem),
                None => (false, source.strip_suffix('*').unwrap_or(source)),
            };
            if !stem.contains('*') && stem.len() < source.len() {
                PatternKind::Prefix {
                    prefix: stem.into(),
                    deep,
                }
            } else {
                PatternKind::Glob(Glob::parse(source)?)
            }
        };
        Ok(Self {
            source: source.into(),
            kind,
        })
    }

    /// The text the pattern was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern contains no wildcard.
    pub fn is_exact(&self) -> bool {
        self.kind == PatternKind::Exact
    }

    pub(crate) fn kind(&self) -> &PatternKind {
        &self.kind
    }

    /// For a general wildcard pattern, the literal text after its last wildcard.
    pub(crate) fn glob_tail(&self) -> Option<&str> {
        match &self.kind {
            PatternKind::Glob(glob) => Some(&glob.tail),
            _ => None,
        }
    }

    /// Whether `text` matches the pattern. Does not allocate.
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Exact => *self.source == *text,
            PatternKind::Prefix { prefix, deep } => text
                .strip_prefix(&**prefix)
                .is_some_and(|rest| *deep || !rest.contains('/')),
            PatternKind::Glob(glob) => glob.matches(text),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// One element of a general wildcard pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
}

/// A general wildcard pattern, matched by simulating its automaton with one bit per atom.
///
/// Bit `i` of the state means "the first `i` atoms matched the text read so far". This is
/// linear in the text for a fixed pattern, never backtracks, and does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    atoms: Box<[Atom]>,
    /// Bits of the atoms that are `*` or `**`: they may match the empty string.
    star_mask: u128,
    /// The literal text before the first wildcard and after the last one: a cheap test
    /// that rejects most texts before the automaton runs.
    head: Box<str>,
    tail: Box<str>,
    /// `Some(deep)` when the pattern is `head*tail` (`deep` false) or `head**tail` (`deep`
    /// true): then the literal checks decide alone, without the automaton.
    single: Option<bool>,
}

impl Glob {
    fn parse(source: &str) -> Result<Self, PatternError> {
        let mut atoms = Vec::with_capacity(source.len());
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '*' {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    atoms.push(Atom::DoubleStar);
                } else {
                    atoms.push(Atom::Star);
                }
            } else {
                atoms.push(Atom::Char(c));
            }
        }
        if atoms.len() > MAX_GLOB_ATOMS {
            return Err(PatternError::TooLong);
        }
        let star_mask = atoms
            .iter()
            .enumerate()
            .filter(|(_, atom)| !matches!(atom, Atom::Char(_)))
            .fold(0u128, |mask, (i, _)| mask | (1 << i));
        let head = source.split('*').next().unwrap_or_default().into();
        let tail = source.rsplit('*').next().unwrap_or_default().into();
        let single = match atoms
            .iter()
            .filter(|a| !matches!(a, Atom::Char(_)))
            .collect::<Vec<_>>()[..]
        {
            [Atom::Star] => Some(false),
            [Atom::DoubleStar] => Some(true),
            _ => None,
        };
        Ok(Self {
            atoms: atoms.into_boxed_slice(),
            star_mask,
            head,
            tail,
            single,
        })
    }

    /// Adds to `state` every position reachable by letting wildcards match nothing.
    fn close(&self, mut state: u128) -> u128 {
        loop {
            let next = state | ((state & self.star_mask) << 1);
            if next == state {
                return state;
            }
            state = next;
        }
    }

    fn matches(&self, text: &str) -> bool {
        if !text.starts_with(&*self.head)
            || !text.ends_with(&*self.tail)
            || text.len() < self.head.len() + self.tail.len()
        {
            return false;
        }
        if let Some(deep) = self.single {
            let middle = text.get(self.head.len()..text.len() - self.tail.len());
            return middle.is_some_and(|m| deep || !m.contains('/'));
        }
        let accept = 1u128 << self.atoms.len();
        let mut state = self.close(1);
        for c in text.chars() {
            let mut next = 0u128;
            let mut live = state & (accept - 1);
            while live != 0 {
                let i = live.trailing_zeros() as usize;
                live &= live - 1;
                match self.atoms.get(i) {
                    Some(Atom::Char(p)) if *p == c => next |= 1 << (i + 1),
                    Some(Atom::Star) if c != '/' => next |= 1 << i,
                    Some(Atom::DoubleStar) => next |= 1 << i,
                    _ => {}
                }
            }
            if next == 0 {
                return false;
            }
            state = self.close(next);
        }
        state & accept != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn classifies_patterns() {
        assert_eq!(Pattern::parse("*").unwrap().kind, PatternKind::Any);
        assert_eq!(Pattern::parse("**").unwrap().kind, PatternKind::Any);
        assert_eq!(
            Pattern::parse("weather.get").unwrap().kind,
            PatternKind::Exact
        );
        assert_eq!(
            Pattern::parse("weather.*").unwrap().kind,
            PatternKind::Prefix {
                prefix: "weather.".into(),
                deep: false
            }
        );
        assert_eq!(
            Pattern::parse("reports/**").unwrap().kind,
            PatternKind::Prefix {
                prefix: "reports/".into(),
                deep: true
            }
        );
        assert!(matches!(
            Pattern::parse("*/summary").unwrap().kind,
            PatternKind::Glob(_)
        ));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("a/***"), Err(PatternError::TripleStar));
        let long = format!("{}*x", "a".repeat(200));
        assert_eq!(Pattern::parse(&long), Err(PatternError::TooLong));
    }

    #[test]
    fn exact_and_prefix() {
        assert!(m("weather.get", "weather.get"));
        assert!(!m("weather.get", "weather.get2"));
        assert!(m("weather.*", "weather.get"));
        assert!(m("weather.*", "weather."));
        assert!(!m("weather.*", "weather"));
        assert!(m("fs/read_*", "fs/read_file"));
        assert!(!m("fs/read_*", "fs/read_x/y"));
        assert!(m("reports/**", "reports/a/b/c"));
        assert!(!m("reports/**", "report/a"));
        assert!(m("*", "a/b/c"));
        assert!(m("**", ""));
    }

    #[test]
    fn globs() {
        assert!(m("file:///*/summary.csv", "file:///q1/summary.csv"));
        assert!(!m("file:///*/summary.csv", "file:///q1/x/summary.csv"));
        assert!(m("file:///**/summary.csv", "file:///q1/x/summary.csv"));
        assert!(m("*.get", "weather.get"));
        assert!(!m("*.get", "a/weather.get"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a**", "a/b"));
        assert!(m("**/x", "/x"));
        assert!(m("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }
}

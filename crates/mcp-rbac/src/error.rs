//! Load errors: [`LoadError`], and [`Diagnostic`]s that point at a [`Location`] in a policy.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where something sits in a policy source: file, line, column and the path of keys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Location {
    source: Arc<str>,
    line: u32,
    column: u32,
    path: Box<str>,
}

impl Location {
    pub(crate) fn new(source: Arc<str>, line: u32, column: u32, path: &str) -> Self {
        Self {
            source,
            line,
            column,
            path: path.into(),
        }
    }

    /// The name of the source: a file path, or `<builder>` for a programmatic policy.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The 1-based line, or 0 when the source has no lines (a programmatic policy).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The 1-based column, or 0 when the source has no lines.
    pub fn column(&self) -> u32 {
        self.column
    }

    /// The path of keys inside the document, such as `roles.developer.allow[2]`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.source)?;
        } else {
            write!(f, "{}:{}:{}", self.source, self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, " ({})", self.path)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// One problem found in a policy, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The policy file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file name has no `.toml` or `.json` extension, so its format is unknown.
    #[error("policy file {} must end in .toml or .json", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The policy is malformed or inconsistent; every problem found is listed.
    #[error("invalid policy: {}", DisplayList(.0))]
    Invalid(Vec<Diagnostic>),
}

impl LoadError {
    /// The problems found, when the policy was read but is invalid.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Invalid(list) => list,
            Self::Io { .. } | Self::UnknownFormat { .. } => &[],
        }
    }
}

struct DisplayList<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

//! Who may do what: bearer tokens from a private file, each with a role.
//!
//! The file holds one token per line, `ROLE TOKEN`, ROLE being `read` (look at runs, their
//! events and the metrics) or `operate` (also abort them); `#` starts a comment. It must be
//! readable by its owner only (0600): it is a list of passwords.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read runs, events and metrics.
    Read,
    /// Also change runs (abort).
    Operate,
}

impl Role {
    /// The role's name, as the token file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
        }
    }
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<(Role, String)>);

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It cannot be read.
    #[error("{}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Others than its owner may read it.
    #[error("{}: mode {mode:04o}: a token file must be readable by its owner only (chmod 600)", path.display())]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `ROLE TOKEN`.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// It holds no token: nobody could use the server.
    #[error("{}: no token in it (lines `read TOKEN` or `operate TOKEN`)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl Tokens {
    /// Reads the token file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let read = |cause| TokenFileError::Read { path: path.to_path_buf(), cause };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::NotPrivate { path: path.to_path_buf(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Tokens::parse(path, &text)
    }

    /// Tokens from the text of file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_error = |problem: String| TokenFileError::Line { path: path.to_path_buf(), line: n + 1, problem };
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(line_error("expected `ROLE TOKEN`".into()));
            };
            let role = match role {
                "read" => Role::Read,
                "operate" => Role::Operate,
                other => return Err(line_error(format!("role {other:?}: give read or operate"))),
            };
            if token.len() < 16 {
                return Err(line_error("a token needs at least 16 characters".into()));
            }
            tokens.push((role, token.to_owned()));
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: path.to_path_buf() });
        }
        Ok(Tokens(tokens))
    }

    /// The role of the request's `Authorization: Bearer TOKEN`, if it names a known token.
    pub fn role_of(&self, authorization: Option<&str>) -> Option<Role> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        // Every known token is compared, each in full, so the time taken does not tell
        // how much of a guess was right.
        self.0.iter().filter(|(_, known)| same(known.as_bytes(), token.as_bytes())).map(|(role, _)| *role).max()
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_roles_and_bad_lines_are_named() {
        let path = Path::new("tokens");
        let tokens =
            Tokens::parse(path, "# operators\noperate 0123456789abcdef\nread  fedcba9876543210  # monitoring\n")
                .expect("two tokens");
        assert_eq!(tokens.role_of(Some("Bearer 0123456789abcdef")), Some(Role::Operate));
        assert_eq!(tokens.role_of(Some("Bearer fedcba9876543210")), Some(Role::Read));
        assert_eq!(tokens.role_of(Some("Bearer fedcba987654321")), None);
        assert_eq!(tokens.role_of(Some("fedcba9876543210")), None, "not a bearer token");
        assert_eq!(tokens.role_of(None), None);

        let cases = [
            ("admin 0123456789abcdef\n", "tokens:1: role \"admin\": give read or operate"),
            ("\nread short\n", "tokens:2: a token needs at least 16 characters"),
            ("read a b\n", "tokens:1: expected `ROLE TOKEN`"),
            ("# nothing\n", "tokens: no token in it (lines `read TOKEN` or `operate TOKEN`)"),
        ];
        for (text, want) in cases {
            let e = Tokens::parse(path, text).expect_err(text);
            assert_eq!(e.to_string(), want);
        }
    }
}

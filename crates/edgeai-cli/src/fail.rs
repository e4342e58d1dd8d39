//! The one error type of the binary: a one-line message and an exit code.

use std::fmt::Display;

/// Exit code of a runtime error (a bad file, a failed run).
pub const RUNTIME: u8 = 1;
/// Exit code of a usage error (a bad flag, an unknown backend or input name).
pub const USAGE: u8 = 2;

/// A failure to report: `edgeai: error: <message>`, then exit with `code`.
#[derive(Debug)]
pub struct Failure {
    /// [`RUNTIME`] or [`USAGE`].
    pub code: u8,
    /// One line: the error and its causes, joined by `: `.
    pub message: String,
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub fn usage(message: impl Display) -> Self {
        Failure {
            code: USAGE,
            message: one_line(&message.to_string()),
        }
    }

    pub fn runtime(message: impl Display) -> Self {
        Failure {
            code: RUNTIME,
            message: one_line(&message.to_string()),
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error's message followed by those of its sources, each only if the text so far does
/// not already contain it (many errors print their source inside their own message).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::runtime(chain(&e))
    }
}

/// `.context(...)` on results whose error converts into a [`Failure`].
pub trait Context<T> {
    /// Prefixes the error's message with `what` (computed only on error).
    fn context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Failure>> Context<T> for std::result::Result<T, E> {
    fn context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_skips_causes_already_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let f: Failure = edgeai::core::Error::io("a.npy", io).into();
        assert_eq!(f.message, "cannot read a.npy: gone");
        assert_eq!(f.code, RUNTIME);
        let f = Failure::usage("two\nlines").context("input `x`");
        assert_eq!(f.message, "input `x`: two lines");
        assert_eq!(f.code, USAGE);
    }
}

//! Hub settings and the environment variables that set them.

use std::io;

/// Default usable bytes of every stack region (only touched pages cost memory).
pub(crate) const DEFAULT_STACK_SIZE: usize = 8 << 20;
/// Default usable bytes of the hub's own stack.
pub(crate) const DEFAULT_HUB_STACK_SIZE: usize = 1 << 20;

/// What a hub is created with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Usable bytes of every stack region: the deepest a greenlet may go.
    pub(crate) stack_size: usize,
    /// Usable bytes of the hub's own stack.
    pub(crate) hub_stack_size: usize,
    /// Most stack regions for greenlets that may share (`stacks.rs`).
    pub(crate) max_stacks: usize,
    /// Every greenlet gets a region of its own.
    pub(crate) exclusive_stacks: bool,
}

impl Settings {
    /// The defaults, overridden by `GREENHUB_STACK_SIZE` / `GREENHUB_HUB_STACK_SIZE`.
    ///
    /// # Errors
    /// `InvalidInput` naming the variable and its value if either is set to something that is not
    /// a size (bytes, optionally with a `k` or `m` suffix) or overflows.
    pub(crate) fn from_env() -> io::Result<Settings> {
        Ok(Settings {
            stack_size: env_size("GREENHUB_STACK_SIZE")?.unwrap_or(DEFAULT_STACK_SIZE),
            hub_stack_size: env_size("GREENHUB_HUB_STACK_SIZE")?.unwrap_or(DEFAULT_HUB_STACK_SIZE),
            max_stacks: super::stacks::DEFAULT_MAX_STACKS,
            exclusive_stacks: false,
        })
    }
}

/// The size in environment variable `var`, if set.
fn env_size(var: &str) -> io::Result<Option<usize>> {
    let Some(raw) = std::env::var_os(var) else {
        return Ok(None);
    };
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{var}={raw:?} is not a stack size: expected a number of bytes, optionally with a \
                 k or m suffix (for example 262144, 256k or 8m)"
            ),
        )
    };
    let v = raw.to_str().ok_or_else(bad)?.trim().to_ascii_lowercase();
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k') => (&v[..v.len() - 1], 1usize << 10),
        Some(b'm') => (&v[..v.len() - 1], 1 << 20),
        _ => (&v[..], 1),
    };
    let n: usize = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).map(Some).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_bad_values_are_errors() {
        // One test owns these variables (tests of one binary share the environment).
        for (v, want) in [
            ("262144", Some(262_144)),
            ("256k", Some(256 << 10)),
            (" 8M ", Some(8 << 20)),
        ] {
            std::env::set_var("GREENHUB_TEST_SIZE", v);
            assert_eq!(env_size("GREENHUB_TEST_SIZE").unwrap(), want, "{v}");
        }
        for v in ["abc", "-5", "1g", "8mb", "99999999999999m", ""] {
            std::env::set_var("GREENHUB_TEST_SIZE", v);
            let e = env_size("GREENHUB_TEST_SIZE").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("GREENHUB_TEST_SIZE"), "{e}");
        }
        std::env::remove_var("GREENHUB_TEST_SIZE");
        assert_eq!(env_size("GREENHUB_TEST_SIZE").unwrap(), None);
    }
}

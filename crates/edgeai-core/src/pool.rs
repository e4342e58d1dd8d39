//! [`RunPool`]: the thread pool an adapter runs its engine in, sized from [`LoadOptions`].
//!
//! Engines that parallelise with rayon (candle, burn) run on whatever rayon pool they are
//! called from; running them inside a pool of [`LoadOptions::threads`] threads is how a
//! `with_threads(n)` takes effect. Compiled with the `rayon` feature.

use crate::{Error, LoadOptions, Result};

/// A rayon pool of [`LoadOptions::threads`] threads, or rayon's global pool when the
/// options leave the count to the backend.
#[derive(Debug)]
pub struct RunPool(Option<rayon::ThreadPool>);

impl RunPool {
    /// The pool for a model `backend` loads with `options`; its threads are named
    /// `<backend>-<i>`. Failing to start threads is [`Error::BackendUnavailable`].
    pub fn new(backend: &str, options: &LoadOptions) -> Result<Self> {
        let Some(n) = options.threads else {
            return Ok(RunPool(None));
        };
        let name = backend.to_string();
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .thread_name(move |i| format!("{name}-{i}"))
            .build()
            .map(|p| RunPool(Some(p)))
            .map_err(|e| Error::BackendUnavailable {
                backend: backend.to_string(),
                reason: format!("cannot start a thread pool: {e}"),
            })
    }

    /// Runs `f` in the pool (on the calling thread's pool when this one is the global pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// The threads `f` runs on in [`RunPool::install`].
    pub fn threads(&self) -> usize {
        self.0
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_from_the_options() {
        let p = RunPool::new("t", &LoadOptions::new().with_threads(3)).unwrap();
        assert_eq!(p.threads(), 3);
        assert_eq!(p.install(rayon::current_num_threads), 3);
        let name = p.install(|| std::thread::current().name().map(str::to_string));
        assert!(name.unwrap().starts_with("t-"));
        let g = RunPool::new("t", &LoadOptions::new()).unwrap();
        assert_eq!(g.threads(), rayon::current_num_threads());
    }
}

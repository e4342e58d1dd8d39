//! The engine trait every LLM runtime implements (the native decoder here, candle's in
//! `edgeai-backend-candle`).

use std::any::Any;

use crate::Result;

/// A causal language model together with its decoding state (KV cache, position).
///
/// `forward` appends tokens at the current position and returns the logits that predict the
/// next token. Engines own their cache; create one engine per conversation.
pub trait LanguageModel: Send {
    /// A short name ("edgeai", "candle").
    fn name(&self) -> &str;

    /// Vocabulary size (length of a logits row).
    fn vocab_size(&self) -> usize;

    /// Most tokens the state can hold.
    fn context_length(&self) -> usize;

    /// Tokens currently in the state.
    fn position(&self) -> usize;

    /// Forgets all tokens.
    fn reset(&mut self);

    /// Keeps only the first `len` tokens (`len <= position()`), e.g. to reuse a shared prefix.
    fn truncate(&mut self, len: usize) -> Result<()>;

    /// Feeds `tokens` (non-empty) and returns the logits after the last one.
    ///
    /// Errors with [`Error::ContextOverflow`](crate::Error::ContextOverflow) (state
    /// unchanged) if the tokens do not fit.
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]>;

    /// Feeds `tokens` and returns the logits after each of them (`tokens.len() * vocab_size()`,
    /// row-major). The default feeds one token at a time.
    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(tokens.len() * self.vocab_size());
        for &t in tokens {
            out.extend_from_slice(self.forward(&[t])?);
        }
        Ok(out)
    }

    /// One line for a banner or a log: the name and what the engine runs (weights, cache).
    /// The default is [`LanguageModel::name`].
    fn describe(&self) -> String {
        self.name().to_string()
    }

    /// The engine as [`Any`], so that a caller holding a `dyn LanguageModel` can reach the
    /// concrete engine's own methods (`downcast_ref::<DecoderEngine>()`); `None` by default.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }
}

impl<M: LanguageModel + ?Sized> LanguageModel for Box<M> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn vocab_size(&self) -> usize {
        (**self).vocab_size()
    }
    fn context_length(&self) -> usize {
        (**self).context_length()
    }
    fn position(&self) -> usize {
        (**self).position()
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        (**self).truncate(len)
    }
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        (**self).forward(tokens)
    }
    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        (**self).forward_all(tokens)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn as_any(&self) -> Option<&dyn Any> {
        (**self).as_any()
    }
}

/// The checks every engine's `forward` makes before touching its state: `tokens` non-empty
/// ([`Error::InvalidArgument`](crate::Error::InvalidArgument)), `position + tokens.len()`
/// within `capacity` ([`Error::ContextOverflow`](crate::Error::ContextOverflow)), every id
/// below `vocab` ([`Error::TokenOutOfRange`](crate::Error::TokenOutOfRange)).
pub fn check_tokens(tokens: &[u32], position: usize, capacity: usize, vocab: usize) -> Result<()> {
    if tokens.is_empty() {
        return Err(crate::Error::InvalidArgument("forward: no tokens".into()));
    }
    let needed = position + tokens.len();
    if needed > capacity {
        return Err(crate::Error::ContextOverflow { needed, capacity });
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(crate::Error::TokenOutOfRange { id, vocab });
    }
    Ok(())
}

/// Index of the largest logit: the first one on ties; a NaN is never picked over a number
/// (an all-NaN slice gives its last index); an empty slice gives 0.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding on raw token ids: resets `model`, feeds `prompt`, and returns the next
/// `n` argmax tokens (no sampler, no stop conditions). For cross-checks between engines and
/// reproducible continuations; use [`generate`](crate::generate) for text.
pub fn greedy(model: &mut dyn LanguageModel, prompt: &[u32], n: usize) -> Result<Vec<u32>> {
    model.reset();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    out.push(argmax(model.forward(prompt)?));
    while out.len() < n {
        let next = out[out.len() - 1];
        out.push(argmax(model.forward(&[next])?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts `(last token + 1) % 5`, with logits that make the choice unambiguous.
    struct Counter {
        pos: usize,
        logits: Vec<f32>,
    }

    impl LanguageModel for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn vocab_size(&self) -> usize {
            5
        }
        fn context_length(&self) -> usize {
            8
        }
        fn position(&self) -> usize {
            self.pos
        }
        fn reset(&mut self) {
            self.pos = 0;
        }
        fn truncate(&mut self, len: usize) -> Result<()> {
            self.pos = len;
            Ok(())
        }
        fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
            if self.pos + tokens.len() > 8 {
                return Err(crate::Error::ContextOverflow {
                    needed: self.pos + tokens.len(),
                    capacity: 8,
                });
            }
            self.pos += tokens.len();
            let next = (tokens[tokens.len() - 1] as usize + 1) % 5;
            self.logits = (0..5).map(|i| if i == next { 1.0 } else { 0.0 }).collect();
            Ok(&self.logits)
        }
    }

    #[test]
    fn argmax_takes_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, 3.0]), 2);
        assert_eq!(argmax(&[-5.0]), 0);
        assert_eq!(argmax(&[1.0, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn greedy_feeds_its_own_picks_and_stops_at_the_context() {
        let mut m = Counter {
            pos: 3,
            logits: Vec::new(),
        };
        assert_eq!(greedy(&mut m, &[3, 3], 4).unwrap(), [4, 0, 1, 2]);
        assert_eq!(m.position(), 5);
        assert!(greedy(&mut m, &[0], 0).unwrap().is_empty());
        assert!(matches!(
            greedy(&mut m, &[0, 1], 9),
            Err(crate::Error::ContextOverflow { .. })
        ));
    }
}

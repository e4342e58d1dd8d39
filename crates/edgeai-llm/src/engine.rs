//! The engine trait every LLM runtime implements (the native decoder here, candle's in
//! `edgeai-backend-candle`).

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
}

//! Text generation: prefill, sample, stream text pieces, stop on end-of-generation tokens,
//! stop strings (even when they span tokens) or a token budget; and multi-turn chat reusing
//! the KV cache.
//!
//! Streaming never splits a UTF-8 character, and text that could be the beginning of a stop
//! string is held back until it is known not to be one, so a stop string never leaks into the
//! streamed output. When the context fills up during generation, generation stops with
//! [`StopReason::ContextFull`]; a prompt that does not fit is an
//! [`Error::ContextOverflow`](crate::Error::ContextOverflow).

use std::time::Instant;

use crate::chat::{ChatTemplate, Message};
use crate::engine::LanguageModel;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token was sampled.
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The streaming callback asked to stop.
    Cancelled,
}

/// Generation settings.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end generation (not included in the output).
    pub stop: Vec<String>,
    /// Sampler settings.
    pub sampler: SamplerConfig,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            stop: Vec::new(),
            sampler: SamplerConfig::default(),
        }
    }
}

/// Result of a generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generated text (stop string excluded).
    pub text: String,
    /// Sampled tokens (an end-of-generation token excluded).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Prompt tokens fed (those not already in the cache).
    pub prompt_tokens: usize,
    /// Seconds spent on the prompt (prefill + first logits).
    pub prefill_secs: f64,
    /// Seconds spent decoding (sampling + forward of generated tokens).
    pub decode_secs: f64,
}

impl Generation {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_secs)
    }

    /// Generated tokens per second.
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.tokens.len(), self.decode_secs)
    }
}

/// Prompt and generation throughput summed over several [`Generation`]s (the turns of a chat).
///
/// Its `Display` is the one-line summary the chat example and CLI print at the end:
///
/// ```
/// use edgeai_llm::generate::Throughput;
/// let mut t = Throughput::default();
/// t.prompt_tokens = 64;
/// t.prefill_secs = 0.5;
/// t.gen_tokens = 10;
/// t.decode_secs = 0.25;
/// assert_eq!(t.prefill_tok_s(), 128.0);
/// assert_eq!(
///     t.to_string(),
///     "prefill: 64 tokens in 0.500 s (128.0 tok/s) | decode: 10 tokens in 0.250 s (40.0 tok/s)"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Prompt tokens fed.
    pub prompt_tokens: usize,
    /// Seconds spent on prompts.
    pub prefill_secs: f64,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Seconds spent decoding.
    pub decode_secs: f64,
}

impl Throughput {
    /// Adds one generation's counts and times.
    pub fn add(&mut self, g: &Generation) {
        self.prompt_tokens += g.prompt_tokens;
        self.prefill_secs += g.prefill_secs;
        self.gen_tokens += g.tokens.len();
        self.decode_secs += g.decode_secs;
    }

    /// Prompt tokens per second (0 when no time was spent).
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_secs)
    }

    /// Generated tokens per second (0 when no time was spent).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.gen_tokens, self.decode_secs)
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prefill: {} tokens in {:.3} s ({:.1} tok/s) | decode: {} tokens in {:.3} s ({:.1} tok/s)",
            self.prompt_tokens,
            self.prefill_secs,
            self.prefill_tok_s(),
            self.gen_tokens,
            self.decode_secs,
            self.decode_tok_s()
        )
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Incremental bytes -> text with stop-string detection.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: Vec<u8>,
    held: String,
    stops: Vec<String>,
    stopped: bool,
}

impl TextStream {
    /// A stream watching for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Whether a stop string was seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a token's bytes; returns the text that is now safe to emit (complete characters
    /// that cannot begin a stop string).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    // SAFETY-free: the prefix was just validated.
                    self.held
                        .push_str(std::str::from_utf8(&self.pending[..ok]).unwrap_or_default());
                    match e.error_len() {
                        // Invalid sequence: replace it and go on.
                        Some(bad) => {
                            self.held.push('\u{FFFD}');
                            self.pending.drain(..ok + bad);
                        }
                        // Incomplete character: wait for more bytes.
                        None => {
                            self.pending.drain(..ok);
                            break;
                        }
                    }
                }
            }
        }
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let emit_to = self.held.len() - keep;
        let rest = self.held.split_off(emit_to);
        std::mem::replace(&mut self.held, rest)
    }

    /// Flushes what is held (incomplete bytes become U+FFFD).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let mut out = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        out
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| text.as_bytes()[text.len() - k..] == stop.as_bytes()[..k])
        .unwrap_or(0)
}

/// Feeds `prompt` (appended to what the model already holds) and generates.
///
/// `on_piece` receives text pieces as they become final; returning `false` cancels.
pub fn generate(
    model: &mut dyn LanguageModel,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_piece: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    let mut sampler = Sampler::new(opts.sampler.clone())?;
    for &t in prompt {
        sampler.accept(t);
    }
    let t0 = Instant::now();
    let mut logits = model.forward(prompt)?.to_vec();
    let prefill_secs = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let mut stream = TextStream::new(&opts.stop);
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut emit = |piece: String, text: &mut String| -> bool {
        if piece.is_empty() {
            return true;
        }
        text.push_str(&piece);
        on_piece(&piece)
    };
    let stop_reason = loop {
        if tokens.len() >= opts.max_tokens {
            break StopReason::MaxTokens;
        }
        let id = sampler.sample(&logits)?;
        if tokenizer.is_end_of_generation(id) {
            break StopReason::EndOfGeneration;
        }
        tokens.push(id);
        let piece = stream.push(tokenizer.token_bytes(id)?);
        if !emit(piece, &mut text) {
            break StopReason::Cancelled;
        }
        if stream.stopped() {
            break StopReason::StopString;
        }
        if tokens.len() >= opts.max_tokens {
            break StopReason::MaxTokens;
        }
        if model.position() >= model.context_length() {
            break StopReason::ContextFull;
        }
        logits.clear();
        logits.extend_from_slice(model.forward(&[id])?);
    };
    let tail = stream.finish();
    if stop_reason != StopReason::Cancelled {
        emit(tail, &mut text);
    }
    Ok(Generation {
        text,
        tokens,
        stop_reason,
        prompt_tokens: prompt.len(),
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
    })
}

/// A multi-turn conversation that keeps the model's KV cache across turns: each turn feeds
/// only the tokens after the longest prefix already in the cache.
#[derive(Debug)]
pub struct Chat {
    template: ChatTemplate,
    messages: Vec<Message>,
    cached: Vec<u32>,
}

impl Chat {
    /// A conversation using `template`, optionally starting with a system prompt.
    pub fn new(template: ChatTemplate, system: Option<&str>) -> Self {
        Self {
            template,
            messages: system.map(Message::system).into_iter().collect(),
            cached: Vec::new(),
        }
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Forgets the conversation (keeps the system prompt).
    pub fn clear(&mut self) {
        self.messages
            .retain(|m| m.role == crate::chat::Role::System);
    }

    /// Sends a user message and generates the assistant's reply.
    pub fn send(
        &mut self,
        model: &mut dyn LanguageModel,
        tokenizer: &Tokenizer,
        user: &str,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.messages.push(Message::user(user));
        let prompt = self.template.apply(&self.messages, true);
        let tokens = tokenizer.encode(&prompt)?;
        if model.position() != self.cached.len() {
            // Someone else used the model: start over.
            model.reset();
            self.cached.clear();
        }
        let mut common = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len().saturating_sub(1));
        if let Err(e) = model.truncate(common) {
            // E.g. a sliding-window cache that no longer holds the prefix's last keys.
            tracing::debug!("cannot reuse {common} cached tokens ({e}); feeding them again");
            model.reset();
            common = 0;
        }
        self.cached.truncate(common);
        let mut opts = opts.clone();
        for s in self.template.stop_strings() {
            if !opts.stop.iter().any(|x| x == s) {
                opts.stop.push((*s).to_string());
            }
        }
        let r = generate(model, tokenizer, &tokens[common..], &opts, on_piece);
        let gen = match r {
            Ok(g) => g,
            Err(e) => {
                self.messages.pop();
                model.reset();
                self.cached.clear();
                return Err(e);
            }
        };
        self.cached = tokens;
        // Every generated token was fed, except the last one when generation stopped right
        // after sampling it (an end-of-generation token is never in `tokens`).
        let fed = match gen.stop_reason {
            StopReason::EndOfGeneration => gen.tokens.len(),
            _ => gen.tokens.len().saturating_sub(1),
        };
        self.cached.extend_from_slice(&gen.tokens[..fed]);
        if model.position() != self.cached.len() {
            model.reset();
            self.cached.clear();
        }
        self.messages.push(Message::assistant(gen.text.trim_end()));
        Ok(gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], stops: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stops);
        let mut out = Vec::new();
        for p in pieces {
            out.push(s.push(p));
            if s.stopped() {
                break;
            }
        }
        out.push(s.finish());
        let all = out.concat();
        (out, all, s.stopped())
    }

    #[test]
    fn never_splits_utf8() {
        let e = "é".as_bytes();
        let emoji = "🦀".as_bytes();
        let (pieces, all, _) = run(
            &[
                b"a",
                &e[..1],
                &e[1..],
                &emoji[..2],
                &emoji[2..3],
                &emoji[3..],
                b"z",
            ],
            &[],
        );
        assert_eq!(all, "aé🦀z");
        for p in &pieces {
            assert!(std::str::from_utf8(p.as_bytes()).is_ok());
        }
        assert_eq!(pieces[1], "");
        assert_eq!(pieces[2], "é");
        assert_eq!(pieces[5], "🦀");
    }

    #[test]
    fn stop_string_spanning_tokens() {
        let (pieces, all, stopped) = run(&[b"Hello <", b"|im", b"_end|> more"], &["<|im_end|>"]);
        assert!(stopped);
        assert_eq!(all, "Hello ");
        // "<" is held back until it is known to start the stop string.
        assert_eq!(pieces[0], "Hello ");
        assert_eq!(pieces[1], "");
    }

    #[test]
    fn held_text_released_when_not_a_stop() {
        let (pieces, all, stopped) = run(&[b"a <", b"b"], &["<|im_end|>"]);
        assert!(!stopped);
        assert_eq!(pieces[0], "a ");
        assert_eq!(pieces[1], "<b");
        assert_eq!(all, "a <b");
    }

    #[test]
    fn invalid_bytes_replaced() {
        let (_, all, _) = run(&[b"a\xffb", b"\xe2\x82"], &[]);
        assert_eq!(all, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn suffix_prefix() {
        assert_eq!(longest_suffix_prefix("abc<|im", "<|im_end|>"), 4);
        assert_eq!(longest_suffix_prefix("abc", "<|im_end|>"), 0);
        assert_eq!(longest_suffix_prefix("x\n\n", "\n\n\n"), 2);
    }
}

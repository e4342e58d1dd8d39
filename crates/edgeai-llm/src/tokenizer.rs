//! Tokenizer: a `tokenizers::Tokenizer` built from GGUF metadata (or a `tokenizer.json`), plus
//! the byte string of every token so that decoding and streaming are exact at the byte level.
//!
//! For `tokenizer.ggml.model = gpt2` the tokenizer is a byte-level BPE with the vocabulary and
//! merges from the file, the GPT-2 byte-level pre-tokenizer (preceded by single-digit splitting
//! for the `smollm` / `starcoder`-style pre-tokenizers, as llama.cpp does), and the control /
//! user-defined tokens (`token_type` 3 / 4) registered as added tokens, so that
//! `<|im_start|>` in a prompt maps to its single id.
//!
//! For `tokenizer.ggml.model = llama` (Gemma, Llama 2, Mistral, TinyLlama) it is a native
//! SentencePiece (BPE-mode) tokenizer, llama.cpp's algorithm step for step: control,
//! user-defined and unknown tokens are split out of the text first (longest first), a space is
//! prepended to each remaining piece of text that follows a special token or starts the text
//! when `tokenizer.ggml.add_space_prefix` says so (the "leading-space rule"), spaces become
//! `▁`, then adjacent symbols are merged by the highest `tokenizer.ggml.scores` entry of their
//! concatenation until none is in the vocabulary, and characters with no token fall back to
//! the `<0xXX>` byte tokens.

use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// GGUF `token_type` values.
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// Names of end-of-generation tokens recognised besides the declared EOS.
const EOG_NAMES: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "</s>",
    "<end_of_turn>",
];

/// GPT-2's byte -> printable char table.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// Byte strings of every token, in one buffer (a large vocabulary as 262k separate `Vec`s
/// costs ~15 MB of headers and allocator slack).
#[derive(Default)]
struct Pieces {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Pieces {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len() as u32);
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        Some(&self.bytes[start..end])
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl<B: AsRef<[u8]>> FromIterator<B> for Pieces {
    fn from_iter<I: IntoIterator<Item = B>>(it: I) -> Self {
        let mut p = Pieces::default();
        for b in it {
            p.push(b.as_ref());
        }
        p
    }
}

/// Token text -> id without a hash map: the ids sorted by text, binary-searched (~1 MB for
/// 262k tokens instead of ~18 MB). The lowest id wins among duplicate texts.
struct SortedVocab {
    text: Pieces,
    order: Vec<u32>,
}

impl SortedVocab {
    fn new(tokens: &[&str]) -> Self {
        let text: Pieces = tokens.iter().map(|t| t.as_bytes()).collect();
        let mut order: Vec<u32> = (0..tokens.len() as u32).collect();
        // Stable: equal texts keep ascending ids.
        order.sort_by(|&a, &b| text.get(a as usize).cmp(&text.get(b as usize)));
        Self { text, order }
    }

    fn get(&self, t: &str) -> Option<u32> {
        let key = Some(t.as_bytes());
        let i = self
            .order
            .partition_point(|&id| self.text.get(id as usize) < key);
        let id = *self.order.get(i)?;
        (self.text.get(id as usize) == key).then_some(id)
    }
}

/// The segmentation model behind a [`Tokenizer`].
enum Model {
    /// A `tokenizers` model (byte-level BPE from GGUF, or any `tokenizer.json`).
    Hf(Box<tokenizers::Tokenizer>),
    /// Native SentencePiece from GGUF metadata.
    Spm(Box<Spm>),
}

/// A tokenizer with byte-exact decoding.
pub struct Tokenizer {
    inner: Model,
    /// SentencePiece with `add_space_prefix`: [`Tokenizer::decode`] drops the leading space.
    strip_leading_space: bool,
    token_bytes: Pieces,
    special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    /// `encodable[b]`: the vocabulary has a single-byte token for byte `b`.
    encodable: [bool; 256],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.token_bytes.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Maps a byte-level token string back to bytes (chars outside the table keep their UTF-8).
fn byte_level_decode(token: &str, inverse: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match inverse.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

fn inverse_table() -> HashMap<char, u8> {
    bytes_to_unicode()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
}

/// The metadata both GGUF tokenizers read.
struct GgufVocab<'a> {
    tokens: Vec<&'a str>,
    types: Vec<i64>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
}

impl<'a> GgufVocab<'a> {
    fn read(gguf: &'a GgufFile) -> Result<Self> {
        let tokens = gguf.string_array("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| Error::Metadata {
                    key: "tokenizer.ggml.token_type".into(),
                    reason: "expected an array".into(),
                })?
                .iter()
                .map(|e| e.as_i64().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let id = |k: &str| {
            gguf.get(k)
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos = gguf
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Self {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        })
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata: byte-level BPE
    /// for `tokenizer.ggml.model = gpt2`, SentencePiece for `llama`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.get_str("tokenizer.ggml.model").unwrap_or("");
        match model {
            "gpt2" => Self::bpe_from_gguf(gguf),
            "llama" => Self::spm_from_gguf(gguf),
            _ => Err(Error::Unsupported(format!(
                "tokenizer.ggml.model `{model}` (supported: `gpt2` byte-level BPE, `llama` \
                 SentencePiece; or pass a tokenizer.json)"
            ))),
        }
    }

    fn spm_from_gguf(gguf: &GgufFile) -> Result<Self> {
        let GgufVocab {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        } = GgufVocab::read(gguf)?;
        let key = "tokenizer.ggml.scores";
        let scores: Vec<f32> = match gguf.get(key).map(|v| v.as_array()) {
            None => {
                return Err(Error::Metadata {
                    key: key.into(),
                    reason: "missing (a SentencePiece vocabulary needs its scores)".into(),
                })
            }
            Some(None) => {
                return Err(Error::Metadata {
                    key: key.into(),
                    reason: "expected an array of numbers".into(),
                })
            }
            Some(Some(a)) => a
                .iter()
                .map(|v| {
                    v.as_f64().map(|x| x as f32).ok_or_else(|| Error::Metadata {
                        key: key.into(),
                        reason: format!("expected numbers, found {}", v.type_name()),
                    })
                })
                .collect::<Result<_>>()?,
        };
        if scores.len() != tokens.len() {
            return Err(Error::Metadata {
                key: key.into(),
                reason: format!("{} scores for {} tokens", scores.len(), tokens.len()),
            });
        }
        let add_space_prefix = gguf
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let ty = |i: usize| types.get(i).copied().unwrap_or(1);
        let ids = SortedVocab::new(&tokens);
        let mut byte_ids = [None; 256];
        let mut token_bytes = Pieces::default();
        let mut special = vec![false; tokens.len()];
        let mut specials = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let bytes = match ty(i) {
                TOKEN_TYPE_BYTE => match parse_byte_token(t) {
                    Some(b) => {
                        byte_ids[b as usize].get_or_insert(i as u32);
                        vec![b]
                    }
                    None => {
                        return Err(Error::Metadata {
                            key: "tokenizer.ggml.tokens".into(),
                            reason: format!("byte token {i} `{t}` is not of the form <0xXX>"),
                        })
                    }
                },
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_UNKNOWN => {
                    special[i] = ty(i) == TOKEN_TYPE_CONTROL;
                    if !t.is_empty() {
                        specials.push(i as u32);
                    }
                    t.as_bytes().to_vec()
                }
                _ => t.replace('\u{2581}', " ").into_bytes(),
            };
            token_bytes.push(&bytes);
        }
        // llama.cpp splits the specials out longest first.
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
        let spm = Spm {
            ids,
            scores,
            byte_ids,
            specials: specials
                .into_iter()
                .map(|i| (tokens[i as usize].to_string(), i))
                .collect(),
            add_space_prefix,
            add_bos,
            bos,
        };
        let mut t = Self::finish(
            Model::Spm(Box::new(spm)),
            token_bytes,
            special,
            bos,
            eos,
            add_bos,
        );
        t.strip_leading_space = add_space_prefix;
        Ok(t)
    }

    fn bpe_from_gguf(gguf: &GgufFile) -> Result<Self> {
        let GgufVocab {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        } = GgufVocab::read(gguf)?;
        let merges = gguf.string_array("tokenizer.ggml.merges")?;
        let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");

        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.to_string()).or_insert(i as u32);
        }
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| Error::Metadata {
                key: "tokenizer.ggml.merges".into(),
                reason: format!("merge {i} `{m}` is not two space-separated tokens"),
            })?;
            merge_pairs.push((a.to_string(), b.to_string()));
        }
        // tokenizers 0.23's BPE builder checks this too, but copies the joined pair into a
        // buffer sized by the longest token first and panics when it is longer (found by
        // fuzz/, target tokenizer_gguf): check it here so a bad file is an error, not a panic.
        let mut joined = String::new();
        for (i, (a, b)) in merge_pairs.iter().enumerate() {
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            if let Some(missing) = [a.as_str(), b.as_str(), joined.as_str()]
                .into_iter()
                .find(|t| !vocab.contains_key(*t))
            {
                return Err(Error::Metadata {
                    key: "tokenizer.ggml.merges".into(),
                    reason: format!("merge {i} `{a} {b}`: `{missing}` is not in the vocabulary"),
                });
            }
        }
        // No BPE word cache: tokenizers 0.23 keeps it in a thread-local map keyed by a
        // per-instance id and never removes an instance's entry, so every tokenizer that
        // encoded on a thread leaks its cached words there when dropped (found by fuzz/,
        // test `a_dropped_tokenizer_leaves_nothing_behind`). Merging a word again costs
        // microseconds, nothing next to a forward pass.
        let builder = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merge_pairs,
            )
            .cache_capacity(0);
        // Belt and braces for other builder panics (the known one is ruled out above): a bad
        // file must be an error. Nothing escapes the closure, so no broken state is observable.
        let bpe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()))
            .map_err(|_| Error::Metadata {
                key: "tokenizer.ggml.merges".into(),
                reason: "the vocabulary and merges do not form a valid BPE model".into(),
            })?
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre {
            // llama.cpp: these split every digit before the GPT-2 regex.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])
            .into(),
            "default" | "gpt-2" | "gpt2" => byte_level.into(),
            other => {
                tracing::warn!(
                    pre = other,
                    "unknown GGUF pre-tokenizer; using the GPT-2 byte-level regex"
                );
                byte_level.into()
            }
        };
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut added = Vec::new();
        let mut special = vec![false; tokens.len()];
        for (i, t) in tokens.iter().enumerate() {
            let ty = types.get(i).copied().unwrap_or(1);
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                special[i] = ty == TOKEN_TYPE_CONTROL;
                added.push(AddedToken::from(t.to_string(), ty == TOKEN_TYPE_CONTROL));
            }
        }
        inner.add_special_tokens(added).map_err(tok_err)?;

        let inverse = inverse_table();
        let token_bytes = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ty = types.get(i).copied().unwrap_or(1);
                if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                    t.as_bytes().to_vec()
                } else {
                    byte_level_decode(t, &inverse)
                }
            })
            .collect();
        Ok(Self::finish(
            Model::Hf(Box::new(inner)),
            token_bytes,
            special,
            bos,
            eos,
            add_bos,
        ))
    }

    /// Loads a Hugging Face `tokenizer.json` (byte-level BPE vocabularies decode exactly).
    ///
    /// The model keeps tokenizers' own configuration, including its BPE word cache, which
    /// tokenizers 0.23 stores per thread and does not free when the tokenizer is dropped:
    /// load it once and reuse it rather than once per request. ([`Tokenizer::from_gguf`]
    /// builds its BPE without that cache.)
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let n = inner.get_vocab_size(true);
        let inverse = inverse_table();
        let added = inner.get_added_tokens_decoder();
        let mut special = vec![false; n];
        let mut token_bytes = Pieces::default();
        for id in 0..n as u32 {
            let bytes = match added.get(&id) {
                Some(a) => {
                    special[id as usize] = a.special;
                    a.content.as_bytes().to_vec()
                }
                None => inner
                    .id_to_token(id)
                    .map(|t| byte_level_decode(&t, &inverse))
                    .unwrap_or_default(),
            };
            token_bytes.push(&bytes);
        }
        let find = |names: &[&str]| names.iter().find_map(|t| inner.token_to_id(t));
        let bos = find(&["<|im_start|>", "<s>", "<|begin_of_text|>"]);
        let eos = find(&["<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>"]);
        Ok(Self::finish(
            Model::Hf(Box::new(inner)),
            token_bytes,
            special,
            bos,
            eos,
            false,
        ))
    }

    /// This tokenizer with its beginning-of-sequence token set from a Hugging Face
    /// `tokenizer_config.json` (`bos_token`, `add_bos_token`), which `tokenizer.json` does not
    /// carry: `bos` names the token (`None` keeps the one found by name), `add` whether
    /// [`Tokenizer::encode`] prepends it. A `bos` the vocabulary lacks is an error naming it.
    ///
    /// ```no_run
    /// # fn main() -> edgeai_llm::Result<()> {
    /// let tok = edgeai_llm::Tokenizer::from_json_file("out/tokenizer.json")?
    ///     .with_bos(Some("<s>"), true)?;
    /// assert_eq!(tok.encode("hi")?.first().copied(), tok.bos_id());
    /// # Ok(()) }
    /// ```
    pub fn with_bos(mut self, bos: Option<&str>, add: bool) -> Result<Self> {
        if let Some(name) = bos {
            let id = match &self.inner {
                Model::Hf(t) => t.token_to_id(name),
                Model::Spm(s) => s.ids.get(name),
            };
            self.bos = Some(id.ok_or_else(|| {
                Error::Tokenizer(format!("bos_token `{name}` is not in the vocabulary"))
            })?);
        }
        if add && self.bos.is_none() {
            return Err(Error::Tokenizer(
                "add_bos_token is set but the tokenizer has no BOS token".into(),
            ));
        }
        self.add_bos = add;
        Ok(self)
    }

    fn finish(
        inner: Model,
        token_bytes: Pieces,
        special: Vec<bool>,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Self {
        let mut eog: Vec<u32> = eos.into_iter().collect();
        for name in EOG_NAMES {
            let id = match &inner {
                Model::Hf(t) => t.token_to_id(name),
                Model::Spm(s) => s.ids.get(name),
            };
            if let Some(id) = id {
                if !eog.contains(&id) {
                    eog.push(id);
                }
            }
        }
        let mut encodable = [false; 256];
        for (bytes, &is_special) in token_bytes.iter().zip(&special) {
            if let ([b], false) = (bytes, is_special) {
                encodable[*b as usize] = true;
            }
        }
        Self {
            inner,
            strip_leading_space: false,
            token_bytes,
            special,
            bos,
            eos,
            eog,
            add_bos,
            encodable,
        }
    }

    /// Encodes `text`; special-token strings such as `<|im_start|>` map to their single id.
    /// A BOS token is prepended when the model asks for one (`tokenizer.ggml.add_bos_token`).
    ///
    /// Bytes the vocabulary has no token for are dropped, as llama.cpp does (SmolLM2's
    /// vocabulary lacks 21 of the 256 byte tokens, among them most C0 control characters and
    /// the bytes that never occur in UTF-8); see [`Tokenizer::encodes_byte`]. Every other text
    /// decodes back to itself byte for byte.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(b) = text.bytes().find(|&b| !self.encodes_byte(b)) {
            tracing::debug!(
                byte = b,
                "the vocabulary has no token for this byte; dropped"
            );
        }
        match &self.inner {
            Model::Hf(inner) => {
                let enc = inner.encode(text, false).map_err(tok_err)?;
                let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
                if self.add_bos {
                    ids.extend(self.bos);
                }
                ids.extend_from_slice(enc.get_ids());
                Ok(ids)
            }
            Model::Spm(spm) => Ok(spm.encode(text)),
        }
    }

    /// The bytes of `ids`, concatenated (special tokens as their text).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }

    /// Decodes `ids` to text (invalid UTF-8 replaced by U+FFFD). For a SentencePiece
    /// vocabulary with `add_space_prefix`, the space the encoder put before the first text
    /// is dropped again, so `decode(encode(s)) == s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = self.decode_bytes(ids)?;
        if self.strip_leading_space {
            let first_text = ids
                .iter()
                .take_while(|&&id| self.is_special(id))
                .filter_map(|&id| self.token_bytes.get(id as usize))
                .map(<[u8]>::len)
                .sum::<usize>();
            if bytes.get(first_text) == Some(&b' ') {
                bytes.remove(first_text);
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bytes of one token.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.token_bytes
            .get(id as usize)
            .ok_or(Error::TokenOutOfRange {
                id,
                vocab: self.token_bytes.len(),
            })
    }

    /// The id of a token string (as stored in the vocabulary).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Model::Hf(t) => t.token_to_id(token),
            Model::Spm(s) => s.ids.get(token),
        }
    }

    /// Whether the vocabulary can represent byte `b` (has a single-byte token for it).
    /// [`Tokenizer::encode`] drops the bytes for which this is false.
    pub fn encodes_byte(&self, b: u8) -> bool {
        self.encodable[b as usize]
    }

    /// Whether the vocabulary represents every byte of `text`, so that decoding
    /// [`Tokenizer::encode`]'s ids gives `text` back exactly.
    pub fn encodes_losslessly(&self, text: &str) -> bool {
        text.bytes().all(|b| self.encodes_byte(b))
    }

    /// Whether `id` is a control (special) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generation stops at `id` (EOS and the usual end-of-turn tokens).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The wrapped `tokenizers::Tokenizer` (`None` for the native SentencePiece model).
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.inner {
            Model::Hf(t) => Some(t),
            Model::Spm(_) => None,
        }
    }
}

/// The byte of a `<0xXX>` token.
fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// SentencePiece (BPE mode) as llama.cpp runs it on a GGUF vocabulary.
struct Spm {
    ids: SortedVocab,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<(String, u32)>,
    add_space_prefix: bool,
    add_bos: bool,
    bos: Option<u32>,
}

/// A candidate merge of two adjacent symbols (llama.cpp's `llm_bigram_spm`): the highest
/// score first, the leftmost on ties.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// A symbol of the text being merged: `len` bytes from `start` (0 once merged away).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

impl Spm {
    fn encode(&self, text: &str) -> Vec<u32> {
        let mut frags = vec![Fragment::Text(text)];
        for (s, id) in &self.specials {
            if !text.contains(s.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(mut t) => {
                        while let Some(i) = t.find(s.as_str()) {
                            if i > 0 {
                                next.push(Fragment::Text(&t[..i]));
                            }
                            next.push(Fragment::Token(*id));
                            t = &t[i + s.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Fragment::Text(t));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for f in frags {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && prev_special {
                        s.push('\u{2581}');
                    }
                    for c in t.chars() {
                        s.push(if c == ' ' { '\u{2581}' } else { c });
                    }
                    self.merge(&s, &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    /// The score of `text` when it is a token.
    fn bigram(&self, text: &str, left: usize, right: usize) -> Option<Bigram> {
        let id = self.ids.get(text)?;
        Some(Bigram {
            left,
            right,
            score: self.scores[id as usize],
            size: text.len(),
        })
    }

    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut sym: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            sym.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        let Some(last) = sym.last_mut() else {
            return;
        };
        last.next = None;
        let pair = |sym: &[Symbol], l: usize, r: usize| {
            &text[sym[l].start..sym[l].start + sym[l].len + sym[r].len]
        };
        let mut queue = BinaryHeap::new();
        for i in 1..sym.len() {
            queue.extend(self.bigram(pair(&sym, i - 1, i), i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (sym[b.left], sym[b.right]);
            // Stale: one side was merged since this bigram was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            sym[b.left].len += r.len;
            sym[b.right].len = 0;
            sym[b.left].next = r.next;
            if let Some(n) = r.next {
                sym[n].prev = Some(b.left);
            }
            if let Some(p) = sym[b.left].prev {
                queue.extend(self.bigram(pair(&sym, p, b.left), p, b.left));
            }
            if let Some(n) = sym[b.left].next {
                queue.extend(self.bigram(pair(&sym, b.left, n), b.left, n));
            }
        }
        let mut i = Some(0);
        while let Some(k) = i {
            let s = sym[k];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        match self.byte_ids[b as usize] {
                            Some(id) => out.push(id),
                            None => tracing::debug!(
                                byte = b,
                                "the vocabulary has no token for this byte; dropped"
                            ),
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        let inv = inverse_table();
        assert_eq!(byte_level_decode("ĠParis", &inv), b" Paris");
    }

    /// A complete byte-level vocabulary (all 256 bytes, two merges, two control tokens) in an
    /// in-memory GGUF: no model file and no mmap, so this also runs under Miri.
    fn synthetic() -> Tokenizer {
        use crate::gguf::writer::GgufWriter;
        use crate::gguf::{GgufFile, Value};
        let table = bytes_to_unicode();
        let mut tokens = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
        tokens.extend(table.iter().map(|c| c.to_string()));
        tokens.push("he".into());
        tokens.push("hel".into());
        let mut types = vec![TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL];
        types.resize(tokens.len(), 1);
        let strings =
            |v: &[String]| Value::Array(v.iter().map(|t| Value::String(t.clone())).collect());
        let bytes = GgufWriter::new()
            .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
            .kv("tokenizer.ggml.pre", Value::String("smollm".into()))
            .kv("tokenizer.ggml.tokens", strings(&tokens))
            .kv(
                "tokenizer.ggml.token_type",
                Value::Array(types.iter().map(|&t| Value::I32(t as i32)).collect()),
            )
            .kv(
                "tokenizer.ggml.merges",
                strings(&["h e".into(), "he l".into()]),
            )
            .kv("tokenizer.ggml.bos_token_id", Value::U32(0))
            .kv("tokenizer.ggml.eos_token_id", Value::U32(1))
            .build();
        Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap()).unwrap()
    }

    /// A small SentencePiece vocabulary: the 256 byte tokens, pieces with scores, a control
    /// and a user-defined token.
    fn synthetic_spm(space_prefix: bool) -> Tokenizer {
        use crate::gguf::writer::GgufWriter;
        use crate::gguf::{GgufFile, Value};
        let mut tokens: Vec<String> = vec!["<bos>".into(), "<eos>".into(), "<turn>".into()];
        let mut types = vec![
            TOKEN_TYPE_CONTROL,
            TOKEN_TYPE_CONTROL,
            TOKEN_TYPE_USER_DEFINED,
        ];
        let mut scores = vec![0.0f32; 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(TOKEN_TYPE_BYTE);
            scores.push(0.0);
        }
        // Higher score merges first: "ab" beats "bc", so "abc" is "ab" + "c".
        for (t, sc) in [
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("\u{2581}", -1.0),
            ("ab", -2.0),
            ("bc", -3.0),
            ("\u{2581}a", -4.0),
            ("\u{2581}ab", -5.0),
        ] {
            tokens.push(t.into());
            types.push(1);
            scores.push(sc);
        }
        let bytes = GgufWriter::new()
            .kv("tokenizer.ggml.model", Value::String("llama".into()))
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
            )
            .kv(
                "tokenizer.ggml.token_type",
                Value::Array(types.iter().map(|&t| Value::I32(t as i32)).collect()),
            )
            .kv(
                "tokenizer.ggml.scores",
                Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()),
            )
            .kv("tokenizer.ggml.bos_token_id", Value::U32(0))
            .kv("tokenizer.ggml.eos_token_id", Value::U32(1))
            .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
            .kv("tokenizer.ggml.add_space_prefix", Value::Bool(space_prefix))
            .build();
        Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap()).unwrap()
    }

    #[test]
    fn sentencepiece_merges_by_score_falls_back_to_bytes_and_round_trips() {
        let t = synthetic_spm(false);
        let id = |s: &str| t.token_to_id(s).unwrap();
        assert_eq!(t.encode("abc").unwrap(), [0, id("ab"), id("c")]);
        assert_eq!(
            t.encode("a bc").unwrap(),
            [0, id("a"), id("\u{2581}"), id("bc")]
        );
        // No piece for "d" or "é": bytes.
        assert_eq!(t.encode("d").unwrap(), [0, id("<0x64>")]);
        assert_eq!(t.encode("é").unwrap(), [0, id("<0xC3>"), id("<0xA9>")]);
        // Specials are split out first, user-defined ones too.
        assert_eq!(
            t.encode("ab<turn>ab<eos>").unwrap(),
            [0, id("ab"), 2, id("ab"), 1]
        );
        for s in [
            "abc abc",
            "Ça va? 🦀 日本",
            "a\tb\n\n  c",
            "<turn>x<eos>",
            "",
        ] {
            let ids = t.encode(s).unwrap();
            assert_eq!(t.decode(&ids[1..]).unwrap(), s, "{ids:?}");
        }
        assert!(
            t.is_special(1) && !t.is_special(2),
            "user-defined is not control"
        );
        // The leading-space rule: a space before the text and after each special token,
        // dropped again by decode at the start.
        let p = synthetic_spm(true);
        assert_eq!(p.encode("ab").unwrap(), [0, id("\u{2581}ab")]);
        assert_eq!(
            p.encode("a<turn>a").unwrap(),
            [0, id("\u{2581}a"), 2, id("\u{2581}a")]
        );
        assert_eq!(p.decode(&p.encode("ab c").unwrap()[1..]).unwrap(), "ab c");
    }

    #[test]
    fn sentencepiece_without_scores_or_with_a_bad_byte_token_is_an_error() {
        use crate::gguf::writer::GgufWriter;
        use crate::gguf::{GgufFile, Value};
        let base = || {
            GgufWriter::new()
                .kv("tokenizer.ggml.model", Value::String("llama".into()))
                .kv(
                    "tokenizer.ggml.tokens",
                    Value::Array(vec![Value::String("<0xZZ>".into())]),
                )
        };
        let e = Tokenizer::from_gguf(&GgufFile::from_bytes(base().build()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.ggml.scores"), "{e}");
        let g = base()
            .kv("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)]))
            .kv(
                "tokenizer.ggml.token_type",
                Value::Array(vec![Value::I32(6)]),
            )
            .build();
        let e = Tokenizer::from_gguf(&GgufFile::from_bytes(g).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("<0xZZ>"), "{e}");
        let g = base()
            .kv("tokenizer.ggml.scores", Value::Array(vec![]))
            .build();
        let e = Tokenizer::from_gguf(&GgufFile::from_bytes(g).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 scores for 1 tokens"), "{e}");
    }

    #[test]
    fn synthetic_vocabulary_round_trips_and_maps_specials() {
        let t = synthetic();
        assert_eq!(t.vocab_size(), 260);
        assert!((0..=255u8).all(|b| t.encodes_byte(b)));
        for s in ["hello", "Ça va? 🦀 日本", "a\tb\n\n  c", "x\u{14}y", ""] {
            let ids = t.encode(s).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), s, "{ids:?}");
        }
        // "hel" is one merged token; digits split one by one.
        assert_eq!(t.encode("hel").unwrap(), vec![259]);
        assert_eq!(t.encode("42").unwrap().len(), 2);
        let ids = t.encode("<|im_start|>hi<|im_end|>").unwrap();
        assert_eq!((ids[0], *ids.last().unwrap()), (0, 1));
        assert!(t.is_special(0) && !t.is_special(2));
        assert!(t.is_end_of_generation(1));
        assert!(t
            .decode(&[260])
            .unwrap_err()
            .to_string()
            .contains("outside the vocabulary"));
    }
}

//! Tokenizer: a `tokenizers::Tokenizer` built from GGUF metadata (or a `tokenizer.json`), plus
//! the byte string of every token so that decoding and streaming are exact at the byte level.
//!
//! For `tokenizer.ggml.model = gpt2` the tokenizer is a byte-level BPE with the vocabulary and
//! merges from the file, the GPT-2 byte-level pre-tokenizer (preceded by single-digit splitting
//! for the `smollm` / `starcoder`-style pre-tokenizers, as llama.cpp does), and the control /
//! user-defined tokens (`token_type` 3 / 4) registered as added tokens, so that
//! `<|im_start|>` in a prompt maps to its single id.

use std::collections::HashMap;
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
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Names of end-of-generation tokens recognised besides the declared EOS.
const EOG_NAMES: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "</s>",
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

/// A tokenizer with byte-exact decoding.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    token_bytes: Vec<Vec<u8>>,
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

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.get_str("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "tokenizer.ggml.model `{model}` (only byte-level BPE `gpt2` is supported; pass a tokenizer.json instead)"
            )));
        }
        let tokens = gguf.string_array("tokenizer.ggml.tokens")?;
        let merges = gguf.string_array("tokenizer.ggml.merges")?;
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
        let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
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
        Ok(Self::finish(inner, token_bytes, special, bos, eos, add_bos))
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
        let mut token_bytes = Vec::with_capacity(n);
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
            token_bytes.push(bytes);
        }
        let find = |names: &[&str]| names.iter().find_map(|t| inner.token_to_id(t));
        let bos = find(&["<|im_start|>", "<s>", "<|begin_of_text|>"]);
        let eos = find(&["<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>"]);
        Ok(Self::finish(inner, token_bytes, special, bos, eos, false))
    }

    fn finish(
        inner: tokenizers::Tokenizer,
        token_bytes: Vec<Vec<u8>>,
        special: Vec<bool>,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Self {
        let mut eog: Vec<u32> = eos.into_iter().collect();
        for name in EOG_NAMES {
            if let Some(id) = inner.token_to_id(name) {
                if !eog.contains(&id) {
                    eog.push(id);
                }
            }
        }
        let mut encodable = [false; 256];
        for (bytes, &is_special) in token_bytes.iter().zip(&special) {
            if let ([b], false) = (bytes.as_slice(), is_special) {
                encodable[*b as usize] = true;
            }
        }
        Self {
            inner,
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
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The bytes of `ids`, concatenated (special tokens as their text).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }

    /// Decodes `ids` to text (invalid UTF-8 replaced by U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// The bytes of one token.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .ok_or(Error::TokenOutOfRange {
                id,
                vocab: self.token_bytes.len(),
            })
    }

    /// The id of a token string (as stored in the vocabulary).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
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

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
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

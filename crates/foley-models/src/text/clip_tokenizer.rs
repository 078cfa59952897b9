//! The CLIP byte-level BPE tokenizer exactly as open_clip's `SimpleTokenizer` runs it for MMAudio
//! (`open_clip.get_tokenizer('ViT-H-14-378-quickgelu')`, mmaudio/model/utils/features_utils.py at
//! github.com/hkchengrex/MMAudio commit 974010a; open_clip 3.3.0 `tokenizer.py`).
//!
//! Cleaning (ftfy, HTML unescape, whitespace, lower-case) is in [`crate::text::clip_text_clean`]. Then the text is
//! split by open_clip's regex, every piece is mapped byte-wise to printable characters and merged by BPE with
//! the merges of `bpe_simple_vocab_16e6.txt.gz`; ids are `[<start_of_text>] + pieces + [<end_of_text>]`,
//! truncated to the context length with the last id forced to `<end_of_text>`, zero-padded.
//!
//! The `tokenizers` crate was not used: it has no ftfy/`html.unescape` normaliser, so it cannot reproduce
//! open_clip's ids for prompts with entities, ligatures, full-width forms or curly quotes; the BPE itself is
//! about a hundred lines.

use std::collections::HashMap;

use regex::Regex;

use crate::text::clip_text_clean::clean_lower;

/// The merges open_clip uses: the header line and the first 48 894 merges of open_clip's
/// `bpe_simple_vocab_16e6.txt.gz` (MIT, from OpenAI's CLIP repository), as `models/clip/` ships them.
pub const OPEN_CLIP_MERGES: &str = include_str!("../../../../models/clip/bpe_simple_vocab_16e6.merges.txt");

/// open_clip's context length for every CLIP model.
pub const CONTEXT_LENGTH: usize = 77;

/// Errors building a tokenizer from merges.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("bpe merges: line {line}: expected two symbols, got {text:?}")]
    BadMerge { line: usize, text: String },
    #[error("bpe merges: expected {expected} merges, found {found}")]
    MergeCount { expected: usize, found: usize },
    #[error("regex: {0}")]
    Regex(#[from] regex::Error),
}

/// GPT-2/CLIP `bytes_to_unicode`: every byte to a printable character, and those characters in the dict's
/// insertion order (printable bytes first), which is the order of the first 256 vocabulary entries.
fn bytes_to_unicode() -> ([char; 256], Vec<char>) {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xa1..=0xac).chain(0xae..=0xff).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let order: Vec<char> = cs.iter().map(|&c| char::from_u32(c).unwrap_or('\0')).collect(); // all < 0x200
    let mut table = ['\0'; 256];
    for (&b, &c) in bs.iter().zip(&order) {
        table[b as usize] = c;
    }
    (table, order)
}

/// open_clip's `SimpleTokenizer` (clean = "lower", no reduction mask).
pub struct ClipTokenizer {
    byte_encoder: [char; 256],
    encoder: HashMap<String, u32>,
    bpe_ranks: HashMap<(String, String), u32>,
    pat: Regex,
    special: Vec<String>,
    pub sot_token_id: u32,
    pub eot_token_id: u32,
    pub context_length: usize,
}

impl ClipTokenizer {
    /// The tokenizer MMAudio uses, from the merges shipped in `models/clip/`.
    pub fn open_clip() -> Result<Self, TokenizerError> {
        Self::from_merges(OPEN_CLIP_MERGES, CONTEXT_LENGTH)
    }

    /// From the text of `bpe_simple_vocab_16e6.txt` (header line, then one merge per line; only the first
    /// 49152 - 256 - 2 merges are used, as open_clip does).
    pub fn from_merges(text: &str, context_length: usize) -> Result<Self, TokenizerError> {
        const N_MERGES: usize = 49152 - 256 - 2;
        let mut merges = Vec::with_capacity(N_MERGES);
        for (i, line) in text.split('\n').skip(1).take(N_MERGES).enumerate() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
                _ => return Err(TokenizerError::BadMerge { line: i + 2, text: line.to_string() }),
            }
        }
        if merges.len() != N_MERGES {
            return Err(TokenizerError::MergeCount { expected: N_MERGES, found: merges.len() });
        }
        let (byte_encoder, order) = bytes_to_unicode();
        let mut vocab: Vec<String> = order.iter().map(|c| c.to_string()).collect();
        vocab.extend(order.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        let special = vec!["<start_of_text>".to_string(), "<end_of_text>".to_string()];
        vocab.extend(special.iter().cloned());
        let encoder: HashMap<String, u32> = vocab.into_iter().enumerate().map(|(i, v)| (v, i as u32)).collect();
        let bpe_ranks = merges.into_iter().enumerate().map(|(i, m)| (m, i as u32)).collect();
        let pat = Regex::new(&format!(
            r"(?i){}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            special.join("|")
        ))?;
        Ok(Self {
            sot_token_id: encoder[&special[0]],
            eot_token_id: encoder[&special[1]],
            byte_encoder,
            encoder,
            bpe_ranks,
            pat,
            special,
            context_length,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// BPE of one byte-encoded piece, appending the ids of its symbols to `out`.
    fn bpe(&self, token: &str, out: &mut Vec<u32>) {
        if self.special.iter().any(|s| s == token) {
            out.push(self.encoder[token]);
            return;
        }
        let chars: Vec<char> = token.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|p| self.bpe_ranks.get(&(p[0].clone(), p[1].clone())).map(|r| (*r, p)))
                .min_by_key(|(r, _)| *r);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
        }
        // every symbol is a byte character, a byte character + "</w>" or a merge result: all in the vocab
        out.extend(word.iter().filter_map(|s| self.encoder.get(s).copied()));
    }

    /// `SimpleTokenizer.encode`: the ids of the cleaned text, without start/end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = clean_lower(text);
        let mut ids = Vec::new();
        for m in self.pat.find_iter(&text) {
            let piece: String = m.as_str().bytes().map(|b| self.byte_encoder[b as usize]).collect();
            self.bpe(&piece, &mut ids);
        }
        ids
    }

    /// `SimpleTokenizer.__call__` for one text: `context_length` ids, start/end tokens, truncated, zero-padded.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.context_length.max(2));
        ids.push(self.sot_token_id);
        ids.extend(self.encode(text));
        ids.push(self.eot_token_id);
        if ids.len() > self.context_length {
            ids.truncate(self.context_length);
            if let Some(last) = ids.last_mut() {
                *last = self.eot_token_id;
            }
        }
        ids.resize(self.context_length, 0);
        ids
    }

    /// A batch of texts as a `[B, context_length]` u32 tensor (the text tower's input).
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        device: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        let ids: Vec<u32> = texts.iter().flat_map(|t| self.tokenize(t.as_ref())).collect();
        candle_core::Tensor::from_vec(ids, (texts.len(), self.context_length), device)
    }
}

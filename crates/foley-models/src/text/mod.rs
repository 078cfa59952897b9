//! Text tokenizers: open_clip's BPE tokenizer ([`clip_tokenizer`]) with ftfy-style cleaning ([`clip_text_clean`]).

pub mod clip_text_clean;
pub mod clip_tokenizer;

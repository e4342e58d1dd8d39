//! Chat templates. No Jinja engine: the GGUF's `tokenizer.chat_template` is recognised by its
//! markers and applied natively. Supported: ChatML (`<|im_start|>role\n...<|im_end|>\n`, used
//! by SmolLM2, Qwen, ...), including SmolLM2's default system prompt when the template
//! carries one, and Gemma's turns (`<start_of_turn>user\n...<end_of_turn>\n`, the assistant
//! as `model`, a system prompt folded into the first user turn). Any other template is an
//! [`Error::ChatTemplate`](crate::Error::ChatTemplate).
//!
//! ```
//! use edgeai_llm::chat::{ChatTemplate, Message};
//!
//! let t = ChatTemplate::chatml();
//! let p = t.apply(&[Message::user("Hi")], true);
//! assert_eq!(p, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! ```

use crate::{Error, Result};

/// Who speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// System instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// Any other role name, passed through.
    Other(String),
}

impl Role {
    /// The role's name in templates.
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Other(s) => s,
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A chat template edgeai can apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML; `default_system` is inserted when the first message is not a system message.
    ChatMl {
        /// The template's built-in system prompt, if any.
        default_system: Option<String>,
    },
    /// Gemma: `<start_of_turn>{user|model}\n{content}<end_of_turn>\n`; the system prompt
    /// opens the first user turn, followed by a blank line. (The BOS token the template
    /// starts with is the tokenizer's to add.)
    Gemma,
}

impl ChatTemplate {
    /// Plain ChatML without a default system prompt.
    pub fn chatml() -> Self {
        ChatTemplate::ChatMl {
            default_system: None,
        }
    }

    /// Recognises a Jinja chat template string.
    pub fn detect(template: &str) -> Result<Self> {
        if template.contains("<|im_start|>") && template.contains("<|im_end|>") {
            let default_system = extract_default_system(template);
            return Ok(ChatTemplate::ChatMl { default_system });
        }
        if template.contains("<start_of_turn>") && template.contains("<end_of_turn>") {
            return Ok(ChatTemplate::Gemma);
        }
        let head: String = template.chars().take(80).collect();
        Err(Error::ChatTemplate(format!(
            "only ChatML and Gemma templates are supported; this template starts with {head:?}"
        )))
    }

    /// The template of a GGUF: its `tokenizer.chat_template` when present (an unsupported
    /// one is an error); without one, Gemma's when the vocabulary has its turn markers
    /// (base models ship without a template), else ChatML.
    pub fn for_gguf(gguf: &crate::gguf::GgufFile) -> Result<Self> {
        if let Some(t) = gguf.get_str("tokenizer.chat_template") {
            return Self::detect(t);
        }
        let has = |tok: &str| {
            gguf.get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(tok)))
        };
        Ok(if has("<start_of_turn>") && has("<end_of_turn>") {
            ChatTemplate::Gemma
        } else {
            ChatTemplate::chatml()
        })
    }

    /// The template's text stop markers (end of an assistant turn).
    pub fn stop_strings(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } => &["<|im_end|>"],
            ChatTemplate::Gemma => &["<end_of_turn>"],
        }
    }

    /// Renders `messages`; with `add_generation_prompt` the assistant's turn is opened.
    pub fn apply(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let mut out = String::new();
                if let Some(sys) = default_system {
                    if messages.first().is_some_and(|m| m.role != Role::System) {
                        out.push_str("<|im_start|>system\n");
                        out.push_str(sys);
                        out.push_str("<|im_end|>\n");
                    }
                }
                for m in messages {
                    out.push_str("<|im_start|>");
                    out.push_str(m.role.as_str());
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
                out
            }
            ChatTemplate::Gemma => {
                let mut out = String::new();
                let (system, rest) = match messages.split_first() {
                    Some((m, rest)) if m.role == Role::System => (Some(m.content.trim()), rest),
                    _ => (None, messages),
                };
                for (i, m) in rest.iter().enumerate() {
                    let role = match &m.role {
                        Role::Assistant => "model",
                        r => r.as_str(),
                    };
                    out.push_str("<start_of_turn>");
                    out.push_str(role);
                    out.push('\n');
                    if let (0, Some(sys)) = (i, system) {
                        out.push_str(sys);
                        out.push_str("\n\n");
                    }
                    out.push_str(m.content.trim());
                    out.push_str("<end_of_turn>\n");
                }
                if add_generation_prompt {
                    out.push_str("<start_of_turn>model\n");
                }
                out
            }
        }
    }
}

/// SmolLM2-style templates print `'<|im_start|>system\n...<|im_end|>\n'` as a literal when the
/// first message is not a system message; pull that literal out.
fn extract_default_system(template: &str) -> Option<String> {
    // The Jinja string literal holds either an escaped `\n` or a real newline.
    let marker = "<|im_start|>system";
    let start = template.find(marker)? + marker.len();
    let rest = &template[start..];
    let rest = rest
        .strip_prefix("\\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let end = rest.find("<|im_end|>")?;
    let body = &rest[..end];
    // Only a plain literal (no Jinja expression inside).
    if body.contains("{{") || body.contains("{%") || body.contains('\'') || body.contains('+') {
        return None;
    }
    Some(body.replace("\\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn smollm2_template_with_default_system() {
        let t = ChatTemplate::detect(SMOLLM2).unwrap();
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: Some(
                    "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
                )
            }
        );
        let p = t.apply(&[Message::user("Hi"), Message::assistant("Hello!")], true);
        assert_eq!(
            p,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n"
        );
        let p = t.apply(&[Message::system("Be brief."), Message::user("Hi")], false);
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn default_system_with_real_newlines() {
        let t = ChatTemplate::detect(&SMOLLM2.replace("\\n", "\n")).unwrap();
        let ChatTemplate::ChatMl { default_system } = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
    }

    #[test]
    fn qwen_style_chatml_and_unsupported() {
        let qwen = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(ChatTemplate::detect(qwen).unwrap(), ChatTemplate::chatml());
        let llama3 = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}";
        let e = ChatTemplate::detect(llama3).unwrap_err().to_string();
        assert!(e.contains("only ChatML"), "{e}");
    }

    /// The start of Gemma 3's template (google/gemma-3-*-it `tokenizer_config.json`).
    const GEMMA3: &str = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n{%- for message in loop_messages -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}{{ '<end_of_turn>\n' }}{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n";

    #[test]
    fn gemma_turns_fold_the_system_prompt_into_the_first_user_turn() {
        let t = ChatTemplate::detect(GEMMA3).unwrap();
        assert_eq!(t, ChatTemplate::Gemma);
        let p = t.apply(
            &[
                Message::system("Be brief."),
                Message::user(" Hi "),
                Message::assistant("Hello!"),
                Message::user("Bye"),
            ],
            true,
        );
        assert_eq!(
            p,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            t.apply(&[Message::user("Hi")], false),
            "<start_of_turn>user\nHi<end_of_turn>\n"
        );
        assert_eq!(t.stop_strings(), ["<end_of_turn>"]);
    }
}

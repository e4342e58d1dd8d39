//! Chat templates. No Jinja engine: the GGUF's `tokenizer.chat_template` is recognised by its
//! markers and applied natively. Supported: ChatML (`<|im_start|>role\n...<|im_end|>\n`, used
//! by SmolLM2, Qwen, ...), including SmolLM2's default system prompt when the template
//! carries one. Any other template is an [`Error::ChatTemplate`](crate::Error::ChatTemplate).
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
        let head: String = template.chars().take(80).collect();
        Err(Error::ChatTemplate(format!(
            "only ChatML templates are supported; this template starts with {head:?}"
        )))
    }

    /// The template's text stop markers (end of an assistant turn).
    pub fn stop_strings(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } => &["<|im_end|>"],
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
        let ChatTemplate::ChatMl { default_system } = t;
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
}

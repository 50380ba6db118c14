//! The local server's mailer: each message becomes `<dir>/<id>.eml`, which any mail client
//! opens. Written to a temporary file and renamed, so a file is there whole or not at all;
//! sending the same message again rewrites the same file.

use std::path::PathBuf;

use anyhow::Context as _;
use async_trait::async_trait;

use super::{Mailer, Outgoing};

pub struct FileMailer {
    dir: PathBuf,
}

impl FileMailer {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

/// A file name for `id`: letters, digits, `.`, `-` and `_` kept, anything else `_`.
fn file_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    format!("{safe}.eml")
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, email: &Outgoing) -> anyhow::Result<String> {
        let path = self.dir.join(file_name(&email.id));
        let partial = self.dir.join(format!(".{}.partial", file_name(&email.id)));
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating {}", self.dir.display()))?;
        tokio::fs::write(&partial, &email.raw)
            .await
            .with_context(|| format!("writing {}", partial.display()))?;
        tokio::fs::rename(&partial, &path)
            .await
            .with_context(|| format!("naming {}", path.display()))?;
        tracing::info!(path = %path.display(), to = %email.to, "email written");
        Ok(path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_becomes_a_safe_file_name() {
        assert_eq!(
            file_name("evt_01JD.confirmation"),
            "evt_01JD.confirmation.eml"
        );
        assert_eq!(file_name("../etc/passwd"), ".._etc_passwd.eml");
    }
}

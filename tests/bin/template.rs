//! `cargo run -p storefront-tests --bin template`: rewrites template.yaml's functions from
//! `functions/*/function.yaml` and the route table (see `storefront_tests::template`).
//! With `--check`, changes nothing and fails if the file is not what it would write.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rendered = storefront_tests::template::render(&root)?;
    let path = root.join("template.yaml");
    let current = std::fs::read_to_string(&path)?;
    if std::env::args().any(|arg| arg == "--check") {
        if rendered != current {
            anyhow::bail!("template.yaml is not what the generator writes: run `cargo run -p storefront-tests --bin template`");
        }
        println!("template.yaml is up to date");
        return Ok(());
    }
    if rendered == current {
        println!("template.yaml is up to date");
    } else {
        std::fs::write(&path, rendered)?;
        println!("template.yaml rewritten");
    }
    Ok(())
}

//! The language server (`avap lsp`). Being written.

/// Serves the language server over stdio.
pub fn run_stdio(_catalog: Option<std::path::PathBuf>) -> Result<(), String> {
    Err("the language server is not built yet".into())
}

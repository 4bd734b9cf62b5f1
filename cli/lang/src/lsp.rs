//! The language server (`avap lsp`). Being written.

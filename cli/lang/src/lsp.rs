//! The language server (`avap lsp`): LSP over stdio, one synchronous loop
//! (`lsp-server`), one document change at a time.
//!
//! What it offers:
//!
//! - **Diagnostics** on open and on every change: exactly what `avap check`
//!   reports ([`crate::diagnostics`]: the interpreter's syntax errors, the
//!   script-size limit, and warnings for calls a host would not find), with
//!   source `avap`. Closing a document clears them.
//! - **Completion** of the 27 standard commands and the catalog's commands
//!   (detail: the signature; documentation: the description and each
//!   parameter's kind), the script's own functions with their parameters,
//!   and the keywords `function`, `return`, `True`, `False`, `None`. With a
//!   client that takes snippets, a command is inserted as
//!   `name(${1:param}, ...)`.
//! - **Hover** on a command: its signature, description and parameters; on
//!   a function of the script: its header and the line it is defined on.
//! - **Go to definition** of the script's functions.
//! - **Document symbols**: the functions (their whole block) and the
//!   variables assigned at the top level (first assignment).
//! - **Formatting** with [`crate::fmt::format`]: one edit replacing the
//!   document, or none when it is already canonical. A document with syntax
//!   errors is not formatted: the request answers the error `RequestFailed`
//!   (-32803) saying so (the diagnostics say where).
//!
//! Decisions:
//!
//! - Functions are found by a line scan of `function name(params)` headers,
//!   not by the parser, so completion, hover, definition and symbols keep
//!   working while the document has syntax errors (as it has while being
//!   typed).
//! - Positions: if the client offers `utf-32` in
//!   `general.positionEncodings`, columns are Unicode scalar values, as the
//!   interpreter counts them; otherwise UTF-16 code units (the protocol's
//!   default), converted both ways.
//! - The catalog folder is `initializationOptions.catalog` if given, else
//!   `avap lsp --catalog DIR`; its problems are sent as a
//!   `window/logMessage` warning, not fatal.
//! - Nothing from the client is trusted: unknown requests answer
//!   `MethodNotFound`, malformed parameters `InvalidParams`, requests on a
//!   document that is not open answer null; a document over
//!   [`MAX_DOCUMENT_BYTES`] is not kept (one diagnostic says so).

use std::collections::HashMap;
use std::path::PathBuf;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, LogMessage, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionOptions, CompletionParams, CompletionResponse, Diagnostic,
    DiagnosticSeverity, DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
    DocumentFormattingParams, DocumentSymbol, DocumentSymbolParams, DocumentSymbolResponse, GotoDefinitionParams,
    GotoDefinitionResponse, Hover, HoverContents, HoverParams, HoverProviderCapability, InitializeParams,
    InsertTextFormat, Location, LogMessageParams, MarkupContent, MarkupKind, MessageType, OneOf, Position,
    PositionEncodingKind, PublishDiagnosticsParams, Range, ServerCapabilities, ServerInfo, SymbolKind,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Uri,
};
use serde_json::Value;

use crate::diagnostics::{Severity, diagnose};
use crate::reference::{Command, Commands, Origin};

/// Largest document kept; past it the document is replaced by one
/// diagnostic (the host's own script cap is far smaller).
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// Serves over stdio until the client says `shutdown` and `exit`.
pub fn run_stdio(catalog: Option<PathBuf>) -> Result<(), String> {
    let (connection, io) = Connection::stdio();
    let served = serve(&connection, catalog);
    drop(connection);
    let joined = io.join().map_err(|e| format!("stdio: {e}"));
    served.and(joined)
}

/// How columns are counted on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf16,
    Utf32,
}

struct Server<'a> {
    connection: &'a Connection,
    encoding: Encoding,
    snippets: bool,
    commands: Commands,
    documents: HashMap<Uri, String>,
}

/// Serves one client on `connection` (a memory connection in tests).
pub fn serve(connection: &Connection, catalog: Option<PathBuf>) -> Result<(), String> {
    let (id, params) = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let offered = params.capabilities.general.as_ref().and_then(|g| g.position_encodings.clone()).unwrap_or_default();
    let encoding = if offered.contains(&PositionEncodingKind::UTF32) { Encoding::Utf32 } else { Encoding::Utf16 };
    let snippets = params
        .capabilities
        .text_document
        .as_ref()
        .and_then(|t| t.completion.as_ref())
        .and_then(|c| c.completion_item.as_ref())
        .and_then(|i| i.snippet_support)
        .unwrap_or(false);
    let catalog = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("catalog"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or(catalog);
    let capabilities = ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf32 => PositionEncodingKind::UTF32,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        completion_provider: Some(CompletionOptions::default()),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..Default::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": ServerInfo { name: "avap".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    connection.initialize_finish(id, result).map_err(|e| e.to_string())?;
    let mut server =
        Server { connection, encoding, snippets, commands: Commands::standard(), documents: HashMap::new() };
    if let Some(dir) = catalog {
        let problems = match Commands::with_catalog(&dir) {
            Ok((commands, problems)) => {
                server.commands = commands;
                problems
            }
            Err(e) => vec![e],
        };
        for problem in problems {
            server.notify::<LogMessage>(LogMessageParams {
                typ: MessageType::WARNING,
                message: format!("avap: catalog: {problem}"),
            });
        }
    }
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request).map_err(|e| e.to_string())? {
                    return Ok(());
                }
                let response = server.handle(request);
                server.send(Message::Response(response));
            }
            Message::Notification(notification) => {
                if notification.method == lsp_types::notification::Exit::METHOD {
                    return Err("exit before shutdown".into());
                }
                server.notification(notification);
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

impl Server<'_> {
    fn send(&self, message: Message) {
        // A closed channel means the client is gone; the loop then ends.
        let _ = self.connection.sender.send(message);
    }

    fn notify<N: lsp_types::notification::Notification>(&self, params: N::Params) {
        self.send(Message::Notification(Notification::new(N::METHOD.to_string(), params)));
    }

    fn handle(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        match request.method.as_str() {
            Completion::METHOD => self.answer(id, request.params, |s, p: CompletionParams| s.completion(&p)),
            HoverRequest::METHOD => self.answer(id, request.params, |s, p: HoverParams| s.hover(&p)),
            GotoDefinition::METHOD => self.answer(id, request.params, |s, p: GotoDefinitionParams| s.definition(&p)),
            DocumentSymbolRequest::METHOD => {
                self.answer(id, request.params, |s, p: DocumentSymbolParams| s.symbols(&p))
            }
            Formatting::METHOD => match serde_json::from_value::<DocumentFormattingParams>(request.params) {
                Err(e) => Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string()),
                Ok(p) => match self.formatting(&p) {
                    Ok(edits) => Response::new_ok(id, edits),
                    Err(message) => Response::new_err(id, ErrorCode::RequestFailed as i32, message),
                },
            },
            other => Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("unknown method {other}")),
        }
    }

    fn answer<P, R>(&mut self, id: RequestId, params: Value, f: impl FnOnce(&Self, P) -> R) -> Response
    where
        P: serde::de::DeserializeOwned,
        R: serde::Serialize,
    {
        match serde_json::from_value::<P>(params) {
            Ok(p) => Response::new_ok(id, f(self, p)),
            Err(e) => Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string()),
        }
    }

    fn notification(&mut self, notification: Notification) {
        match notification.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(notification.params) {
                    self.update(p.text_document.uri, p.text_document.text);
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(notification.params)
                    && let Some(change) = p.content_changes.into_iter().last()
                {
                    // Full sync: every change carries the whole text.
                    self.update(p.text_document.uri, change.text);
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(notification.params) {
                    self.documents.remove(&p.text_document.uri);
                    self.notify::<PublishDiagnostics>(PublishDiagnosticsParams {
                        uri: p.text_document.uri,
                        diagnostics: Vec::new(),
                        version: None,
                    });
                }
            }
            _ => {}
        }
    }

    fn update(&mut self, uri: Uri, text: String) {
        let diagnostics = if text.len() > MAX_DOCUMENT_BYTES {
            self.documents.remove(&uri);
            vec![Diagnostic {
                range: Range::default(),
                severity: Some(DiagnosticSeverity::ERROR),
                source: Some("avap".into()),
                message: format!("document over {MAX_DOCUMENT_BYTES} bytes: not analysed"),
                ..Default::default()
            }]
        } else {
            let lines: Vec<&str> = text.split('\n').collect();
            let found = diagnose(&text, &self.commands)
                .into_iter()
                .map(|d| {
                    let line_text = lines.get(d.line.saturating_sub(1)).copied().unwrap_or("");
                    let line = u32::try_from(d.line.saturating_sub(1)).unwrap_or(u32::MAX);
                    Diagnostic {
                        range: Range {
                            start: Position { line, character: self.to_wire(line_text, d.column.saturating_sub(1)) },
                            end: Position { line, character: self.to_wire(line_text, d.end_column.saturating_sub(1)) },
                        },
                        severity: Some(match d.severity {
                            Severity::Error => DiagnosticSeverity::ERROR,
                            Severity::Warning => DiagnosticSeverity::WARNING,
                        }),
                        source: Some("avap".into()),
                        message: d.message,
                        ..Default::default()
                    }
                })
                .collect();
            self.documents.insert(uri.clone(), text);
            found
        };
        self.notify::<PublishDiagnostics>(PublishDiagnosticsParams { uri, diagnostics, version: None });
    }

    /// The wire column of the character at `chars` (0-based) of `line`.
    fn to_wire(&self, line: &str, chars: usize) -> u32 {
        let n = match self.encoding {
            Encoding::Utf32 => chars,
            Encoding::Utf16 => line.chars().take(chars).map(char::len_utf16).sum(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The 0-based character index of wire column `character` of `line`.
    fn chars_of_wire(&self, line: &str, character: u32) -> usize {
        let target = character as usize;
        match self.encoding {
            Encoding::Utf32 => target,
            Encoding::Utf16 => {
                let mut units = 0;
                for (i, c) in line.chars().enumerate() {
                    if units >= target {
                        return i;
                    }
                    units += c.len_utf16();
                }
                line.chars().count()
            }
        }
    }

    /// The identifier under `position` of `uri`, if any.
    fn word_at(&self, uri: &Uri, position: Position) -> Option<(&str, String)> {
        let text = self.documents.get(uri)?;
        let line = text.split('\n').nth(position.line as usize)?;
        let chars: Vec<char> = line.chars().collect();
        let at = self.chars_of_wire(line, position.character).min(chars.len());
        let is_word = |c: &char| avap_guest_vm::tokenizer::is_ident_char(*c);
        let start = chars[..at].iter().rposition(|c| !is_word(c)).map_or(0, |p| p + 1);
        let end = chars[at..].iter().position(|c| !is_word(c)).map_or(chars.len(), |p| at + p);
        let word: String = chars.get(start..end)?.iter().collect();
        (!word.is_empty()).then_some((text.as_str(), word))
    }

    fn completion(&self, params: &CompletionParams) -> Option<CompletionResponse> {
        let text = self.documents.get(&params.text_document_position.text_document.uri)?;
        let mut items: Vec<CompletionItem> = self.commands.by_name.values().map(|c| self.command_item(c)).collect();
        for f in functions(text) {
            items.push(CompletionItem {
                label: f.name.clone(),
                kind: Some(CompletionItemKind::FUNCTION),
                detail: Some(format!("function {}({}) (line {})", f.name, f.params.join(", "), f.line + 1)),
                insert_text: Some(self.call_text(&f.name, &f.params)),
                insert_text_format: Some(self.insert_format()),
                ..Default::default()
            });
        }
        for keyword in ["function", "return", "True", "False", "None"] {
            items.push(CompletionItem {
                label: keyword.into(),
                kind: Some(CompletionItemKind::KEYWORD),
                ..Default::default()
            });
        }
        Some(CompletionResponse::Array(items))
    }

    fn insert_format(&self) -> InsertTextFormat {
        if self.snippets { InsertTextFormat::SNIPPET } else { InsertTextFormat::PLAIN_TEXT }
    }

    fn call_text(&self, name: &str, params: &[String]) -> String {
        if !self.snippets {
            return format!("{name}(");
        }
        let slots: Vec<String> = params.iter().enumerate().map(|(i, p)| format!("${{{}:{p}}}", i + 1)).collect();
        format!("{name}({})", slots.join(", "))
    }

    fn command_item(&self, command: &Command) -> CompletionItem {
        CompletionItem {
            label: command.name.clone(),
            kind: Some(CompletionItemKind::FUNCTION),
            detail: Some(command.signature()),
            documentation: Some(lsp_types::Documentation::MarkupContent(markdown(command_doc(command)))),
            insert_text: Some(self.call_text(&command.name, &command.params)),
            insert_text_format: Some(self.insert_format()),
            ..Default::default()
        }
    }

    fn hover(&self, params: &HoverParams) -> Option<Hover> {
        let at = &params.text_document_position_params;
        let (text, word) = self.word_at(&at.text_document.uri, at.position)?;
        let doc = if let Some(f) = functions(text).into_iter().find(|f| f.name == word) {
            format!(
                "```avap\nfunction {}({})\n```\n\nA function of this script, defined at line {}.",
                f.name,
                f.params.join(", "),
                f.line + 1
            )
        } else {
            command_doc(self.commands.get(&word)?)
        };
        Some(Hover { contents: HoverContents::Markup(markdown(doc)), range: None })
    }

    fn definition(&self, params: &GotoDefinitionParams) -> Option<GotoDefinitionResponse> {
        let at = &params.text_document_position_params;
        let (text, word) = self.word_at(&at.text_document.uri, at.position)?;
        let f = functions(text).into_iter().find(|f| f.name == word)?;
        let line_text = text.split('\n').nth(f.line).unwrap_or("");
        let line = u32::try_from(f.line).unwrap_or(u32::MAX);
        let range = Range {
            start: Position { line, character: self.to_wire(line_text, f.name_column) },
            end: Position { line, character: self.to_wire(line_text, f.name_column + f.name.chars().count()) },
        };
        Some(GotoDefinitionResponse::Scalar(Location { uri: at.text_document.uri.clone(), range }))
    }

    fn symbols(&self, params: &DocumentSymbolParams) -> Option<DocumentSymbolResponse> {
        let text = self.documents.get(&params.text_document.uri)?;
        let lines: Vec<&str> = text.split('\n').collect();
        let span = |line: usize, from: usize, to: usize| {
            let t = lines.get(line).copied().unwrap_or("");
            let l = u32::try_from(line).unwrap_or(u32::MAX);
            Range {
                start: Position { line: l, character: self.to_wire(t, from) },
                end: Position { line: l, character: self.to_wire(t, to) },
            }
        };
        let mut symbols = Vec::new();
        let found = functions(text);
        for f in &found {
            let end_text = lines.get(f.end_line).copied().unwrap_or("");
            let end = Position {
                line: u32::try_from(f.end_line).unwrap_or(u32::MAX),
                character: self.to_wire(end_text, end_text.chars().count()),
            };
            let header = span(f.line, 0, 0).start;
            #[allow(deprecated)] // `deprecated` is a required field of the type.
            symbols.push(DocumentSymbol {
                name: f.name.clone(),
                detail: Some(format!("({})", f.params.join(", "))),
                kind: SymbolKind::FUNCTION,
                tags: None,
                deprecated: None,
                range: Range { start: header, end },
                selection_range: span(f.line, f.name_column, f.name_column + f.name.chars().count()),
                children: None,
            });
        }
        let inside = |line: usize| found.iter().any(|f| f.line <= line && line <= f.end_line);
        let mut seen = std::collections::HashSet::new();
        for (i, line) in lines.iter().enumerate() {
            if inside(i) {
                continue;
            }
            if let Some((name, column)) = assigned(line)
                && seen.insert(name.clone())
            {
                let width = name.chars().count();
                #[allow(deprecated)]
                symbols.push(DocumentSymbol {
                    name,
                    detail: None,
                    kind: SymbolKind::VARIABLE,
                    tags: None,
                    deprecated: None,
                    range: span(i, column, column + width),
                    selection_range: span(i, column, column + width),
                    children: None,
                });
            }
        }
        symbols.sort_by_key(|s| (s.range.start.line, s.range.start.character));
        Some(DocumentSymbolResponse::Nested(symbols))
    }

    fn formatting(&self, params: &DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>, String> {
        let Some(text) = self.documents.get(&params.text_document.uri) else { return Ok(None) };
        let formatted = crate::fmt::format(text)
            .map_err(|d| format!("the document has syntax errors ({}); fix them to format it", d.len()))?;
        if formatted == *text {
            return Ok(Some(Vec::new()));
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let last = lines.last().copied().unwrap_or("");
        let end = Position {
            line: u32::try_from(lines.len().saturating_sub(1)).unwrap_or(u32::MAX),
            character: self.to_wire(last, last.chars().count()),
        };
        Ok(Some(vec![TextEdit { range: Range { start: Position::default(), end }, new_text: formatted }]))
    }
}

fn markdown(value: String) -> MarkupContent {
    MarkupContent { kind: MarkupKind::Markdown, value }
}

/// A command's hover text: signature, description, parameters.
fn command_doc(command: &Command) -> String {
    let mut doc = format!("```avap\n{}\n```\n", command.signature());
    if !command.description.is_empty() {
        doc.push_str(&format!("\n{}\n", command.description));
    }
    if !command.params.is_empty() {
        doc.push_str("\nParameters:\n");
        for (name, kind) in command.params.iter().zip(&command.kinds) {
            doc.push_str(&format!("- `{name}` ({kind})\n"));
        }
    }
    if let Origin::Catalog(file) = &command.origin {
        doc.push_str(&format!("\nCatalog command from `{file}`.\n"));
    }
    if let Some(example) = &command.example {
        doc.push_str(&format!("\nExample:\n```avap\n{example}\n```\n"));
    }
    doc
}

/// A function header found by the line scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FunctionAt {
    name: String,
    params: Vec<String>,
    /// 0-based line of the header.
    line: usize,
    /// 0-based character of the name on that line.
    name_column: usize,
    /// 0-based line of the closing `}` (the header's for a one-line
    /// function; the last line when it is never closed).
    end_line: usize,
}

/// Every `function name(params)` header of `text` and where its block ends.
fn functions(text: &str) -> Vec<FunctionAt> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let indent = chars.iter().take_while(|c| c.is_whitespace()).count();
        let rest: String = chars[indent..].iter().collect();
        let Some(after) = rest.strip_prefix("function") else { continue };
        if !after.starts_with(char::is_whitespace) {
            continue;
        }
        let gap = after.chars().take_while(|c| c.is_whitespace()).count();
        let name: String =
            after.chars().skip(gap).take_while(|c| avap_guest_vm::tokenizer::is_ident_char(*c)).collect();
        if name.is_empty() {
            continue;
        }
        let name_column = indent + "function".len() + gap;
        let tail: String = after.chars().skip(gap + name.chars().count()).collect();
        let params = tail
            .trim_start()
            .strip_prefix('(')
            .and_then(|p| p.split_once(')'))
            .map(|(inside, _)| inside.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        // A body on the header's line, closed there (a comment may follow).
        let one_line = tail.split_once('{').is_some_and(|(_, body)| {
            let body = body.trim();
            !body.is_empty()
                && !body.starts_with("//")
                && body.rsplit_once('}').is_some_and(|(_, after)| {
                    let after = after.trim();
                    after.is_empty() || after.starts_with("//")
                })
        });
        let end_line = if one_line { i } else { block_end(&lines, i) };
        out.push(FunctionAt { name, params, line: i, name_column, end_line });
    }
    out
}

/// The line of the `}` closing the block opened by the header at `start`.
fn block_end(lines: &[&str], start: usize) -> usize {
    let mut depth = 0usize;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let code = line.split("//").next().unwrap_or("").trim();
        if code.ends_with('{') {
            depth += 1;
        }
        if code.starts_with('}') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i;
            }
        }
    }
    lines.len().saturating_sub(1)
}

/// `name = ...` at the start of `line` (not `==`): the name and its
/// 0-based column.
fn assigned(line: &str) -> Option<(String, usize)> {
    let chars: Vec<char> = line.chars().collect();
    let indent = chars.iter().take_while(|c| c.is_whitespace()).count();
    let name: String = chars[indent..].iter().take_while(|c| avap_guest_vm::tokenizer::is_ident_char(**c)).collect();
    if name.is_empty() || !avap_guest_vm::tokenizer::is_identifier(&name) || name == "function" || name == "return" {
        return None;
    }
    let rest: String = chars[indent + name.chars().count()..].iter().collect();
    let rest = rest.trim_start();
    (rest.starts_with('=') && !rest.starts_with("==")).then_some((name, indent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_found_with_their_blocks() {
        let commented = functions("function f(a) { return a } // note\nx = 1\nfunction g(b) {\n}\n");
        assert_eq!(commented.iter().map(|f| (f.line, f.end_line)).collect::<Vec<_>>(), [(0, 0), (2, 3)]);
        let text = "x = 1\nfunction add(a, b) {\n    if(a, 1, \"==\")\n    end()\n    return a + b\n}\nfunction one(q){ return q }\n";
        let found = functions(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0],
            FunctionAt {
                name: "add".into(),
                params: vec!["a".into(), "b".into()],
                line: 1,
                name_column: 9,
                end_line: 5
            }
        );
        assert_eq!((found[1].line, found[1].end_line), (6, 6));
        assert_eq!(assigned("  total = 3"), Some(("total".into(), 2)));
        assert_eq!(assigned("a == b"), None);
    }
}

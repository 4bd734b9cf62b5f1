//! The live command catalog as the host sees it (`catalog` in the input).
//!
//! - `commands`: the built-in commands the catalog holds. When given, a
//!   built-in that is not listed fails at run time with
//!   `command 'X' not found in the catalog` (control flow is syntax and is
//!   always available; names that are not built-ins are ignored).
//! - `functions`: catalog commands written in AVAP. Each source must be one
//!   `function` definition named like the command ([`check_catalog_function`]).
//!   A source is parsed at most once per execution, the first time the
//!   command is called; a broken one fails only when it is called.
//! - `unsupported`: catalog entries this host cannot run (Python code);
//!   calling one is a runtime error.

use std::cell::OnceCell;

use crate::ast::Function;
pub(crate) use crate::ast::insert_sorted;
use crate::error::{Diagnostic, Error};
use crate::parser;

/// The catalog an execution runs against. [`Catalog::default`] is the
/// unrestricted catalog (every built-in, no AVAP or unsupported entries).
#[derive(Debug, Default)]
pub struct Catalog {
    /// Sorted and deduplicated (binary search; plain vectors keep the wasm
    /// module smaller than more hash-table instantiations).
    commands: Option<Vec<String>>,
    /// Sorted by name.
    functions: Vec<CatalogFunction>,
    /// Sorted and deduplicated.
    unsupported: Vec<String>,
}

/// One AVAP catalog command: its source, parsed on first use.
#[derive(Debug)]
struct CatalogFunction {
    name: String,
    source: String,
    parsed: OnceCell<Result<Function, String>>,
}

impl Catalog {
    /// The unrestricted catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Restricts the built-in commands to `names` (others fail at run time).
    pub fn restrict_commands<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut sorted = Vec::new();
        for name in names {
            insert_sorted(&mut sorted, name.into());
        }
        self.commands = Some(sorted);
    }

    /// Adds a catalog command written in AVAP. The source is not parsed
    /// here; a duplicate name is an `input` error.
    pub fn add_function(&mut self, name: impl Into<String>, source: impl Into<String>) -> Result<(), Error> {
        let name = name.into();
        match self.functions.binary_search_by(|f| f.name.as_str().cmp(&name)) {
            Ok(_) => Err(Error::input(format!("catalog function '{name}' is given twice"))),
            Err(at) => {
                self.functions.insert(at, CatalogFunction { name, source: source.into(), parsed: OnceCell::new() });
                Ok(())
            }
        }
    }

    /// Adds a catalog entry this host cannot run.
    pub fn add_unsupported(&mut self, name: impl Into<String>) {
        insert_sorted(&mut self.unsupported, name.into());
    }

    /// Whether the built-in command `name` may run.
    pub fn allows_command(&self, name: &str) -> bool {
        self.commands.as_ref().is_none_or(|c| c.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
    }

    /// Whether `name` is an unsupported catalog entry.
    pub fn is_unsupported(&self, name: &str) -> bool {
        self.unsupported.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    /// The names of the AVAP catalog commands, sorted.
    pub fn function_names(&self) -> Vec<&str> {
        self.functions.iter().map(|f| f.name.as_str()).collect()
    }

    /// The AVAP catalog command `name`, parsed on first use: `None` when the
    /// catalog has no such function, `Some(Err(message))` when its source is
    /// invalid (or longer than `max_source_bytes`).
    pub(crate) fn function(&self, name: &str, max_source_bytes: usize) -> Option<Result<&Function, &str>> {
        let at = self.functions.binary_search_by(|f| f.name.as_str().cmp(name)).ok()?;
        let f = self.functions.get(at)?;
        let parsed = f.parsed.get_or_init(|| {
            if f.source.len() > max_source_bytes {
                return Err(format!(
                    "catalog command '{name}' is invalid: its source exceeds max_script_bytes ({max_source_bytes})"
                ));
            }
            parse_catalog_function(name, &f.source)
                .map_err(|d| format!("catalog command '{name}' is invalid: {}", Error::syntax(d).message))
        });
        Some(parsed.as_ref().map_err(String::as_str))
    }

    /// Reads the input's `catalog` object
    /// (`{"commands"?: [..], "functions"?: [{"name", "source"}], "unsupported"?: [..]}`).
    /// Linear in the catalog's size apart from one sort of each list.
    pub fn from_json(mut obj: serde_json::Map<String, serde_json::Value>) -> Result<Catalog, Error> {
        let mut catalog = Catalog::new();
        if let Some(mut names) = string_list(&mut obj, "commands")? {
            names.sort_unstable();
            names.dedup();
            catalog.commands = Some(names);
        }
        let mut unsupported = string_list(&mut obj, "unsupported")?.unwrap_or_default();
        unsupported.sort_unstable();
        unsupported.dedup();
        catalog.unsupported = unsupported;
        match obj.remove("functions") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) => {
                let mut functions = Vec::with_capacity(items.len());
                for item in items {
                    let bad =
                        || Error::input("'catalog.functions' items must be {\"name\": string, \"source\": string}");
                    let serde_json::Value::Object(mut f) = item else {
                        return Err(bad());
                    };
                    let (Some(serde_json::Value::String(name)), Some(serde_json::Value::String(source))) =
                        (f.remove("name"), f.remove("source"))
                    else {
                        return Err(bad());
                    };
                    if let Some(k) = f.keys().next() {
                        return Err(Error::input(format!("unknown field '{k}' in a 'catalog.functions' item")));
                    }
                    functions.push(CatalogFunction { name, source, parsed: OnceCell::new() });
                }
                functions.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                if let Some(twice) = functions.windows(2).find(|w| w[0].name == w[1].name) {
                    return Err(Error::input(format!("catalog function '{}' is given twice", twice[0].name)));
                }
                catalog.functions = functions;
            }
            Some(_) => return Err(Error::input("'catalog.functions' must be a list")),
        }
        if let Some(k) = obj.keys().next() {
            return Err(Error::input(format!("unknown field 'catalog.{k}'")));
        }
        Ok(catalog)
    }
}

fn string_list(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<Vec<String>>, Error> {
    match obj.remove(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(Error::input(format!("'catalog.{field}' must be a list of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(Error::input(format!("'catalog.{field}' must be a list of strings"))),
    }
}

/// Validates the AVAP source of catalog command `name`: it must hold exactly
/// one `function` definition, named `name`, and nothing else (comments and
/// blank lines aside). Returns the parameter names in order (the command's
/// interface), or every problem found.
///
/// ```
/// let params = avap_guest_vm::check_catalog_function("greet", "function greet(who) {\n  return `hi ${who}`\n}");
/// assert_eq!(params, Ok(vec!["who".to_string()]));
/// assert!(avap_guest_vm::check_catalog_function("hello", "function greet(who) {\n}").is_err());
/// ```
pub fn check_catalog_function(name: &str, source: &str) -> Result<Vec<String>, Vec<Diagnostic>> {
    parse_catalog_function(name, source).map(|f| f.params)
}

pub(crate) fn parse_catalog_function(name: &str, source: &str) -> Result<Function, Vec<Diagnostic>> {
    let expected = || format!("expected one function definition named '{name}'");
    if source.trim().is_empty() {
        return Err(vec![Diagnostic::new(1, 1, format!("the source is empty; {}", expected()))]);
    }
    let mut program = parser::parse(source)?;
    if let Some(stmt) = program.main.first() {
        return Err(vec![Diagnostic::new(
            stmt.line,
            1,
            format!(
                "a catalog command's source holds only its function definition; this statement is outside it ({})",
                expected()
            ),
        )]);
    }
    if program.functions.len() > 1 {
        let last = program.functions.values().map(|f| f.line).max().unwrap_or(1);
        return Err(vec![Diagnostic::new(
            last,
            1,
            format!("{} functions are defined; {}", program.functions.len(), expected()),
        )]);
    }
    match program.functions.remove(name) {
        Some(f) => Ok(f),
        None => match program.functions.into_values().next() {
            Some(other) => Err(vec![Diagnostic::new(
                other.line,
                1,
                format!("the function is named '{}' but the catalog command is '{name}'", other.name),
            )]),
            None => Err(vec![Diagnostic::new(1, 1, format!("no function is defined; {}", expected()))]),
        },
    }
}

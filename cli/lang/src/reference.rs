//! What completion and hover know about commands: the 27 standard commands
//! (their parameters from the interpreter's own table, their descriptions
//! from the spec's `commands-reference.json`, the copy the brain serves),
//! and the commands of a catalog folder (`<name>.avap`, each one function,
//! read the way the brain reads them).

use std::collections::BTreeMap;
use std::path::Path;

use avap_guest_vm::builtins::{Builtin, Kind};
use serde_json::Value;

/// The spec's reference data (the brain's vendored copy).
static REFERENCE: &str = include_str!("../../../brain/catalog/commands-reference.json");

/// Largest catalog source read (the brain's cap).
const MAX_SOURCE_BYTES: u64 = 1 << 20;

/// One command a script can call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    /// Parameter names in order.
    pub params: Vec<String>,
    /// Per parameter: `target`, `source` or `value` (catalog commands: all
    /// `value`).
    pub kinds: Vec<&'static str>,
    /// One paragraph; empty when unknown.
    pub description: String,
    /// An example from the reference, if any.
    pub example: Option<String>,
    /// `standard`, or `catalog` with the file it came from.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Standard,
    Catalog(String),
}

impl Command {
    /// `addVar(targetVarName, varValue)`.
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }
}

/// Every command known: the standard ones, then a catalog folder's.
#[derive(Debug, Clone, Default)]
pub struct Commands {
    pub by_name: BTreeMap<String, Command>,
}

impl Commands {
    /// The 27 standard commands.
    pub fn standard() -> Commands {
        let reference: Value = serde_json::from_str(REFERENCE).unwrap_or(Value::Null);
        let described = |name: &str| {
            reference["commands"].as_array().and_then(|all| all.iter().find(|c| c["name"] == name)).cloned()
        };
        let mut by_name = BTreeMap::new();
        for builtin in Builtin::ALL {
            let spec = builtin.spec();
            let entry = described(spec.name).unwrap_or(Value::Null);
            let command = Command {
                name: spec.name.to_string(),
                params: spec.params.iter().map(|p| p.name.to_string()).collect(),
                kinds: spec
                    .params
                    .iter()
                    .map(|p| match p.kind {
                        Kind::Target => "target",
                        Kind::Source => "source",
                        Kind::Value => "value",
                    })
                    .collect(),
                description: entry["description"].as_str().unwrap_or_default().to_string(),
                example: entry["example"].as_str().map(str::to_string),
                origin: Origin::Standard,
            };
            by_name.insert(command.name.clone(), command);
        }
        Commands { by_name }
    }

    /// The standard commands and every valid `<name>.avap` of `folder`.
    /// Files that are unreadable, not one valid function, or named like a
    /// standard command (the brain refuses those) are returned as problems
    /// (`file: message`) and left out. `Err`: the folder cannot be read.
    pub fn with_catalog(folder: &Path) -> Result<(Commands, Vec<String>), String> {
        let mut commands = Commands::standard();
        let mut problems = Vec::new();
        let entries = std::fs::read_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files {
            if path.extension().and_then(|e| e.to_str()) != Some("avap") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            if commands.by_name.contains_key(&name) {
                problems.push(format!("{}: '{name}' is already in the catalog (a standard command)", path.display()));
                continue;
            }
            match read_capped(&path) {
                Ok(source) => match avap_guest_vm::check_catalog_function(&name, &source) {
                    Ok(params) => {
                        let kinds = vec!["value"; params.len()];
                        let description = leading_comment(&source);
                        commands.by_name.insert(
                            name.clone(),
                            Command {
                                name,
                                params,
                                kinds,
                                description,
                                example: None,
                                origin: Origin::Catalog(path.display().to_string()),
                            },
                        );
                    }
                    Err(diags) => {
                        for d in diags {
                            problems.push(format!("{}:{}:{}: {}", path.display(), d.line, d.column, d.message));
                        }
                    }
                },
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        Ok((commands, problems))
    }

    pub fn get(&self, name: &str) -> Option<&Command> {
        self.by_name.get(name)
    }
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(std::io::Error::other(format!("over {MAX_SOURCE_BYTES} bytes")));
    }
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8"))
}

/// The `//` comment lines at the top of a catalog source: its description.
fn leading_comment(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_commands_have_parameters_and_descriptions() {
        let commands = Commands::standard();
        assert_eq!(commands.by_name.len(), 27);
        let add_var = commands.get("addVar").expect("addVar");
        assert_eq!(add_var.signature(), "addVar(targetVarName, varValue)");
        assert_eq!(add_var.kinds, ["target", "value"]);
        assert!(add_var.description.contains("variable"), "{}", add_var.description);
        assert!(commands.by_name.values().all(|c| !c.description.is_empty()), "every command is described");
    }

    #[test]
    fn a_catalog_folder_adds_its_valid_commands() {
        let dir = std::env::temp_dir().join(format!("avap-lang-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("greet.avap"), "// Says hello.\nfunction greet(who) {\n  return `hi ${who}`\n}\n")
            .expect("write");
        std::fs::write(dir.join("broken.avap"), "function other(x) {\n}\n").expect("write");
        std::fs::write(dir.join("addVar.avap"), "function addVar(a, b) {\n}\n").expect("write");
        let (commands, problems) = Commands::with_catalog(&dir).expect("readable");
        assert!(Commands::with_catalog(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let greet = commands.get("greet").expect("greet");
        assert_eq!(greet.params, ["who"]);
        assert_eq!(greet.description, "Says hello.");
        assert!(commands.get("broken").is_none());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("addVar.avap: 'addVar' is already"), "{problems:?}");
        assert!(problems[1].contains("broken.avap:"), "{problems:?}");
    }
}

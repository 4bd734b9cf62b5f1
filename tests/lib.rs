//! The case-folder format, shared by the two runners of `cases/`: the
//! host's (`tests/cases.rs`: every folder, through real HTTP) and the
//! interpreter's (`guest-vm/tests/cases.rs`: the language folders, run
//! natively). The rest of this crate is test binaries: `e2e.rs`,
//! `cases.rs`, `security/`.
//!
//! `cases/<group>/<name>/` holds:
//!
//! - `script.avap`: the script, sent as the request's `script`;
//! - `request.json` (optional): `variables` (an object), `query` (a query
//!   string without the `?`) and `params` (an object whose keys become
//!   top-level keys of the request body, what `addParam` reads after the
//!   query string);
//! - `expected.json`: `status`, the HTTP status, and `body`, the response
//!   body as [`case::Case::check`] compares it.
//!
//! Groups: `language/` needs neither an HTTP upstream nor a database;
//! `capability/` needs the upstream service or PostgreSQL (or both).
//!
//! What is exact ([`case::Case::check`]):
//!
//! - `status`: equal.
//! - `body.result`: equal as a whole ([`case::equal`]): the same keys in
//!   the same order, no key more or fewer, values equal all the way down,
//!   integers and floats kept apart. Every case that succeeds
//!   (`"success": true`) must give it.
//! - every other field of `body` (`success`, `variables`, `error`, `kind`,
//!   `line`, `diagnostics`): contained ([`case::contains`]): objects by the
//!   keys the expected file lists, arrays element by element with equal
//!   length, and a string starting with `~` matches any string containing
//!   the rest. Fields the file does not list are not checked.
//! - In any expected string, `{svc}` stands for the base URL of the
//!   upstream service (`http://127.0.0.1:<port>`, capability cases).
//!
//! Run one case by its name: `cargo test -p avap-tests --test cases --
//! cmd_ormdirect` (through the host), `cargo test -p avap-guest-vm --test
//! cases -- template_strings` (natively, language cases).

pub mod case {
    use std::path::{Path, PathBuf};

    use serde_json::{Map, Value, json};

    /// One case folder, read and checked for shape.
    #[derive(Debug, Clone)]
    pub struct Case {
        /// The folder's name: the test's name.
        pub name: String,
        pub script: String,
        pub request: Request,
        pub expected: Expected,
    }

    /// `request.json`; empty when the folder has none.
    #[derive(Debug, Clone, Default)]
    pub struct Request {
        pub variables: Map<String, Value>,
        pub query: Option<String>,
        pub params: Map<String, Value>,
    }

    /// `expected.json`.
    #[derive(Debug, Clone)]
    pub struct Expected {
        pub status: u16,
        pub body: Map<String, Value>,
    }

    /// The case folders under `group_dir`, sorted by name.
    pub fn folders(group_dir: &Path) -> Result<Vec<PathBuf>, String> {
        let entries = std::fs::read_dir(group_dir).map_err(|e| format!("{}: {e}", group_dir.display()))?;
        let mut dirs = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", group_dir.display()))?.path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// The folder's name.
    pub fn name_of(dir: &Path) -> String {
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    fn read_json(path: &Path) -> Result<Value, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    }

    fn only_keys(obj: &Map<String, Value>, allowed: &[&str], file: &str) -> Result<(), String> {
        match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("{file}: unknown field {k:?} (allowed: {allowed:?})")),
            None => Ok(()),
        }
    }

    fn object(value: Option<&Value>, what: &str) -> Result<Map<String, Value>, String> {
        match value {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(format!("{what} must be an object, not {other}")),
        }
    }

    impl Case {
        /// Reads the folder; a folder of the wrong shape is an error that
        /// says what is wrong.
        pub fn load(dir: &Path) -> Result<Case, String> {
            let script = std::fs::read_to_string(dir.join("script.avap"))
                .map_err(|e| format!("{}: {e}", dir.join("script.avap").display()))?;
            let request = match dir.join("request.json") {
                p if p.exists() => Request::from_json(&read_json(&p)?)?,
                _ => Request::default(),
            };
            let expected = Expected::from_json(&read_json(&dir.join("expected.json"))?)?;
            Ok(Case { name: name_of(dir), script, request, expected })
        }

        /// The body of `POST /api/v1/execute`: the params, `script` and
        /// `variables` (with `svc`, when given, the upstream's base URL).
        pub fn request_body(&self, svc: Option<&str>) -> Value {
            let mut body = self.request.params.clone();
            body.insert("script".into(), json!(self.script));
            let mut variables = self.request.variables.clone();
            if let Some(svc) = svc {
                variables.insert("svc".into(), json!(svc));
            }
            body.insert("variables".into(), Value::Object(variables));
            Value::Object(body)
        }

        /// The path and query string the request goes to.
        pub fn path_and_query(&self) -> String {
            match &self.request.query {
                Some(q) => format!("/api/v1/execute?{q}"),
                None => "/api/v1/execute".into(),
            }
        }

        /// Compares a response with `expected.json` (see the crate docs for
        /// what is exact); `svc` replaces `{svc}` in expected strings.
        pub fn check(&self, status: u16, body: &Value, svc: Option<&str>) -> Result<(), String> {
            let fail = |why: String| Err(format!("{why}\n  response {status}: {body}"));
            if status != self.expected.status {
                return fail(format!("status {status}, expected {}", self.expected.status));
            }
            let Value::Object(actual) = body else { return fail("the response body is not an object".into()) };
            for (key, want) in &self.expected.body {
                let want = substitute(want, svc);
                let path = format!("body.{key}");
                let Some(got) = actual.get(key) else { return fail(format!("{path}: missing")) };
                let compared = if key == "result" { equal(got, &want, &path) } else { contains(got, &want, &path) };
                if let Err(why) = compared {
                    return fail(why);
                }
            }
            Ok(())
        }
    }

    impl Request {
        fn from_json(json: &Value) -> Result<Request, String> {
            let Value::Object(obj) = json else { return Err("request.json must be an object".into()) };
            only_keys(obj, &["variables", "query", "params"], "request.json")?;
            let query = match obj.get("query") {
                None => None,
                Some(Value::String(q)) => Some(q.clone()),
                Some(other) => return Err(format!("request.json: query must be a string, not {other}")),
            };
            Ok(Request {
                variables: object(obj.get("variables"), "request.json: variables")?,
                query,
                params: object(obj.get("params"), "request.json: params")?,
            })
        }
    }

    impl Expected {
        fn from_json(json: &Value) -> Result<Expected, String> {
            let Value::Object(obj) = json else { return Err("expected.json must be an object".into()) };
            only_keys(obj, &["status", "body"], "expected.json")?;
            let status = obj
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=599).contains(s))
                .ok_or("expected.json: status must be an HTTP status (100 to 599)")?;
            let body = object(obj.get("body"), "expected.json: body")?;
            match body.get("success") {
                Some(Value::Bool(true)) => {
                    if !matches!(body.get("result"), Some(Value::Object(_))) {
                        return Err("expected.json: a successful case gives its whole `result` object".into());
                    }
                }
                Some(Value::Bool(false)) => {}
                _ => return Err("expected.json: body.success must be true or false".into()),
            }
            Ok(Expected { status, body })
        }
    }

    /// `expected` with `{svc}` in every string replaced by `svc`.
    fn substitute(expected: &Value, svc: Option<&str>) -> Value {
        let Some(svc) = svc else { return expected.clone() };
        match expected {
            Value::String(s) => Value::String(s.replace("{svc}", svc)),
            Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, Some(svc))).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), substitute(v, Some(svc)))).collect()),
            other => other.clone(),
        }
    }

    /// `actual` equals `expected` exactly: objects with the same keys in
    /// the same order, arrays of the same length, numbers with integers and
    /// floats kept apart (`25` is not `25.0`), strings as they are.
    pub fn equal(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                let (ek, ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
                if ek != ak {
                    return Err(format!("{path}: keys {ak:?}, expected {ek:?} (in this order)"));
                }
                e.iter().zip(a.values()).try_for_each(|((k, ev), av)| equal(av, ev, &format!("{path}.{k}")))
            }
            (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
                e.iter().zip(a).enumerate().try_for_each(|(i, (ev, av))| equal(av, ev, &format!("{path}[{i}]")))
            }
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{path}: expected {e}, got {a}")),
        }
    }

    /// `expected` is contained in `actual`: objects by key (recursively),
    /// arrays element by element with equal length, numbers with int/float
    /// kept apart, and a string starting with `~` matches any string
    /// containing the rest.
    pub fn contains(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => e.iter().try_for_each(|(k, v)| match a.get(k) {
                Some(av) => contains(av, v, &format!("{path}.{k}")),
                None => Err(format!("{path}.{k}: missing")),
            }),
            (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
                e.iter().zip(a).enumerate().try_for_each(|(i, (ev, av))| contains(av, ev, &format!("{path}[{i}]")))
            }
            (Value::String(e), Value::String(a)) if e.starts_with('~') => {
                if a.contains(&e[1..]) {
                    Ok(())
                } else {
                    Err(format!("{path}: {a:?} does not contain {:?}", &e[1..]))
                }
            }
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{path}: expected {e}, got {a}")),
        }
    }
}

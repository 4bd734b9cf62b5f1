//! The hostile cases: what a client or a script might send, and what a
//! secure host must answer. Each case names the status, the `kind` (one of
//! a few where the machine's speed decides which budget runs out first), a
//! piece of the message, and how long the answer may take. After every
//! case the host must still answer `/health` and run a trivial script.
//!
//! `{svc}` in a script is the allow-listed local service, `{closed}` a
//! loopback port that is not allow-listed (it has a listener that counts:
//! it must see no request), `{name}` a DNS name of the test's DNS server.

use std::time::Duration;

use serde_json::json;

/// Which host a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The in-memory SQLite default (scratch databases).
    Lite,
    /// PostgreSQL as a least-privileged role.
    Pg,
}

#[derive(Debug, Clone)]
pub enum Request {
    /// `{"script": ...}` as JSON.
    Script(String),
    /// Bytes as the body, with a content type and extra headers.
    Raw { body: Vec<u8>, content_type: &'static str, headers: Vec<(&'static str, String)> },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub group: &'static str,
    pub host: Host,
    pub request: Request,
    /// Acceptable statuses (a CPU budget ends in 400 or 504 depending on
    /// which of the interpreter's steps, fuel or the deadline runs out first).
    pub status: &'static [u16],
    /// Acceptable `kind`s (empty: a success, no kind).
    pub kinds: &'static [&'static str],
    /// A piece of the error message (or, for a success, of the body).
    pub message: &'static str,
    pub max: Duration,
}

const FAST: Duration = Duration::from_secs(2);
const SLOW: Duration = Duration::from_secs(5);

fn script(group: &'static str, name: &str, text: impl Into<String>) -> Case {
    Case {
        name: name.to_string(),
        group,
        host: Host::Lite,
        request: Request::Script(text.into()),
        status: &[400],
        kinds: &["runtime_error"],
        message: "",
        max: FAST,
    }
}

impl Case {
    fn expect(mut self, status: u16, kinds: &'static [&'static str], message: &'static str) -> Case {
        self.status = match status {
            400 if kinds == CPU => &[400, 504],
            400 => &[400],
            200 => &[200],
            403 => &[403],
            413 => &[413],
            431 => &[431],
            504 => &[504, 400],
            507 => &[507, 400],
            _ => &[0],
        };
        self.kinds = kinds;
        self.message = message;
        self
    }
    fn on(mut self, host: Host) -> Case {
        self.host = host;
        self
    }
    fn within(mut self, max: Duration) -> Case {
        self.max = max;
        self
    }
}

fn raw(group: &'static str, name: &str, body: impl Into<Vec<u8>>, content_type: &'static str) -> Case {
    Case {
        name: name.to_string(),
        group,
        host: Host::Lite,
        request: Request::Raw { body: body.into(), content_type, headers: Vec::new() },
        status: &[400],
        kinds: &["bad_request"],
        message: "",
        max: FAST,
    }
}

const LIMIT: &[&str] = &["limit_error"];
const RUNTIME: &[&str] = &["runtime_error"];
const SYNTAX: &[&str] = &["syntax_error"];
const BAD: &[&str] = &["bad_request"];
const OK: &[&str] = &[];
/// A script that burns CPU ends by whichever budget is hit first.
const CPU: &[&str] = &["limit_error", "timeout", "out_of_fuel"];

/// Resource exhaustion: every budget ends the script with its own error.
fn exhaustion() -> Vec<Case> {
    let g = "exhaustion";
    vec![
        script(g, "string doubling", "s = \"ab\"\nstartLoop(i, 1, 40)\n s = s + s\nendLoop()").expect(400, LIMIT, "max_string_bytes"),
        script(g, "template doubling", "s = \"abcdefgh\"\nstartLoop(i, 1, 40)\n s = `${s}${s}`\nendLoop()").expect(400, LIMIT, "max_string_bytes"),
        script(g, "list growth", "startLoop(i, 1, 200000)\n variableToList(i, xs)\nendLoop()").expect(400, CPU, ""),
        script(g, "list concatenation", "xs = [1, 2, 3, 4]\nstartLoop(i, 1, 40)\n xs = xs + xs\nendLoop()").expect(400, LIMIT, "max_collection_len"),
        script(g, "dict growth", "startLoop(i, 1, 200000)\n AddvariableToJSON(str(i), i, d)\nendLoop()").expect(400, LIMIT, "max_collection_len"),
        script(g, "nesting bomb (the reviewer's)", "a = []\nstartLoop(i, 1, 150)\n a = [a]\nendLoop()\naddResult(a)").expect(400, LIMIT, "max_value_depth"),
        script(g, "dict nesting bomb", "d = {}\nstartLoop(i, 1, 200)\n d = {\"k\": d}\nendLoop()\naddResult(d)").expect(400, LIMIT, "max_value_depth"),
        script(g, "shared-tree output bomb", "x = [\"0123456789\"]\nstartLoop(i, 1, 60)\n x = [x, x]\nendLoop()\naddResult(x)").expect(507, &["output_too_large"], "max_output_bytes"),
        script(g, "loop of a billion", "startLoop(i, 1, 1000000000)\nendLoop()").expect(400, LIMIT, "max_loop_iterations"),
        script(g, "nested loops", "startLoop(i, 1, 100000)\n startLoop(j, 1, 100000)\n x = i * j\n endLoop()\nendLoop()").expect(400, CPU, ""),
        script(g, "unbounded recursion", "function f(n) {\n return f(n + 1)\n}\nr = f(0)").expect(400, LIMIT, "max_call_depth"),
        script(g, "mutual recursion", "function a(n) {\n return b(n)\n}\nfunction b(n) {\n return a(n)\n}\nr = a(1)").expect(400, LIMIT, "max_call_depth"),
        script(g, "wide recursion", "function f(n) {\n if(n, 0, '>')\n  x = f(n - 1) + f(n - 1)\n end()\n return 1\n}\nr = f(40)").expect(400, CPU, ""),
        script(g, "regex backtracking bait", format!("s = \"{}!\"\ngetRegex(s, \"(a+)+$\", m)\naddResult(m)", "a".repeat(50_000))).expect(200, OK, "\"success\":true"),
        script(g, "regex nested repetition", "getRegex(\"x\", \"((((a{100}){100}){100}){100})\", m)").expect(400, RUNTIME, "getRegex"),
        script(g, "regex from a huge pattern", format!("getRegex(\"x\", \"{}\", m)", "(a|b)".repeat(20_000))).expect(400, RUNTIME, "getRegex"),
        script(g, "random string of 100 MB", "randomString(\"[a-z]\", 100000000, r)").expect(400, LIMIT, "max_string_bytes"),
        script(g, "replace amplification", "s = \"aaaaaaaaaa\"\nstartLoop(i, 1, 10)\n replace(s, \"a\", \"aaaaaaaaaa\", s)\nendLoop()").expect(400, LIMIT, "max_string_bytes"),
        script(g, "integer overflow", "x = 9223372036854775807 + 1").expect(400, RUNTIME, "overflow"),
        script(g, "huge power", "x = 10 ** 100000").expect(400, RUNTIME, ""),
        script(g, "float infinity", "x = 1e308 * 10").expect(400, RUNTIME, ""),
        script(g, "division by zero", "x = 1 / 0").expect(400, RUNTIME, "division by zero"),
        script(g, "many results", "startLoop(i, 1, 60000)\n v = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" + str(i)\n AddvariableToJSON(str(i), v, d)\nendLoop()\naddResult(d)").expect(507, &["output_too_large"], "max_output_bytes"),
        script(g, "log flood", "startLoop(i, 1, 20000)\n addVar(a, i)\nendLoop()\naddResult(a)").expect(200, OK, "\"logs_truncated\":true"),
        script(g, "memory bomb", format!("s = \"{}\"\nstartLoop(i, 1, 90000)\n variableToList(s + str(i), l)\nendLoop()", "x".repeat(2000))).expect(507, &["memory_limit", "limit_error"], "").within(SLOW),
        script(g, "busy loop", "x = 0\nstartLoop(i, 1, 900000)\n x = x + i * 2 - 1\n s = str(x) + \"-\"\nendLoop()").expect(504, CPU, "").within(SLOW),
        script(g, "date format bomb", format!("getDateTime(\"{}\", 0, \"UTC\", d)", "%Y".repeat(400_000))).expect(400, &["limit_error", "runtime_error"], ""),
    ]
}

/// Parser torture: every malformed script is a syntax error with a
/// position, quickly; odd but valid text runs.
fn parser() -> Vec<Case> {
    let g = "parser";
    vec![
        script(g, "deep parentheses", format!("x = {}1{}", "(".repeat(100_000), ")".repeat(100_000)))
            .expect(400, SYNTAX, ""),
        script(g, "deep brackets", format!("x = {}1{}", "[".repeat(100_000), "]".repeat(100_000)))
            .expect(400, SYNTAX, ""),
        script(g, "deep unary minus", format!("x = {}1", "-".repeat(100_000))).expect(400, SYNTAX, ""),
        script(g, "deep not", format!("x = {}True", "not ".repeat(50_000))).expect(400, SYNTAX, ""),
        script(g, "deep indexing", format!("a = [1]\nx = a{}", "[0]".repeat(50_000))).expect(400, SYNTAX, ""),
        script(g, "deep blocks", format!("{}addVar(a, 1)\n{}", "if(1, 1, '=')\n".repeat(200), "end()\n".repeat(200)))
            .expect(400, SYNTAX, ""),
        script(g, "unbalanced blocks", "if(1, 1, '=')\nstartLoop(i, 1, 2)\nend()").expect(400, SYNTAX, ""),
        script(g, "near-megabyte line of parentheses", "(".repeat(900_000)).expect(400, SYNTAX, ""),
        script(g, "near-megabyte string literal", format!("x = \"{}\"\naddResult(x)", "y".repeat(900_000))).expect(
            200,
            OK,
            "\"success\":true",
        ),
        script(g, "near-megabyte identifier", format!("{} = 1", "v".repeat(900_000))).expect(
            200,
            OK,
            "\"success\":true",
        ),
        script(g, "100k statements", "x = 1\n".repeat(100_000)).expect(200, OK, "\"success\":true"),
        script(g, "100k syntax errors", "x = (\n".repeat(100_000)).expect(400, SYNTAX, "more syntax errors"),
        script(g, "NUL bytes", "addVar(a, 1)\n\0\0\0\naddResult(a)").expect(400, SYNTAX, ""),
        script(g, "NUL inside a string", "x = \"a\0b\"\naddResult(x)").expect(200, OK, "\"success\":true"),
        script(g, "control characters", "addVar(a, 1)\u{1b}[2J\u{7}\naddResult(a)").expect(400, SYNTAX, ""),
        script(g, "bidi override in a name", "a\u{202e}b = 1").expect(400, SYNTAX, ""),
        script(g, "zero-width joiner in a name", "a\u{200d}b = 1").expect(400, SYNTAX, ""),
        script(g, "combining marks", "é = 1\nx = é + 1\naddResult(x)").expect(200, OK, "\"x\":2"),
        script(g, "emoji in a string", "x = \"🦀🦀\"\naddResult(x)").expect(200, OK, "🦀🦀"),
        script(g, "CR-only line ends", "addVar(a, 1)\raddResult(a)").expect(
            400,
            &["syntax_error", "runtime_error"],
            "",
        ),
        script(g, "BOM at the start", "\u{feff}addVar(a, 1)\naddResult(a)").expect(400, SYNTAX, ""),
        script(g, "unterminated string", "x = \"abc").expect(400, SYNTAX, ""),
        script(g, "unterminated template", "x = `abc ${y").expect(400, SYNTAX, ""),
        script(g, "template with an expression", "x = `${1 + 1}`").expect(400, SYNTAX, ""),
        script(g, "ten thousand arguments", format!("addVar(a, {})", vec!["1"; 10_000].join(", ")))
            .expect(400, SYNTAX, ""),
        script(g, "function inside a function", "function f() {\n function g() {\n }\n}").expect(400, SYNTAX, ""),
        script(g, "return outside a function", "return 1").expect(400, SYNTAX, ""),
        script(g, "only comments", "// nothing\n// at all").expect(400, BAD, "empty"),
        script(g, "huge integer literal", "x = 99999999999999999999999999999999\naddResult(x)").expect(
            400,
            &["syntax_error", "runtime_error"],
            "",
        ),
    ]
}

fn body(name: &str, value: impl Into<Vec<u8>>) -> Case {
    raw("body", name, value, "application/json")
}

/// Bodies that are not the JSON object `execute` takes, or that no two
/// parsers would read alike.
fn bodies() -> Vec<Case> {
    let deep = |n: usize| {
        format!(r#"{{"script": "addVar(a, 1)", "variables": {{"v": {}1{}}}}}"#, "[".repeat(n), "]".repeat(n))
    };
    let object = |n: usize| format!(r#"{{"script": "addVar(a, 1)", "x": {}1{}}}"#, r#"{"k":"#.repeat(n), "}".repeat(n));
    vec![
        body("nesting 200 deep", deep(200)).expect(400, BAD, "nested deeper than 100 levels"),
        body("nesting 300k deep", format!(r#"{{"script": "x", "v": {}"#, "[".repeat(300_000))).expect(
            400,
            BAD,
            "nested deeper than 100 levels",
        ),
        body("objects nested 150 deep", object(150)).expect(400, BAD, "nested deeper than 100 levels"),
        body("a value deeper than a script's", deep(97)).expect(
            400,
            &["limit_error", "bad_request"],
            "max_value_depth",
        ),
        body("duplicate top-level key", r#"{"script": "addVar(a, 1)", "script": "addVar(b, 2)"}"#).expect(
            400,
            BAD,
            "duplicate key",
        ),
        body("duplicate nested key", r#"{"script": "addVar(a, 1)", "variables": {"x": 1, "x": 2}}"#).expect(
            400,
            BAD,
            "duplicate key",
        ),
        body("duplicate key by escape", r#"{"script": "addVar(a, 1)", "\u0073cript": "x"}"#).expect(
            400,
            BAD,
            "duplicate key",
        ),
        body("byte order mark", b"\xef\xbb\xbf{\"script\": \"addVar(a, 1)\"}".to_vec()).expect(
            400,
            BAD,
            "not valid JSON",
        ),
        body("number out of range", r#"{"script": "addVar(a, 1)", "n": 1e400}"#).expect(
            400,
            BAD,
            "number out of range",
        ),
        body("a huge integer", r#"{"script": "addParam(n, x)\naddResult(x)", "n": 123456789012345678901234567890}"#)
            .expect(200, OK, "1.2345678901234568e+29"),
        body("a bad escape", r#"{"script": "addVar(a, \x)"}"#).expect(400, BAD, "escape"),
        body("a lone surrogate", r#"{"script": "addVar(a, \ud800)"}"#).expect(400, BAD, "escape"),
        body("invalid UTF-8", b"{\"script\": \"addVar(a, \xff\xfe)\"}".to_vec()).expect(400, BAD, "not valid JSON"),
        body("trailing garbage", r#"{"script": "addVar(a, 1)"} {"#).expect(400, BAD, "trailing"),
        body("empty body", "").expect(400, BAD, "not valid JSON"),
        body("null", "null").expect(400, BAD, "must be a JSON object"),
        body("an array", "[{\"script\": \"addVar(a, 1)\"}]").expect(400, BAD, "must be a JSON object"),
        body("script is a number", r#"{"script": 7}"#).expect(400, BAD, "must be a string"),
        body("script is an object", r#"{"script": {"a": 1}}"#).expect(400, BAD, "must be a string"),
        body("variables is a list", r#"{"script": "addVar(a, 1)", "variables": [1]}"#).expect(
            400,
            BAD,
            "must be a JSON object",
        ),
        body("NUL escaped in the script", r#"{"script": "addVar(a, 1)\u0000"}"#).expect(400, SYNTAX, ""),
        body(
            "ten thousand parameters",
            format!(
                "{{\"script\": \"addParam(k9999, v)\\naddResult(v)\", {}}}",
                (0..10_000).map(|i| format!("\"k{i}\": {i}")).collect::<Vec<_>>().join(", ")
            ),
        )
        .expect(200, OK, "\"v\":9999"),
        body("a 500 KB key", format!("{{\"script\": \"addVar(a, 1)\", \"{}\": 1}}", "k".repeat(500_000))).expect(
            200,
            OK,
            "\"success\":true",
        ),
        body("over the body limit", format!(r#"{{"script": "{}"}}"#, "x".repeat(2 << 20))).expect(
            413,
            &["too_large"],
            "exceeds the limit",
        ),
        raw(
            "body",
            "form-encoded JSON (curl -d)",
            r#"{"script": "addVar(a, 1)\naddResult(a)"}"#,
            "application/x-www-form-urlencoded",
        )
        .expect(200, OK, "\"a\":1"),
        raw("body", "text/plain JSON from a non-browser", r#"{"script": "addVar(a, 1)\naddResult(a)"}"#, "text/plain")
            .expect(200, OK, "\"a\":1"),
        raw(
            "body",
            "multipart label, JSON body",
            r#"{"script": "addVar(a, 1)\naddResult(a)"}"#,
            "multipart/form-data; boundary=x",
        )
        .expect(200, OK, "\"a\":1"),
        raw("body", "a real form", "script=addVar(a%2C%201)", "application/x-www-form-urlencoded").expect(
            400,
            BAD,
            "not valid JSON",
        ),
        raw("body", "XML", "<script>addVar(a, 1)</script>", "application/xml").expect(400, BAD, "not valid JSON"),
        Case {
            request: Request::Raw {
                body: br#"{"script": "addVar(a, 1)"}"#.to_vec(),
                content_type: "application/json",
                headers: vec![("content-encoding", "gzip".into())],
            },
            ..body("gzip label on a plain body", "").expect(200, OK, "\"success\":true")
        },
        Case {
            request: Request::Raw {
                body: br#"{"script": "addVar(a, 1)"}"#.to_vec(),
                content_type: "application/json",
                headers: vec![("x-padding", "p".repeat(100_000))],
            },
            ..body("a 100 KB header", "").expect(431, OK, "")
        },
        Case {
            request: Request::Raw {
                body: br#"{"script": "addVar(a, 1)"}"#.to_vec(),
                content_type: "application/json",
                headers: vec![("origin", "https://evil.example".into())],
            },
            ..body("a cross-origin browser post", "").expect(403, &["cross_origin"], "not allowed")
        },
        Case {
            request: Request::Raw {
                body: br#"{"script": "addVar(a, 1)"}"#.to_vec(),
                content_type: "text/plain",
                headers: vec![("sec-fetch-site", "cross-site".into())],
            },
            ..body("a cross-site form post with no Origin", "").expect(403, &["cross_origin"], "cross-site")
        },
        Case {
            request: Request::Raw {
                body: br#"{"script": "addVar(a, 1)"}"#.to_vec(),
                content_type: "text/plain",
                headers: vec![("origin", "null".into())],
            },
            ..body("the opaque origin null", "").expect(403, &["cross_origin"], "not allowed")
        },
    ]
}

/// A statement as an AVAP string literal.
fn literal(statement: &str) -> String {
    statement.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn sql_lite(name: &str, statement: &str) -> Case {
    let text = format!("ormDirect(\"{}\", r)\naddResult(r)", literal(statement));
    script("sql-sqlite", name, text)
}

fn sql_pg(name: &str, statement: &str) -> Case {
    let text = format!("ormDirect(\"{}\", r)\naddResult(r)", literal(statement));
    script("sql-postgres", name, text).on(Host::Pg)
}

/// SQL: stacked statements, comment and quote tricks, dangerous functions,
/// pragmas; on each dialect's own rules.
fn sql() -> Vec<Case> {
    vec![
        sql_pg("stacked statements", "SELECT 1; DROP TABLE users").expect(400, RUNTIME, "one SQL statement at a time"),
        sql_pg("nested comments hide a DO", "/* /* */ SELECT */ DO $$BEGIN END$$").expect(400, RUNTIME, "'DO' statements are not allowed"),
        sql_pg("pg_read_file", "SELECT pg_read_file('/etc/passwd') AS f").expect(400, RUNTIME, "'pg_read_file' is not allowed"),
        sql_pg("pg_ls_dir", "SELECT pg_ls_dir('.') AS f").expect(400, RUNTIME, "'pg_ls_dir' is not allowed"),
        sql_pg("lo_import", "SELECT lo_import('/etc/passwd') AS f").expect(400, RUNTIME, "'lo_import' is not allowed"),
        sql_pg("a quoted pg_read_file", "SELECT \"pg_read_file\"('/etc/passwd') AS f").expect(400, RUNTIME, "'pg_read_file' is not allowed"),
        sql_pg("COPY TO PROGRAM", "COPY (SELECT 1) TO PROGRAM 'id'").expect(400, RUNTIME, "'COPY' statements are not allowed"),
        sql_pg("creating a function", "CREATE FUNCTION sneaky() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$").expect(400, RUNTIME, "'CREATE FUNCTION' statements are not allowed"),
        sql_pg("creating a procedure", "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''x'''; END $$").expect(400, RUNTIME, "'CREATE PROCEDURE' statements are not allowed"),
        sql_pg("an untrusted language", "CREATE FUNCTION py() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$").expect(400, RUNTIME, "'CREATE FUNCTION' statements are not allowed"),
        sql_pg("a file read in an operator's function", "SELECT reads_passwd() AS f").expect(400, RUNTIME, "permission denied for function pg_read_file"),
        sql_pg("a program run in an operator's function", "SELECT runs_program()").expect(400, RUNTIME, "pg_execute_server_program"),
        sql_pg("a large object import in an operator's function", "SELECT imports_passwd()::text AS o").expect(400, RUNTIME, "permission denied for function lo_import"),
        sql_pg("settings through pg_settings", "UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'").expect(400, RUNTIME, "'pg_settings' is not allowed"),
        sql_pg("SQL text through query_to_xml", "SELECT query_to_xml('SELECT 1', true, false, '') AS x").expect(400, RUNTIME, "'query_to_xml' is not allowed"),
        sql_pg("a comment inside an operator (</*)", "SELECT 1 </* '*/ 2 AS a, pg_read_file('/etc/hostname') AS y --'").expect(400, RUNTIME, "where PostgreSQL starts a comment"),
        sql_pg("a comment inside an operator (>--)", "SELECT 2 >-- '\n 1 AS a, pg_read_file('/etc/hostname') AS y --'").expect(400, RUNTIME, "where PostgreSQL starts a comment"),
        sql_pg("an error that echoes a huge value", "SELECT repeat(chr(1), 8000000)::int AS n").expect(400, RUNTIME, "bytes cut"),
        script("sql-postgres", "a JSON document bound as jsonb", "d = {\"k\": [1, 2, {\"x\": \"y\"}]}\normDirect(`SELECT ${d}::jsonb -> 'k' -> 2 ->> 'x' AS v`, r)\naddResult(r)").on(Host::Pg).expect(200, OK, "\"v\":\"y\""),
        sql_pg("SET ROLE", "SET ROLE postgres").expect(400, RUNTIME, "'SET' statements are not allowed"),
        sql_pg("ALTER ROLE to superuser", "ALTER ROLE CURRENT_USER SUPERUSER").expect(400, RUNTIME, "'ALTER ROLE' statements are not allowed"),
        sql_pg("ALTER ROLE password", "ALTER ROLE CURRENT_USER PASSWORD 'x'").expect(400, RUNTIME, "'ALTER ROLE' statements are not allowed"),
        sql_pg("CREATE EXTENSION", "CREATE EXTENSION dblink").expect(400, RUNTIME, "'CREATE EXTENSION' statements are not allowed"),
        sql_pg("dblink", "SELECT dblink_connect('host=10.0.0.1')").expect(400, RUNTIME, "'dblink_connect' is not allowed"),
        sql_pg("DO", "DO $$ BEGIN PERFORM pg_sleep(10); END $$").expect(400, RUNTIME, "'DO' statements are not allowed"),
        sql_pg("EXPLAIN ANALYZE of a DO", "EXPLAIN ANALYZE DO $$ $$").expect(400, RUNTIME, "EXPLAIN may only explain"),
        sql_pg("set_config", "SELECT set_config('statement_timeout', '0', false) AS s").expect(400, RUNTIME, "'set_config' is not allowed"),
        sql_pg("pg_terminate_backend", "SELECT pg_terminate_backend(pg_backend_pid()) AS t").expect(400, RUNTIME, "'pg_terminate_backend' is not allowed"),
        sql_pg("other sessions' statements", "SELECT query FROM pg_stat_activity").expect(400, RUNTIME, "'pg_stat_activity' is not allowed"),
        sql_pg("the data directory", "SELECT current_setting('data_directory') AS d").expect(400, RUNTIME, "must be superuser"),
        sql_pg("a long sleep", "SELECT pg_sleep(100)").expect(400, RUNTIME, "statement timeout").within(SLOW),
        sql_pg("a row of four 5 MB values", "SELECT repeat('x', 5000000) AS a, repeat('y', 5000000) AS b, repeat('z', 5000000) AS c, repeat('w', 5000000) AS d").expect(400, RUNTIME, "larger than the reply cap").within(SLOW),
        sql_pg("one value over the reply cap", "SELECT repeat('x', 9000000) AS a").expect(400, RUNTIME, "larger than the reply cap"),
        sql_pg("ten million rows", "SELECT generate_series(1, 10000000) AS n").expect(400, RUNTIME, "row cap").within(SLOW),
        sql_pg("an escaped quote cannot end the string", "SELECT E'\\'; DROP TABLE users; --' AS s").expect(200, OK, "DROP TABLE users"),
        sql_pg("a dollar quote cannot end the statement", "SELECT $a$ ; DROP TABLE users; $a$ AS s").expect(200, OK, "DROP TABLE users"),
        sql_pg("BEGIN", "BEGIN").expect(400, RUNTIME, "'BEGIN' statements are not allowed"),
        sql_pg("LISTEN", "LISTEN channel").expect(400, RUNTIME, "'LISTEN' statements are not allowed"),
        sql_pg("NOTIFY", "NOTIFY channel").expect(400, RUNTIME, "'NOTIFY' statements are not allowed"),
        sql_pg("VACUUM", "VACUUM users").expect(400, RUNTIME, "'VACUUM' statements are not allowed"),
        sql_pg("ALTER SYSTEM", "ALTER SYSTEM SET shared_buffers = '1MB'").expect(400, RUNTIME, "'ALTER SYSTEM' statements are not allowed"),
        sql_pg("GRANT", "GRANT ALL ON users TO PUBLIC").expect(400, RUNTIME, "'GRANT' statements are not allowed"),
        sql_pg("a deep expression", &format!("SELECT {}1{} AS x", "(".repeat(10_000), ")".repeat(10_000))).expect(400, RUNTIME, ""),
        sql_lite("EXPLAIN PRAGMA hard_heap_limit (the reviewer's)", "EXPLAIN PRAGMA hard_heap_limit = 1").expect(400, RUNTIME, "EXPLAIN may only explain"),
        sql_lite("EXPLAIN PRAGMA writable_schema", "EXPLAIN PRAGMA writable_schema = 1").expect(400, RUNTIME, "EXPLAIN may only explain"),
        sql_lite("EXPLAIN QUERY PLAN PRAGMA trusted_schema", "EXPLAIN QUERY PLAN PRAGMA trusted_schema = 1").expect(400, RUNTIME, "EXPLAIN may only explain"),
        sql_lite("PRAGMA", "PRAGMA writable_schema = ON").expect(400, RUNTIME, "'PRAGMA' statements are not allowed"),
        sql_lite("a commented PRAGMA", "/* hi */ PRAGMA hard_heap_limit = 1").expect(400, RUNTIME, "'PRAGMA' statements are not allowed"),
        sql_lite("ATTACH", "ATTACH DATABASE '/tmp/avap-security.db' AS x").expect(400, RUNTIME, "'ATTACH' statements are not allowed"),
        sql_lite("VACUUM INTO", "VACUUM INTO '/tmp/avap-security.db'").expect(400, RUNTIME, "'VACUUM' statements are not allowed"),
        sql_lite("stacked ATTACH", "SELECT 1; ATTACH 'x' AS y").expect(400, RUNTIME, "one SQL statement at a time"),
        sql_lite("load_extension", "SELECT load_extension('/tmp/x.so') AS x").expect(400, RUNTIME, "'load_extension' is not allowed"),
        sql_lite("readfile", "SELECT readfile('/etc/passwd') AS x").expect(400, RUNTIME, "'readfile' is not allowed"),
        sql_lite("randomblob of 1 GB", "SELECT length(randomblob(1000000000)) AS n").expect(400, RUNTIME, "too big"),
        sql_lite("a runaway recursive query", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS c FROM r").expect(400, RUNTIME, "statement timeout"),
        sql_lite("a string doubled in SQL", "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) SELECT length(s) AS n FROM r").expect(400, RUNTIME, "too big"),
        sql_lite("the dbstat virtual table", "CREATE VIRTUAL TABLE v USING dbstat").expect(400, RUNTIME, "not authorized"),
        script("sql-sqlite", "filling a temporary table", "ormDirect(\"CREATE TEMP TABLE t (b BLOB)\", c)\nstartLoop(i, 1, 20)\n ormDirect(\"INSERT INTO temp.t VALUES (randomblob(1000000))\", r)\nendLoop()").expect(400, RUNTIME, "full"),
        script("sql-sqlite", "filling the scratch database", "ormDirect(\"CREATE TABLE t (b BLOB)\", c)\nstartLoop(i, 1, 20)\n ormDirect(\"INSERT INTO t VALUES (randomblob(1000000))\", r)\nendLoop()").expect(400, RUNTIME, "full"),
        sql_lite("the table the previous script filled", "SELECT count(*) AS n FROM t").expect(400, RUNTIME, "no such table: t"),
        sql_lite("BEGIN", "BEGIN IMMEDIATE").expect(400, RUNTIME, "'BEGIN' statements are not allowed"),
    ]
}

/// SSRF on loopback: every spelling of this machine is refused before any
/// connection (the `{closed}` listener counts what reaches it).
fn ssrf_loopback() -> Vec<Case> {
    let get = |name: &str, url: &str| {
        script("ssrf", name, format!("RequestGet(\"{url}\", , , r)\naddResult(r)")).expect(
            400,
            RUNTIME,
            "destination refused",
        )
    };
    vec![
        get("loopback literal", "http://127.0.0.1:{closed}/"),
        get("localhost", "http://localhost:{closed}/"),
        get("IPv6 loopback", "http://[::1]:{closed}/"),
        get("decimal IPv4", "http://2130706433:{closed}/"),
        get("hex IPv4", "http://0x7f000001:{closed}/"),
        get("octal IPv4", "http://0177.0.0.1:{closed}/"),
        get("short IPv4", "http://127.1:{closed}/"),
        get("IPv4-mapped IPv6", "http://[::ffff:127.0.0.1]:{closed}/"),
        get("IPv4-compatible IPv6", "http://[::127.0.0.1]:{closed}/"),
        get("the unspecified address", "http://0.0.0.0:{closed}/"),
        get("userinfo before the host", "http://user:pass@127.0.0.1:{closed}/"),
        get("a name the test DNS points at loopback", "http://loop.test:{closed}/"),
        get("a name with loopback in both families", "http://mixed.test:{closed}/"),
        get("a redirect from the allowed service to loopback", "{svc}/redirect?to=http://127.0.0.1:{closed}/"),
        get("a redirect to the test DNS's loopback name", "{svc}/redirect?to=http://loop.test:{closed}/"),
        script("ssrf", "a file URL", "RequestGet(\"file:///etc/passwd\", , , r)").expect(
            400,
            RUNTIME,
            "only http and https",
        ),
        script("ssrf", "a gopher URL", "RequestGet(\"gopher://127.0.0.1:{closed}/_x\", , , r)").expect(
            400,
            RUNTIME,
            "only http and https",
        ),
        script("ssrf", "a redirect to a file URL", "RequestGet(\"{svc}/redirect?to=file:///etc/passwd\", , , r)")
            .expect(400, RUNTIME, "only http and https"),
        script("ssrf", "overriding Host", "RequestGet(\"{svc}/text\", , {\"Host\": \"internal\"}, r)").expect(
            400,
            RUNTIME,
            "set by the host",
        ),
        script("ssrf", "CRLF in a header", "RequestGet(\"{svc}/text\", , {\"X-A\": \"a\\r\\nHost: x\"}, r)").expect(
            400,
            RUNTIME,
            "invalid value for header",
        ),
        script("ssrf", "a POST to loopback", "RequestPost(\"http://127.0.0.1:{closed}/\", , , \"x\", r)").expect(
            400,
            RUNTIME,
            "destination refused",
        ),
    ]
}

/// Every case.
pub fn all() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(exhaustion());
    all.extend(parser());
    all.extend(bodies());
    all.extend(sql());
    all.extend(ssrf_loopback());
    all
}

/// The body and headers a case sends.
pub fn render(case: &Case, svc: &str, closed: u16) -> (Vec<u8>, &'static str, Vec<(&'static str, String)>) {
    let fill = |s: &str| s.replace("{svc}", svc).replace("{closed}", &closed.to_string());
    match &case.request {
        Request::Script(s) => {
            (serde_json::to_vec(&json!({ "script": fill(s) })).unwrap_or_default(), "application/json", vec![])
        }
        Request::Raw { body, content_type, headers } => (body.clone(), content_type, headers.clone()),
    }
}

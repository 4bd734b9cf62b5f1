//! The built-in names: the 27 commands of the standard catalog as the typed
//! [`Builtin`] (with their ordered parameters and kinds, as in COMMANDS.md,
//! and their [`Group`]), and the functions usable in expressions.
//!
//! This is data only: the parser resolves a command name to a [`Builtin`]
//! once, and the evaluator and `commands` work with the variant.

/// Parameter kind (COMMANDS.md): T target, S source, V value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Target,
    Source,
    Value,
}

/// How a command is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Structural: the parser turns it into a block, the evaluator runs it.
    Control,
    /// Implemented by `commands`.
    Builtin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
}

/// One row of the command table.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub builtin: Builtin,
    pub name: &'static str,
    pub params: &'static [Param],
    pub group: Group,
}

impl CommandSpec {
    /// The parameter names, e.g. `targetVarName, varValue`.
    pub fn interface(&self) -> String {
        self.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    }

    /// Position of the target parameter, if the command has one.
    pub fn target_index(&self) -> Option<usize> {
        self.params.iter().position(|p| p.kind == Kind::Target)
    }

    /// The error for a wrong number of arguments.
    pub fn arity_message(&self, got: usize) -> String {
        let n = self.params.len();
        format!("{} expects {n} argument{} ({}), got {got}", self.name, if n == 1 { "" } else { "s" }, self.interface())
    }
}

/// A command of the standard catalog, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    AddVar,
    AddResult,
    AddParam,
    GetQueryParamList,
    If,
    Else,
    End,
    StartLoop,
    EndLoop,
    Try,
    Exception,
    RequestGet,
    RequestPost,
    OrmDirect,
    EncodeSha256,
    EncodeMd5,
    RandomString,
    Replace,
    GetRegex,
    GetDateTime,
    GetTimeStamp,
    StampToDatetime,
    GetListLen,
    ItemFromList,
    VariableToList,
    AddVariableToJson,
    VariableFromJson,
}

use Builtin as B;

impl Builtin {
    /// Every command, in table order.
    pub const ALL: [Builtin; 27] = [
        B::AddVar,
        B::AddResult,
        B::AddParam,
        B::GetQueryParamList,
        B::If,
        B::Else,
        B::End,
        B::StartLoop,
        B::EndLoop,
        B::Try,
        B::Exception,
        B::RequestGet,
        B::RequestPost,
        B::OrmDirect,
        B::EncodeSha256,
        B::EncodeMd5,
        B::RandomString,
        B::Replace,
        B::GetRegex,
        B::GetDateTime,
        B::GetTimeStamp,
        B::StampToDatetime,
        B::GetListLen,
        B::ItemFromList,
        B::VariableToList,
        B::AddVariableToJson,
        B::VariableFromJson,
    ];

    /// Finds a command by its exact (case-sensitive) name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        TABLE.iter().find(|c| c.name == name).map(|c| c.builtin)
    }

    /// The command's row of the table.
    pub fn spec(self) -> &'static CommandSpec {
        // In range: the table has one row per variant, in variant order
        // (checked at compile time below).
        &TABLE[self as usize]
    }

    /// The command's name as scripts write it, e.g. `addVar`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The ordered parameters.
    pub fn params(self) -> &'static [Param] {
        self.spec().params
    }

    pub fn group(self) -> Group {
        self.spec().group
    }
}

const fn t(name: &'static str) -> Param {
    Param { name, kind: Kind::Target }
}
const fn s(name: &'static str) -> Param {
    Param { name, kind: Kind::Source }
}
const fn v(name: &'static str) -> Param {
    Param { name, kind: Kind::Value }
}
const fn command(builtin: Builtin, name: &'static str, params: &'static [Param]) -> CommandSpec {
    CommandSpec { builtin, name, params, group: Group::Builtin }
}
const fn control(builtin: Builtin, name: &'static str, params: &'static [Param]) -> CommandSpec {
    CommandSpec { builtin, name, params, group: Group::Control }
}

/// The standard catalog, one row per [`Builtin`] in variant order.
static TABLE: [CommandSpec; 27] = [
    // Variables and request
    command(B::AddVar, "addVar", &[t("targetVarName"), v("varValue")]),
    command(B::AddResult, "addResult", &[s("sourceVariable")]),
    command(B::AddParam, "addParam", &[v("param"), t("variable")]),
    command(B::GetQueryParamList, "getQueryParamList", &[t("TargetVariable")]),
    // Control flow
    control(B::If, "if", &[v("variable"), v("variableValue"), v("comparator")]),
    control(B::Else, "else", &[]),
    control(B::End, "end", &[]),
    control(B::StartLoop, "startLoop", &[t("varName"), v("from"), v("to")]),
    control(B::EndLoop, "endLoop", &[]),
    control(B::Try, "try", &[]),
    control(B::Exception, "exception", &[t("error")]),
    // HTTP
    command(B::RequestGet, "RequestGet", &[v("url"), v("querystring"), v("headers"), t("o_result")]),
    command(B::RequestPost, "RequestPost", &[v("url"), v("querystring"), v("headers"), v("body"), t("o_result")]),
    // Database
    command(B::OrmDirect, "ormDirect", &[v("prompt"), t("TargetVariable")]),
    // Text and crypto
    command(B::EncodeSha256, "encodeSHA256", &[v("SourceVariable"), t("TargetVariable")]),
    command(B::EncodeMd5, "encodeMD5", &[v("SourceVariable"), t("TargetVariable")]),
    command(B::RandomString, "randomString", &[v("Pattern"), v("Length"), t("TargetVariable")]),
    command(B::Replace, "replace", &[v("SourceVariable"), v("rePattern"), v("newValue"), t("TargetVariable")]),
    command(B::GetRegex, "getRegex", &[v("SourceVariable"), v("rePattern"), t("TargetVariable")]),
    // Date and time
    command(B::GetDateTime, "getDateTime", &[v("Format"), v("TimeDelta"), v("TimeZone"), t("TargetVariable")]),
    command(B::GetTimeStamp, "getTimeStamp", &[v("DateString"), v("Format"), v("TimeDelta"), t("TargetVariable")]),
    command(B::StampToDatetime, "stampToDatetime", &[v("timestamp"), v("Format"), v("TimeDelta"), t("TargetVariable")]),
    // Collections and JSON
    command(B::GetListLen, "getListLen", &[s("SourceVariable"), t("TargetVariable")]),
    command(B::ItemFromList, "itemFromList", &[s("SourceVariable"), v("index"), t("TargetVariable")]),
    command(B::VariableToList, "variableToList", &[v("element"), t("TargetVariable")]),
    command(B::AddVariableToJson, "AddvariableToJSON", &[v("Key"), v("Value"), t("TargetVariable")]),
    command(B::VariableFromJson, "variableFromJSON", &[s("SourceVariable"), v("key"), t("TargetVariable")]),
];

// Row `i` of the table is variant `i`, and so is `Builtin::ALL[i]`.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        assert!(TABLE[i].builtin as usize == i && Builtin::ALL[i] as usize == i);
        i += 1;
    }
};

/// The functions usable in expressions (`str(x)`, ...). They are not
/// commands: no script or catalog function may take their names.
pub const FUNCTIONS: &[&str] = &["str", "int", "float", "len", "bool"];

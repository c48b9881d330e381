//! The agent options of a job's `config`: `model`, `maxTurns`, `extraArgs` and `pushBranch`.
//!
//! `extraArgs` passes flags straight to the agent's command line, so it is held to a per-agent
//! allowlist ([`allowed_flags`]): flags that change what the agent may do inside its sandbox
//! or how it thinks, never ones that could redirect it (another model endpoint, settings
//! files, MCP servers, hooks) and so leak the operator's API key or the job's token. The
//! backend checks them at submit (a 400 naming `config.extraArgs`) and the worker again
//! before it builds the command line, both with [`check_extra_args`].

use crate::agent::AgentType;
use crate::job::JobConfig;
use crate::new_job::check_branch;
use crate::validation::ValidationErrors;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MAX_TURNS: u32 = 1000;
pub const MAX_MODEL_BYTES: usize = 200;
pub const MAX_EXTRA_ARGS: usize = 32;
pub const MAX_EXTRA_ARG_BYTES: usize = 4096;
/// The prefix of the branch a job pushes to when `pushBranch` is `true`.
pub const DEFAULT_PUSH_PREFIX: &str = "orca/";

/// `config.pushBranch`: `true` for `orca/<job id>`, or the branch name itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PushBranch {
    Enabled(bool),
    Named(String),
}

impl PushBranch {
    /// The branch to push to, or `None` when pushing is off.
    pub fn target(&self, job_id: &str) -> Option<String> {
        match self {
            Self::Enabled(false) => None,
            Self::Enabled(true) => Some(format!("{DEFAULT_PUSH_PREFIX}{job_id}")),
            Self::Named(b) => Some(b.clone()),
        }
    }
}

/// What a flag of the allowlist takes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue {
    /// Nothing: a switch.
    Switch,
    /// A word: letters, digits, `-`, `_`, `.`, `:`, `/`.
    Word,
    /// A non-negative decimal number.
    Number,
    /// Free text (no NUL), e.g. a system prompt addition or a tool list.
    Text,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// `key=value` with the key one of these (Codex `-c`).
    ConfigKey(&'static [&'static str]),
}

/// One allowed flag; `aliases` are other spellings of the same flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub value: FlagValue,
}

const fn flag(name: &'static str, aliases: &'static [&'static str], value: FlagValue) -> FlagSpec {
    FlagSpec { name, aliases, value }
}

const CLAUDE_FLAGS: &[FlagSpec] = &[
    flag("--effort", &[], FlagValue::Word),
    flag("--fallback-model", &[], FlagValue::Word),
    flag("--max-budget-usd", &[], FlagValue::Number),
    flag("--append-system-prompt", &[], FlagValue::Text),
    flag("--allowedTools", &["--allowed-tools"], FlagValue::Text),
    flag("--disallowedTools", &["--disallowed-tools"], FlagValue::Text),
    flag("--tools", &[], FlagValue::Text),
    flag(
        "--permission-mode",
        &[],
        FlagValue::OneOf(&["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]),
    ),
    flag("--bare", &[], FlagValue::Switch),
];

const CODEX_FLAGS: &[FlagSpec] = &[
    flag("--sandbox", &["-s"], FlagValue::OneOf(&["read-only", "workspace-write", "danger-full-access"])),
    flag(
        "--config",
        &["-c"],
        FlagValue::ConfigKey(&[
            "model_reasoning_effort",
            "model_reasoning_summary",
            "model_verbosity",
            "hide_agent_reasoning",
            "show_raw_agent_reasoning",
        ]),
    ),
];

/// The flags `extraArgs` may hold for `agent`.
pub fn allowed_flags(agent: &str) -> &'static [FlagSpec] {
    match agent {
        "claude-code" => CLAUDE_FLAGS,
        "codex" => CODEX_FLAGS,
        _ => &[],
    }
}

/// Checks `args` against `agent`'s allowlist and returns them normalised: each flag under its
/// main name, followed by its value as a separate argument (`--effort=high` → `--effort`, `high`).
pub fn check_extra_args(agent: &str, args: &[String]) -> Result<Vec<String>, String> {
    let allowed = allowed_flags(agent);
    if args.is_empty() {
        return Ok(vec![]);
    }
    if allowed.is_empty() {
        return Err(format!("agent {agent} takes no extra arguments"));
    }
    if args.len() > MAX_EXTRA_ARGS {
        return Err(format!("must hold at most {MAX_EXTRA_ARGS} strings"));
    }
    if let Some(a) = args.iter().find(|a| a.len() > MAX_EXTRA_ARG_BYTES || a.contains('\0')) {
        let shown: String = a.chars().take(40).collect();
        return Err(format!("`{shown}`: each argument must be at most {MAX_EXTRA_ARG_BYTES} bytes, without NUL"));
    }
    let names = || allowed.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let Some(spec) = allowed.iter().find(|f| f.name == name || f.aliases.contains(&name)) else {
            let shown: String = arg.chars().take(40).collect();
            return Err(format!("`{shown}` is not an allowed flag for {agent}; allowed: {}", names()));
        };
        out.push(spec.name.to_owned());
        if spec.value == FlagValue::Switch {
            if inline.is_some() {
                return Err(format!("{} takes no value", spec.name));
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("{} needs a value", spec.name))?,
        };
        check_value(spec, &value)?;
        out.push(value);
    }
    Ok(out)
}

fn check_value(spec: &FlagSpec, v: &str) -> Result<(), String> {
    let name = spec.name;
    if v.starts_with('-') {
        return Err(format!("{name}: the value must not start with '-'"));
    }
    let word = |s: &str| {
        !s.is_empty() && s.len() <= 200 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    };
    match spec.value {
        FlagValue::Switch => Ok(()),
        FlagValue::Word if word(v) => Ok(()),
        FlagValue::Word => Err(format!("{name}: the value must be a word (letters, digits, - _ . : /)")),
        FlagValue::Number if !v.is_empty() && v.parse::<f64>().is_ok_and(|n| n.is_finite() && n >= 0.0) => Ok(()),
        FlagValue::Number => Err(format!("{name}: the value must be a non-negative number")),
        FlagValue::Text if !v.trim().is_empty() => Ok(()),
        FlagValue::Text => Err(format!("{name}: the value must not be empty")),
        FlagValue::OneOf(options) if options.contains(&v) => Ok(()),
        FlagValue::OneOf(options) => Err(format!("{name}: the value must be one of {}", options.join(", "))),
        FlagValue::ConfigKey(keys) => match v.split_once('=') {
            Some((k, val)) if keys.contains(&k.trim()) && word(val.trim().trim_matches('"')) => Ok(()),
            _ => Err(format!(
                "{name}: the value must be key=value with a simple value and key one of {}",
                keys.join(", ")
            )),
        },
    }
}

/// Whether `model` is a plausible model name (no spaces, quotes or shell characters).
pub fn check_model(model: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:/@[]".contains(c);
    if model.is_empty() || model.len() > MAX_MODEL_BYTES || model.starts_with('-') || !model.chars().all(ok) {
        return Err(format!(
            "must be 1 to {MAX_MODEL_BYTES} characters of letters, digits and - _ . : / @ [ ], not starting with '-'"
        ));
    }
    Ok(())
}

/// Reads `model`, `maxTurns`, `extraArgs` and `pushBranch` from a submitted `config` object.
pub fn parse_into(obj: &Map<String, Value>, cfg: &mut JobConfig, errs: &mut ValidationErrors) {
    match obj.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) => match check_model(m) {
            Ok(()) => cfg.model = Some(m.clone()),
            Err(e) => errs.push("config.model", e),
        },
        Some(_) => errs.push("config.model", "must be a string"),
    }
    match obj.get("maxTurns") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TURNS as u64).contains(&n) => cfg.max_turns = Some(n as u32),
            _ => errs.push("config.maxTurns", format!("must be a whole number from 1 to {MAX_TURNS}")),
        },
    }
    match obj.get("extraArgs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            match items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>() {
                Some(args) => cfg.extra_args = Some(args),
                None => errs.push("config.extraArgs", "must be an array of strings"),
            }
        }
        Some(_) => errs.push("config.extraArgs", "must be an array of strings"),
    }
    match obj.get("pushBranch") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => cfg.push_branch = Some(PushBranch::Enabled(*b)),
        Some(Value::String(b)) => match check_branch(b) {
            Ok(()) => cfg.push_branch = Some(PushBranch::Named(b.clone())),
            Err(e) => errs.push("config.pushBranch", e),
        },
        Some(_) => errs.push("config.pushBranch", "must be true, false or a branch name"),
    }
}

/// The checks that need the rest of the job: the extra-args allowlist of its agent, and a
/// repository to push to. `prefix` names the fields (`config.` for the API).
pub fn check(cfg: &JobConfig, agent: &AgentType, has_repo: bool, prefix: &str, errs: &mut ValidationErrors) {
    if let Some(args) = &cfg.extra_args
        && let Err(e) = check_extra_args(agent.as_str(), args)
    {
        errs.push(format!("{prefix}extraArgs"), e);
    }
    if let Some(m) = &cfg.model
        && let Err(e) = check_model(m)
    {
        errs.push(format!("{prefix}model"), e);
    }
    if cfg.max_turns.is_some_and(|n| !(1..=MAX_TURNS).contains(&n)) {
        errs.push(format!("{prefix}maxTurns"), format!("must be a whole number from 1 to {MAX_TURNS}"));
    }
    match &cfg.push_branch {
        Some(PushBranch::Named(b)) if check_branch(b).is_err() => {
            errs.push(format!("{prefix}pushBranch"), "is not a valid git branch name")
        }
        Some(p) if !has_repo && p.target("x").is_some() => {
            errs.push(format!("{prefix}pushBranch"), "needs repoUrl: there is no repository to push to")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extra_args_are_normalised() {
        assert_eq!(
            check_extra_args("claude-code", &s(&["--effort=high", "--bare", "--allowed-tools", "Bash(git *) Edit"]))
                .unwrap(),
            s(&["--effort", "high", "--bare", "--allowedTools", "Bash(git *) Edit"])
        );
        assert_eq!(
            check_extra_args("codex", &s(&["-s", "workspace-write", "-c", "model_reasoning_effort=high"])).unwrap(),
            s(&["--sandbox", "workspace-write", "--config", "model_reasoning_effort=high"])
        );
        assert_eq!(check_extra_args("echo", &[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn extra_args_outside_the_allowlist_are_refused() {
        let bad = |agent: &str, args: &[&str]| check_extra_args(agent, &s(args)).unwrap_err();
        assert!(bad("claude-code", &["--settings", "{}"]).contains("not an allowed flag"));
        assert!(bad("claude-code", &["--mcp-config", "x"]).contains("allowed: --effort"));
        assert!(bad("claude-code", &["--effort"]).contains("needs a value"));
        assert!(bad("claude-code", &["--effort", "--bare"]).contains("must not start with '-'"));
        assert!(bad("claude-code", &["--effort", "hi gh"]).contains("word"));
        assert!(bad("claude-code", &["--bare=1"]).contains("no value"));
        assert!(bad("claude-code", &["--permission-mode", "yolo"]).contains("one of"));
        assert!(bad("claude-code", &["--max-budget-usd", "-1"]).contains("'-'"));
        assert!(bad("claude-code", &["--max-budget-usd", "NaN"]).contains("number"));
        assert!(bad("codex", &["-c", "model_providers.x.base_url=http://evil"]).contains("key one of"));
        assert!(bad("codex", &["--dangerously-bypass-approvals-and-sandbox"]).contains("not an allowed"));
        assert!(bad("echo", &["--x"]).contains("takes no extra arguments"));
        assert!(bad("claude-code", &["positional"]).contains("not an allowed flag"));
        let many: Vec<&str> = std::iter::repeat_n("--bare", MAX_EXTRA_ARGS + 1).collect();
        assert!(bad("claude-code", &many).contains("at most"));
    }

    #[test]
    fn push_branch_targets() {
        assert_eq!(PushBranch::Enabled(true).target("j1").as_deref(), Some("orca/j1"));
        assert_eq!(PushBranch::Enabled(false).target("j1"), None);
        assert_eq!(PushBranch::Named("fix/x".into()).target("j1").as_deref(), Some("fix/x"));
        assert_eq!(serde_json::to_value(PushBranch::Enabled(true)).unwrap(), serde_json::json!(true));
        assert_eq!(
            serde_json::from_value::<PushBranch>(serde_json::json!("b")).unwrap(),
            PushBranch::Named("b".into())
        );
    }

    #[test]
    fn models() {
        for ok in ["claude-opus-5-5", "gpt-5.5", "us.anthropic.claude:1", "org/model@v2", "claude-x[1m]"] {
            assert!(check_model(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a;b", "$(x)"] {
            assert!(check_model(bad).is_err(), "{bad}");
        }
    }
}

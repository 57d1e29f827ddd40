//! Command-line parse errors as one line, `apoyo: <what was wrong>`, built only from clap's
//! error kind and the names of our own flags and commands: clap's own message repeats the
//! offending value, which may be a clave de elector or a location.

use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, ErrorKind as K};

use crate::{Cli, EXIT_USAGE};

/// `--help` and `--version` print clap's normal output and exit 0. Every other parse error
/// becomes one line, `apoyo: <what was wrong>`, naming the flag but never the value given
/// (a value may be a clave de elector or a location), and exit 2.
pub(crate) fn parse_failure(e: &clap::Error) -> ExitCode {
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion => {
            // Nothing useful is left to do if stdout is gone.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("apoyo: {}", parse_error_line(e));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The one-line description of a clap parse error, built only from the error's kind and the
/// names of our own flags and commands: clap's own message repeats the offending value.
fn parse_error_line(e: &clap::Error) -> String {
    match e.kind() {
        K::ValueValidation | K::InvalidValue => format!("invalid value for {}", arg(e)),
        K::MissingRequiredArgument => {
            let missing = flags(e, ContextKind::InvalidArg);
            if missing.is_empty() {
                "a required argument is missing".to_string()
            } else {
                format!("missing required {}", missing.join(", "))
            }
        }
        K::UnknownArgument => unknown_argument(e),
        K::InvalidSubcommand => {
            format!(
                "unknown command{}",
                hint(e, ContextKind::SuggestedSubcommand)
            )
        }
        K::MissingSubcommand | K::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a command is missing (see apoyo --help)".to_string()
        }
        K::ArgumentConflict => match flags(e, ContextKind::PriorArg).first() {
            Some(prior) if prior != &arg(e) => {
                format!("{} cannot be used with {prior}", arg(e))
            }
            _ => format!("{} cannot be given more than once", arg(e)),
        },
        K::NoEquals | K::TooManyValues | K::TooFewValues | K::WrongNumberOfValues => {
            format!("wrong number of values for {}", arg(e))
        }
        K::InvalidUtf8 => "an argument is not valid UTF-8".to_string(),
        _ => format!("invalid command line (see {} --help)", command(e)),
    }
}

/// An unexpected argument: named when it is a flag. A bare word here is something the user
/// typed as a value: never echo it.
fn unknown_argument(e: &clap::Error) -> String {
    match flags(e, ContextKind::InvalidArg)
        .iter()
        .find(|f| f.starts_with('-'))
    {
        Some(flag) => format!(
            "unexpected argument {flag}{} (see {} --help)",
            hint(e, ContextKind::SuggestedArg),
            command(e)
        ),
        None => format!("an unexpected argument (see {} --help)", command(e)),
    }
}

/// The flag and command names in one context of the error (see [`flag_name`]).
fn flags(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    let mut out = Vec::new();
    match e.get(kind) {
        Some(ContextValue::String(s)) => out.extend(flag_name(s)),
        Some(ContextValue::Strings(v)) => out.extend(v.iter().filter_map(|s| flag_name(s))),
        Some(ContextValue::StyledStr(s)) => out.extend(flag_name(&s.to_string())),
        Some(ContextValue::StyledStrs(v)) => {
            out.extend(v.iter().filter_map(|s| flag_name(&s.to_string())))
        }
        _ => {}
    }
    out
}

/// The argument the error is about, or "an argument".
fn arg(e: &clap::Error) -> String {
    flags(e, ContextKind::InvalidArg)
        .into_iter()
        .next()
        .unwrap_or_else(|| "an argument".to_string())
}

/// clap's suggestion, as " (did you mean …?)", or nothing.
fn hint(e: &clap::Error, kind: ContextKind) -> String {
    // Never suggest a hidden (test support) command.
    let top = Cli::command();
    let shown: Vec<String> = flags(e, kind)
        .into_iter()
        .filter(|s| !top.find_subcommand(s).is_some_and(|c| c.is_hide_set()))
        .collect();
    match shown.first() {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// `apoyo capture` from clap's usage line "Usage: apoyo capture [OPTIONS] …": command names
/// only, which clap has already matched against ours.
fn command(e: &clap::Error) -> String {
    let mut words = vec!["apoyo".to_string()];
    if let Some(usage) = e.get(ContextKind::Usage) {
        let usage = usage.to_string();
        words = usage
            .split_whitespace()
            .skip_while(|w| *w != "apoyo")
            .take_while(|w| flag_name(w).is_some_and(|n| !n.starts_with('-')))
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            words.push("apoyo".to_string());
        }
    }
    words.join(" ")
}

/// The flag or command name in a clap context string such as `--entidad <ENTIDAD>` or
/// `--lat=19.4`: the first word, cut at `=`, kept only if it is made of lower-case letters,
/// digits after the first letter, and dashes, so nothing the user typed as a value is echoed.
fn flag_name(s: &str) -> Option<String> {
    let word = s.split_whitespace().next()?;
    let word = word.split('=').next()?;
    let name = word.trim_start_matches('-');
    let safe = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    safe.then(|| word.to_string())
}

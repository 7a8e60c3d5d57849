//! Syntax diagnostics: everything found before a network becomes IR.

use miette::Diagnostic;
use thiserror::Error;

use super::span::Span;
use super::Rule;

#[derive(Debug, Error, Diagnostic)]
pub enum SyntaxError {
    #[error("the input is not UTF-8 text (invalid byte at offset {offset})")]
    #[diagnostic(code(snnc::syntax::not_utf8), help("save the file as UTF-8 text"))]
    NotUtf8 {
        offset: usize,
        #[label]
        span: Span,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::syntax::parse))]
    Parse {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("the file holds no network")]
    #[diagnostic(
        code(snnc::syntax::empty),
        help("write a network: `network NAME {{ input 3x32x32 ... }}`")
    )]
    Empty {
        #[label("end of file")]
        span: Span,
    },

    #[error("blocks nested more than {max} deep")]
    #[diagnostic(
        code(snnc::syntax::too_deep),
        help("flatten the nesting; brackets of all kinds count towards the limit")
    )]
    TooDeep {
        #[label("nesting limit exceeded here")]
        span: Span,
        max: usize,
    },

    #[error("unknown layer kind `{name}`")]
    #[diagnostic(code(snnc::syntax::unknown_layer))]
    UnknownLayer {
        name: String,
        #[label("not a layer kind")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("unknown activation `{name}`")]
    #[diagnostic(code(snnc::syntax::unknown_activation))]
    UnknownActivation {
        name: String,
        #[label("not an activation")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("unknown setting `{name}`")]
    #[diagnostic(code(snnc::syntax::unknown_setting))]
    UnknownSetting {
        name: String,
        #[label("not a setting")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("unknown classifier `{name}`")]
    #[diagnostic(code(snnc::syntax::unknown_classifier))]
    UnknownClassifier {
        name: String,
        #[label("not a classifier")]
        span: Span,
        /// A near miss (`did you mean ...`), else the list of classifiers.
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::syntax::bad_value))]
    BadValue {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::syntax::arguments))]
    Arguments {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::syntax::range))]
    OutOfRange {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::syntax::misplaced))]
    Misplaced {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },
}

/// A pest error as a diagnostic, and the absolute offset where it happened. `rest` is the
/// text pest was given, which starts at `offset` in the file.
pub(crate) fn from_pest(
    e: &pest::error::Error<Rule>,
    rest: &str,
    offset: usize,
) -> (SyntaxError, usize) {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let pos = pos.min(rest.len());
    let found_char = rest[pos..].chars().next();
    let found = match found_char {
        None => "the end of the file".to_string(),
        Some('\n') | Some('\r') => "the end of the line".to_string(),
        Some(c) if c.is_control() => format!("the control character U+{:04X}", c as u32),
        Some(c) => format!("`{c}`"),
    };
    let mut expected: Vec<&'static str> = Vec::new();
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for r in positives {
            let s = describe(*r);
            if !expected.contains(&s) {
                expected.push(s);
            }
        }
    }
    let expected_text = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].to_string(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let help = if expected.contains(&"`}`") {
        Some("close the network with `}`".to_string())
    } else if expected.contains(&"`)`") {
        Some("close the argument list with `)`".to_string())
    } else if expected.contains(&"`]`") {
        Some("close the block with `]`".to_string())
    } else if expected.contains(&"`network`") {
        Some("a file holds networks: `network NAME { ... }`".to_string())
    } else {
        None
    };
    let width = found_char.map(char::len_utf8).unwrap_or(0);
    let abs = offset + pos;
    (
        SyntaxError::Parse {
            message: format!("expected {expected_text}, found {found}"),
            span: Span::new(abs, abs + width),
            label: format!("expected {expected_text}"),
            help,
        },
        abs,
    )
}

fn describe(r: Rule) -> &'static str {
    match r {
        Rule::network | Rule::kw_network | Rule::next_network => "`network`",
        Rule::name => "a network name",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::comma => "`,`",
        Rule::EOI => "the end of the file",
        Rule::args | Rule::arg | Rule::key | Rule::arg_value => "an argument",
        Rule::count => "a repeat count",
        _ => "a layer, setting or separator",
    }
}

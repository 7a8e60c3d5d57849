//! The front end: the pest grammar's glue, the typed AST, syntax diagnostics, and the
//! lowering of the AST to the IR ([`lower_ir`]).
//!
//! [`parse`] turns source text into a [`ast::SourceFile`] and the diagnostics found on the
//! way. It parses network by network: a syntax error costs the rest of its network, never
//! the networks after it; after an unclosed `(` or `[` parsing goes on in the same network
//! (the opener is masked), so that network's later syntax errors are reported too. Nesting of `[ ... ]` is limited to [`MAX_DEPTH`], checked before
//! the (recursive) parser runs, so no input can overflow the stack.

pub mod ast;
pub mod error;
mod lower;
pub mod lower_ir;
/// Spans live at the crate root ([`crate::span`]); re-exported here so that
/// `crate::syntax::span::Span` keeps working.
pub use crate::span;

use pest::Parser;

pub use error::SyntaxError;

use crate::diagnostics::Diagnostics;
use crate::span::Span;

/// The deepest nesting of `[ ... ]` blocks accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/snn.pest"]
pub(crate) struct SnnParser;

/// Checks that `bytes` are UTF-8 text; the diagnostic points at the first bad byte.
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostics> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let mut d = Diagnostics::new();
        d.push(SyntaxError::NotUtf8 {
            offset: at,
            span: Span::new(at, at),
        });
        d
    })
}

/// Parses a whole file. The AST holds every network that parsed; the diagnostics every
/// error found (an AST network may still carry errors of its own, reported here).
pub fn parse(source: &str) -> (ast::SourceFile, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut file = ast::SourceFile::default();
    if let Some(span) = too_deep(source) {
        diags.push(SyntaxError::TooDeep {
            span,
            max: MAX_DEPTH,
        });
        return (file, diags);
    }
    // The text parsed: the source, less the unclosed `(`/`[` masked by recovery (bytes
    // become spaces, newlines stay), so every offset and span still points into `source`.
    let mut text = source.to_string();
    let mut recoveries = 0;
    // Whether the network starting at `offset` already had a syntax error (it is then
    // lowered, for its other syntax errors, but not built).
    let mut broken = false;
    let mut offset = 0;
    while offset <= text.len() {
        let rest = &text[offset..];
        match SnnParser::parse(Rule::next_network, rest) {
            Ok(mut pairs) => {
                let Some(top) = pairs.next() else { break };
                let end = offset + top.as_span().end();
                let Some(net) = top.into_inner().find(|p| p.as_rule() == Rule::network) else {
                    break; // end of file
                };
                // A network with syntax errors is not built: its other errors would only be
                // consequences of the parts that could not be read.
                let before = diags.error_count();
                if let Some(n) = lower::network(net, offset, &mut diags) {
                    if diags.error_count() == before && !broken {
                        file.networks.push(n);
                    }
                }
                broken = false;
                if end == offset {
                    break;
                }
                offset = end;
            }
            Err(e) => {
                let (mut err, at) = error::from_pest(&e, rest, offset);
                let open = (recoveries < MAX_DEPTH)
                    .then(|| unclosed(&text, offset, at))
                    .flatten();
                if let (Some((from, _)), SyntaxError::Parse { help, .. }) = (open, &mut err) {
                    // Name the opener: the error itself shows where the text ran on to.
                    let line = text[..from].matches('\n').count() + 1;
                    let what = if text[from..].starts_with('(') {
                        "the argument list"
                    } else {
                        "the block"
                    };
                    let close = if what == "the block" { ']' } else { ')' };
                    *help = Some(format!("close {what} opened on line {line} with `{close}`"));
                }
                diags.push(err);
                broken = true;
                if let Some((from, to)) = open {
                    recoveries += 1;
                    mask(&mut text, from, to);
                    continue;
                }
                broken = false;
                match resync(&text, at) {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    if diags.is_empty() && file.networks.is_empty() {
        let end = source.len();
        diags.push(SyntaxError::Empty {
            span: Span::new(end, end),
        });
    }
    (file, diags)
}

/// For a parse error at `at` in the network starting at `start`: the bytes to mask when the
/// error comes from an unclosed `(` or `[` (the innermost open one, not closed before
/// `at`), so that parsing can go on. An unclosed `(` masks its argument list up to `at`,
/// when `at` is on a later line or no `)` follows on its line (so `Conv1(3,64 3x3/1)`,
/// a bad argument list that is closed, is not "recovered"). An unclosed `[` masks just
/// itself, when the error is at the `}` or the end of the file that it ran into.
fn unclosed(text: &str, start: usize, at: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut i = start;
    while i < at.min(bytes.len()) {
        match bytes[i] {
            b'#' => {
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                continue;
            }
            b @ (b'(' | b'[' | b'{') => open.push((b, i)),
            b')' | b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    let &(kind, p) = open.last()?;
    let line_end = |from: usize| text[from..].find('\n').map_or(text.len(), |k| from + k);
    match kind {
        b'(' => {
            let later_line = text[p..at].contains('\n');
            let closed_after = text[at..line_end(at)].contains(')');
            (later_line || !closed_after).then_some((p, at))
        }
        b'[' => matches!(bytes.get(at), None | Some(b'}')).then_some((p, p + 1)),
        _ => None,
    }
}

/// Replaces `text[from..to]` with spaces, newlines kept (offsets do not move).
fn mask(text: &mut String, from: usize, to: usize) {
    let masked: String = text[from..to]
        .chars()
        .flat_map(|c| {
            let n = if c == '\n' { 0 } else { c.len_utf8() };
            std::iter::repeat_n(' ', n).chain((c == '\n').then_some('\n'))
        })
        .collect();
    text.replace_range(from..to, &masked);
}

/// The start of the next line after `at` that begins with the keyword `network`.
fn resync(source: &str, at: usize) -> Option<usize> {
    let mut pos = at;
    loop {
        let nl = source.get(pos..)?.find('\n')? + pos + 1;
        let line = &source[nl..];
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.starts_with("network")
            && !trimmed[7..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            return Some(nl);
        }
        pos = nl;
    }
}

/// The first `[` nested deeper than [`MAX_DEPTH`] (comments skipped), if any.
fn too_deep(source: &str) -> Option<Span> {
    let mut depth = 0usize;
    let mut in_comment = false;
    let bytes = source.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_comment {
            if b == b'\n' {
                in_comment = false;
            }
            continue;
        }
        match b {
            b'#' => in_comment = true,
            b'/' if bytes.get(i + 1) == Some(&b'/') => in_comment = true,
            b'[' | b'(' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(Span::new(i, i + 1));
                }
            }
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

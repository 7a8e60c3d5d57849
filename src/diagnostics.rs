//! Diagnostics: the list of errors and warnings one compilation produced.
//!
//! Every stage has its own error enum (`syntax::SyntaxError`, `syntax::lower_ir::NetworkError`,
//! `passes::resolve::ResolveError`, ...) deriving `thiserror::Error` and
//! `miette::Diagnostic`, with a code `snnc::<stage>::<what>`, labels on spans and help where a
//! fix is evident. Invariant: a diagnostic never holds source text; [`Diagnostics::render_text`]
//! and [`Diagnostics::to_json`] attach the file when rendering.

use std::fmt;

use miette::{
    Diagnostic as MietteDiagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan,
    MietteError, MietteSpanContents, Severity, SourceCode, SpanContents,
};
use serde_json::{json, Value};

/// One boxed diagnostic of any stage.
pub struct Diagnostic(Box<dyn MietteDiagnostic + Send + Sync + 'static>);

impl Diagnostic {
    pub fn new(d: impl MietteDiagnostic + Send + Sync + 'static) -> Self {
        Diagnostic(Box::new(d))
    }

    /// `Error` unless the diagnostic says otherwise.
    pub fn severity(&self) -> Severity {
        self.0.severity().unwrap_or(Severity::Error)
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }

    /// The code, e.g. `snnc::shape::mismatch`.
    pub fn code(&self) -> String {
        self.0.code().map(|c| c.to_string()).unwrap_or_default()
    }

    pub fn message(&self) -> String {
        self.0.to_string()
    }

    pub fn help(&self) -> Option<String> {
        self.0.help().map(|h| h.to_string())
    }

    /// The labels, the primary one (the site to edit) first, the others in source order.
    /// Without a label marked primary, the first label is the primary one.
    pub fn labels(&self) -> Vec<LabeledSpan> {
        let mut labels: Vec<LabeledSpan> = self.0.labels().map(|l| l.collect()).unwrap_or_default();
        if let Some(i) = labels.iter().position(LabeledSpan::primary) {
            let p = labels.remove(i);
            labels.insert(0, p);
        }
        labels
    }

    /// The primary label (see [`Diagnostic::labels`]).
    pub fn primary(&self) -> Option<LabeledSpan> {
        self.labels().into_iter().next()
    }

    pub fn inner(&self) -> &(dyn MietteDiagnostic + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code(), self.message())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// All diagnostics of one compilation, in the order they were found.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Diagnostics::default()
    }

    pub fn push(&mut self, d: impl MietteDiagnostic + Send + Sync + 'static) {
        self.items.push(Diagnostic::new(d));
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Orders the diagnostics by the position of their primary label (stable; unlabelled
    /// ones first).
    pub fn sort_by_position(&mut self) {
        self.items
            .sort_by_cached_key(|d| d.primary().map(|l| l.offset()).unwrap_or(0));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// The codes of all diagnostics, in order (handy in tests).
    pub fn codes(&self) -> Vec<String> {
        self.items.iter().map(Diagnostic::code).collect()
    }

    /// Renders every diagnostic with miette's graphical handler: `file:line:col`, the labelled
    /// source, the help line. `width` is the terminal width; `color` false gives plain text.
    pub fn render_text(&self, file_name: &str, source: &str, width: usize, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(width)
            .with_links(false);
        let named = IndexedSource::new(file_name, source);
        let mut out = String::new();
        for d in &self.items {
            let with = WithSource::new(d, &named);
            if handler.render_report(&mut out, &with).is_err() {
                out.push_str(&format!("{}: {}\n", d.code(), d.message()));
            }
        }
        out
    }

    /// Renders for stderr: colour unless `NO_COLOR` is set or stderr is not a terminal; the
    /// width from `COLUMNS` (default 100).
    pub fn render_stderr(&self, file_name: &str, source: &str) -> String {
        use std::io::IsTerminal;
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stderr().is_terminal();
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&w: &usize| w >= 40)
            .unwrap_or(100);
        self.render_text(file_name, source, width, color)
    }

    /// Machine-readable diagnostics: one object per diagnostic with severity, code, message,
    /// help and labels (byte offsets plus 1-based line and column).
    pub fn to_json(&self, file_name: &str, source: &str) -> Value {
        let index = IndexedSource::new(file_name, source);
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|d| {
                let labels: Vec<Value> = d
                    .labels()
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let (line, column) = index.line_col(l.offset());
                        json!({
                            "primary": i == 0,
                            "label": l.label(),
                            "offset": l.offset(),
                            "length": l.len(),
                            "line": line,
                            "column": column,
                        })
                    })
                    .collect();
                json!({
                    "file": file_name,
                    "severity": match d.severity() {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Advice => "advice",
                    },
                    "code": d.code(),
                    "message": d.message(),
                    "help": d.help(),
                    "labels": labels,
                })
            })
            .collect();
        Value::Array(items)
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics { items: vec![d] }
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}: {}", d.code(), d.message())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside a
/// character are clamped.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// A source file with an index of its line starts, so that rendering many diagnostics of a
/// large file stays linear (miette's own `str` source scans from the start for every span).
struct IndexedSource<'s> {
    name: String,
    text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> IndexedSource<'s> {
    fn new(name: &str, text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        IndexedSource {
            name: name.to_string(),
            text,
            line_starts,
        }
    }

    /// 0-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// 1-based line and column (in characters).
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_of(offset);
        let start = self.line_starts[line].min(offset);
        (line + 1, self.text[start..offset].chars().count() + 1)
    }
}

/// Source lines longer than this many bytes are shown as a window around the label (see
/// [`IndexedSource::read_long_line`]).
const LONG_LINE: usize = 400;
/// Bytes of a long line shown on either side of the label.
const LONG_LINE_WINDOW: usize = 60;

impl<'s> IndexedSource<'s> {
    /// Byte range of 0-based line `line`, without its line break.
    fn line_range(&self, line: usize) -> (usize, usize) {
        let start = self.line_starts[line];
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.text.len(), |&next| next - 1);
        (start, end.max(start))
    }

    /// The contents for a span whose context touches a line longer than [`LONG_LINE`]:
    /// only the span's own lines, cut to [`LONG_LINE_WINDOW`] bytes on either side of it,
    /// so that rendering n labels on one line of length L costs O(n + L), not O(n·L).
    /// `None` when every line of the context is short (rendered whole, as miette does).
    fn read_long_line(
        &self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Option<Box<dyn SpanContents<'_> + '_>> {
        let len = self.text.len();
        let offset = span.offset().min(len);
        let end = (offset + span.len()).min(len);
        let (l0, l1) = (self.line_of(offset), self.line_of(end));
        let first = l0.saturating_sub(before);
        let last = (l1 + after).min(self.line_starts.len() - 1);
        let long = (first..=last).any(|l| {
            let (a, b) = self.line_range(l);
            b - a > LONG_LINE
        });
        if !long {
            return None;
        }
        let floor = |mut i: usize| {
            while !self.text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let ceil = |mut i: usize| {
            while !self.text.is_char_boundary(i) {
                i += 1;
            }
            i
        };
        let (line_start, _) = self.line_range(l0);
        let (_, line_end) = self.line_range(l1);
        // With no context lines miette wants the data to begin at the span (its column is
        // the span's); otherwise a window of the line before and after it.
        let start = if before == 0 {
            floor(offset)
        } else {
            floor(offset.saturating_sub(LONG_LINE_WINDOW).max(line_start))
        };
        let stop = ceil((end + LONG_LINE_WINDOW).min(line_end).max(start));
        let data = &self.text.as_bytes()[start..stop];
        let newlines = data.iter().filter(|&&b| b == b'\n').count();
        Some(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            data,
            (start, stop - start).into(),
            l0,
            start - line_start,
            l0 + newlines,
        )))
    }
}

impl SourceCode for IndexedSource<'_> {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let offset = span.offset().min(self.text.len());
        if let Some(c) = self.read_long_line(span, context_lines_before, context_lines_after) {
            return Ok(c);
        }
        let first = self.line_of(offset).saturating_sub(context_lines_before);
        let base = self.line_starts[first];
        let local = miette::SourceSpan::new((offset - base).into(), span.len());
        let window = &self.text.as_bytes()[base..];
        let c = window.read_span(&local, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            c.data(),
            (c.span().offset() + base, c.span().len()).into(),
            c.line() + first,
            c.column(),
            c.line_count() + first,
        )))
    }
}

/// A diagnostic seen together with the file it points into. miette prints the snippets of
/// a diagnostic in source order, each headed by its `file:line:col`; so that the first
/// location printed is the primary label's (the site to edit), secondary labels more than
/// [`NOTE_DISTANCE`] lines before it are printed after it, as notes.
struct WithSource<'a> {
    diag: &'a (dyn MietteDiagnostic + Send + Sync + 'static),
    source: &'a IndexedSource<'a>,
    /// The labels shown with the diagnostic itself.
    labels: Vec<LabeledSpan>,
    notes: Vec<Note<'a>>,
}

/// Secondary labels this many lines or more before the primary one become notes.
const NOTE_DISTANCE: usize = 3;

impl<'a> WithSource<'a> {
    fn new(d: &'a Diagnostic, source: &'a IndexedSource<'a>) -> Self {
        let all = d.labels();
        let mut labels = Vec::new();
        let mut notes = Vec::new();
        let primary_line = all.first().map(|p| source.line_of(p.offset()));
        for (i, l) in all.into_iter().enumerate() {
            let far_before = primary_line
                .is_some_and(|p| i > 0 && source.line_of(l.offset()) + NOTE_DISTANCE <= p);
            if far_before {
                notes.push(Note {
                    message: l.label().unwrap_or("related").to_string(),
                    label: LabeledSpan::new(None, l.offset(), l.len()),
                    source,
                });
            } else {
                labels.push(l);
            }
        }
        WithSource {
            diag: d.inner(),
            source,
            labels,
            notes,
        }
    }
}

/// A secondary location printed after its diagnostic (an advice with one unnamed label).
struct Note<'a> {
    message: String,
    label: LabeledSpan,
    source: &'a IndexedSource<'a>,
}

impl fmt::Debug for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Note<'_> {}

impl MietteDiagnostic for Note<'_> {
    fn severity(&self) -> Option<Severity> {
        Some(Severity::Advice)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(self.label.clone())))
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source)
    }
}

impl fmt::Debug for WithSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for WithSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.diag, f)
    }
}

impl std::error::Error for WithSource<'_> {}

impl MietteDiagnostic for WithSource<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.code()
    }
    fn severity(&self) -> Option<Severity> {
        self.diag.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.help()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source)
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn MietteDiagnostic> + 'b>> {
        if self.notes.is_empty() {
            return None;
        }
        Some(Box::new(
            self.notes.iter().map(|n| n as &dyn MietteDiagnostic),
        ))
    }
}

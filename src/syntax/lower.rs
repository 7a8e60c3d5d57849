//! pest pairs → typed AST. The grammar gives a flat stream of tokens per body; this module
//! decides what each token means: settings, skips, the classifier, which activation and
//! which repeat belong to which layer, and checks every number's range.

use pest::iterators::Pair;

use super::ast::*;
use super::error::SyntaxError;
use super::span::Span;
use super::Rule;
use crate::diagnostics::Diagnostics;
use crate::ir::{Classifier, Encoding, LayerKind, Method, NeuronKind, PoolKind, Reset, Shape};

/// One argument: `key = value` or a positional `value`.
#[derive(Debug, Clone)]
struct Arg<'a> {
    key: Option<(&'a str, Span)>,
    value: &'a str,
    span: Span,
}

#[derive(Debug, Clone)]
enum Tok<'a> {
    Sep {
        arrow: bool,
        span: Span,
    },
    Word {
        name: &'a str,
        name_span: Span,
        args: Option<(Vec<Arg<'a>>, Span)>,
        span: Span,
    },
    Value {
        text: &'a str,
        span: Span,
    },
    Repeat {
        count: &'a str,
        span: Span,
    },
    Suffix {
        name: &'a str,
        args: Option<(Vec<Arg<'a>>, Span)>,
        span: Span,
    },
    Block {
        toks: Vec<Tok<'a>>,
        span: Span,
    },
}

impl Tok<'_> {
    fn span(&self) -> Span {
        match self {
            Tok::Sep { span, .. }
            | Tok::Word { span, .. }
            | Tok::Value { span, .. }
            | Tok::Repeat { span, .. }
            | Tok::Suffix { span, .. }
            | Tok::Block { span, .. } => *span,
        }
    }
}

fn sp(p: &Pair<'_, Rule>, off: usize) -> Span {
    let s = p.as_span();
    Span::new(s.start() + off, s.end() + off)
}

pub(crate) fn network(
    pair: Pair<'_, Rule>,
    off: usize,
    diags: &mut Diagnostics,
) -> Option<NetworkDecl> {
    let span = sp(&pair, off);
    let mut name = None;
    let mut toks = Vec::new();
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::name => name = Some((p.as_str().to_string(), sp(&p, off))),
            Rule::body => toks = body(p, off),
            _ => {}
        }
    }
    let (name, name_span) = name?;
    let mut net = NetworkDecl {
        name,
        name_span,
        span,
        settings: Vec::new(),
        chain: Vec::new(),
        skips: Vec::new(),
        classifier: None,
    };
    let mut cx = Cx {
        diags,
        net: &mut net,
    };
    let chain = cx.fold(&toks, false);
    net.chain = chain;
    Some(net)
}

fn body<'a>(pair: Pair<'a, Rule>, off: usize) -> Vec<Tok<'a>> {
    let mut out = Vec::new();
    for p in pair.into_inner() {
        let span = sp(&p, off);
        match p.as_rule() {
            Rule::sep => {
                let arrow = p.clone().into_inner().any(|q| q.as_rule() == Rule::arrow);
                out.push(Tok::Sep { arrow, span });
            }
            Rule::block => {
                let inner = p.into_inner().find(|q| q.as_rule() == Rule::body);
                let toks = inner.map(|b| body(b, off)).unwrap_or_default();
                out.push(Tok::Block { toks, span });
            }
            Rule::repeat => {
                let count = p.into_inner().next().map(|c| c.as_str()).unwrap_or("");
                out.push(Tok::Repeat { count, span });
            }
            Rule::value => out.push(Tok::Value {
                text: p.as_str(),
                span,
            }),
            Rule::word => {
                let mut name = ("", span);
                let mut args = None;
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::ident => name = (q.as_str(), sp(&q, off)),
                        Rule::args => args = Some(arg_list(q, off)),
                        _ => {}
                    }
                }
                out.push(Tok::Word {
                    name: name.0,
                    name_span: name.1,
                    args,
                    span,
                });
            }
            Rule::suffix => {
                let mut name = "";
                let mut args = None;
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::suffix_name => {
                            name = q.into_inner().next().map(|w| w.as_str()).unwrap_or("")
                        }
                        Rule::args => args = Some(arg_list(q, off)),
                        _ => {}
                    }
                }
                out.push(Tok::Suffix { name, args, span });
            }
            _ => {}
        }
    }
    out
}

fn arg_list<'a>(pair: Pair<'a, Rule>, off: usize) -> (Vec<Arg<'a>>, Span) {
    let span = sp(&pair, off);
    let mut out = Vec::new();
    for a in pair.into_inner().filter(|q| q.as_rule() == Rule::arg) {
        let aspan = sp(&a, off);
        let mut key = None;
        let mut value = "";
        for q in a.into_inner() {
            match q.as_rule() {
                Rule::key => key = Some((q.as_str(), sp(&q, off))),
                Rule::arg_value => value = q.as_str(),
                _ => {}
            }
        }
        out.push(Arg {
            key,
            value,
            span: aspan,
        });
    }
    (out, span)
}

const SETTINGS: [&str; 7] = [
    "input",
    "timesteps",
    "encode",
    "neuron",
    "surrogate",
    "method",
    "stdp",
];
/// How `stdp(...)` is written (diagnostics' help).
const STDP_FORM: &str = "write `stdp(eta=0.01, tau=5, offset=0.4, wmin=-1, wmax=1)`; the keys are \
     eta, tau, offset, wmin, wmax, target_rate, gain, min_threshold, wta, dropout, batch, images";
const ACTIVATIONS: [&str; 3] = ["ReLU", "LIF", "IF"];
const CLASSIFIERS: [&str; 2] = ["softmax", "stochmax"];

fn is_weighted_name(name: &str) -> bool {
    // "Any name starting with `Conv`" (or `FC`), `Conv` and `FC` themselves included.
    (name.starts_with("Conv") || name.starts_with("FC"))
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Cx<'d, 'n> {
    diags: &'d mut Diagnostics,
    net: &'n mut NetworkDecl,
}

fn misplaced(
    message: impl Into<String>,
    span: Span,
    label: impl Into<String>,
    help: Option<&str>,
) -> SyntaxError {
    SyntaxError::Misplaced {
        message: message.into(),
        span,
        label: label.into(),
        help: help.map(str::to_string),
    }
}

fn range(
    message: impl Into<String>,
    span: Span,
    label: impl Into<String>,
    help: Option<String>,
) -> SyntaxError {
    SyntaxError::OutOfRange {
        message: message.into(),
        span,
        label: label.into(),
        help,
    }
}

fn bad_args(
    message: impl Into<String>,
    span: Span,
    label: impl Into<String>,
    help: Option<String>,
) -> SyntaxError {
    SyntaxError::Arguments {
        message: message.into(),
        span,
        label: label.into(),
        help,
    }
}

impl Cx<'_, '_> {
    /// Folds one body (the network's, or a block's) into chain items.
    fn fold(&mut self, toks: &[Tok<'_>], in_block: bool) -> Vec<ChainItem> {
        let mut items: Vec<ChainItem> = Vec::new();
        let mut pending: Option<(ActivationDecl, Span)> = None;
        // The last token was a chain element (or its repeat/activation), with no separator since.
        let mut attached = false;
        // The last element could not be read: its activation and repeat are skipped silently.
        let mut dead = false;
        let mut item_start = true;
        let last_real = toks.iter().rposition(|t| !matches!(t, Tok::Sep { .. }));
        let mut i = 0;
        while i < toks.len() {
            let tok = &toks[i];
            match tok {
                Tok::Sep { .. } => {
                    attached = false;
                    dead = false;
                    item_start = true;
                    i += 1;
                    continue;
                }
                Tok::Suffix { .. } | Tok::Repeat { .. } if dead => {
                    i += 1;
                    continue;
                }
                Tok::Word { name, .. } if dead && ACTIVATIONS.contains(name) => {
                    i += 1;
                    continue;
                }
                Tok::Word {
                    name: "stdp",
                    name_span,
                    args,
                    span,
                } if !in_block && item_start => {
                    let end = item_end(toks, i + 1);
                    self.stdp_setting(*name_span, *span, args.as_ref(), &toks[i + 1..end]);
                    i = end;
                    continue;
                }
                Tok::Word { name, span, .. }
                    if !in_block && item_start && SETTINGS.contains(name) =>
                {
                    let end = item_end(toks, i + 1);
                    self.setting(name, *span, &toks[i + 1..end]);
                    i = end;
                    continue;
                }
                Tok::Word {
                    name: "skip", span, ..
                } if !in_block && item_start => {
                    let end = item_end(toks, i + 1);
                    self.skip(*span, &toks[i + 1..end]);
                    i = end;
                    continue;
                }
                Tok::Word {
                    name, span, args, ..
                } if CLASSIFIERS.contains(name) => {
                    if let Some((_, a)) = args {
                        self.diags.push(bad_args(
                            "a classifier takes no arguments",
                            *a,
                            "unexpected arguments",
                            None,
                        ));
                    }
                    let cls = if *name == "softmax" {
                        Classifier::Softmax
                    } else {
                        Classifier::Stochmax
                    };
                    let rest_empty = !in_block && last_real == Some(i);
                    if in_block || !rest_empty {
                        self.diags.push(misplaced(
                            format!("the classifier `{name}` must be the last item of the network"),
                            *span,
                            "classifier before the end",
                            Some("move the classifier to the end of the network"),
                        ));
                    } else if let Some((_, first)) = self.net.classifier {
                        self.diags.push(misplaced(
                            "a second classifier",
                            *span,
                            "classifier already given",
                            None,
                        ));
                        let _ = first;
                    } else {
                        self.net.classifier = Some((cls, *span));
                    }
                }
                Tok::Word {
                    name, span, args, ..
                } if ACTIVATIONS.contains(name) => {
                    let act = self.activation(name, args.as_ref(), *span);
                    if let Some(act) = act {
                        let can_attach = attached
                            && items.last().is_some_and(|it| it.activation.is_none())
                            && pending.is_none();
                        if can_attach {
                            if let Some(last) = items.last_mut() {
                                last.activation = Some((act, *span));
                            }
                        } else if let Some((_, first)) = pending {
                            self.diags.push(misplaced(
                                format!("a second activation `{name}` before one layer"),
                                *span,
                                "second activation",
                                Some("a layer takes one activation"),
                            ));
                            let _ = first;
                        } else if attached {
                            self.diags.push(misplaced(
                                format!(
                                    "the layer already has an activation; `{name}` is a second one"
                                ),
                                *span,
                                "second activation",
                                Some("a layer takes one activation"),
                            ));
                        } else {
                            pending = Some((act, *span));
                        }
                    }
                    // An activation written after a layer keeps the layer open for `x N`.
                    item_start = false;
                    i += 1;
                    continue;
                }
                Tok::Suffix { name, args, span } => {
                    if let Some(act) = self.activation(name, args.as_ref(), *span) {
                        match items.last_mut() {
                            Some(last) if attached && last.activation.is_none() => {
                                last.activation = Some((act, *span))
                            }
                            Some(_) if attached => self.diags.push(misplaced(
                                format!("the layer already has an activation; `{name}` is a second one"),
                                *span,
                                "second activation",
                                Some("a layer takes one activation"),
                            )),
                            _ => self.diags.push(misplaced(
                                format!("the activation `-{name}` follows no layer"),
                                *span,
                                "no layer before this",
                                Some("write the activation right after its layer: `Conv1(3,64,3x3/1)-ReLU`"),
                            )),
                        }
                    }
                    item_start = false;
                    i += 1;
                    continue;
                }
                Tok::Repeat { count, span } => {
                    let n = self.count(count, *span);
                    match items.last_mut() {
                        Some(last) if attached && last.repeat.is_none() => {
                            if let Some(n) = n {
                                last.repeat = Some((n, *span));
                            }
                        }
                        Some(_) if attached => self.diags.push(misplaced(
                            "a second repeat count for one layer",
                            *span,
                            "repeat count already given",
                            Some("write one count: `Conv3(64,64,3x3/1) x4`"),
                        )),
                        _ => self.diags.push(misplaced(
                            "a repeat count with nothing to repeat",
                            *span,
                            "no layer or block before this",
                            Some("write the count right after a layer or block: `Conv3 x4`"),
                        )),
                    }
                    item_start = false;
                    i += 1;
                    continue;
                }
                Tok::Word {
                    name: "Input",
                    span,
                    args: None,
                    ..
                } => {
                    if in_block || !items.is_empty() {
                        self.diags.push(misplaced(
                            "`Input` can only start the chain",
                            *span,
                            "`Input` after other layers",
                            Some("remove it; `Input` marks the start of the first row"),
                        ));
                    }
                    attached = false;
                }
                Tok::Word {
                    name,
                    name_span,
                    args,
                    span,
                } => {
                    if let Some(kind) = self.layer(
                        name,
                        *name_span,
                        args.as_ref(),
                        toks,
                        i,
                        (item_start, last_real == Some(i)),
                    ) {
                        items.push(ChainItem {
                            kind,
                            activation: pending.take(),
                            repeat: None,
                            span: *span,
                        });
                        attached = true;
                        dead = false;
                        item_start = false;
                        i += 1;
                        continue;
                    }
                    dead = true;
                    pending = None;
                    // A lowercase word starting an item swallows the rest of the item (it was
                    // probably a setting).
                    if item_start && name.starts_with(|c: char| c.is_ascii_lowercase()) {
                        i = item_end(toks, i + 1);
                        continue;
                    }
                    attached = false;
                }
                Tok::Block { toks: inner, span } => {
                    let body = self.fold(inner, true);
                    if body.is_empty() {
                        self.diags.push(misplaced(
                            "an empty block",
                            *span,
                            "no layers in this block",
                            None,
                        ));
                    } else {
                        items.push(ChainItem {
                            kind: ChainKind::Block(body),
                            activation: pending.take(),
                            repeat: None,
                            span: *span,
                        });
                    }
                    attached = true;
                    item_start = false;
                    i += 1;
                    continue;
                }
                Tok::Value { text, span } => {
                    self.diags.push(misplaced(
                        format!("unexpected value `{text}`"),
                        *span,
                        "a value outside a setting or argument list",
                        None,
                    ));
                    attached = false;
                }
            }
            item_start = false;
            i += 1;
        }
        if let Some((_, span)) = pending {
            self.diags.push(misplaced(
                "an activation with no layer after it",
                span,
                "activation before nothing",
                Some("an activation that starts an item belongs to the layer after it"),
            ));
        }
        items
    }

    fn count(&mut self, text: &str, span: Span) -> Option<u32> {
        match text.parse::<u64>() {
            Ok(0) => {
                self.diags.push(range(
                    "repeat count below 1",
                    span,
                    "a layer or block is applied at least once",
                    Some("write `x1` or drop the count; `x2` and more repeat".into()),
                ));
                None
            }
            Ok(n) if n <= u32::MAX as u64 => Some(n as u32),
            _ => {
                self.diags.push(range(
                    format!("repeat count {text} is too large"),
                    span,
                    "too large",
                    Some(format!(
                        "at most {} applications are unrolled",
                        crate::ir::MAX_APPLICATIONS
                    )),
                ));
                None
            }
        }
    }

    /// A layer word: `Conv3(...)`, `FC1(...)`, `Pool(...)`, `Dropout(p)` or a bare name.
    /// `None` (with a diagnostic) when it is not one.
    fn layer(
        &mut self,
        name: &str,
        name_span: Span,
        args: Option<&(Vec<Arg<'_>>, Span)>,
        toks: &[Tok<'_>],
        i: usize,
        at: (bool, bool),
    ) -> Option<ChainKind> {
        let span = toks[i].span();
        match name {
            "Pool" | "AvgPool" | "MaxPool" => {
                let kind = if name == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                let Some((args, aspan)) = args else {
                    self.diags.push(bad_args(
                        format!("`{name}` needs its window"),
                        span,
                        "no window",
                        Some(format!("write `{name}(2x2/2)`")),
                    ));
                    return None;
                };
                let pos = self.positional(args, *aspan, 1, &format!("{name}(PxP/S)"))?;
                let (window, stride) = self.window(pos[0].value, pos[0].span, "pool window")?;
                Some(ChainKind::Pool {
                    name: name.to_string(),
                    kind,
                    window,
                    stride: stride.unwrap_or(window),
                })
            }
            "Dropout" => {
                let Some((args, aspan)) = args else {
                    self.diags.push(bad_args(
                        "`Dropout` needs its probability",
                        span,
                        "no probability",
                        Some("write `Dropout(0.2)`".into()),
                    ));
                    return None;
                };
                let pos = self.positional(args, *aspan, 1, "Dropout(p)")?;
                let p = self.float(pos[0].value, pos[0].span)?;
                if !(0.0..1.0).contains(&p) {
                    self.diags.push(range(
                        format!("dropout probability {} is outside [0, 1)", pos[0].value),
                        pos[0].span,
                        "outside [0, 1)",
                        Some("a dropout probability p satisfies 0 ≤ p < 1".into()),
                    ));
                    return None;
                }
                Some(ChainKind::Dropout { p })
            }
            _ if is_weighted_name(name) => {
                let signature = match args {
                    None => None,
                    Some((args, aspan)) => Some(self.signature(name, args, *aspan)?),
                };
                Some(ChainKind::Layer {
                    name: name.to_string(),
                    name_span,
                    signature,
                })
            }
            _ => {
                self.unknown_word(name, name_span, args.is_some(), toks, i, at);
                None
            }
        }
    }

    fn unknown_word(
        &mut self,
        name: &str,
        span: Span,
        has_args: bool,
        toks: &[Tok<'_>],
        i: usize,
        (item_start, is_last): (bool, bool),
    ) {
        let lower = name.to_ascii_lowercase();
        // snnTorch's neuron names.
        if lower == "leaky" {
            self.diags.push(SyntaxError::UnknownActivation {
                name: name.into(),
                span,
                help: Some(
                    "did you mean `LIF`? (snnTorch's `Leaky` is the LIF neuron; its `beta` is `leak`)"
                        .into(),
                ),
            });
            return;
        }
        let near = |list: &[&str]| {
            list.iter()
                .find(|k| k.to_ascii_lowercase() == lower)
                .map(|s| s.to_string())
        };
        if let Some(act) = near(&ACTIVATIONS) {
            self.diags.push(SyntaxError::UnknownActivation {
                name: name.into(),
                span,
                help: Some(format!("did you mean `{act}`?")),
            });
            return;
        }
        if let Some(s) = near(&SETTINGS) {
            self.diags.push(SyntaxError::UnknownSetting {
                name: name.into(),
                span,
                help: Some(format!("did you mean `{s}`?")),
            });
            return;
        }
        if let Some(c) = near(&CLASSIFIERS) {
            self.diags.push(SyntaxError::UnknownClassifier {
                name: name.into(),
                span,
                help: Some(format!("did you mean `{c}`?")),
            });
            return;
        }
        for (prefix, proper) in [("conv", "Conv"), ("fc", "FC")] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                if !rest.is_empty() && !name.starts_with(proper) {
                    self.diags.push(SyntaxError::UnknownLayer {
                        name: name.into(),
                        span,
                        help: Some(format!(
                            "weighted layer names start with `{proper}` (case matters): `{proper}{}`",
                            &name[prefix.len()..]
                        )),
                    });
                    return;
                }
            }
        }
        let pool_like = ["pool", "avgpool", "maxpool", "dropout", "input"];
        if let Some(k) = pool_like.iter().find(|k| **k == lower) {
            let proper = match *k {
                "pool" => "Pool",
                "avgpool" => "AvgPool",
                "maxpool" => "MaxPool",
                "dropout" => "Dropout",
                _ => "Input",
            };
            self.diags.push(SyntaxError::UnknownLayer {
                name: name.into(),
                span,
                help: Some(format!("did you mean `{proper}`?")),
            });
            return;
        }
        let lowercase = name.starts_with(|c: char| c.is_ascii_lowercase());
        let more_on_item = toks
            .get(i + 1)
            .is_some_and(|t| !matches!(t, Tok::Sep { .. }));
        if lowercase && item_start && more_on_item {
            self.diags.push(SyntaxError::UnknownSetting {
                name: name.into(),
                span,
                help: Some("the settings are `input`, `timesteps`, `encode`, `neuron`, `surrogate`, `method` and `stdp(...)`".into()),
            });
        } else if lowercase && item_start && !has_args && is_last {
            self.diags.push(SyntaxError::UnknownClassifier {
                name: name.into(),
                span,
                help: Some("the classifiers are `softmax` and `stochmax`".into()),
            });
        } else if has_args
            || name.starts_with(|c: char| c.is_ascii_uppercase()) && !is_activation_like(name)
        {
            self.diags.push(SyntaxError::UnknownLayer {
                name: name.into(),
                span,
                help: Some("layers are `ConvN(I,O,KxK/S)`, `FCN(X,Y)`, `Pool(PxP/S)`, `AvgPool`, `MaxPool` and `Dropout(p)`; weighted layer names start with `Conv` or `FC`".into()),
            });
        } else {
            self.diags.push(SyntaxError::UnknownActivation {
                name: name.into(),
                span,
                help: Some("the activations are `ReLU`, `LIF` and `IF`".into()),
            });
        }
    }

    /// Exactly `n` positional arguments (no keys).
    fn positional<'a, 'b>(
        &mut self,
        args: &'b [Arg<'a>],
        aspan: Span,
        n: usize,
        form: &str,
    ) -> Option<&'b [Arg<'a>]> {
        if let Some(a) = args.iter().find(|a| a.key.is_some()) {
            self.diags.push(bad_args(
                format!(
                    "unexpected named argument `{}`",
                    a.key.map(|k| k.0).unwrap_or("")
                ),
                a.span,
                "not an argument of this layer",
                Some(format!("write `{form}`")),
            ));
            return None;
        }
        if args.len() != n {
            self.diags.push(bad_args(
                format!(
                    "expected {n} argument{}, found {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
                aspan,
                format!(
                    "{} argument{}",
                    args.len(),
                    if args.len() == 1 { "" } else { "s" }
                ),
                Some(format!("write `{form}`")),
            ));
            return None;
        }
        Some(args)
    }

    fn signature(&mut self, name: &str, args: &[Arg<'_>], aspan: Span) -> Option<LayerKind> {
        if name.starts_with("FC") {
            let form = format!("{name}(X,Y)");
            let pos = self.positional(args, aspan, 2, &form)?;
            let inputs = self.positive(pos[0].value, pos[0].span, "inputs")?;
            let outputs = self.positive(pos[1].value, pos[1].span, "outputs")?;
            return Some(LayerKind::Fc { inputs, outputs });
        }
        let form = format!("{name}(I,O,KxK/S)");
        let positional: Vec<Arg<'_>> = args.iter().filter(|a| a.key.is_none()).cloned().collect();
        let mut pad = None;
        let mut ok = true;
        for a in args.iter().filter(|a| a.key.is_some()) {
            let (k, kspan) = a.key.unwrap_or(("", a.span));
            if k == "pad" || k == "padding" {
                match self.u64(a.value, a.span) {
                    Some(p) => pad = Some(p),
                    None => ok = false,
                }
            } else {
                self.diags.push(bad_args(
                    format!("unknown argument `{k}` of a convolution"),
                    kspan,
                    "unknown argument",
                    Some(format!("write `{form}` or `{name}(I,O,KxK/S, pad=P)`")),
                ));
                ok = false;
            }
        }
        if positional.len() != 3 {
            self.diags.push(bad_args(
                format!(
                    "a convolution takes 3 arguments, found {}",
                    positional.len()
                ),
                aspan,
                "expected in-channels, out-channels and kernel",
                Some(format!("write `{form}`")),
            ));
            return None;
        }
        let in_ch = self.positive(positional[0].value, positional[0].span, "input channels");
        let out_ch = self.positive(positional[1].value, positional[1].span, "output channels");
        let win = self.window(positional[2].value, positional[2].span, "kernel");
        let (in_ch, out_ch, (kernel, stride)) = (in_ch?, out_ch?, win?);
        if !ok {
            return None;
        }
        Some(LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            stride: stride.unwrap_or(1),
            pad: pad.unwrap_or(kernel / 2),
        })
    }

    /// `KxK/S`, `KxK` or `K`: the (square) window and the stride if written.
    fn window(&mut self, text: &str, span: Span, what: &str) -> Option<(u64, Option<u64>)> {
        let (dims, stride) = match text.split_once('/') {
            Some((d, s)) => (d, Some(s)),
            None => (text, None),
        };
        let parts: Vec<&str> = dims.split(['x', '×', 'X']).collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            self.diags.push(SyntaxError::BadValue {
                message: format!("`{text}` is not a {what} size"),
                span,
                label: format!(
                    "expected {}",
                    if what == "kernel" { "KxK/S" } else { "PxP/S" }
                ),
                help: Some(format!("write the {what} as `3x3/1`")),
            });
            return None;
        }
        let k = self.positive(parts[0], span, what)?;
        if parts.len() == 2 {
            let k2 = self.positive(parts[1], span, what)?;
            if k2 != k {
                self.diags.push(SyntaxError::BadValue {
                    message: format!("non-square {what} {k}×{k2}"),
                    span,
                    label: "width and height differ".into(),
                    help: Some(format!("only square windows are supported: `{k}x{k}`")),
                });
                return None;
            }
        }
        let s = match stride {
            Some(s) => Some(self.positive(s, span, "stride")?),
            None => None,
        };
        Some((k, s))
    }

    fn u64(&mut self, text: &str, span: Span) -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            self.diags.push(SyntaxError::BadValue {
                message: format!("`{text}` is not a whole number"),
                span,
                label: "expected a whole number".into(),
                help: None,
            });
            return None;
        }
        match text.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.diags.push(range(
                    format!("the number {text} is too large"),
                    span,
                    "does not fit in 64 bits",
                    Some(format!("numbers are at most {}", u64::MAX)),
                ));
                None
            }
        }
    }

    fn positive(&mut self, text: &str, span: Span, what: &str) -> Option<u64> {
        let v = self.u64(text, span)?;
        if v == 0 {
            self.diags.push(range(
                format!("zero {what}"),
                span,
                "must be at least 1",
                None,
            ));
            return None;
        }
        Some(v)
    }

    /// A real number: any ordinary decimal form (`0.5`, `.5`, `5.`, `5e-1`, `1E3`, signed).
    /// A number that is not zero but rounds to 0 in f32 (`1e-50`), or that overflows f32
    /// (`1e39`), is a range error; words (`inf`, `nan`) are not numbers.
    fn float(&mut self, text: &str, span: Span) -> Option<f32> {
        let digits = text.trim_start_matches(['-', '+']);
        let decimal = !digits.is_empty()
            && digits.bytes().any(|b| b.is_ascii_digit())
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
        match text.parse::<f32>() {
            Ok(v) if decimal && v.is_infinite() => {
                self.diags.push(range(
                    format!("the number {text} is too large"),
                    span,
                    "overflows a 32-bit float",
                    Some(format!(
                        "real numbers are at most {:e} in magnitude",
                        f32::MAX
                    )),
                ));
                None
            }
            Ok(v) if decimal && v == 0.0 && mantissa_nonzero(digits) => {
                self.diags.push(range(
                    format!("the number {text} is too small"),
                    span,
                    "rounds to 0 as a 32-bit float",
                    Some(format!(
                        "non-zero real numbers are at least {:e} in magnitude",
                        f32::from_bits(1)
                    )),
                ));
                None
            }
            Ok(v) if decimal && v.is_finite() => Some(v),
            _ => {
                self.diags.push(SyntaxError::BadValue {
                    message: format!("`{text}` is not a number"),
                    span,
                    label: "expected a number".into(),
                    help: None,
                });
                None
            }
        }
    }

    /// `ReLU`, `LIF(...)`, `IF(...)` with checked parameters.
    fn activation(
        &mut self,
        name: &str,
        args: Option<&(Vec<Arg<'_>>, Span)>,
        span: Span,
    ) -> Option<ActivationDecl> {
        match name {
            "ReLU" => {
                if let Some((_, a)) = args {
                    self.diags.push(bad_args(
                        "`ReLU` takes no arguments",
                        *a,
                        "unexpected arguments",
                        None,
                    ));
                    return None;
                }
                Some(ActivationDecl::Relu)
            }
            _ => {
                let kind = if name == "IF" {
                    NeuronKind::If
                } else {
                    NeuronKind::Lif
                };
                let args: &[Arg<'_>] = args.map(|a| a.0.as_slice()).unwrap_or(&[]);
                self.neuron(kind, args, span).map(ActivationDecl::Spiking)
            }
        }
    }

    fn neuron(&mut self, kind: NeuronKind, args: &[Arg<'_>], span: Span) -> Option<NeuronDecl> {
        let mut n = NeuronDecl {
            kind,
            leak: None,
            threshold: None,
            reset: None,
        };
        let mut ok = true;
        let form = if kind == NeuronKind::If {
            "IF(threshold=1.0, reset=subtract)"
        } else {
            "LIF(leak=0.99, threshold=1.0, reset=subtract)"
        };
        for a in args {
            let Some((key, kspan)) = a.key else {
                self.diags.push(bad_args(
                    "neuron parameters are named",
                    a.span,
                    "positional parameter",
                    Some(format!("write `{form}`")),
                ));
                ok = false;
                continue;
            };
            match key {
                "leak" if kind == NeuronKind::Lif => match self.float(a.value, a.span) {
                    Some(v) if v > 0.0 && v <= 1.0 => n.leak = Some(v),
                    Some(_) => {
                        self.diags.push(range(
                            format!("leak {} is outside (0, 1]", a.value),
                            a.span,
                            "outside (0, 1]",
                            Some("the leak α of a LIF neuron satisfies 0 < α ≤ 1 (1 is IF)".into()),
                        ));
                        ok = false;
                    }
                    None => ok = false,
                },
                "threshold" => match self.float(a.value, a.span) {
                    Some(v) if v > 0.0 => n.threshold = Some(v),
                    Some(_) => {
                        self.diags.push(range(
                            format!("threshold {} is not positive", a.value),
                            a.span,
                            "threshold ≤ 0",
                            Some("a firing threshold is greater than 0".into()),
                        ));
                        ok = false;
                    }
                    None => ok = false,
                },
                "reset" => match a.value {
                    "subtract" => n.reset = Some(Reset::Subtract),
                    "zero" => n.reset = Some(Reset::Zero),
                    other => {
                        self.diags.push(SyntaxError::BadValue {
                            message: format!("unknown reset `{other}`"),
                            span: a.span,
                            label: "not a reset".into(),
                            help: Some("write `reset=subtract` or `reset=zero`".into()),
                        });
                        ok = false;
                    }
                },
                _ => {
                    // snnTorch's names for the same parameters.
                    let help = match (key, kind) {
                        ("beta" | "alpha" | "decay", NeuronKind::Lif) => {
                            format!("did you mean `leak`? (snnTorch's `beta` is the leak α); write `{form}`")
                        }
                        ("threshold_" | "thr" | "vth" | "v_th", _) => {
                            format!("did you mean `threshold`?; write `{form}`")
                        }
                        _ => format!("write `{form}`"),
                    };
                    self.diags.push(bad_args(
                        format!("unknown neuron parameter `{key}`"),
                        kspan,
                        "unknown parameter",
                        Some(help),
                    ));
                    ok = false;
                }
            }
        }
        let _ = span;
        ok.then_some(n)
    }

    fn setting(&mut self, key: &str, key_span: Span, rest: &[Tok<'_>]) {
        let span = rest
            .last()
            .map(|t| key_span.join(t.span()))
            .unwrap_or(key_span);
        let kind = self.setting_kind(key, key_span, rest);
        if let Some(kind) = kind {
            self.push_setting(key, kind, span, key_span);
        }
    }

    /// Records a setting, or reports it as set twice.
    fn push_setting(&mut self, key: &str, kind: SettingKind, span: Span, key_span: Span) {
        {
            if let Some(prev) = self
                .net
                .settings
                .iter()
                .find(|s| s.kind.keyword() == kind.keyword())
            {
                let _ = prev;
                self.diags.push(misplaced(
                    format!("`{key}` is set twice"),
                    key_span,
                    "set again here",
                    Some("keep one of them"),
                ));
                return;
            }
            self.net.settings.push(Setting {
                kind,
                span,
                key_span,
            });
        }
    }

    /// `stdp(eta=.., tau=.., offset=.., wmin=.., wmax=.., target_rate=.., gain=..,
    /// min_threshold=.., wta=true|false, dropout=.., batch=.., images=..)`: every key is
    /// optional, named, given once and range-checked with the rules of
    /// `train::stdp::StdpConfig::validate` (η ≥ 0, τ > 0, 0 ≤ offset ≤ 1, wmin < wmax,
    /// 0 ≤ target_rate ≤ 1, gain ≥ 0, min_threshold > 0, 0 ≤ dropout < 1, batch ≥ 1).
    /// Diagnostics: `snnc::syntax::arguments` (unknown, positional or repeated key),
    /// `snnc::syntax::range` (out of range), `snnc::syntax::bad_value` (not a number or
    /// boolean, no argument list, text after it). Any error drops the whole setting.
    fn stdp_setting(
        &mut self,
        key_span: Span,
        word_span: Span,
        args: Option<&(Vec<Arg<'_>>, Span)>,
        rest: &[Tok<'_>],
    ) {
        let span = rest.iter().fold(word_span, |s, t| s.join(t.span()));
        let Some((args, _)) = args else {
            self.diags.push(SyntaxError::BadValue {
                message: "`stdp` expects its constants in parentheses".into(),
                span,
                label: "no argument list".into(),
                help: Some(STDP_FORM.into()),
            });
            return;
        };
        if let Some(first) = rest.first() {
            let extra = rest.iter().fold(first.span(), |s, t| s.join(t.span()));
            self.diags.push(SyntaxError::BadValue {
                message: "unexpected text after `stdp(...)`".into(),
                span: extra,
                label: "not part of the setting".into(),
                help: Some(STDP_FORM.into()),
            });
            return;
        }
        let mut st = crate::ir::StdpSettings::default();
        let mut ok = true;
        let mut seen: Vec<&str> = Vec::new();
        let mut bounds: [Option<Span>; 2] = [None, None];
        for a in args {
            let Some((raw, kspan)) = a.key else {
                self.diags.push(bad_args(
                    "STDP constants are named",
                    a.span,
                    "positional value",
                    Some(STDP_FORM.into()),
                ));
                ok = false;
                continue;
            };
            let key = match raw {
                "w_min" => "wmin",
                "w_max" => "wmax",
                k => k,
            };
            if seen.contains(&key) {
                self.diags.push(bad_args(
                    format!("`{key}` is given twice in `stdp(...)`"),
                    kspan,
                    "given again here",
                    Some("keep one of them".into()),
                ));
                ok = false;
                continue;
            }
            seen.push(key);
            // A float in a range: `lo`/`hi` with whether each end is included.
            let real =
                |this: &mut Self, lo: Option<(f32, bool)>, hi: Option<(f32, bool)>, rule: &str| {
                    let v = this.float(a.value, a.span)?;
                    let above = lo.is_none_or(|(l, incl)| if incl { v >= l } else { v > l });
                    let below = hi.is_none_or(|(h, incl)| if incl { v <= h } else { v < h });
                    if above && below {
                        Some(v)
                    } else {
                        this.diags.push(range(
                            format!("stdp {key} = {} is out of range", a.value),
                            a.span,
                            format!("needs {rule}"),
                            Some(format!("STDP's {key} satisfies {rule}")),
                        ));
                        None
                    }
                };
            let parsed = match key {
                "eta" => real(self, Some((0.0, true)), None, "η ≥ 0").map(|v| st.eta = Some(v)),
                "tau" => real(self, Some((0.0, false)), None, "τ > 0 (time steps)")
                    .map(|v| st.tau = Some(v)),
                "offset" => real(self, Some((0.0, true)), Some((1.0, true)), "0 ≤ offset ≤ 1")
                    .map(|v| st.offset = Some(v)),
                "wmin" => real(self, None, None, "").map(|v| {
                    st.w_min = Some(v);
                    bounds[0] = Some(a.span);
                }),
                "wmax" => real(self, None, None, "").map(|v| {
                    st.w_max = Some(v);
                    bounds[1] = Some(a.span);
                }),
                "target_rate" => real(
                    self,
                    Some((0.0, true)),
                    Some((1.0, true)),
                    "0 ≤ target_rate ≤ 1",
                )
                .map(|v| st.target_rate = Some(v)),
                "gain" => {
                    real(self, Some((0.0, true)), None, "gain ≥ 0").map(|v| st.gain = Some(v))
                }
                "min_threshold" => real(self, Some((0.0, false)), None, "min_threshold > 0")
                    .map(|v| st.min_threshold = Some(v)),
                "dropout" => real(
                    self,
                    Some((0.0, true)),
                    Some((1.0, false)),
                    "0 ≤ dropout < 1",
                )
                .map(|v| st.dropout = Some(v)),
                "wta" => match a.value {
                    "true" | "on" => {
                        st.wta = Some(true);
                        Some(())
                    }
                    "false" | "off" => {
                        st.wta = Some(false);
                        Some(())
                    }
                    other => {
                        self.diags.push(SyntaxError::BadValue {
                            message: format!("`wta` is `true` or `false`, not `{other}`"),
                            span: a.span,
                            label: "not a boolean".into(),
                            help: Some("write `wta=true` or `wta=false`".into()),
                        });
                        None
                    }
                },
                "batch" | "images" => {
                    let v = if key == "batch" {
                        self.positive(a.value, a.span, "STDP batch")
                    } else {
                        self.u64(a.value, a.span)
                    };
                    match v {
                        Some(v) if v <= u64::from(u32::MAX) => {
                            let v = v as u32;
                            if key == "batch" {
                                st.batch = Some(v);
                            } else {
                                st.images = Some(v);
                            }
                            Some(())
                        }
                        Some(v) => {
                            self.diags.push(range(
                                format!("stdp {key} = {v} is too large"),
                                a.span,
                                "too large",
                                Some(format!("at most {}", u32::MAX)),
                            ));
                            None
                        }
                        None => None,
                    }
                }
                _ => {
                    let help = match key {
                        "lr" | "learning_rate" | "rate" => {
                            format!("did you mean `eta`? (η is STDP's learning rate); {STDP_FORM}")
                        }
                        "tau_plus" | "tau_minus" | "tau_stdp" => {
                            format!("did you mean `tau`? (Eq. 5 has one τ); {STDP_FORM}")
                        }
                        "target" | "rate_target" => {
                            format!("did you mean `target_rate`?; {STDP_FORM}")
                        }
                        "theta_min" | "threshold_min" | "min_theta" => {
                            format!("did you mean `min_threshold`?; {STDP_FORM}")
                        }
                        _ => STDP_FORM.to_string(),
                    };
                    self.diags.push(bad_args(
                        format!("unknown STDP constant `{raw}`"),
                        kspan,
                        "unknown key",
                        Some(help),
                    ));
                    None
                }
            };
            ok &= parsed.is_some();
        }
        if let (Some(lo), Some(hi), [Some(ls), Some(hs)]) = (st.w_min, st.w_max, bounds) {
            if lo >= hi {
                self.diags.push(range(
                    format!("the STDP weight bounds [{lo}, {hi}] are empty"),
                    ls.join(hs),
                    "wmin ≥ wmax",
                    Some("STDP keeps weights in [wmin, wmax] with wmin < wmax".into()),
                ));
                ok = false;
            }
        }
        if ok {
            self.push_setting("stdp", SettingKind::Stdp(st), span, key_span);
        }
    }

    fn setting_kind(&mut self, key: &str, key_span: Span, rest: &[Tok<'_>]) -> Option<SettingKind> {
        let expect = match key {
            "input" => "a shape CxHxW, e.g. `input 3x32x32`",
            "timesteps" => "a number of time steps, e.g. `timesteps 25`",
            "encode" => "`poisson` or `direct`",
            "neuron" => "`LIF(leak=.., threshold=.., reset=..)` or `IF(threshold=.., reset=..)`",
            "surrogate" => "`linear(gamma=0.3)`",
            _ => "`agd`, `conversion` or `stdp`",
        };
        let missing = |this: &mut Self, span: Span| {
            this.diags.push(SyntaxError::BadValue {
                message: format!("`{key}` expects {expect}"),
                span,
                label: "missing or malformed value".into(),
                help: Some(format!("write `{key}` followed by {expect}")),
            });
            None
        };
        if rest.len() != 1 {
            let span = rest.iter().fold(key_span, |s, t| s.join(t.span()));
            return missing(self, span);
        }
        let tok = &rest[0];
        match (key, tok) {
            ("input", Tok::Value { text, span }) => {
                let parts: Vec<&str> = text.split(['x', '×', 'X']).collect();
                if parts.len() != 3 {
                    return missing(self, *span);
                }
                let c = self.positive(parts[0], *span, "input channels");
                let h = self.positive(parts[1], *span, "input height");
                let w = self.positive(parts[2], *span, "input width");
                Some(SettingKind::Input(Shape::new(c?, h?, w?)))
            }
            ("timesteps", Tok::Value { text, span }) => {
                let v = self.positive(text, *span, "time steps")?;
                if v > u32::MAX as u64 {
                    self.diags.push(range(
                        format!("{v} time steps is too many"),
                        *span,
                        "too large",
                        Some(format!("at most {}", u32::MAX)),
                    ));
                    return None;
                }
                Some(SettingKind::Timesteps(v as u32))
            }
            (
                "encode",
                Tok::Word {
                    name,
                    args: None,
                    span,
                    ..
                },
            ) => match *name {
                "poisson" => Some(SettingKind::Encode(Encoding::Poisson)),
                "direct" => Some(SettingKind::Encode(Encoding::Direct)),
                _ => missing(self, *span),
            },
            (
                "method",
                Tok::Word {
                    name,
                    args: None,
                    span,
                    ..
                },
            ) => match *name {
                "agd" => Some(SettingKind::Method(Method::Agd)),
                "conversion" => Some(SettingKind::Method(Method::Conversion)),
                "stdp" => Some(SettingKind::Method(Method::Stdp)),
                _ => missing(self, *span),
            },
            (
                "neuron",
                Tok::Word {
                    name, args, span, ..
                },
            ) => {
                let kind = match *name {
                    "LIF" => NeuronKind::Lif,
                    "IF" => NeuronKind::If,
                    "Leaky" | "leaky" => {
                        self.diags.push(SyntaxError::BadValue {
                            message: format!("`neuron` expects {expect}"),
                            span: *span,
                            label: "not a neuron of the language".into(),
                            help: Some("did you mean `LIF`? (snnTorch's `Leaky` is the LIF neuron; its `beta` is `leak`)".into()),
                        });
                        return None;
                    }
                    _ => return missing(self, *span),
                };
                let args: &[Arg<'_>] = args.as_ref().map(|a| a.0.as_slice()).unwrap_or(&[]);
                self.neuron(kind, args, *span).map(SettingKind::Neuron)
            }
            (
                "surrogate",
                Tok::Word {
                    name: "linear",
                    args,
                    span,
                    ..
                },
            ) => {
                let args: &[Arg<'_>] = args.as_ref().map(|a| a.0.as_slice()).unwrap_or(&[]);
                let mut gamma = 0.3f32;
                for a in args {
                    match a.key {
                        Some(("gamma", _)) | None => {
                            let v = self.float(a.value, a.span)?;
                            if v <= 0.0 {
                                self.diags.push(range(
                                    format!("gamma {} is not positive", a.value),
                                    a.span,
                                    "gamma ≤ 0",
                                    Some("the surrogate's slope γ is greater than 0".into()),
                                ));
                                return None;
                            }
                            gamma = v;
                        }
                        Some((k, ks)) => {
                            self.diags.push(bad_args(
                                format!("unknown surrogate parameter `{k}`"),
                                ks,
                                "unknown parameter",
                                Some("write `surrogate linear(gamma=0.3)`".into()),
                            ));
                            return None;
                        }
                    }
                }
                let _ = span;
                Some(SettingKind::Surrogate { gamma })
            }
            (_, t) => missing(self, t.span()),
        }
    }

    fn skip(&mut self, kw: Span, rest: &[Tok<'_>]) {
        let span = rest.iter().fold(kw, |s, t| s.join(t.span()));
        let form = Some("write `skip A -> B concat` or `skip A -> B add`");
        let words: Vec<(&str, Span, bool)> = rest
            .iter()
            .filter_map(|t| match t {
                Tok::Word {
                    name,
                    name_span,
                    args,
                    ..
                } => Some((*name, *name_span, args.is_some())),
                _ => None,
            })
            .collect();
        let shape_ok = rest.len() == 4
            && matches!(rest[0], Tok::Word { args: None, .. })
            && matches!(rest[1], Tok::Sep { arrow: true, .. })
            && matches!(rest[2], Tok::Word { args: None, .. })
            && matches!(rest[3], Tok::Word { args: None, .. });
        if !shape_ok || words.len() != 3 {
            self.diags.push(SyntaxError::BadValue {
                message: "malformed skip connection".into(),
                span,
                label: "expected `skip A -> B concat|add`".into(),
                help: form.map(str::to_string),
            });
            return;
        }
        let (from, from_span, _) = words[0];
        let (to, to_span, _) = words[1];
        let (mode, mode_span, _) = words[2];
        let mode = match mode {
            "concat" => JoinModeDecl::Concat,
            "add" => JoinModeDecl::Add,
            other => {
                self.diags.push(SyntaxError::BadValue {
                    message: format!("unknown skip mode `{other}`"),
                    span: mode_span,
                    label: "not a join mode".into(),
                    help: Some("write `concat` or `add`".into()),
                });
                return;
            }
        };
        self.net.skips.push(SkipDecl {
            from: if from == "Input" {
                None
            } else {
                Some(from.to_string())
            },
            from_span,
            to: to.to_string(),
            to_span,
            mode,
            span,
        });
    }
}

fn is_activation_like(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    [
        "relu",
        "lif",
        "if",
        "sigmoid",
        "tanh",
        "gelu",
        "elu",
        "softplus",
        "leakyrelu",
        "spike",
        "alif",
        "plif",
    ]
    .contains(&l.as_str())
}

/// Index of the first newline or `;` separator at or after `i` (arrows do not end an item
/// that started with a keyword such as `skip`).
fn item_end(toks: &[Tok<'_>], i: usize) -> usize {
    let mut j = i;
    while j < toks.len() {
        if let Tok::Sep { arrow: false, .. } = toks[j] {
            return j;
        }
        j += 1;
    }
    toks.len()
}

/// Whether the digits before the exponent of a decimal number (`0.000`, `1.5`) are not all
/// zero.
fn mantissa_nonzero(number: &str) -> bool {
    number
        .split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)))
}

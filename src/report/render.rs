//! Rendering a [`Report`]: Markdown and HTML from the handlebars templates in `templates/`
//! (embedded in the binary, so an installed `runway` needs no files beside it), JSON as the
//! report itself.
//!
//! Both templates render in strict mode: a name a template uses that the model lacks is an
//! error, not an empty string. HTML output is escaped by handlebars (and the SVG, the one
//! raw value, escapes its own text); Markdown is not escaped, and its two helpers keep the
//! document's structure whatever the text holds: `cell` for table cells, `code` for fenced
//! blocks.

use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext};
use serde_json::Value;

use super::model::Report;

const MARKDOWN: &str = include_str!("../../templates/report.md.hbs");
const HTML: &str = include_str!("../../templates/report.html.hbs");

/// A report's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

impl Format {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Html => "html",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render the report: {0}")]
pub struct RenderError(String);

/// The report as text in `format`.
pub fn render(report: &Report, format: Format) -> Result<String, RenderError> {
    if format == Format::Json {
        let mut text =
            serde_json::to_string_pretty(report).map_err(|e| RenderError(e.to_string()))?;
        text.push('\n');
        return Ok(text);
    }
    let mut data = serde_json::to_value(report).map_err(|e| RenderError(e.to_string()))?;
    if let Value::Object(root) = &mut data {
        // The templates do not need the sealed record, and a 1,000-step run's events would
        // only be copied around.
        root.remove("events");
        root.remove("definition");
        root.insert(
            "generator".into(),
            Value::String(format!("runway {}", env!("CARGO_PKG_VERSION"))),
        );
        if format == Format::Html {
            root.insert(
                "dag_svg".into(),
                super::dag::svg(&report.summary.steps).map_or(Value::Null, Value::String),
            );
        }
    }
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    let (name, source) = match format {
        Format::Md => {
            hb.register_escape_fn(handlebars::no_escape);
            hb.register_helper("cell", Box::new(cell));
            hb.register_helper("code", Box::new(code));
            ("md", MARKDOWN)
        }
        _ => ("html", HTML),
    };
    hb.register_template_string(name, source)
        .map_err(|e| RenderError(e.to_string()))?;
    hb.render(name, &data)
        .map_err(|e| RenderError(e.to_string()))
}

fn param_text(h: &Helper<'_>) -> String {
    match h.param(0).map(|p| p.value()) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `{{cell x}}`: text that stays inside one Markdown table cell.
fn cell(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let text = param_text(h)
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace("\r\n", "\n")
        .replace('\n', "<br>");
    out.write(&text)?;
    Ok(())
}

/// `{{code x}}`: a fenced block whose fence is longer than any run of backticks in `x`.
fn code(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let text = param_text(h);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    out.write(&format!("{fence}text\n{text}\n{fence}"))?;
    Ok(())
}

//! `sql`: one query against a PostgreSQL target, values bound as arguments only.

use serde::Serialize;

use super::TemplateUse;
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// The connection URL; it must come from a secret.
    pub url: Template,
    /// The query, with `$1`, `$2`... placeholders. No templates.
    pub query: Spanned<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Template>,
}

impl Sql {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Sql> {
        let mut f = Fields::of(node, "`sql`", diags)?;
        let url = f
            .require("url", diags)
            .and_then(|n| decode::template(n, diags));
        let query = f
            .require("query", diags)
            .and_then(|n| decode::string(n, diags));
        let args = f
            .take("args")
            .and_then(|n| decode::template_list(n, diags))
            .unwrap_or_default();
        f.finish(diags);
        if let Some(url) = &url
            && !url.refs.iter().any(|r| r.root() == "secrets")
        {
            diags
                .error(url.location, "`sql.url` must come from a secret")
                .hint(
                    "declare `secrets: [DATABASE_URL]` and write `url: '{{secrets.DATABASE_URL}}'`",
                );
        }
        if let Some(q) = &query {
            if q.contains("{{") {
                diags
                    .error(q.location, "templates are not allowed in an SQL query")
                    .hint(
                        "write `$1` in the query and put the value in `args: ['{{params.NAME}}']`",
                    );
                return None;
            }
            let placeholders = max_placeholder(q);
            if placeholders != args.len() {
                diags.error(
                    q.location,
                    format!("the query uses {placeholders} placeholder(s) ($1..${placeholders}) but `args` has {} value(s)", args.len()),
                );
            }
        }
        Some(Sql {
            url: url?,
            query: query?,
            args,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        let mut uses = vec![TemplateUse::new(&self.url, "url", true)];
        uses.extend(self.args.iter().map(|t| TemplateUse::new(t, "args", false)));
        uses
    }
}

/// The highest `$N` in the query, ignoring string literals.
fn max_placeholder(query: &str) -> usize {
    let mut max = 0;
    let mut in_string = false;
    let mut chars = query.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => in_string = !in_string,
            '$' if !in_string => {
                let digits: String = query[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = digits.parse::<usize>() {
                    max = max.max(n);
                }
                for _ in 0..digits.len() {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    max
}

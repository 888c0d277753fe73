//! `http`: one request, its status checked, its JSON body kept as outputs.

use serde::Serialize;

use super::{TemplateMap, TemplateUse};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields};
use crate::playbook::template::Template;
use crate::yaml::{Node, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

const METHODS: [(&str, Method); 6] = [
    ("GET", Method::Get),
    ("HEAD", Method::Head),
    ("POST", Method::Post),
    ("PUT", Method::Put),
    ("PATCH", Method::Patch),
    ("DELETE", Method::Delete),
];

impl Method {
    pub fn as_str(self) -> &'static str {
        METHODS
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("GET", |(n, _)| n)
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default)]
    pub method: Method,
    pub url: Template,
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub headers: TemplateMap,
    /// A text body. At most one of `body`, `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
    /// A body sent as JSON; its string values may hold templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Accepted status codes; empty means any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Option<StatusCodes>")]
    pub expect_status: Vec<u16>,
    #[serde(skip)]
    #[schemars(skip)]
    pub json_templates: Vec<Template>,
}

/// A status code or a list of them.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StatusCodes {
    One(u16),
    Many(Vec<u16>),
}

impl Http {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Http> {
        let mut f = Fields::of(node, "`http`", diags)?;
        let method = f.take("method").and_then(|n| {
            let text = decode::string(n, diags)?;
            let upper = text.to_ascii_uppercase();
            match METHODS.iter().find(|(name, _)| *name == upper) {
                Some((_, m)) => Some(*m),
                None => {
                    diags
                        .error(
                            n.location,
                            format!("`{}` is not a supported HTTP method", text.value),
                        )
                        .hint("use GET, HEAD, POST, PUT, PATCH or DELETE");
                    None
                }
            }
        });
        let url = f
            .require("url", diags)
            .and_then(|n| decode::template(n, diags));
        let headers = f
            .take("headers")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        let body = f.take("body").and_then(|n| decode::template(n, diags));
        let json_node = f.take("json");
        let mut json_templates = Vec::new();
        if let Some(n) = json_node {
            collect_templates(n, &mut json_templates, diags);
        }
        let expect_status = f.take("expect_status").and_then(|n| match &n.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| status(i, diags))
                .collect::<Option<Vec<_>>>(),
            _ => status(n, diags).map(|s| vec![s]),
        });
        if f.has("body") && json_node.is_some() {
            diags
                .error(f.location, "`http` has both `body` and `json`")
                .hint("keep one");
        }
        if let Some(n) = f.take("timeout") {
            diags
                .error(n.location, "`timeout` belongs to the step, not to `http`")
                .hint("move `timeout:` out of `http:` to the step's own fields");
        }
        f.finish(diags);
        Some(Http {
            method: method.unwrap_or_default(),
            url: url?,
            headers,
            body,
            json: json_node.map(Node::to_json),
            expect_status: expect_status.unwrap_or_default(),
            json_templates,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        let mut uses = vec![TemplateUse::new(&self.url, "url", true)];
        uses.extend(self.headers.uses("header", true));
        uses.extend(self.body.iter().map(|t| TemplateUse::new(t, "body", true)));
        uses.extend(
            self.json_templates
                .iter()
                .map(|t| TemplateUse::new(t, "json", true)),
        );
        uses
    }
}

fn status(node: &Node, diags: &mut Diagnostics) -> Option<u16> {
    decode::integer(node, 100, 599, diags).map(|s| s.value as u16)
}

/// The string leaves of a JSON body that hold templates, so their names get checked.
fn collect_templates(node: &Node, out: &mut Vec<Template>, diags: &mut Diagnostics) {
    match &node.value {
        Value::Scalar { text, .. } if text.contains("{{") => {
            if let Some(t) = decode::template(node, diags) {
                out.push(t);
            }
        }
        Value::Scalar { .. } => {}
        Value::Seq(items) => items.iter().for_each(|i| collect_templates(i, out, diags)),
        Value::Map(entries) => entries
            .iter()
            .for_each(|(_, v)| collect_templates(v, out, diags)),
    }
}

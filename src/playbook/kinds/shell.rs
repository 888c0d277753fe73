//! `shell`: run a program (argv) or a bash script, never a string built from params.

use serde::Serialize;

use super::{TemplateMap, TemplateUse};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shell {
    /// The program and its arguments, run without a shell. Exactly one of `argv`, `script`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<Template>>,
    /// A bash script body (`bash -euo pipefail`). No templates: pass values through `env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub env: TemplateMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Template>,
}

impl TemplateMap {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const RESERVED_PREFIX: &str = "RUNWAY_";

impl Shell {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Shell> {
        let mut f = Fields::of(node, "`shell`", diags)?;
        let argv = f.take("argv").and_then(|n| {
            let argv = decode::template_list(n, diags)?;
            if argv.is_empty() {
                diags
                    .error(n.location, "`argv` is empty")
                    .hint("the first element is the program to run");
                return None;
            }
            Some(argv)
        });
        let script = f.take("script").and_then(|n| {
            let body = decode::string(n, diags)?;
            if let Some(at) = body.find("{{") {
                // A block scalar (`script: |`) is located at its first content line, at the
                // indentation YAML strips, so line and column map back exactly.
                let line_in_script = body[..at].matches('\n').count();
                let line_start = body[..at].rfind('\n').map_or(0, |i| i + 1);
                let column = body[line_start..at].chars().count();
                let location = if body.contains('\n') {
                    crate::diagnostic::Location::new(
                        n.location.line as usize + line_in_script,
                        n.location.column as usize + column,
                        2,
                    )
                } else {
                    crate::yaml::scalar_offset(n.location, &body, at, 2)
                };
                let snippet: String = body[at..].chars().take_while(|c| *c != '}').collect();
                let name = snippet.trim_start_matches('{').trim();
                let var = name.rsplit('.').next().unwrap_or("VALUE").to_uppercase().replace('-', "_");
                diags
                    .error(location, "templates are not allowed in a shell script body")
                    .hint(format!(
                        "string-built shell is an injection hole; pass the value through the environment: \
                         `env: {{ {var}: '{{{{{name}}}}}' }}` and write \"${var}\" in the script (or use `argv:`)"
                    ));
                return None;
            }
            Some(body)
        });
        let env = f
            .take("env")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        let cwd = f.take("cwd").and_then(|n| decode::template(n, diags));
        if let Some(n) = f.take("timeout") {
            diags
                .error(n.location, "`timeout` belongs to the step, not to `shell`")
                .hint("move `timeout:` out of `shell:` to the step's own fields");
        }
        let has_argv = f.has("argv");
        let has_script = f.has("script");
        let location = f.location;
        f.finish(diags);
        for (name, _) in &env.0 {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                diags.error(
                    name.location,
                    format!("`{}` is not a valid environment variable name", name.value),
                );
            } else if name.starts_with(RESERVED_PREFIX) {
                diags
                    .error(
                        name.location,
                        format!(
                            "`{}` is reserved: Runway sets RUNWAY_* variables itself",
                            name.value
                        ),
                    )
                    .hint("choose another name");
            }
        }
        match (has_argv, has_script) {
            (true, true) => {
                diags
                    .error(location, "`shell` has both `argv` and `script`")
                    .hint("keep one");
                None
            }
            (false, false) => {
                diags
                    .error(location, "`shell` needs `argv` or `script`")
                    .hint("e.g. `shell: { argv: [pnpm, build] }`");
                None
            }
            _ if argv.is_none() && script.is_none() => None,
            _ => Some(Shell {
                argv,
                script,
                env,
                cwd,
            }),
        }
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        let mut uses: Vec<TemplateUse<'_>> = self
            .argv
            .iter()
            .flatten()
            .map(|t| TemplateUse::new(t, "argv", false))
            .collect();
        uses.extend(self.env.uses("env", true));
        uses.extend(self.cwd.iter().map(|t| TemplateUse::new(t, "cwd", false)));
        uses
    }
}

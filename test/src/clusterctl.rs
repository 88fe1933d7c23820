//! clusterctl's variable rules (drone/envsubst as clusterctl uses it): `${VAR}` must be set;
//! `${VAR:=default}` and `${VAR:-default}` fall back when the variable is unset or empty;
//! `${VAR=default}` and `${VAR-default}` only when it is unset. Spaces inside `${ }` are allowed.

use std::collections::HashMap;

/// Substitutes every `${...}` in `text`; the error names the first required variable missing.
pub fn render(text: &str, vars: &HashMap<&str, &str>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ at {:?}", &rest[start..]))?;
        out.push_str(&expand(after[..end].trim(), vars)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(expr: &str, vars: &HashMap<&str, &str>) -> Result<String, String> {
    for (op, unset_only) in [(":=", false), (":-", false), ("=", true), ("-", true)] {
        if let Some((name, default)) = expr.split_once(op) {
            let value = vars.get(name.trim()).copied();
            let use_default = if unset_only {
                value.is_none()
            } else {
                value.is_none_or(str::is_empty)
            };
            return Ok(if use_default {
                default.to_string()
            } else {
                value.unwrap_or_default().to_string()
            });
        }
    }
    vars.get(expr)
        .map(|v| v.to_string())
        .ok_or_else(|| format!("value for variables [{expr}] is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusterctl_rules() {
        let vars = HashMap::from([("A", "a"), ("EMPTY", "")]);
        assert_eq!(render("${A} ${ A }", &vars).as_deref(), Ok("a a"));
        assert_eq!(
            render(
                "${B:=x} ${EMPTY:=x} ${EMPTY=x} ${B=y} ${A:-z} ${EMPTY-w}",
                &vars
            )
            .as_deref(),
            Ok("x x  y a ")
        );
        assert_eq!(
            render("${MISSING}", &vars),
            Err("value for variables [MISSING] is not set".into())
        );
        assert!(render("${A", &vars).is_err());
    }
}

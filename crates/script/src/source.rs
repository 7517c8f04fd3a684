//! What kind of module a handler's source is, and the rewrite that lets an ES module without exports
//! run once per event (Dirigible's first handler style) as a function.

/// How a handler module is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// Has `export`s: evaluated once; its `onOpen`/`onMessage`/`onError`/`onClose` exports handle events.
    EsModule,
    /// `import`s but no `export`s: runs once per event, branching on `websockets.isOnMessage()` etc.
    EsModuleWithoutExports,
    /// CommonJS (`require`, `exports.onMessage = ...`, or neither): its exports handle events if it
    /// has any, otherwise it runs once per event.
    CommonJs,
}

fn statements(source: &str) -> impl Iterator<Item = &str> {
    source.lines().map(str::trim_start)
}

fn starts_keyword(line: &str, keyword: &str) -> bool {
    line.strip_prefix(keyword).is_some_and(|rest| rest.starts_with([' ', '{', '*', '"', '\'', '\t']))
}

/// Tells the kind from top-level `import`/`export` statements (a statement at the start of a line).
pub(crate) fn module_kind(source: &str) -> ModuleKind {
    let exports = statements(source).any(|line| starts_keyword(line, "export"));
    let imports = statements(source).any(|line| starts_keyword(line, "import"));
    match (exports, imports) {
        (true, _) => ModuleKind::EsModule,
        (false, true) => ModuleKind::EsModuleWithoutExports,
        (false, false) => ModuleKind::CommonJs,
    }
}

/// Rewrites each single-line `import` statement to the equivalent `require`, line for line (so
/// line numbers in errors stay the file's).
pub(crate) fn imports_to_require(source: &str) -> Result<String, String> {
    let mut out = String::with_capacity(source.len() + 64);
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if starts_keyword(trimmed, "import") {
            let rewritten = rewrite_import(trimmed.trim_end().trim_end_matches(';')).ok_or_else(|| {
                format!(
                    "line {}: only single-line `import` statements can run per event, found {:?}",
                    number + 1,
                    trimmed.trim_end()
                )
            })?;
            out.push_str(&rewritten);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `import X from "m"`, `import { a, b as c } from "m"`, `import * as ns from "m"`, `import "m"`,
/// and `import X, { a } from "m"`.
fn rewrite_import(statement: &str) -> Option<String> {
    let rest = statement.strip_prefix("import")?.trim();
    if let Some(module) = quoted(rest) {
        return Some(format!("require({module});"));
    }
    let (clause, module) = rest.rsplit_once(" from ")?;
    let module = quoted(module.trim())?;
    let clause = clause.trim();
    let required = format!("require({module})");
    let default_of =
        |name: &str| format!("const {name} = ((m) => (m && m.default !== undefined ? m.default : m))({required});");
    if let Some(namespace) = clause.strip_prefix("* as ") {
        return identifier(namespace.trim()).map(|name| format!("const {name} = {required};"));
    }
    if let Some(named) = clause.strip_prefix('{') {
        return named_bindings(named.strip_suffix('}')?)
            .map(|bindings| format!("const {{ {bindings} }} = {required};"));
    }
    match clause.split_once(',') {
        Some((default, named)) => {
            let default = identifier(default.trim())?;
            let named = named.trim().strip_prefix('{')?.strip_suffix('}')?;
            let bindings = named_bindings(named)?;
            Some(format!("{} const {{ {bindings} }} = {required};", default_of(default)))
        }
        None => identifier(clause).map(default_of),
    }
}

/// `a, b as c` -> `a, b: c`.
fn named_bindings(list: &str) -> Option<String> {
    let mut bindings = Vec::new();
    for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        match item.split_once(" as ") {
            Some((name, alias)) => {
                bindings.push(format!("{}: {}", identifier(name.trim())?, identifier(alias.trim())?))
            }
            None => bindings.push(identifier(item)?.to_owned()),
        }
    }
    Some(bindings.join(", "))
}

fn identifier(name: &str) -> Option<&str> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    valid.then_some(name)
}

/// A string literal in single or double quotes, returned with its quotes.
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    (text.len() >= 2 && text.ends_with(quote) && !text[1..text.len() - 1].contains(quote)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            module_kind("import { websockets } from \"sdk/net\";\nexport function onOpen() {}"),
            ModuleKind::EsModule
        );
        assert_eq!(
            module_kind("import { websockets } from \"sdk/net\";\nif (websockets.isOnOpen()) {}"),
            ModuleKind::EsModuleWithoutExports
        );
        assert_eq!(
            module_kind("var ws = require('net/v4/websockets');\nexports.onOpen = () => 1;"),
            ModuleKind::CommonJs
        );
        assert_eq!(module_kind("// import nothing\nconst important = 1;"), ModuleKind::CommonJs);
    }

    #[test]
    fn imports_become_requires_line_for_line() {
        let source = "import { websockets } from \"sdk/net\";\nimport ws from 'net/v4/websockets'\nimport * as net from \"sdk/net\";\nimport { a as b, c } from \"./lib\";\nimport \"./side\";\nlet x = 1;";
        let rewritten = imports_to_require(source).expect("rewritten");
        let lines: Vec<&str> = rewritten.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "const { websockets } = require(\"sdk/net\");");
        assert!(lines[1].starts_with("const ws = ((m) =>") && lines[1].ends_with("(require('net/v4/websockets'));"));
        assert_eq!(lines[2], "const net = require(\"sdk/net\");");
        assert_eq!(lines[3], "const { a: b, c } = require(\"./lib\");");
        assert_eq!(lines[4], "require(\"./side\");");
        assert_eq!(lines[5], "let x = 1;");
        let error = imports_to_require("let a;\nimport {\n  x } from 'y';").expect_err("multi-line");
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
